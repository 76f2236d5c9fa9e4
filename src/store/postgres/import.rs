//! Copying a [`Dump`] of an SQLite store in (`tessera store migrate`): one transaction,
//! every row inserted only when missing, so that running it again copies nothing twice.

use crate::store::StoreError;
use crate::store::migrate::{Copied, Dump};

use super::PostgresStore;
use super::listen::CHANNEL;

impl PostgresStore {
    /// Copies `dump` in; returns the rows written per table (0 everywhere on a second run).
    pub fn import(&self, dump: Dump) -> Result<Copied, StoreError> {
        self.run(|sh| async move {
            let mut client = sh.client().await?;
            let e = |e| sh.err(e);
            let tx = client.transaction().await.map_err(e)?;
            let mut copied = Copied::new();
            let mut n = 0;
            let token = tx
                .prepare(
                    "INSERT INTO tokens (jti, subject, scopes, issued_at, expires_at, single_use,
                        used_at, parent, root_issued_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (jti) DO UPDATE SET used_at = EXCLUDED.used_at
                     WHERE tokens.used_at IS NULL AND EXCLUDED.used_at IS NOT NULL",
                )
                .await
                .map_err(e)?;
            for t in &dump.tokens {
                n += tx
                    .execute(
                        &token,
                        &[
                            &t.jti,
                            &t.subject,
                            &t.scopes,
                            &t.issued_at,
                            &t.expires_at,
                            &t.single_use,
                            &t.used_at,
                            &t.parent,
                            &t.root_issued_at,
                        ],
                    )
                    .await
                    .map_err(e)?;
            }
            copied.insert("tokens".into(), n);
            let mut n = 0;
            for (jti, at, exp) in &dump.revoked {
                n += tx
                    .execute(
                        "INSERT INTO revoked_jtis (jti, revoked_at, expires_at) VALUES ($1, $2, $3)
                         ON CONFLICT (jti) DO NOTHING",
                        &[jti, at, exp],
                    )
                    .await
                    .map_err(e)?;
            }
            copied.insert("revoked_jtis".into(), n);
            let mut n = 0;
            for (subject, before) in &dump.subject_cutoffs {
                n += tx
                    .execute(
                        "INSERT INTO subject_cutoffs (subject, revoked_before) VALUES ($1, $2)
                         ON CONFLICT (subject) DO UPDATE SET revoked_before = EXCLUDED.revoked_before
                         WHERE subject_cutoffs.revoked_before < EXCLUDED.revoked_before",
                        &[subject, before],
                    )
                    .await
                    .map_err(e)?;
            }
            copied.insert("subject_cutoffs".into(), n);
            let mut n = 0;
            if let Some(before) = dump.global_cutoff {
                n += tx
                    .execute(
                        "INSERT INTO global_cutoff (id, revoked_before) VALUES (1, $1)
                         ON CONFLICT (id) DO UPDATE SET revoked_before = EXCLUDED.revoked_before
                         WHERE global_cutoff.revoked_before < EXCLUDED.revoked_before",
                        &[&before],
                    )
                    .await
                    .map_err(e)?;
            }
            copied.insert("global_cutoff".into(), n);
            let mut n = 0;
            for (key, value, at) in &dump.counters {
                n += tx
                    .execute(
                        "INSERT INTO login_counters (key, value, at_ms) VALUES ($1, $2, $3)
                         ON CONFLICT (key) DO NOTHING",
                        &[key, value, at],
                    )
                    .await
                    .map_err(e)?;
            }
            copied.insert("login_counters".into(), n);
            let mut n = 0;
            for (id, subject, created, expires, seen, address) in &dump.sessions {
                n += tx
                    .execute(
                        "INSERT INTO sessions (id, subject, created_at, expires_at, last_seen_at, address)
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                        &[id, subject, created, expires, seen, address],
                    )
                    .await
                    .map_err(e)?;
            }
            copied.insert("sessions".into(), n);
            // A key is copied unless its id, its digest, or (for a key that holds its name)
            // its owner and name are there already.
            let mut n = 0;
            for k in &dump.api_keys {
                n += tx
                    .execute(
                        "INSERT INTO api_keys (id, digest, name, owner, scopes, created_at,
                            expires_at, state, last_used_at, last_addresses, allow_ip,
                            rate_limit, successor, grace_until, parent)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                         ON CONFLICT DO NOTHING",
                        &[
                            &k.id,
                            &k.digest,
                            &k.name,
                            &k.owner,
                            &k.scopes,
                            &k.created_at,
                            &k.expires_at,
                            &k.state,
                            &k.last_used_at,
                            &k.last_addresses,
                            &k.allow_ip,
                            &k.rate_limit,
                            &k.successor,
                            &k.grace_until,
                            &k.parent,
                        ],
                    )
                    .await
                    .map_err(e)?;
            }
            copied.insert("api_keys".into(), n);
            let mut n = 0;
            for (id, expires) in &dump.exchanged {
                n += tx
                    .execute(
                        "INSERT INTO exchanged_id_tokens (id, expires_at) VALUES ($1, $2)
                         ON CONFLICT (id) DO NOTHING",
                        &[id, expires],
                    )
                    .await
                    .map_err(e)?;
            }
            copied.insert("exchanged_id_tokens".into(), n);
            tx.execute("SELECT pg_notify($1, '*')", &[&CHANNEL])
                .await
                .map_err(e)?;
            tx.commit().await.map_err(e)?;
            sh.changed(&["*"]);
            Ok(copied)
        })
    }
}
