//! `tessera store migrate`: copying an SQLite store into PostgreSQL.
//!
//! The copy is idempotent: every row is inserted only when its key is not there yet (a used
//! mark is added to a row that has none; a cut-off only moves forward), so running it twice,
//! or after the replicas have started writing, copies nothing twice and loses nothing. It
//! runs in one PostgreSQL transaction and notifies every replica to drop its cached answers.
//! A part that adds tables adds them to [`Dump`], [`read_sqlite`] and
//! `postgres/import.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::OpenFlags;

use super::{SqliteStore, StoreError};

/// One `tokens` row, as stored (times in Unix ms).
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub jti: String,
    pub subject: String,
    pub scopes: String,
    pub issued_at: i64,
    pub expires_at: Option<i64>,
    pub single_use: bool,
    pub used_at: Option<i64>,
    pub parent: Option<String>,
    pub root_issued_at: Option<i64>,
}

/// Everything an SQLite store holds.
#[derive(Debug, Default, Clone)]
pub struct Dump {
    pub tokens: Vec<TokenRow>,
    /// (jti, revoked_at, expires_at)
    pub revoked: Vec<(String, i64, Option<i64>)>,
    /// (subject, revoked_before)
    pub subject_cutoffs: Vec<(String, i64)>,
    pub global_cutoff: Option<i64>,
    /// (key, value, at_ms)
    pub counters: Vec<(String, f64, i64)>,
}

/// Rows copied per table.
pub type Copied = BTreeMap<String, u64>;

/// Reads the whole SQLite store at `path` (first brought to the current schema, with its
/// pending records moved in). An error when there is no store there.
pub fn read_sqlite(path: &Path) -> Result<Dump, StoreError> {
    if !SqliteStore::exists(path) {
        return Err(StoreError::Io {
            location: path.display().to_string(),
            message: "there is no SQLite token store here".into(),
            hint: "name the file with --from, or check XDG_DATA_HOME",
        });
    }
    drop(SqliteStore::open(path)?);
    let err = |e: rusqlite::Error| StoreError::Corrupt {
        location: path.display().to_string(),
        message: e.to_string(),
        hint: "the file is not a tessera token store; move it aside",
    };
    let conn = rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(err)?;
    let mut dump = Dump::default();
    let mut stmt = conn
        .prepare(
            "SELECT jti, subject, scopes, issued_at, expires_at, single_use, used_at, parent,
                    root_issued_at FROM tokens ORDER BY issued_at, jti",
        )
        .map_err(err)?;
    dump.tokens = stmt
        .query_map([], |r| {
            Ok(TokenRow {
                jti: r.get(0)?,
                subject: r.get(1)?,
                scopes: r.get(2)?,
                issued_at: r.get(3)?,
                expires_at: r.get(4)?,
                single_use: r.get(5)?,
                used_at: r.get(6)?,
                parent: r.get(7)?,
                root_issued_at: r.get(8)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(err)?;
    dump.revoked = conn
        .prepare("SELECT jti, revoked_at, expires_at FROM revoked_jtis")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(err)?;
    dump.subject_cutoffs = conn
        .prepare("SELECT subject, revoked_before FROM subject_cutoffs")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(err)?;
    dump.global_cutoff = conn
        .prepare("SELECT revoked_before FROM global_cutoff WHERE id = 1")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.next().transpose())
        .map_err(err)?;
    dump.counters = conn
        .prepare("SELECT key, value, at_ms FROM login_counters")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(err)?;
    Ok(dump)
}
