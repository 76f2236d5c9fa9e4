//! Token ids, revocations, cut-offs, parent links and single-use marks on PostgreSQL: the
//! methods of [`TokenStore`](crate::store::TokenStore) up to `prune`, with the semantics
//! documented there and kept by the SQLite engine (`store/sqlite/mod.rs`).
//!
//! Concurrency (READ COMMITTED, several processes):
//! - Invariant 1 and 2 of [`crate::store`] (a derived token is recorded only if its parent is
//!   not revoked; revoking by id revokes the recorded descendants): every write of a record
//!   with a parent takes the [`LINE_LOCK`] advisory lock shared, every revocation by id takes
//!   it exclusive, so a revocation sees every child committed before it and a child recorded
//!   after it sees the parent's revocation.
//! - The limit of unexpired tokens per subject: `record_checked` takes an advisory lock of
//!   the subject, so two derivations cannot both pass the count.
//! - Single use: one `UPDATE ... WHERE used_at IS NULL`; PostgreSQL re-checks the condition
//!   after a concurrent update commits, so exactly one caller in all processes gets the row.
//! - Cut-offs only move forward (`GREATEST`).

use deadpool_postgres::GenericClient;
use jiff::Timestamp;

use super::Shared;
use super::listen::CHANNEL;
use crate::store::{
    IssueError, PRUNE_BATCH, Standing, StoreError, TokenRecord, TokenState, check_live_limit,
    from_ms, ms, prune_before, unrecorded_parent_issued_at,
};

/// The advisory lock between recording derived tokens and revoking by id ("tessera" + 2).
const LINE_LOCK: i64 = 0x7465_7373_6572_6102;
/// Most token ids one notification lists one by one; more and it says `*` (everything).
const NOTIFY_EACH_UP_TO: usize = 64;

/// Whether the `tokens` row `t` is revoked: by id, by its subject's cut-off or by the global
/// cut-off (the issue time of its line `<=` the cut-off).
const REVOKED_SQL: &str = "(
    EXISTS (SELECT 1 FROM revoked_jtis r WHERE r.jti = t.jti)
    OR EXISTS (SELECT 1 FROM subject_cutoffs c WHERE c.subject = t.subject
               AND COALESCE(t.root_issued_at, t.issued_at) <= c.revoked_before)
    OR EXISTS (SELECT 1 FROM global_cutoff g WHERE g.id = 1
               AND COALESCE(t.root_issued_at, t.issued_at) <= g.revoked_before)
)";

/// Records one token; `$8` is its line's issue time when the caller knows it, else the
/// recorded parent's (`$7`), else NULL (its own issue time).
const INSERT_SQL: &str = "INSERT INTO tokens
    (jti, subject, scopes, issued_at, expires_at, single_use, parent, root_issued_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7::text,
        COALESCE($8::bigint, (SELECT COALESCE(p.root_issued_at, p.issued_at) FROM tokens p WHERE p.jti = $7::text)))";

/// When the parent `$4` is revoked by id, the record `$1` is too.
const INHERIT_REVOCATION_SQL: &str = "INSERT INTO revoked_jtis (jti, revoked_at, expires_at)
    SELECT $1::text, $2::bigint, $3::bigint
    WHERE EXISTS (SELECT 1 FROM revoked_jtis WHERE jti = $4::text)
    ON CONFLICT (jti) DO NOTHING";

/// The check of every request: revoked by id, the two cut-offs, and the record.
const CHECK_SQL: &str = "SELECT
    EXISTS (SELECT 1 FROM revoked_jtis WHERE jti = $1),
    (SELECT revoked_before FROM subject_cutoffs WHERE subject = $2),
    (SELECT revoked_before FROM global_cutoff WHERE id = 1),
    t.single_use, COALESCE(t.root_issued_at, t.issued_at)
    FROM (SELECT 1) AS one LEFT JOIN tokens t ON t.jti = $1";

const COUNT_LIVE_SQL: &str = "SELECT COUNT(*) FROM tokens
    WHERE subject = $1 AND (expires_at IS NULL OR expires_at > $2)";

async fn notify(c: &impl GenericClient, payload: &str) -> Result<(), tokio_postgres::Error> {
    c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
        .await
        .map(drop)
}

/// Deletes at most [`PRUNE_BATCH`] expired records and as many expired id revocations.
async fn prune_some(c: &impl GenericClient, now: i64) -> Result<(), tokio_postgres::Error> {
    let before = prune_before(now);
    let batch = PRUNE_BATCH as i64;
    c.execute(
        "DELETE FROM tokens WHERE jti IN
            (SELECT jti FROM tokens WHERE expires_at < $1 LIMIT $2)",
        &[&before, &batch],
    )
    .await?;
    c.execute(
        "DELETE FROM revoked_jtis WHERE jti IN
            (SELECT jti FROM revoked_jtis WHERE expires_at < $1 LIMIT $2)",
        &[&before, &batch],
    )
    .await?;
    Ok(())
}

/// Inserts `record` (an error when its id is recorded, unless `ignore`), with its line's
/// issue time when known, revoked when its parent is revoked by id. Whether it inserted.
pub(super) async fn insert(
    c: &impl GenericClient,
    record: &TokenRecord,
    line_issued_at: Option<i64>,
    ignore: bool,
) -> Result<bool, tokio_postgres::Error> {
    let sql = if ignore {
        format!("{INSERT_SQL} ON CONFLICT (jti) DO NOTHING")
    } else {
        INSERT_SQL.to_owned()
    };
    let inserted = c
        .execute(
            &sql,
            &[
                &record.jti,
                &record.subject,
                &record.scopes,
                &ms(record.issued_at),
                &record.expires_at.map(ms),
                &record.single_use,
                &record.parent,
                &line_issued_at,
            ],
        )
        .await?
        == 1;
    if inserted && record.parent.is_some() {
        c.execute(
            INHERIT_REVOCATION_SQL,
            &[
                &record.jti,
                &ms(Timestamp::now()),
                &record.expires_at.map(ms),
                &record.parent,
            ],
        )
        .await?;
    }
    Ok(inserted)
}

impl Shared {
    pub(super) async fn record(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let e = |e| self.err(e);
        let tx = client.transaction().await.map_err(e)?;
        // Never later than the clock: a wrong issue time must not prune live records.
        prune_some(&tx, ms(record.issued_at.min(Timestamp::now())))
            .await
            .map_err(e)?;
        if record.parent.is_some() {
            tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&LINE_LOCK])
                .await
                .map_err(e)?;
        }
        insert(&tx, record, None, false).await.map_err(e)?;
        if record.revoked {
            tx.execute(
                "INSERT INTO revoked_jtis (jti, revoked_at, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (jti) DO NOTHING",
                &[
                    &record.jti,
                    &ms(record.issued_at),
                    &record.expires_at.map(ms),
                ],
            )
            .await
            .map_err(e)?;
        }
        let changes = record.revoked || record.single_use || record.parent.is_some();
        if changes {
            notify(&tx, &record.jti).await.map_err(e)?;
        }
        tx.commit().await.map_err(e)?;
        if changes {
            self.changed(&[record.jti.as_str()]);
        }
        Ok(())
    }

    pub(super) async fn record_checked(
        &self,
        record: &TokenRecord,
        parent_issued_at: Option<Timestamp>,
        max_live: usize,
    ) -> Result<(), IssueError> {
        let now = ms(Timestamp::now());
        let mut client = self.client().await?;
        let e = |e| IssueError::Store(self.err(e));
        let tx = client.transaction().await.map_err(e)?;
        prune_some(&tx, now).await.map_err(e)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('tessera/live/' || $1::text, 0))",
            &[&record.subject],
        )
        .await
        .map_err(e)?;
        let mut line_issued_at = None;
        if let Some(parent) = &record.parent {
            tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&LINE_LOCK])
                .await
                .map_err(e)?;
            let recorded = tx
                .query_opt(
                    "SELECT single_use, COALESCE(root_issued_at, issued_at), subject
                     FROM tokens WHERE jti = $1",
                    &[parent],
                )
                .await
                .map_err(e)?
                .map(|r| {
                    (
                        r.get::<_, bool>(0),
                        r.get::<_, i64>(1),
                        r.get::<_, String>(2),
                    )
                });
            if recorded.as_ref().is_some_and(|r| r.0) {
                return Err(IssueError::ParentSingleUse);
            }
            // Not recorded: judged by its `iat` second, as `check` judges it.
            let (issued, subject) = match recorded {
                Some((_, issued, subject)) => (issued, subject),
                None => (
                    unrecorded_parent_issued_at(record, parent_issued_at),
                    record.subject.clone(),
                ),
            };
            let revoked: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM revoked_jtis WHERE jti = $1)
                     OR EXISTS (SELECT 1 FROM subject_cutoffs WHERE subject = $3 AND $2 <= revoked_before)
                     OR EXISTS (SELECT 1 FROM global_cutoff WHERE id = 1 AND $2 <= revoked_before)",
                    &[parent, &issued, &subject],
                )
                .await
                .map_err(e)?
                .get(0);
            if revoked {
                return Err(IssueError::ParentRevoked);
            }
            line_issued_at = Some(issued);
        }
        let live: i64 = tx
            .query_one(COUNT_LIVE_SQL, &[&record.subject, &now])
            .await
            .map_err(e)?
            .get(0);
        check_live_limit(
            record,
            usize::try_from(live).unwrap_or(usize::MAX),
            max_live,
        )?;
        insert(&tx, record, line_issued_at, false)
            .await
            .map_err(e)?;
        let changes = record.single_use || record.parent.is_some();
        if changes {
            notify(&tx, &record.jti).await.map_err(e)?;
        }
        tx.commit().await.map_err(e)?;
        if changes {
            self.changed(&[record.jti.as_str()]);
        }
        Ok(())
    }

    /// The database's answer (the cache is in `mod.rs`).
    pub(super) async fn check(
        &self,
        jti: &str,
        subject: &str,
        issued_at: i64,
    ) -> Result<Standing, StoreError> {
        let client = self.client().await?;
        let e = |e| self.err(e);
        let stmt = client.prepare_cached(CHECK_SQL).await.map_err(e)?;
        let row = client
            .query_one(&stmt, &[&jti, &subject])
            .await
            .map_err(e)?;
        let by_id: bool = row.get(0);
        let cut = row
            .get::<_, Option<i64>>(1)
            .max(row.get::<_, Option<i64>>(2));
        let single_use: Option<bool> = row.get(3);
        let line_issued: Option<i64> = row.get(4);
        let revoked = by_id || cut.is_some_and(|cut| line_issued.unwrap_or(issued_at) <= cut);
        Ok(match (revoked, single_use) {
            (true, _) => Standing::Revoked,
            (false, Some(true)) => Standing::SingleUse,
            (false, _) => Standing::Valid,
        })
    }

    pub(super) async fn token_state(&self, jti: &str) -> Result<TokenState, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT (SELECT {REVOKED_SQL} FROM tokens t WHERE t.jti = $1),
                    EXISTS (SELECT 1 FROM revoked_jtis WHERE jti = $1)"
        );
        let row = client
            .query_one(&sql, &[&jti])
            .await
            .map_err(|e| self.err(e))?;
        Ok(
            match (row.get::<_, Option<bool>>(0), row.get::<_, bool>(1)) {
                (Some(true), _) | (None, true) => TokenState::Revoked,
                (Some(false), _) => TokenState::Active,
                (None, false) => TokenState::Unknown,
            },
        )
    }

    pub(super) async fn revoke(&self, jti: &str, now: Timestamp) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let e = |e| self.err(e);
        let tx = client.transaction().await.map_err(e)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LINE_LOCK])
            .await
            .map_err(e)?;
        let known: Option<Option<i64>> = tx
            .query_opt("SELECT expires_at FROM tokens WHERE jti = $1", &[&jti])
            .await
            .map_err(e)?
            .map(|r| r.get(0));
        let inserted = tx
            .execute(
                "INSERT INTO revoked_jtis (jti, revoked_at, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (jti) DO NOTHING",
                &[&jti, &ms(now), &known.flatten()],
            )
            .await
            .map_err(e)?;
        let descendants: Vec<String> = tx
            .query(
                "WITH RECURSIVE line(jti) AS (
                    SELECT jti FROM tokens WHERE parent = $1
                    UNION
                    SELECT t.jti FROM tokens t JOIN line ON t.parent = line.jti
                )
                INSERT INTO revoked_jtis (jti, revoked_at, expires_at)
                SELECT t.jti, $2, t.expires_at FROM tokens t JOIN line ON t.jti = line.jti
                ON CONFLICT (jti) DO NOTHING
                RETURNING jti",
                &[&jti, &ms(now)],
            )
            .await
            .map_err(e)?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        let mut changed: Vec<&str> = vec![jti];
        if descendants.len() < NOTIFY_EACH_UP_TO {
            changed.extend(descendants.iter().map(String::as_str));
        } else {
            changed = vec!["*"];
        }
        for payload in &changed {
            notify(&tx, payload).await.map_err(e)?;
        }
        tx.commit().await.map_err(e)?;
        self.changed(&changed);
        Ok(known.is_some() || inserted == 1)
    }

    /// Writes a cut-off with `upsert` (`$1` the subject or nothing, then `now`) and returns
    /// how many recorded, unexpired, not yet revoked tokens matching `filter` it touched.
    async fn cutoff(
        &self,
        now: i64,
        subject: Option<&str>,
        filter: &str,
        upsert: &str,
    ) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let e = |e| self.err(e);
        let tx = client.transaction().await.map_err(e)?;
        let count = format!(
            "SELECT COUNT(*) FROM tokens t WHERE {filter}
             AND (t.expires_at IS NULL OR t.expires_at > $1) AND NOT {REVOKED_SQL}"
        );
        let touched: i64 = tx
            .query_one(&count, &[&now, &subject])
            .await
            .map_err(e)?
            .get(0);
        match subject {
            Some(s) => tx.execute(upsert, &[&s, &now]).await,
            None => tx.execute(upsert, &[&now]).await,
        }
        .map_err(e)?;
        notify(&tx, "*").await.map_err(e)?;
        tx.commit().await.map_err(e)?;
        self.changed(&["*"]);
        Ok(usize::try_from(touched).unwrap_or(0))
    }

    pub(super) async fn revoke_subject(
        &self,
        subject: &str,
        now: i64,
    ) -> Result<usize, StoreError> {
        self.cutoff(
            now,
            Some(subject),
            "t.subject = $2::text AND COALESCE(t.root_issued_at, t.issued_at) <= $1",
            "INSERT INTO subject_cutoffs (subject, revoked_before) VALUES ($1, $2)
             ON CONFLICT (subject) DO UPDATE
             SET revoked_before = GREATEST(subject_cutoffs.revoked_before, EXCLUDED.revoked_before)",
        )
        .await
    }

    pub(super) async fn revoke_all(&self, now: i64) -> Result<usize, StoreError> {
        self.cutoff(
            now,
            None,
            "COALESCE(t.root_issued_at, t.issued_at) <= $1 AND $2::text IS NULL",
            "INSERT INTO global_cutoff (id, revoked_before) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE
             SET revoked_before = GREATEST(global_cutoff.revoked_before, EXCLUDED.revoked_before)",
        )
        .await
    }

    /// One statement: the first use of a single-use token sets `used_at`; true also for a
    /// token that is not recorded as single-use.
    pub(super) async fn mark_used(&self, jti: &str, now: i64) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let e = |e| self.err(e);
        let tx = client.transaction().await.map_err(e)?;
        let first: bool = tx
            .query_one(
                "WITH used AS (
                    UPDATE tokens SET used_at = $2
                    WHERE jti = $1 AND single_use AND used_at IS NULL
                    RETURNING 1
                )
                SELECT EXISTS (SELECT 1 FROM used)
                    OR NOT EXISTS (SELECT 1 FROM tokens WHERE jti = $1 AND single_use)",
                &[&jti, &now],
            )
            .await
            .map_err(e)?
            .get(0);
        notify(&tx, jti).await.map_err(e)?;
        tx.commit().await.map_err(e)?;
        self.changed(&[jti]);
        Ok(first)
    }

    pub(super) async fn list(&self, now: i64) -> Result<Vec<TokenRecord>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT t.jti, t.subject, t.scopes, t.issued_at, t.expires_at, t.single_use, {REVOKED_SQL}, t.parent
             FROM tokens t WHERE t.expires_at IS NULL OR t.expires_at > $1
             ORDER BY t.issued_at DESC, t.jti COLLATE \"C\""
        );
        let rows = client.query(&sql, &[&now]).await.map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(|r| TokenRecord {
                jti: r.get(0),
                subject: r.get(1),
                scopes: r.get(2),
                issued_at: from_ms(r.get(3)),
                expires_at: r.get::<_, Option<i64>>(4).map(from_ms),
                single_use: r.get(5),
                revoked: r.get(6),
                parent: r.get(7),
            })
            .collect())
    }

    pub(super) async fn prune(&self, now: Timestamp) -> Result<usize, StoreError> {
        let before = prune_before(ms(now));
        let mut client = self.client().await?;
        let e = |e| self.err(e);
        let tx = client.transaction().await.map_err(e)?;
        let revoked = tx
            .execute(
                "DELETE FROM revoked_jtis WHERE expires_at IS NOT NULL AND expires_at < $1",
                &[&before],
            )
            .await
            .map_err(e)?;
        let tokens = tx
            .execute(
                "DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at < $1",
                &[&before],
            )
            .await
            .map_err(e)?;
        tx.commit().await.map_err(e)?;
        Ok(usize::try_from(revoked + tokens).unwrap_or(usize::MAX))
    }
}
