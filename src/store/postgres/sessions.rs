//! Browser sessions on PostgreSQL (contract section 9): the `sessions` table, with the
//! semantics of the `session_*` methods of [`TokenStore`](crate::store::TokenStore), as the
//! SQLite engine keeps them (`store/sqlite/sessions.rs`).
//!
//! Nothing of a session is cached in the process: every `session_get` reads the row, so a
//! session ended through any replica ("sign out everywhere" included) is refused by every
//! other one at its next request. The bound on sessions per subject is exact across
//! replicas: `session_create` takes a transaction-level advisory lock of the subject.

use jiff::Timestamp;
use tokio_postgres::Row;

use super::Shared;
use crate::store::{PRUNE_BATCH, SessionRecord, StoreError, from_ms, ms};

/// Migration step: the sessions (times in Unix ms).
pub(super) const SCHEMA_SESSIONS: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id           TEXT PRIMARY KEY,
    subject      TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    address      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_subject ON sessions (subject, created_at);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
";

const COLUMNS: &str = "id, subject, created_at, expires_at, last_seen_at, address";

fn session(r: &Row) -> SessionRecord {
    SessionRecord {
        id: r.get(0),
        subject: r.get(1),
        created_at: from_ms(r.get(2)),
        expires_at: from_ms(r.get(3)),
        last_seen_at: from_ms(r.get(4)),
        address: r.get(5),
    }
}

impl Shared {
    pub(super) async fn session_create(
        &self,
        s: SessionRecord,
        max_per_subject: usize,
    ) -> Result<(), StoreError> {
        let now = ms(s.created_at);
        let mut client = self.client().await?;
        let e = |e| self.err(e);
        let tx = client.transaction().await.map_err(e)?;
        // Expired sessions of anyone, a bounded batch; rows another call is deleting are
        // skipped rather than waited for.
        tx.execute(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at < $1
                LIMIT $2 FOR UPDATE SKIP LOCKED)",
            &[&now, &(PRUNE_BATCH as i64)],
        )
        .await
        .map_err(e)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('tessera/sessions/' || $1::text, 0))",
            &[&s.subject],
        )
        .await
        .map_err(e)?;
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO sessions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (id) DO NOTHING"
                ),
                &[
                    &s.id,
                    &s.subject,
                    &now,
                    &ms(s.expires_at),
                    &ms(s.last_seen_at),
                    &s.address,
                ],
            )
            .await
            .map_err(e)?;
        if inserted == 0 {
            return Err(StoreError::Conflict {
                location: self.location.clone(),
                message: "that session id is recorded already".to_owned(),
                hint: "a session id is recorded only once",
            });
        }
        // The oldest unexpired sessions of the subject beyond the limit.
        tx.execute(
            "DELETE FROM sessions WHERE id IN (
                SELECT id FROM sessions WHERE subject = $1 AND expires_at > $2
                ORDER BY created_at DESC, id DESC OFFSET $3)",
            &[
                &s.subject,
                &now,
                &i64::try_from(max_per_subject).unwrap_or(i64::MAX),
            ],
        )
        .await
        .map_err(e)?;
        tx.commit().await.map_err(e)
    }

    pub(super) async fn session_get(
        &self,
        id: String,
        now: Timestamp,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM sessions WHERE id = $1 AND expires_at > $2"),
                &[&id, &ms(now)],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.as_ref().map(session))
    }

    pub(super) async fn session_touch(
        &self,
        id: String,
        now: Timestamp,
        address: String,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE sessions SET last_seen_at = $2, address = $3 WHERE id = $1",
                &[&id, &ms(now), &address],
            )
            .await
            .map(drop)
            .map_err(|e| self.err(e))
    }

    pub(super) async fn session_delete(&self, id: String) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute("DELETE FROM sessions WHERE id = $1", &[&id])
            .await
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    pub(super) async fn session_delete_subject(
        &self,
        subject: String,
    ) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute("DELETE FROM sessions WHERE subject = $1", &[&subject])
            .await
            .map_err(|e| self.err(e))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub(super) async fn session_list(
        &self,
        subject: String,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM sessions WHERE subject = $1 AND expires_at > $2
                     ORDER BY created_at DESC, id"
                ),
                &[&subject, &ms(now)],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().map(session).collect())
    }
}
