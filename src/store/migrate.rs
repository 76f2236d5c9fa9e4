//! `tessera store migrate`: copying an SQLite store into PostgreSQL.
//!
//! The copy is idempotent: every row is inserted only when its key is not there yet (a used
//! mark is added to a row that has none; a cut-off only moves forward), so running it twice,
//! or after the replicas have started writing, copies nothing twice and loses nothing. It
//! runs in one PostgreSQL transaction and notifies every replica to drop its cached answers.
//! Sessions, API keys and exchanged ID-token ids are copied too. A part that adds tables adds
//! them to [`Dump`], [`read_sqlite`] and
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
    /// (id, subject, created_at, expires_at, last_seen_at, address)
    pub sessions: Vec<(String, String, i64, i64, i64, String)>,
    pub api_keys: Vec<KeyRow>,
    /// (id, expires_at) of exchanged OIDC ID tokens
    pub exchanged: Vec<(String, i64)>,
}

/// One `api_keys` row, as stored (digest in hex, lists space-separated, times in Unix ms).
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub id: String,
    pub digest: String,
    pub name: String,
    pub owner: String,
    pub scopes: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub state: String,
    pub last_used_at: Option<i64>,
    pub last_addresses: String,
    pub allow_ip: String,
    pub rate_limit: Option<String>,
    pub successor: Option<String>,
    pub grace_until: Option<i64>,
    pub parent: Option<String>,
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
    dump.sessions = conn
        .prepare("SELECT id, subject, created_at, expires_at, last_seen_at, address FROM sessions")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?
            .collect()
        })
        .map_err(err)?;
    dump.api_keys = conn
        .prepare(
            "SELECT id, digest, name, owner, scopes, created_at, expires_at, state, last_used_at,
                    last_addresses, allow_ip, rate_limit, successor, grace_until, parent
             FROM api_keys ORDER BY created_at, id",
        )
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok(KeyRow {
                    id: r.get(0)?,
                    digest: r.get(1)?,
                    name: r.get(2)?,
                    owner: r.get(3)?,
                    scopes: r.get(4)?,
                    created_at: r.get(5)?,
                    expires_at: r.get(6)?,
                    state: r.get(7)?,
                    last_used_at: r.get(8)?,
                    last_addresses: r.get(9)?,
                    allow_ip: r.get(10)?,
                    rate_limit: r.get(11)?,
                    successor: r.get(12)?,
                    grace_until: r.get(13)?,
                    parent: r.get(14)?,
                })
            })?
            .collect()
        })
        .map_err(err)?;
    dump.exchanged = conn
        .prepare("SELECT id, expires_at FROM exchanged_id_tokens")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(err)?;
    Ok(dump)
}
