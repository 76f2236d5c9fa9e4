//! The PostgreSQL schema: an ordered list of steps and a version table.
//!
//! `MIGRATIONS[i]` brings a database of version `i` to version `i + 1`. A released step is
//! never changed: a change is a new step appended at the end. Each part of tessera appends
//! its own step, which only creates its own tables and indexes (`CREATE ... IF NOT EXISTS`),
//! so steps written on different branches can be put in any order when they are merged.
//!
//! Several replicas may start at once: the steps run in one transaction that first takes a
//! transaction-level advisory lock ([`MIGRATION_LOCK`]), then reads the version again, so
//! exactly one process runs each step and the others wait, then find the work done.

use deadpool_postgres::Object;

use super::connect::{HINT_NEWER, db_error};
use crate::store::StoreError;

/// The advisory lock key of migrations ("tessera" + 1).
const MIGRATION_LOCK: i64 = 0x7465_7373_6572_6101;

/// The version this code writes: one per step.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The steps, in order. Times are Unix milliseconds (BIGINT), as in the SQLite engine.
pub(super) const MIGRATIONS: [&str; 5] = [
    TOKENS,
    super::counters::SCHEMA_COUNTERS,
    super::sessions::SCHEMA_SESSIONS,
    super::keys::SCHEMA_KEYS,
    super::exchange::SCHEMA_EXCHANGED_ID_TOKENS,
];

/// Step 1: token ids, id revocations, cut-offs, parent links and single-use marks (the same
/// tables and meaning as SQLite's versions 1 and 2).
const TOKENS: &str = "
CREATE TABLE IF NOT EXISTS tokens (
    jti            TEXT PRIMARY KEY,
    subject        TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    issued_at      BIGINT NOT NULL,
    expires_at     BIGINT,
    single_use     BOOLEAN NOT NULL DEFAULT FALSE,
    used_at        BIGINT,
    parent         TEXT,
    root_issued_at BIGINT
);
CREATE INDEX IF NOT EXISTS tokens_parent ON tokens (parent) WHERE parent IS NOT NULL;
CREATE INDEX IF NOT EXISTS tokens_live ON tokens (subject, expires_at);
CREATE INDEX IF NOT EXISTS tokens_expiry ON tokens (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS revoked_jtis (
    jti        TEXT PRIMARY KEY,
    revoked_at BIGINT NOT NULL,
    expires_at BIGINT
);
CREATE INDEX IF NOT EXISTS revoked_expiry ON revoked_jtis (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS subject_cutoffs (
    subject        TEXT PRIMARY KEY,
    revoked_before BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS global_cutoff (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    revoked_before BIGINT NOT NULL
);
";

/// Brings the database to [`SCHEMA_VERSION`]; refuses one written by a newer tessera.
/// Returns the version found before.
pub(super) async fn migrate(client: &mut Object, location: &str) -> Result<i64, StoreError> {
    let err = |e: tokio_postgres::Error| db_error(location, &e);
    let tx = client.transaction().await.map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS tessera_schema (
            id      INTEGER PRIMARY KEY CHECK (id = 1),
            version BIGINT NOT NULL
        );
        INSERT INTO tessera_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;",
    )
    .await
    .map_err(err)?;
    let found: i64 = tx
        .query_one("SELECT version FROM tessera_schema WHERE id = 1", &[])
        .await
        .map_err(err)?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            location: location.to_owned(),
            found,
            known: SCHEMA_VERSION,
            hint: HINT_NEWER,
        });
    }
    for step in MIGRATIONS.iter().skip(usize::try_from(found).unwrap_or(0)) {
        tx.batch_execute(step).await.map_err(err)?;
    }
    tx.execute(
        "UPDATE tessera_schema SET version = $1 WHERE id = 1",
        &[&SCHEMA_VERSION],
    )
    .await
    .map_err(err)?;
    tx.commit().await.map_err(err)?;
    Ok(found)
}

/// The version the database is at.
pub(super) async fn version(client: &Object, location: &str) -> Result<i64, StoreError> {
    client
        .query_one("SELECT version FROM tessera_schema WHERE id = 1", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| db_error(location, &e))
}
