//! Login failure counters on PostgreSQL ([`TokenStore::update_counters`](crate::store::TokenStore::update_counters)).
//!
//! One transaction: an advisory lock per key (taken in sorted order, so two calls never wait
//! for each other in a cycle; a key with no row yet is locked as well as one with a row),
//! read, update in this process, write back, commit. Every replica's limiter counts on the
//! same rows.

use jiff::Timestamp;

use super::Shared;
use crate::store::{Counter, CounterUpdate, PRUNE_BATCH, StoreError, counters_before, ms};

/// Migration step: the login failure counters (`at_ms`: the last write, Unix ms).
pub(super) const SCHEMA_COUNTERS: &str = "
CREATE TABLE IF NOT EXISTS login_counters (
    key   TEXT PRIMARY KEY,
    value DOUBLE PRECISION NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS login_counters_at ON login_counters (at_ms);
";

impl Shared {
    pub(super) async fn update_counters(
        &self,
        keys: Vec<String>,
        now: Timestamp,
        update: CounterUpdate,
    ) -> Result<u64, StoreError> {
        let now = ms(now);
        let forgotten = counters_before(now);
        let mut client = self.client().await?;
        let e = |e| self.err(e);
        let tx = client.transaction().await.map_err(e)?;
        tx.execute(
            "DELETE FROM login_counters WHERE key IN
                (SELECT key FROM login_counters WHERE at_ms < $1 LIMIT $2)",
            &[&forgotten, &(PRUNE_BATCH as i64)],
        )
        .await
        .map_err(e)?;
        let mut sorted: Vec<&String> = keys.iter().collect();
        sorted.sort();
        sorted.dedup();
        for key in sorted {
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('tessera/counter/' || $1::text, 0))",
                &[key],
            )
            .await
            .map_err(e)?;
        }
        let found = tx
            .query(
                "SELECT key, value, at_ms FROM login_counters WHERE key = ANY($1)",
                &[&keys],
            )
            .await
            .map_err(e)?;
        let mut rows: Vec<Option<Counter>> = keys
            .iter()
            .map(|k| {
                found
                    .iter()
                    .find(|r| r.get::<_, &str>(0) == k)
                    .map(|r| Counter {
                        value: r.get(1),
                        at_ms: r.get(2),
                    })
                    .filter(|c| c.at_ms >= forgotten)
            })
            .collect();
        let answer = update(&mut rows);
        for (key, row) in keys.iter().zip(rows) {
            match row {
                None => {
                    tx.execute("DELETE FROM login_counters WHERE key = $1", &[key])
                        .await
                }
                Some(c) => {
                    tx.execute(
                        "INSERT INTO login_counters (key, value, at_ms) VALUES ($1, $2, $3)
                         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, at_ms = EXCLUDED.at_ms",
                        &[key, &c.value, &c.at_ms],
                    )
                    .await
                }
            }
            .map_err(e)?;
        }
        tx.commit().await.map_err(e)?;
        Ok(answer)
    }
}
