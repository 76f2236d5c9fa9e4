//! The token store: issued token ids (never tokens), revocations and single-use marks.

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
            scopes: claims.scope.clone(),
            issued_at,
            expires_at: claims.exp.and_then(|e| Timestamp::from_second(e).ok()),
            single_use,
            revoked: false,
        }
    }
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
    /// Recording the same `jti` twice is an error.
    fn record(&self, record: &TokenRecord) -> Result<(), StoreError>;
    /// Whether the token `jti` of `subject`, issued at `issued_at`, has been revoked (by id,
    /// by subject, or by `revoke --all`).
    fn is_revoked(
        &self,
        jti: &str,
        subject: &str,
        issued_at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Whether `jti` is recorded or revoked here (so that revoking a mistyped id can be refused
    /// instead of recording a revocation nobody needs).
    fn token_state(&self, jti: &str) -> Result<TokenState, StoreError>;
    /// Revokes one token id; true when it was known or newly recorded as revoked.
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
    /// Deletes records and revocations of tokens that expired before `now`.
    fn prune(&self, now: Timestamp) -> Result<usize, StoreError>;
}

/// The file named like the store at `store` plus `suffix`, beside it (`tokens.db-shm`).
fn beside(store: &Path, suffix: &str) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push(suffix);
    p.into()
}
