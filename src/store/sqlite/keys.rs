//! API keys in the SQLite engine (contract section 9): one table, `api_keys`. The semantics
//! of each method are those documented on [`crate::store::TokenStore`]; the SQL is plain
//! (a partial unique index, `INSERT`, `UPDATE`, `SELECT`), as PostgreSQL also has it.
//!
//! The digest is stored as 64 lower-case hex characters; addresses and CIDR blocks as
//! space-separated text; times as Unix milliseconds.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteStore;
use crate::store::keys::merge_addresses;
use crate::store::{
    ApiKeyRecord, KeyChange, KeyCreated, KeyUse, StoreError, StoredKeyState, from_ms, ms,
};

/// The schema step of API keys: only new tables and indexes, so that it can run in any
/// order with the other steps of this round.
pub(super) const SCHEMA_KEYS: &str = "
CREATE TABLE IF NOT EXISTS api_keys (
    id             TEXT PRIMARY KEY NOT NULL,
    digest         TEXT NOT NULL,
    name           TEXT NOT NULL,
    owner          TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER,
    state          TEXT NOT NULL,
    last_used_at   INTEGER,
    last_addresses TEXT NOT NULL DEFAULT '',
    allow_ip       TEXT NOT NULL DEFAULT '',
    rate_limit     TEXT,
    successor      TEXT,
    grace_until    INTEGER,
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

fn row(r: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    let digest_hex: String = r.get(1)?;
    let mut digest = [0u8; 32];
    // A digest that does not decode matches no key: it stays all zeros.
    let _ = hex::decode_to_slice(&digest_hex, &mut digest);
    Ok(ApiKeyRecord {
        id: r.get(0)?,
        digest,
        name: r.get(2)?,
        owner: r.get(3)?,
        scopes: r.get(4)?,
        created_at: from_ms(r.get(5)?),
        expires_at: r.get::<_, Option<i64>>(6)?.map(from_ms),
        state: StoredKeyState::parse(&r.get::<_, String>(7)?),
        last_used_at: r.get::<_, Option<i64>>(8)?.map(from_ms),
        last_addresses: words(&r.get::<_, String>(9)?),
        allow_ip: words(&r.get::<_, String>(10)?),
        rate_limit: r.get(11)?,
        successor: r.get(12)?,
        grace_until: r.get::<_, Option<i64>>(13)?.map(from_ms),
        parent: r.get(14)?,
    })
}

fn insert(conn: &Connection, k: &ApiKeyRecord) -> rusqlite::Result<()> {
    conn.execute(
        &format!("INSERT INTO api_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
        params![
            k.id,
            hex::encode(k.digest),
            k.name,
            k.owner,
            k.scopes,
            ms(k.created_at),
            k.expires_at.map(ms),
            k.state.as_str(),
            k.last_used_at.map(ms),
            k.last_addresses.join(" "),
            k.allow_ip.join(" "),
            k.rate_limit,
            k.successor,
            k.grace_until.map(ms),
            k.parent,
        ],
    )
    .map(drop)
}

fn by_id(conn: &Connection, id: &str) -> rusqlite::Result<Option<ApiKeyRecord>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1"))?
        .query_row([id], row)
        .optional()
}

/// Whether another key of `owner` (not `except`) holds `name`.
fn name_held(
    conn: &Connection,
    owner: &str,
    name: &str,
    except: Option<&str>,
) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM api_keys WHERE owner = ?1 AND name = ?2
            AND state <> 'revoked' AND successor IS NULL AND (?3 IS NULL OR id <> ?3))",
        params![owner, name, except],
        |r| r.get(0),
    )
}

impl SqliteStore {
    pub(super) fn create_key_in(
        &self,
        key: &ApiKeyRecord,
        max_live: usize,
    ) -> Result<KeyCreated, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        if name_held(&tx, &key.owner, &key.name, None).map_err(|e| self.err(e))? {
            return Ok(KeyCreated::NameTaken);
        }
        let live: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM api_keys WHERE owner = ?1 AND state <> 'revoked' AND successor IS NULL",
                [&key.owner],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        if usize::try_from(live).unwrap_or(usize::MAX) >= max_live {
            return Ok(KeyCreated::TooMany { limit: max_live });
        }
        insert(&tx, key).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(KeyCreated::Created)
    }

    pub(super) fn key_by_digest_in(
        &self,
        digest: &[u8; 32],
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let hex = hex::encode(digest);
        self.with_reader(|conn| {
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM api_keys WHERE digest = ?1"))?
                .query_row([&hex], row)
                .optional()
        })
    }

    pub(super) fn key_by_id_in(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.with_reader(|conn| by_id(conn, id))
    }

    pub(super) fn list_keys_in(
        &self,
        owner: Option<&str>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM api_keys WHERE (?1 IS NULL OR owner = ?1)
                 ORDER BY created_at DESC, id ASC"
            ))?;
            stmt.query_map([owner], row)?.collect()
        })
    }

    pub(super) fn set_key_state_in(
        &self,
        id: &str,
        to: StoredKeyState,
    ) -> Result<KeyChange, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let change = match by_id(&tx, id).map_err(|e| self.err(e))? {
            None => KeyChange::NotFound,
            Some(k) if k.state == StoredKeyState::Revoked => KeyChange::Final(k),
            Some(mut k) => {
                tx.execute(
                    "UPDATE api_keys SET state = ?2 WHERE id = ?1",
                    params![id, to.as_str()],
                )
                .map_err(|e| self.err(e))?;
                k.state = to;
                KeyChange::Done(k)
            }
        };
        tx.commit().map_err(|e| self.err(e))?;
        if matches!(change, KeyChange::Done(_)) {
            self.make_durable(&conn)?;
        }
        Ok(change)
    }

    pub(super) fn rotate_key_in(
        &self,
        old_id: &str,
        new: &ApiKeyRecord,
        grace_until: Option<Timestamp>,
    ) -> Result<KeyChange, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let mut old = match by_id(&tx, old_id).map_err(|e| self.err(e))? {
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
            "UPDATE api_keys SET successor = ?2, grace_until = ?3, state = ?4 WHERE id = ?1",
            params![old_id, new.id, grace_until.map(ms), old.state.as_str()],
        )
        .map_err(|e| self.err(e))?;
        insert(&tx, new).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        self.make_durable(&conn)?;
        Ok(KeyChange::Done(old))
    }

    pub(super) fn touch_keys_in(&self, uses: &[KeyUse]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        for u in uses {
            let stored: Option<(Option<i64>, String)> = tx
                .query_row(
                    "SELECT last_used_at, last_addresses FROM api_keys WHERE id = ?1",
                    [&u.id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(|e| self.err(e))?;
            let Some((last, addresses)) = stored else {
                continue;
            };
            let at = last.map_or(ms(u.at), |l| l.max(ms(u.at)));
            let merged = merge_addresses(&u.addresses, &words(&addresses));
            tx.execute(
                "UPDATE api_keys SET last_used_at = ?2, last_addresses = ?3 WHERE id = ?1",
                params![u.id, at, merged.join(" ")],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }
}
