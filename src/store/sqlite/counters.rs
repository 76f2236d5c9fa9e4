//! Login failure counters in SQLite ([`TokenStore::update_counters`]).

use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::store::{Counter, CounterUpdate, PRUNE_BATCH, StoreError, counters_before, ms};

/// Migration step: the login failure counters (one row per key; `at_ms` the last write).
pub(super) const SCHEMA_COUNTERS: &str = "
CREATE TABLE IF NOT EXISTS login_counters (
    key   TEXT PRIMARY KEY NOT NULL,
    value REAL NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS login_counters_at ON login_counters (at_ms);
";

impl SqliteStore {
    /// [`crate::store::TokenStore::update_counters`]: one IMMEDIATE transaction (SQLite's
    /// write lock), so read, update and write are atomic for every process on the file.
    pub(super) fn counters_update(
        &self,
        keys: &[String],
        now: Timestamp,
        update: CounterUpdate,
    ) -> Result<u64, StoreError> {
        let now = ms(now);
        let forgotten = counters_before(now);
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        tx.execute(
            "DELETE FROM login_counters WHERE key IN
                (SELECT key FROM login_counters WHERE at_ms < ?1 LIMIT ?2)",
            params![forgotten, PRUNE_BATCH as i64],
        )
        .map_err(|e| self.err(e))?;
        let mut rows = Vec::with_capacity(keys.len());
        for key in keys {
            let row: Option<(f64, i64)> = tx
                .query_row(
                    "SELECT value, at_ms FROM login_counters WHERE key = ?1",
                    [key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(|e| self.err(e))?;
            rows.push(
                row.filter(|(_, at)| *at >= forgotten)
                    .map(|(value, at_ms)| Counter { value, at_ms }),
            );
        }
        let answer = update(&mut rows);
        for (key, row) in keys.iter().zip(rows) {
            match row {
                None => tx.execute("DELETE FROM login_counters WHERE key = ?1", [key]),
                Some(c) => tx.execute(
                    "INSERT INTO login_counters (key, value, at_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, at_ms = excluded.at_ms",
                    params![key, c.value, c.at_ms],
                ),
            }
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(answer)
    }
}
