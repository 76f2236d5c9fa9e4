//! The token store: issued token ids (never tokens), revocations, parent links and single-use
//! marks. Everything the server remembers about a token lives here, so that several processes
//! (the CLI and one or more servers) sharing one store agree.
//!
//! Every caller goes through the [`TokenStore`] trait, and [`open`] (with [`open_existing`] and
//! [`open_lazily`]) is the one place that picks an engine: SQLite ([`SqliteStore`]) today; an
//! in-memory engine ([`MemoryStore`]) serves unit tests and embedders. Both pass the same
//! contract test suite (`contract.rs`). What an engine keeps to itself (SQLite's pending file
//! and its cache of answers) is described in its own module.
//!
//! Derived tokens (`POST /auth/refresh`, registry offline tokens and their renewals) are
//! recorded with the id of the token they were derived from (`parent`). The invariants that
//! keep the revocation check of every token, derived or not, a lookup of the token's own id
//! and the cut-offs:
//!
//! 1. A derived token is recorded, with its parent, before it is handed out, and only if its
//!    parent is not revoked at that moment (checked atomically with the write, so a revocation
//!    either comes first and refuses the child, or comes after and finds it).
//! 2. Revoking a token by id revokes its recorded descendants atomically (they are listed by
//!    id), so "revoked by id" already covers every ancestor.
//! 3. A derived token has its parent's subject, and carries the issue time of the first token
//!    of its line (its "line issue time"): subject and `--all` cut-offs compare that time, so a
//!    cut-off that covers an ancestor covers the descendants too, even ones recorded after
//!    the cut-off.
//! 4. A derived token never expires after its parent, so pruning expired records never removes
//!    a parent whose descendants are still live.
//!
//! Times are kept to the millisecond: a recorded token is judged by its recorded issue time,
//! a token that is not recorded by the `iat` second it carries (in doubt, revoked).

// The contract suites' runner (every check against every engine), visible in each
// `contract*` module below.
#[cfg(test)]
/// Runs every check of the contract against every engine, each in a new empty store.
macro_rules! contract {
    ($($check:ident),* $(,)?) => {
        mod memory_engine {
            use super::*;
            $(
                #[test]
                fn $check() {
                    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
                    super::$check(&|| Arc::clone(&store));
                }
            )*
        }

        mod sqlite_engine {
            use super::*;
            $(
                #[test]
                fn $check() {
                    let dir = tempfile::tempdir().unwrap();
                    let path = dir.path().join("data/tessera/tokens.db");
                    super::$check(&|| -> Arc<dyn TokenStore> {
                        Arc::new(SqliteStore::open(&path).unwrap())
                    });
                }
            )*
        }

        // Skipped (with a note) unless a server is configured; scripts/test always has one.
        mod postgres_engine {
            $(
                #[test]
                fn $check() {
                    let Some(config) = crate::store::postgres::tests::fresh_database() else {
                        return;
                    };
                    super::$check(&|| crate::store::postgres::tests::open(&config));
                }
            )*
        }
    };
}

#[cfg(test)]
mod contract;
#[cfg(test)]
mod contract_keys;
#[cfg(test)]
mod contract_sessions;
#[cfg(test)]
mod contract_workload;
pub mod keys;
mod lazy;
mod memory;
pub mod migrate;
mod postgres;
pub mod settings;
mod sqlite;

use std::sync::Arc;

use jiff::Timestamp;

use crate::config::Config;

pub use keys::{ApiKeyRecord, KeyChange, KeyCreated, KeyState, KeyUse, StoredKeyState};
pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// One issued token, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRecord {
    pub jti: String,
    pub subject: String,
    /// Space-separated, as in the token's `scope` claim; serialized as an array of scopes, as
    /// everywhere else in tessera's JSON.
    #[serde(serialize_with = "scopes_as_array")]
    pub scopes: String,
    pub issued_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub single_use: bool,
    pub revoked: bool,
    /// The id of the token this one was derived from (refresh, registry offline token), or
    /// `None` for a token minted from a password, by an admin or with the CLI.
    pub parent: Option<String>,
}

fn scopes_as_array<S: serde::Serializer>(scopes: &str, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(scopes.split_whitespace())
}

impl TokenRecord {
    /// The record of a token just minted at `issued_at` (the exact mint time, finer than the
    /// `iat` second, so a revocation earlier in the same second does not cover it).
    pub fn minted(claims: &crate::token::Claims, issued_at: Timestamp, single_use: bool) -> Self {
        TokenRecord {
            jti: claims.jti.clone(),
            subject: claims.sub.clone(),
            scopes: claims.scope.to_string(),
            issued_at,
            expires_at: claims.exp.and_then(|e| Timestamp::from_second(e).ok()),
            single_use,
            revoked: false,
            parent: None,
        }
    }

    /// This record, derived from the token `parent`.
    pub fn with_parent(mut self, parent: &str) -> Self {
        self.parent = Some(parent.to_owned());
        self
    }
}

/// The most unexpired tokens one subject may hold in the store for the server to issue it
/// another derived or offline token on its own request (`POST /auth/refresh`, registry offline
/// tokens). Revoked tokens count until they expire, so revoking and deriving again does not
/// get around it. Tokens minted by an admin or with the CLI are not limited.
pub const MAX_LIVE_TOKENS_PER_SUBJECT: usize = 1000;

/// Most expired token records (and, separately, id revocations) an engine deletes on the way
/// of one write ([`TokenStore::record`], [`TokenStore::record_checked`]), so that the work of a
/// write is bounded whatever the size of the store.
pub(crate) const PRUNE_BATCH: usize = 100;

/// The time (Unix ms) before which a token's record may be pruned: `now` less the
/// verification leeway, during which an expired token is still accepted and its revocation
/// must still be known.
pub(crate) fn prune_before(now_ms: i64) -> i64 {
    now_ms.saturating_sub(i64::try_from(crate::token::LEEWAY_SECS * 1000).unwrap_or(i64::MAX))
}

/// A time as the engines keep it: Unix milliseconds.
pub(crate) fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// The time of Unix milliseconds `v` as the engines keep them, clamped to the range of
/// [`Timestamp`].
pub(crate) fn from_ms(v: i64) -> Timestamp {
    Timestamp::from_millisecond(v).unwrap_or(if v < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// The issue time (Unix ms) [`TokenStore::record_checked`] judges a parent that is not
/// recorded by: its `iat` second, as [`TokenStore::check`] judges an unrecorded token, else
/// the derived token's own issue time.
pub(crate) fn unrecorded_parent_issued_at(
    record: &TokenRecord,
    parent_issued_at: Option<Timestamp>,
) -> i64 {
    parent_issued_at.map_or(ms(record.issued_at), ms)
}

/// Refuses `record` when its subject already holds `live` unexpired recorded tokens, `max_live`
/// or more ([`TokenStore::record_checked`]).
pub(crate) fn check_live_limit(
    record: &TokenRecord,
    live: usize,
    max_live: usize,
) -> Result<(), IssueError> {
    if live >= max_live {
        return Err(IssueError::TooMany {
            subject: record.subject.clone(),
            limit: max_live,
        });
    }
    Ok(())
}

/// Why [`TokenStore::record_checked`] did not record a token.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The parent is revoked (by id, by one of its ancestors, or by a cut-off).
    #[error("the token it is derived from has been revoked")]
    ParentRevoked,
    /// The parent is recorded as single-use.
    #[error("the token it is derived from is single-use")]
    ParentSingleUse,
    /// The subject already holds `limit` unexpired recorded tokens.
    #[error("`{subject}` already holds {limit} unexpired tokens in the store")]
    TooMany { subject: String, limit: usize },
}

/// What the store knows about one token id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    /// Neither recorded nor revoked: the store has never heard of it.
    Unknown,
    /// Recorded and not revoked.
    Active,
    /// Revoked (by id, by subject or by `revoke --all`).
    Revoked,
}

/// What the store says about a token presented for use ([`TokenStore::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Not revoked, and not recorded as single-use: it may be used any number of times.
    Valid,
    /// Not revoked, and recorded as single-use: it may be used only when
    /// [`TokenStore::mark_used`] says this is its first use, and nothing may be derived from it.
    SingleUse,
    /// Revoked: by id, by one of the tokens it was derived from, by its subject's cut-off or
    /// by `revoke --all`.
    Revoked,
}

/// Why the store could not do what it was asked. Every variant names where the store is
/// (`location`: a file, or a database address without its password) and carries a hint that
/// names the fix; none carries a token or a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot answer right now, for a reason its engine names.
    #[error("token store {location}: {message}; {hint}")]
    Unavailable {
        location: String,
        message: String,
        hint: &'static str,
    },
    /// Another process holds the store's write lock for longer than the store waits.
    #[error("token store {location}: {message}; {hint}")]
    Busy {
        location: String,
        message: String,
        hint: &'static str,
    },
    /// The store is damaged, or is not a tessera token store at all.
    #[error("token store {location}: {message}; {hint}")]
    Corrupt {
        location: String,
        message: String,
        hint: &'static str,
    },
    /// The store was written by a newer tessera (its schema version is higher than ours).
    #[error("token store {location}: schema version {found}, this tessera knows {known}; {hint}")]
    NewerSchema {
        location: String,
        found: i64,
        known: i64,
        hint: &'static str,
    },
    /// The store cannot be created, opened, read or written (a missing folder, permissions,
    /// a full or failing disk).
    #[error("token store {location}: {message}; {hint}")]
    Io {
        location: String,
        message: String,
        hint: &'static str,
    },
    /// A token id was recorded twice (ids are random: a caller's mistake, not the store's).
    #[error("token store {location}: {message}; {hint}")]
    Conflict {
        location: String,
        message: String,
        hint: &'static str,
    },
}

impl StoreError {
    /// Whether the store could not decide (it is busy, unreachable, damaged or of a newer
    /// schema): what depends on its answer must fail closed, and a server answers 503 (try
    /// again later). False only for [`StoreError::Conflict`], where the store answered and
    /// the caller was wrong.
    pub fn is_unavailable(&self) -> bool {
        !matches!(self, StoreError::Conflict { .. })
    }

    /// What went wrong, without the location and the hint (for `/health`, which anyone may
    /// ask: it names no database address).
    pub fn reason(&self) -> String {
        match self {
            StoreError::Unavailable { message, .. }
            | StoreError::Busy { message, .. }
            | StoreError::Corrupt { message, .. }
            | StoreError::Io { message, .. }
            | StoreError::Conflict { message, .. } => message.clone(),
            StoreError::NewerSchema { found, known, .. } => {
                format!("schema version {found}, this tessera knows {known}")
            }
        }
    }

    /// Where the store is, as the message names it.
    pub fn location(&self) -> &str {
        match self {
            StoreError::Unavailable { location, .. }
            | StoreError::Busy { location, .. }
            | StoreError::Corrupt { location, .. }
            | StoreError::NewerSchema { location, .. }
            | StoreError::Io { location, .. }
            | StoreError::Conflict { location, .. } => location,
        }
    }

    /// The fix the message names.
    pub fn hint(&self) -> &'static str {
        match self {
            StoreError::Unavailable { hint, .. }
            | StoreError::Busy { hint, .. }
            | StoreError::Corrupt { hint, .. }
            | StoreError::NewerSchema { hint, .. }
            | StoreError::Io { hint, .. }
            | StoreError::Conflict { hint, .. } => hint,
        }
    }
}

/// Storage of token ids, revocations, parent links and single-use marks, shared by every
/// process that opens the same store (the CLI, and any number of servers).
///
/// Revocation by subject and of all tokens is recorded as a cut-off time, so it also covers
/// tokens minted elsewhere with the same secret and never recorded here.
pub trait TokenStore: Send + Sync + std::fmt::Debug {
    /// Records an issued token. Give `issued_at` the precise mint instant
    /// (`MintRequest::now`), not the `iat` second, so that a token minted just after a
    /// `revoke --subject`/`--all` in the same second is not caught by that cut-off.
    /// Recording the same `jti` twice is an error ([`StoreError::Conflict`]). No checks: a
    /// token derived on request goes through [`TokenStore::record_checked`]. When `parent`
    /// is set and the parent is revoked by id, the record is revoked too. Expired records are
    /// pruned in bounded batches on the way.
    fn record(&self, record: &TokenRecord) -> Result<(), StoreError>;

    /// Records a token just minted by a short-lived process (`tessera auth token generate`).
    /// The record may be deferred: it may reach the store only when the store is next opened
    /// or written, so that minting stays fast. Nothing that decides whether a token is valid
    /// waits for it: revocation by id needs no record, and a cut-off judges a token that is
    /// not recorded by its `iat` second. Single-use, revoked and derived records are never
    /// deferred. The default records at once.
    fn record_minted(&self, record: &TokenRecord) -> Result<(), StoreError> {
        self.record(record)
    }

    /// Records a token the server issues on its holder's own request (a derived token when
    /// `record.parent` is set, or a registry offline token from a password), atomically with
    /// the checks that keep derived tokens inside their parent: the parent is not revoked and
    /// not single-use, and the subject holds fewer than `max_live` unexpired recorded tokens.
    /// `parent_issued_at` is the parent's `iat`, the issue time assumed for a parent that is
    /// not recorded here. Expired records are pruned in bounded batches on the way.
    fn record_checked(
        &self,
        record: &TokenRecord,
        parent_issued_at: Option<Timestamp>,
        max_live: usize,
    ) -> Result<(), IssueError>;

    /// Whether the token `jti` of `subject`, issued at `issued_at`, may be used: revoked (by
    /// id, by subject, or by `revoke --all`, itself or any token it was derived from), or
    /// recorded as single-use (the caller then asks [`TokenStore::mark_used`]), or neither.
    /// Asked on every authenticated request: engines answer it without writing, and without
    /// waiting for a writer.
    fn check(&self, jti: &str, subject: &str, issued_at: Timestamp)
    -> Result<Standing, StoreError>;

    /// Whether the token has been revoked ([`TokenStore::check`] without the single-use
    /// answer).
    fn is_revoked(
        &self,
        jti: &str,
        subject: &str,
        issued_at: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.check(jti, subject, issued_at)? == Standing::Revoked)
    }

    /// Whether `jti` is recorded or revoked here (so that revoking a mistyped id can be refused
    /// instead of recording a revocation nobody needs).
    fn token_state(&self, jti: &str) -> Result<TokenState, StoreError>;

    /// Revokes one token id and every recorded token derived from it, transitively; true when
    /// it was known or newly recorded as revoked.
    fn revoke(&self, jti: &str, now: Timestamp) -> Result<bool, StoreError>;

    /// Revokes every token of `subject` issued up to `now`; returns how many recorded,
    /// unexpired tokens that were not revoked yet it revoked. A cut-off never moves back.
    fn revoke_subject(&self, subject: &str, now: Timestamp) -> Result<usize, StoreError>;

    /// Revokes every token issued up to `now`; returns how many recorded, unexpired tokens
    /// that were not revoked yet it revoked. The cut-off never moves back.
    fn revoke_all(&self, now: Timestamp) -> Result<usize, StoreError>;

    /// Marks a single-use token as used, atomically for every process sharing the store;
    /// false when it had already been used. True for a token that is not recorded as
    /// single-use, so callers may call it for every token.
    fn mark_used(&self, jti: &str, now: Timestamp) -> Result<bool, StoreError>;

    /// Recorded tokens that have not expired at `now`, newest first (ties by id).
    fn list(&self, now: Timestamp) -> Result<Vec<TokenRecord>, StoreError>;

    /// Deletes records and id revocations of tokens that expired before `now` (less the 60 s
    /// of leeway that verification grants); returns how many it deleted. Revocations of tokens
    /// whose expiry is unknown, and cut-offs, are kept: they may cover tokens that never
    /// expire.
    fn prune(&self, now: Timestamp) -> Result<usize, StoreError>;

    // --- Sessions (contract section 9, principals: users and browser sessions) ---
    // Every engine of tessera implements these; the defaults (an engine that keeps no
    // sessions: every call is `Unavailable`) exist for stores written outside tessera.

    /// Records a new browser session. Atomically with the insert: deletes at most
    /// [`PRUNE_BATCH`] sessions (of anyone) that expired before `session.created_at`, then,
    /// when `session.subject` holds more than `max_per_subject` unexpired sessions, deletes
    /// its oldest ones (by `created_at`, ties by id) down to `max_per_subject`, the new one
    /// included. Recording the same `id` twice is [`StoreError::Conflict`].
    fn session_create(
        &self,
        session: &SessionRecord,
        max_per_subject: usize,
    ) -> Result<(), StoreError> {
        let _ = (session, max_per_subject);
        Err(no_sessions())
    }

    /// The session `id` when it is recorded and `expires_at > now`; `None` otherwise (unknown,
    /// ended or expired). A read: engines answer it without waiting for a writer.
    fn session_get(&self, id: &str, now: Timestamp) -> Result<Option<SessionRecord>, StoreError> {
        let _ = (id, now);
        Err(no_sessions())
    }

    /// Sets `last_seen_at = now` and `address` of session `id` (nothing when it is not
    /// recorded). Callers touch a session at most once a minute.
    fn session_touch(&self, id: &str, now: Timestamp, address: &str) -> Result<(), StoreError> {
        let _ = (id, now, address);
        Err(no_sessions())
    }

    /// Ends session `id`; true when it was recorded. Durable before it returns.
    fn session_delete(&self, id: &str) -> Result<bool, StoreError> {
        let _ = id;
        Err(no_sessions())
    }

    /// Ends every session of `subject` ("sign out everywhere"); returns how many were
    /// recorded (expired ones included). Durable before it returns.
    fn session_delete_subject(&self, subject: &str) -> Result<usize, StoreError> {
        let _ = subject;
        Err(no_sessions())
    }

    /// The sessions of `subject` with `expires_at > now`, newest first (by `created_at`,
    /// ties by id).
    fn session_list(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let _ = (subject, now);
        Err(no_sessions())
    }

    // --- API keys (contract section 9) ---
    // Keys are found by the SHA-256 of their text; the text itself is never stored. A key's
    // name is unique per owner among the keys that "hold their name": stored state not
    // `revoked` and no successor (see `ApiKeyRecord::holds_name`).

    /// Stores a new key, atomically with two checks: [`KeyCreated::NameTaken`] when another
    /// key of the same owner holds `key.name`, [`KeyCreated::TooMany`] when the owner already
    /// has `max_live` keys that hold their names. Storing an id or digest twice is
    /// [`StoreError::Conflict`].
    fn create_key(&self, key: &ApiKeyRecord, max_live: usize) -> Result<KeyCreated, StoreError>;

    /// The key whose text has SHA-256 `digest`, in any state (`None`: no such key). Asked
    /// when a server sees a key it has not cached: engines answer without writing and without
    /// waiting for a writer.
    fn key_by_digest(&self, digest: &[u8; 32]) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// The key with id `id`, in any state.
    fn key_by_id(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// The keys of `owner` (of every owner when `None`) in every state, expired and revoked
    /// ones included, newest first (`created_at` descending, ties by id ascending).
    fn list_keys(&self, owner: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Sets the stored state of key `id` to `to`. A key whose stored state is `revoked` is
    /// never changed ([`KeyChange::Final`]); enabling a key whose name another key of its
    /// owner took meanwhile cannot happen, since a key keeps its name until it is revoked or
    /// replaced. [`KeyChange::Done`] carries the record after the change (also when it was
    /// already in that state).
    fn set_key_state(&self, id: &str, to: StoredKeyState) -> Result<KeyChange, StoreError>;

    /// Rotation, in one transaction: stores `new` (which has the old key's owner and name;
    /// the name check ignores the old key) and marks key `old_id` replaced by it (`successor`
    /// = `new.id`), working until `grace_until`; with no grace the old key's stored state
    /// becomes `revoked` at once. [`KeyChange::Final`] (nothing stored) when the old key is
    /// revoked or already replaced; [`KeyChange::Done`] carries the old key's record after
    /// the change.
    fn rotate_key(
        &self,
        old_id: &str,
        new: &ApiKeyRecord,
        grace_until: Option<Timestamp>,
    ) -> Result<KeyChange, StoreError>;

    /// Records uses reported by a server: for each key, `last_used_at` becomes the later of
    /// the stored one and `at`, and `addresses` (latest first) go before the stored ones,
    /// without repeats, at most [`keys::MAX_ADDRESSES`]. Unknown ids are skipped.
    fn touch_keys(&self, uses: &[KeyUse]) -> Result<(), StoreError>;

    // --- Workload identity: exchanged ID tokens (contract section 11) ---

    /// Remembers that the OIDC ID token `id` (a digest of its issuer and `jti`, or of the
    /// whole token) was exchanged, until `expires_at` (its `exp` plus the verification
    /// leeway). True when this is the first exchange of `id` (a row is inserted); false when
    /// a row for `id` already exists, whatever its expiry. Atomic across every process
    /// sharing the store: of any number of concurrent calls with one `id`, exactly one gets
    /// true (SQL: `INSERT ... ON CONFLICT (id) DO NOTHING`, true when one row was inserted).
    /// On the way, deletes at most [`PRUNE_BATCH`] rows whose `expires_at` is before `now`.
    fn mark_id_token_exchanged(
        &self,
        id: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    // --- Login failure counters (contract section 12, several replicas) ---

    /// Atomically, for every process sharing the store: reads the counters named `keys` (in
    /// that order; `None` for a counter that does not exist or was last written more than
    /// [`COUNTER_MEMORY`] before `now`), gives them to `update`, which may change, create
    /// (`Some`) or delete (`None`) them, writes them back, and returns what `update` returned.
    /// No other call on these keys runs in between (in PostgreSQL: the rows are locked, and a
    /// key that has no row yet is locked by a transaction-level advisory lock). Counters not
    /// written for [`COUNTER_MEMORY`] are deleted in bounded batches ([`PRUNE_BATCH`]) on the
    /// way, so the table holds at most what the last hour wrote. `update` must be quick and
    /// must not call the store. Used by the login rate limiter (`auth/ratelimit.rs`).
    fn update_counters(
        &self,
        keys: &[String],
        now: Timestamp,
        update: CounterUpdate,
    ) -> Result<u64, StoreError>;

    // --- Several replicas: health and report (contract section 12) ---

    /// Whether the store can answer now, with the reason when it cannot (`/health`). Cheap:
    /// engines that watch their connection answer without a round trip.
    fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The engine, its location, its schema version and the row count of each of its
    /// tables (`tessera store check`).
    fn report(&self) -> Result<StoreReport, StoreError>;
}

/// What `tessera store check` reports ([`TokenStore::report`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreReport {
    pub engine: &'static str,
    pub location: String,
    pub schema_version: i64,
    /// The schema version this tessera writes.
    pub known_version: i64,
    /// Rows per table.
    pub rows: std::collections::BTreeMap<String, i64>,
}

/// The tables [`TokenStore::report`] counts (those that exist). A part that adds tables adds
/// their names here.
pub(crate) const REPORTED_TABLES: &[&str] = &[
    "tokens",
    "revoked_jtis",
    "subject_cutoffs",
    "global_cutoff",
    "login_counters",
    "sessions",
    "api_keys",
    "exchanged_id_tokens",
];

/// One login failure counter: a value (a token bucket's fill, or a number of failures) and
/// the time it was last written (Unix ms). See [`TokenStore::update_counters`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counter {
    pub value: f64,
    pub at_ms: i64,
}

/// What [`TokenStore::update_counters`] runs on the counters it read.
pub type CounterUpdate = Box<dyn FnOnce(&mut [Option<Counter>]) -> u64 + Send>;

/// A counter not written for this long is forgotten (and pruned).
pub const COUNTER_MEMORY: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// The time (Unix ms) before which a counter last written is forgotten at `now_ms`.
pub(crate) fn counters_before(now_ms: i64) -> i64 {
    now_ms.saturating_sub(COUNTER_MEMORY.as_millis() as i64)
}

/// What an engine without sessions answers.
fn no_sessions() -> StoreError {
    StoreError::Unavailable {
        location: "(this store engine)".to_owned(),
        message: "this store engine does not keep browser sessions".to_owned(),
        hint: "use the SQLite store, or sign in with a token instead",
    }
}

/// One browser session, as the store keeps it (contract section 9). The session secret (the
/// cookie's value) is never stored: `id` is the lowercase hex SHA-256 of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Hex SHA-256 of the session secret (64 characters).
    pub id: String,
    /// The user signed in.
    pub subject: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// When the session was last used (updated at most once a minute).
    pub last_seen_at: Timestamp,
    /// The client address it was last used from.
    pub address: String,
}

/// The engine the configuration names, with its settings.
enum Engine {
    /// One SQLite file (`tokens.db` in the data folder).
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database (`[store] url`).
    Postgres,
}

impl Engine {
    fn of(config: &Config) -> Engine {
        match config.store.engine {
            settings::StoreEngine::Sqlite => Engine::Sqlite(config.token_store_path()),
            settings::StoreEngine::Postgres => Engine::Postgres,
        }
    }
}

/// The database password: `TESSERA_STORE_PASSWORD`, else the backend key
/// `tessera/store/password`, else none.
fn store_password(config: &Config) -> Result<Option<secrecy::SecretString>, StoreError> {
    if let Some(p) = &config.store.password_from_env {
        return Ok(Some(secrecy::SecretString::from(
            secrecy::ExposeSecret::expose_secret(p.as_ref()).to_owned(),
        )));
    }
    let location = config.store.url.clone().unwrap_or_default();
    let unavailable = |e: tessera_backends::BackendError| StoreError::Unavailable {
        location: location.clone(),
        message: format!("cannot read the database password from the secrets backend: {e}"),
        hint: "set TESSERA_STORE_PASSWORD, or fix the secrets backend",
    };
    let backend = tessera_backends::open(config.backend_config()).map_err(unavailable)?;
    backend
        .get_optional(&config.store.password_key)
        .map_err(unavailable)
}

/// Opens the PostgreSQL store of `config`.
pub fn open_postgres(config: &Config) -> Result<PostgresStore, StoreError> {
    let password = store_password(config)?;
    PostgresStore::open(&config.store, password.as_ref())
}

/// Opens the store the configuration names, creating it when it does not exist yet.
pub fn open(config: &Config) -> Result<Arc<dyn TokenStore>, StoreError> {
    match Engine::of(config) {
        Engine::Sqlite(path) => Ok(Arc::new(SqliteStore::open(&path)?)),
        Engine::Postgres => Ok(Arc::new(open_postgres(config)?)),
    }
}

/// Opens the store the configuration names when it exists (something was ever recorded or
/// revoked in it); `None` when it does not, and then nothing is created. For commands that
/// only read, or that must not create a store for an id nobody knows. A PostgreSQL database
/// always exists (its tables are created when missing).
pub fn open_existing(config: &Config) -> Result<Option<Arc<dyn TokenStore>>, StoreError> {
    match Engine::of(config) {
        Engine::Sqlite(path) if SqliteStore::exists(&path) => {
            Ok(Some(Arc::new(SqliteStore::open(&path)?)))
        }
        Engine::Sqlite(_) => Ok(None),
        Engine::Postgres => Ok(Some(Arc::new(open_postgres(config)?))),
    }
}

/// A handle on the store the configuration names that opens it only when first needed:
/// [`TokenStore::record_minted`] may not open it at all. For a short process that mints one
/// token. Errors of opening are reported by the first call that needs the store.
pub fn open_lazily(config: &Config) -> Arc<dyn TokenStore> {
    match Engine::of(config) {
        Engine::Sqlite(path) => Arc::new(lazy::Lazy::new(sqlite::SqliteOpener(path))),
        Engine::Postgres => Arc::new(lazy::Lazy::new(postgres::PgOpener(Box::new(
            config.clone(),
        )))),
    }
}
