//! API keys on PostgreSQL (contract section 9): the `api_keys` table, with the semantics of
//! the key methods of [`TokenStore`](crate::store::TokenStore), as the SQLite engine keeps
//! them (`store/sqlite/keys.rs`; same columns: the digest as 64 hex characters, addresses
//! and CIDR blocks space-separated, times in Unix ms).
//!
//! Concurrency (READ COMMITTED, several processes):
//! - Names and the number of live keys per owner: `create_key` and `rotate_key` take a
//!   transaction-level advisory lock of the owner before they check, so two replicas cannot
//!   both pass the checks; the partial unique index `api_keys_name` (owner, name among keys
//!   that hold their name) is the backstop, and its violation reads as `NameTaken`.
//! - A state change and a rotation lock the key's row (`SELECT ... FOR UPDATE`): a key is
//!   rotated once, and never changed after it is revoked.
//! - Use reports lock their rows in id order, so two replicas reporting the same keys never
//!   wait for each other in a cycle.
//!
//! Nothing here is cached by the engine: the server's key table (`auth/keys.rs`) trusts what
//! it read for at most 1 s, so a key disabled, revoked or rotated through any replica is
//! refused by every other within that second.

use deadpool_postgres::GenericClient;
use jiff::Timestamp;
use tokio_postgres::Row;

use super::Shared;
use crate::store::keys::merge_addresses;
use crate::store::{
    ApiKeyRecord, KeyChange, KeyCreated, KeyUse, StoreError, StoredKeyState, from_ms, ms,
};

/// Migration step: the API keys (only new tables and indexes).
pub(super) const SCHEMA_KEYS: &str = "
CREATE TABLE IF NOT EXISTS api_keys (
    id             TEXT PRIMARY KEY,
    digest         TEXT NOT NULL,
    name           TEXT NOT NULL,
    owner          TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT,
    state          TEXT NOT NULL,
    last_used_at   BIGINT,
    last_addresses TEXT NOT NULL DEFAULT '',
    allow_ip       TEXT NOT NULL DEFAULT '',
    rate_limit     TEXT,
    successor      TEXT,
    grace_until    BIGINT,
    parent         TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_digest ON api_keys (digest);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_name ON api_keys (owner, name)
    WHERE state <> 'revoked' AND successor IS NULL;
CREATE INDEX IF NOT EXISTS api_keys_owner ON api_keys (owner, created_at);
";

const COLUMNS: &str = "id, digest, name, owner, scopes, created_at, expires_at, state, \
    last_used_at, last_addresses, allow_ip, rate_limit, successor, grace_until, parent";

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

fn key(r: &Row) -> ApiKeyRecord {
    let digest_hex: String = r.get(1);
    let mut digest = [0u8; 32];
    // A digest that does not decode matches no key: it stays all zeros.
    let _ = hex::decode_to_slice(&digest_hex, &mut digest);
    ApiKeyRecord {
        id: r.get(0),
        digest,
        name: r.get(2),
        owner: r.get(3),
        scopes: r.get(4),
        created_at: from_ms(r.get(5)),
        expires_at: r.get::<_, Option<i64>>(6).map(from_ms),
        state: StoredKeyState::parse(r.get(7)),
        last_used_at: r.get::<_, Option<i64>>(8).map(from_ms),
        last_addresses: words(r.get(9)),
        allow_ip: words(r.get(10)),
        rate_limit: r.get(11),
        successor: r.get(12),
        grace_until: r.get::<_, Option<i64>>(13).map(from_ms),
        parent: r.get(14),
    }
}

async fn insert(c: &impl GenericClient, k: &ApiKeyRecord) -> Result<u64, tokio_postgres::Error> {
    c.execute(
        &format!(
            "INSERT INTO api_keys ({COLUMNS}) VALUES
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ),
        &[
            &k.id,
            &hex::encode(k.digest),
            &k.name,
            &k.owner,
            &k.scopes,
            &ms(k.created_at),
            &k.expires_at.map(ms),
            &k.state.as_str(),
            &k.last_used_at.map(ms),
            &k.last_addresses.join(" "),
            &k.allow_ip.join(" "),
            &k.rate_limit,
            &k.successor,
            &k.grace_until.map(ms),
            &k.parent,
        ],
    )
    .await
}

/// Serializes the name and count checks of one owner's keys until the transaction ends.
async fn lock_owner(c: &impl GenericClient, owner: &str) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('tessera/keys/' || $1::text, 0))",
        &[&owner],
    )
    .await
    .map(drop)
}

/// The unique index that was violated, if `e` is a unique violation.
fn violated(e: &tokio_postgres::Error) -> Option<String> {
    let db = e.as_db_error()?;
    (db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
        .then(|| db.constraint().unwrap_or_default().to_owned())
}

impl Shared {
    /// A key stored twice (same id or digest): the caller's bug, as in the other engines.
    fn key_conflict(&self, index: &str) -> StoreError {
        let what = if index.contains("digest") {
            "digest"
        } else {
            "id"
        };
        StoreError::Conflict {
            location: self.location.clone(),
            message: format!("an API key with this {what} is already stored"),
            hint: "key ids and digests are random: this is a bug in the caller",
        }
    }

    pub(super) async fn create_key(
        &self,
        k: ApiKeyRecord,
        max_live: usize,
    ) -> Result<KeyCreated, StoreError> {
        let mut client = self.client().await?;
        let e = |e| self.err(e);
        let tx = client.transaction().await.map_err(e)?;
        lock_owner(&tx, &k.owner).await.map_err(e)?;
        let row = tx
            .query_one(
                "SELECT COUNT(*) FILTER (WHERE name = $2), COUNT(*) FROM api_keys
                 WHERE owner = $1 AND state <> 'revoked' AND successor IS NULL",
                &[&k.owner, &k.name],
            )
            .await
            .map_err(e)?;
        let (same_name, live): (i64, i64) = (row.get(0), row.get(1));
        if same_name > 0 {
            return Ok(KeyCreated::NameTaken);
        }
        if usize::try_from(live).unwrap_or(usize::MAX) >= max_live {
            return Ok(KeyCreated::TooMany { limit: max_live });
        }
        match insert(&tx, &k).await {
            Ok(_) => {}
            Err(err) => {
                return match violated(&err) {
                    Some(index) if index == "api_keys_name" => Ok(KeyCreated::NameTaken),
                    Some(index) => Err(self.key_conflict(&index)),
                    None => Err(self.err(err)),
                };
            }
        }
        tx.commit().await.map_err(e)?;
        Ok(KeyCreated::Created)
    }

    pub(super) async fn key_by_digest(
        &self,
        digest: [u8; 32],
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM api_keys WHERE digest = $1"),
                &[&hex::encode(digest)],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.as_ref().map(key))
    }

    pub(super) async fn key_by_id(&self, id: String) -> Result<Option<ApiKeyRecord>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.as_ref().map(key))
    }

    pub(super) async fn list_keys(
        &self,
        owner: Option<String>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM api_keys WHERE ($1::text IS NULL OR owner = $1)
                     ORDER BY created_at DESC, id ASC"
                ),
                &[&owner],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().map(key).collect())
    }

    pub(super) async fn set_key_state(
        &self,
        id: String,
        to: StoredKeyState,
    ) -> Result<KeyChange, StoreError> {
        let mut client = self.client().await?;
        let e = |e| self.err(e);
        let tx = client.transaction().await.map_err(e)?;
        let found = tx
            .query_opt(
                &format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1 FOR UPDATE"),
                &[&id],
            )
            .await
            .map_err(e)?;
        let change = match found.as_ref().map(key) {
            None => KeyChange::NotFound,
            Some(k) if k.state == StoredKeyState::Revoked => KeyChange::Final(k),
            Some(mut k) => {
                tx.execute(
                    "UPDATE api_keys SET state = $2 WHERE id = $1",
                    &[&id, &to.as_str()],
                )
                .await
                .map_err(e)?;
                k.state = to;
                KeyChange::Done(k)
            }
        };
        tx.commit().await.map_err(e)?;
        Ok(change)
    }

    pub(super) async fn rotate_key(
        &self,
        old_id: String,
        new: ApiKeyRecord,
        grace_until: Option<Timestamp>,
    ) -> Result<KeyChange, StoreError> {
        let mut client = self.client().await?;
        let e = |e| self.err(e);
        let tx = client.transaction().await.map_err(e)?;
        // The owner's lock first (as `create_key` takes it), then the row.
        lock_owner(&tx, &new.owner).await.map_err(e)?;
        let found = tx
            .query_opt(
                &format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1 FOR UPDATE"),
                &[&old_id],
            )
            .await
            .map_err(e)?;
        let mut old = match found.as_ref().map(key) {
            None => return Ok(KeyChange::NotFound),
            Some(k) if !k.holds_name() => return Ok(KeyChange::Final(k)),
            Some(k) => k,
        };
        old.successor = Some(new.id.clone());
        old.grace_until = grace_until;
        if grace_until.is_none() {
            old.state = StoredKeyState::Revoked;
        }
        // The old key gives up its name first, so that the unique index lets the new one in.
        tx.execute(
            "UPDATE api_keys SET successor = $2, grace_until = $3, state = $4 WHERE id = $1",
            &[&old_id, &new.id, &grace_until.map(ms), &old.state.as_str()],
        )
        .await
        .map_err(e)?;
        if let Err(err) = insert(&tx, &new).await {
            return Err(match violated(&err) {
                Some(index) => self.key_conflict(&index),
                None => self.err(err),
            });
        }
        tx.commit().await.map_err(e)?;
        Ok(KeyChange::Done(old))
    }

    pub(super) async fn touch_keys(&self, mut uses: Vec<KeyUse>) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        uses.sort_by(|a, b| a.id.cmp(&b.id));
        let mut client = self.client().await?;
        let e = |e| self.err(e);
        let tx = client.transaction().await.map_err(e)?;
        for u in &uses {
            let Some(row) = tx
                .query_opt(
                    "SELECT last_used_at, last_addresses FROM api_keys WHERE id = $1 FOR UPDATE",
                    &[&u.id],
                )
                .await
                .map_err(e)?
            else {
                continue;
            };
            let last: Option<i64> = row.get(0);
            let at = last.map_or(ms(u.at), |l| l.max(ms(u.at)));
            let merged = merge_addresses(&u.addresses, &words(row.get(1)));
            tx.execute(
                "UPDATE api_keys SET last_used_at = $2, last_addresses = $3 WHERE id = $1",
                &[&u.id, &at, &merged.join(" ")],
            )
            .await
            .map_err(e)?;
        }
        tx.commit().await.map_err(e)
    }
}
