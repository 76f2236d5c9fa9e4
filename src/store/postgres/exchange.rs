//! Exchanged OIDC ID tokens on PostgreSQL (contract section 11): the ids kept until the ID
//! tokens expire, so that each is exchanged once across every replica
//! ([`TokenStore::mark_id_token_exchanged`](crate::store::TokenStore::mark_id_token_exchanged)).
//!
//! Exactly once: `INSERT ... ON CONFLICT (id) DO NOTHING`. Of concurrent inserts of one id,
//! PostgreSQL lets one in and makes the others wait for it to commit, then do nothing (one
//! row inserted is the answer true).

use jiff::Timestamp;

use super::Shared;
use crate::store::{PRUNE_BATCH, StoreError, ms};

/// Migration step: the exchanged ID tokens (`expires_at` in Unix ms).
pub(super) const SCHEMA_EXCHANGED_ID_TOKENS: &str = "
CREATE TABLE IF NOT EXISTS exchanged_id_tokens (
    id         TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS exchanged_id_tokens_expiry ON exchanged_id_tokens (expires_at);
";

impl Shared {
    pub(super) async fn mark_id_token_exchanged(
        &self,
        id: String,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let e = |e| self.err(e);
        let tx = client.transaction().await.map_err(e)?;
        // A bounded batch of expired ids; rows another call is deleting are skipped rather
        // than waited for (no lock cycle between concurrent exchanges).
        tx.execute(
            "DELETE FROM exchanged_id_tokens WHERE id IN (SELECT id FROM exchanged_id_tokens
                WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            &[&ms(now), &(PRUNE_BATCH as i64)],
        )
        .await
        .map_err(e)?;
        let inserted = tx
            .execute(
                "INSERT INTO exchanged_id_tokens (id, expires_at) VALUES ($1, $2)
                 ON CONFLICT (id) DO NOTHING",
                &[&id, &ms(expires_at)],
            )
            .await
            .map_err(e)?;
        tx.commit().await.map_err(e)?;
        Ok(inserted == 1)
    }
}
