//! Browser sessions in the SQLite engine (contract section 9): the `sessions` table of schema
//! step [`SCHEMA_SESSIONS`]. Semantics are those of the `session_*` methods of
//! [`crate::store::TokenStore`]; the SQL is plain (no SQLite-only construct the semantics
//! depend on), so another engine can say the same.

use jiff::Timestamp;
use std::sync::atomic::Ordering;

use rusqlite::{Connection, params};

use super::SqliteStore;
use crate::store::{PRUNE_BATCH, SessionRecord, StoreError, from_ms, ms};

/// The schema step that adds sessions: only new tables and indexes.
pub(super) const SCHEMA_SESSIONS: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id           TEXT PRIMARY KEY NOT NULL,
    subject      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    address      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_subject ON sessions (subject, created_at);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
";

const COLUMNS: &str = "id, subject, created_at, expires_at, last_seen_at, address";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id: r.get(0)?,
        subject: r.get(1)?,
        created_at: from_ms(r.get(2)?),
        expires_at: from_ms(r.get(3)?),
        last_seen_at: from_ms(r.get(4)?),
        address: r.get(5)?,
    })
}

impl SqliteStore {
    pub(super) fn sessions_create(
        &self,
        s: &SessionRecord,
        max_per_subject: usize,
    ) -> Result<(), StoreError> {
        let now = ms(s.created_at);
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        tx.execute(
            "DELETE FROM sessions WHERE id IN
                (SELECT id FROM sessions WHERE expires_at < ?1 LIMIT ?2)",
            params![now, PRUNE_BATCH as i64],
        )
        .map_err(|e| self.err(e))?;
        tx.execute(
            &format!("INSERT INTO sessions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
            params![
                s.id,
                s.subject,
                now,
                ms(s.expires_at),
                ms(s.last_seen_at),
                s.address
            ],
        )
        .map_err(|e| self.err(e))?;
        // The oldest unexpired sessions of the subject beyond the limit.
        tx.execute(
            "DELETE FROM sessions WHERE id IN (
                SELECT id FROM sessions WHERE subject = ?1 AND expires_at > ?2
                ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET ?3)",
            params![
                s.subject,
                now,
                i64::try_from(max_per_subject).unwrap_or(i64::MAX)
            ],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// The session, from the answers kept while no transaction has committed (see
    /// `unchanged.rs`; the expiry is checked against `now` every time), else from a read
    /// connection.
    pub(super) fn sessions_get(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let generation = self.generation.load(Ordering::Acquire);
        let before = match self.broken.load(Ordering::Acquire) {
            true => None,
            false => match self.unchanged.lookup_session(&self.path, generation, id) {
                Ok(known) => return Ok(Some(known).filter(|s| s.expires_at > now)),
                Err(header) => header,
            },
        };
        let found = self.with_reader(|conn: &Connection| {
            use rusqlite::OptionalExtension;
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM sessions WHERE id = ?1 AND expires_at > ?2"
            ))?
            .query_row(params![id, ms(now)], row)
            .optional()
        })?;
        if let (Some(s), Some(before)) = (&found, before) {
            self.unchanged
                .remember_session(&self.path, generation, before, s);
        }
        Ok(found)
    }

    pub(super) fn sessions_touch(
        &self,
        id: &str,
        now: Timestamp,
        address: &str,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE sessions SET last_seen_at = ?2, address = ?3 WHERE id = ?1",
                params![id, ms(now), address],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    pub(super) fn sessions_delete(&self, id: &str) -> Result<bool, StoreError> {
        let conn = self.conn();
        let n = conn
            .execute("DELETE FROM sessions WHERE id = ?1", [id])
            .map_err(|e| self.err(e))?;
        self.make_durable(&conn)?;
        Ok(n > 0)
    }

    pub(super) fn sessions_delete_subject(&self, subject: &str) -> Result<usize, StoreError> {
        let conn = self.conn();
        let n = conn
            .execute("DELETE FROM sessions WHERE subject = ?1", [subject])
            .map_err(|e| self.err(e))?;
        self.make_durable(&conn)?;
        Ok(n)
    }

    pub(super) fn sessions_list(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.with_reader(|conn: &Connection| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM sessions WHERE subject = ?1 AND expires_at > ?2
                 ORDER BY created_at DESC, id"
            ))?;
            let rows = stmt.query_map(params![subject, ms(now)], row)?;
            rows.collect()
        })
    }
}
