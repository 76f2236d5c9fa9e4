//! The token store: issued token ids (never tokens), revocations and single-use marks.
//!
//! Derived tokens (`POST /auth/refresh`, registry offline tokens and their renewals) are
//! recorded with the id of the token they were derived from (`parent`). The invariants that
//! keep the revocation check of every token, derived or not, a single indexed lookup:
//!
//! 1. A derived token is recorded, with its parent, before it is handed out, and only if its
//!    parent is not revoked at that moment (checked in the same write transaction, so a
//!    revocation either comes first and refuses the child, or comes after and finds it).
//! 2. Revoking a token by id revokes its recorded descendants in the same transaction
//!    (they are listed by id), so "revoked by id" already covers every ancestor.
//! 3. A derived token has its parent's subject, and carries the issue time of the first token
//!    of its line (`root_issued_at`): subject and `--all` cut-offs compare that time, so a
//!    cut-off that covers an ancestor covers the descendants too, even ones recorded after
//!    the cut-off.
//! 4. A derived token never expires after its parent, so pruning expired records never removes
//!    a parent whose descendants are still live.

mod pending;
pub mod sqlite;
mod unchanged;

use std::path::{Path, PathBuf};

use jiff::Timestamp;

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

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("token store {path}: {message}; {hint}")]
    Unavailable {
        path: String,
        message: String,
        hint: &'static str,
    },
}

/// Storage of token ids and revocations, shared by the CLI and the server on one host.
///
/// Revocation by subject and of all tokens is recorded as a cut-off time, so it also covers
/// tokens minted elsewhere with the same secret and never recorded here.
pub trait TokenStore: Send + Sync + std::fmt::Debug {
    /// Records an issued token. Give `issued_at` the precise mint instant
    /// (`MintRequest::now`), not the `iat` second, so that a token minted just after a
    /// `revoke --subject`/`--all` in the same second is not caught by that cut-off.
    /// Recording the same `jti` twice is an error. No checks: a token derived on request goes
    /// through [`TokenStore::record_checked`].
    fn record(&self, record: &TokenRecord) -> Result<(), StoreError>;
    /// Records a token the server issues on its holder's own request (a derived token when
    /// `record.parent` is set, or a registry offline token from a password), in one write
    /// transaction with the checks that keep derived tokens inside their parent: the parent
    /// is not revoked and not single-use, and the subject holds fewer than `max_live`
    /// unexpired recorded tokens. `parent_issued_at` is the parent's `iat`, the issue time
    /// assumed for a parent that is not recorded here. Expired records are pruned in bounded
    /// batches on the way.
    fn record_checked(
        &self,
        record: &TokenRecord,
        parent_issued_at: Option<Timestamp>,
        max_live: usize,
    ) -> Result<(), IssueError>;
    /// Whether the token `jti` of `subject`, issued at `issued_at`, has been revoked (by id,
    /// by subject, or by `revoke --all`), itself or any token it was derived from.
    fn is_revoked(
        &self,
        jti: &str,
        subject: &str,
        issued_at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Whether `jti` is recorded or revoked here (so that revoking a mistyped id can be refused
    /// instead of recording a revocation nobody needs).
    fn token_state(&self, jti: &str) -> Result<TokenState, StoreError>;
    /// Revokes one token id and every recorded token derived from it, transitively; true when
    /// it was known or newly recorded as revoked.
    fn revoke(&self, jti: &str, now: Timestamp) -> Result<bool, StoreError>;
    /// Revokes every token of `subject` issued up to `now`; returns how many recorded tokens
    /// that touched.
    fn revoke_subject(&self, subject: &str, now: Timestamp) -> Result<usize, StoreError>;
    /// Revokes every token issued up to `now`; returns how many recorded tokens that touched.
    fn revoke_all(&self, now: Timestamp) -> Result<usize, StoreError>;
    /// Marks a single-use token as used; false when it had already been used. True for a token
    /// that is not recorded as single-use, so callers may call it for every token.
    fn mark_used(&self, jti: &str, now: Timestamp) -> Result<bool, StoreError>;
    /// Recorded tokens that have not expired, newest first.
    fn list(&self, now: Timestamp) -> Result<Vec<TokenRecord>, StoreError>;
    /// Deletes records and revocations of tokens that expired before `now` (less the 60 s of
    /// leeway that verification grants).
    fn prune(&self, now: Timestamp) -> Result<usize, StoreError>;
}

/// The file named like the store at `store` plus `suffix`, beside it (`tokens.db-shm`).
fn beside(store: &Path, suffix: &str) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push(suffix);
    p.into()
}
