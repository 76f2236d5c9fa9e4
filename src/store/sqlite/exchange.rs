//! Workload identity in the SQLite engine (contract section 11): the ids of exchanged OIDC
//! ID tokens, kept until the tokens expire, so that each is exchanged once.

use jiff::Timestamp;
use rusqlite::params;

use super::SqliteStore;
use crate::store::{PRUNE_BATCH, StoreError, ms};

/// The schema step of exchanged ID tokens: one table of its own (only `CREATE ... IF NOT
/// EXISTS`, so it may run in any order with the steps of other features).
pub(super) const SCHEMA_EXCHANGED_ID_TOKENS: &str = "
CREATE TABLE IF NOT EXISTS exchanged_id_tokens (
    id         TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS exchanged_id_tokens_expiry ON exchanged_id_tokens (expires_at);
";

impl SqliteStore {
    /// [`crate::store::TokenStore::mark_id_token_exchanged`]: one write transaction that
    /// deletes a bounded batch of expired rows and inserts `id` unless it is there.
    pub(super) fn mark_exchanged(
        &self,
        id: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        tx.execute(
            "DELETE FROM exchanged_id_tokens WHERE id IN
               (SELECT id FROM exchanged_id_tokens WHERE expires_at < ?1 LIMIT ?2)",
            params![ms(now), PRUNE_BATCH as i64],
        )
        .map_err(|e| self.err(e))?;
        let inserted = tx
            .execute(
                "INSERT INTO exchanged_id_tokens (id, expires_at) VALUES (?1, ?2)
                 ON CONFLICT (id) DO NOTHING",
                params![id, ms(expires_at)],
            )
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(inserted == 1)
    }
}
