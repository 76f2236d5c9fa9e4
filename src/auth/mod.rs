//! The authentication core, free of any transport: who is calling ([`Auth::authenticate`],
//! [`Auth::login`]), and new tokens ([`issue`]). The HTTP adapter (`crate::http`) and the
//! CLI call it; it knows nothing of HTTP.
//!
//! [`Auth`] is what a server holds: the signing keys, the token store, the `[auth]` settings,
//! the password login, the login rate limiter, the pool of password checks and the table of
//! tokens already verified.

pub mod apikey;
pub mod authenticate;
pub mod credential;
pub mod exchange;
pub mod issue;
pub mod jwks;
pub mod keys;
pub mod login;
mod ratelimit;
pub mod trust;
mod verified;
// --- principals: users, roles, sessions, self-service (contract section 9) ---
pub mod access;
pub mod session;
pub mod users;

use std::sync::Arc;

use jiff::Timestamp;
use sha2::{Digest, Sha256};

pub use authenticate::{AudienceRule, OfflineError, Purpose, check_offline};
pub use credential::Credential;
pub use issue::{Expiry, IssueRequest, Origin};
pub use login::{LoginError, PasswordChecks, PasswordLogin};
pub use ratelimit::RateLimiter;
pub use verified::VerifiedToken;

use crate::config::Config;
use crate::duration::{DurationError, HumanDuration};
use crate::scope::{Scope, ScopeSet};
use crate::store::{StoreError, TokenStore};
use crate::token::{KeyRing, MintError, VerifyError};

/// The `[auth]` settings the core applies.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `auth.issuer`: the `iss` of every token.
    pub issuer: String,
    /// `auth.enabled`: when false (loopback only), a request without credentials is let
    /// through with every scope.
    pub enabled: bool,
    /// `auth.token_expiry`: the expiry of tokens issued without one asked for.
    pub token_expiry: HumanDuration,
    /// `auth.max_token_expiry`: the longest expiry issued (never = no cap).
    pub max_token_expiry: HumanDuration,
    /// `auth.session_expiry`: how long a browser session lasts.
    pub session_expiry: std::time::Duration,
}

impl Settings {
    /// The settings of `config`.
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            issuer: config.auth.issuer.clone(),
            enabled: config.auth.enabled,
            token_expiry: config.auth.token_expiry,
            max_token_expiry: config.auth.max_token_expiry,
            session_expiry: config
                .auth
                .session_expiry
                .as_fixed()
                .unwrap_or(std::time::Duration::from_secs(12 * 3600)),
        }
    }
}

/// What a server holds to authenticate callers and issue tokens.
#[derive(Debug)]
pub struct Auth {
    keys: KeyRing,
    store: Arc<dyn TokenStore>,
    settings: Settings,
    login: Option<PasswordLogin>,
    limiter: RateLimiter,
    hashing: login::Hashing,
    verified: verified::Verified,
    /// API keys (contract section 9): prefix, config-held keys, caches.
    api_keys: keys::KeyAuth,
}

impl Auth {
    /// The core from its parts. Nothing is read from `store` here: whether a token is
    /// single-use, used or revoked is asked of the store when the token is presented, so
    /// several servers sharing one store agree. `login_attempts_per_minute` is
    /// `server.login_attempts_per_minute`.
    pub fn new(
        settings: Settings,
        keys: KeyRing,
        store: Arc<dyn TokenStore>,
        login: Option<PasswordLogin>,
        login_attempts_per_minute: u32,
    ) -> Auth {
        Auth {
            keys,
            store,
            settings,
            login,
            limiter: RateLimiter::new(login_attempts_per_minute),
            hashing: login::Hashing::new(),
            verified: Default::default(),
            api_keys: Default::default(),
        }
    }

    /// This core with the API-key settings `api_keys` (prefix, config-held keys).
    pub fn with_api_keys(mut self, api_keys: keys::KeyAuth) -> Auth {
        self.api_keys = api_keys;
        self
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The signing keys (for the web UI's Security screen: their ids, never the secrets).
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The token store.
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.store
    }

    /// The password login, when `auth.username` is set.
    pub fn password_login(&self) -> Option<&PasswordLogin> {
        self.login.as_ref()
    }

    /// How many password checks may run at once and the most that did (for tests).
    #[doc(hidden)]
    pub fn password_checks(&self) -> PasswordChecks {
        self.hashing.stats()
    }

    /// The caller without credentials when `auth.enabled = false`: every scope. `None` when
    /// authentication is on.
    pub fn anonymous(&self) -> Option<Principal> {
        (!self.settings.enabled).then(|| Principal {
            subject: "anonymous (auth disabled)".to_owned(),
            scopes: std::iter::once(Scope::Admin).collect(),
            method: Method::Anonymous,
            token: None,
            key: None,
        })
    }

    /// Runs a store call on a blocking thread.
    pub async fn with_store<R: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn TokenStore) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, AuthError> {
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || f(store.as_ref())).await {
            Ok(r) => r.map_err(AuthError::StoreUnavailable),
            Err(e) => Err(AuthError::TaskFailed(e.to_string())),
        }
    }
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A tessera token.
    Token,
    /// The `[auth]` username and password.
    Password,
    /// Nothing: `auth.enabled = false` on loopback.
    Anonymous,
    /// A browser session (`POST /auth/session`), with the user's current scopes.
    Session,
    /// An API key (contract section 9): `Principal::key` says which.
    ApiKey,
    /// A CI job's OIDC ID token, accepted by an `[[auth.trust]]` policy (contract section 11).
    Workload,
}

/// Who is calling: the subject, what it may do, and how it proved it.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The subject (`sub` of the token, or the configured username).
    pub subject: String,
    /// What the caller may do.
    pub scopes: ScopeSet,
    /// How it authenticated.
    pub method: Method,
    /// The token presented, for [`Method::Token`].
    pub token: Option<Arc<VerifiedToken>>,
    /// The API key presented, for [`Method::ApiKey`].
    pub key: Option<keys::PresentedKey>,
}

impl Principal {
    fn password(subject: &str, scopes: ScopeSet) -> Principal {
        Principal {
            subject: subject.to_owned(),
            scopes,
            method: Method::Password,
            token: None,
            key: None,
        }
    }

    /// The id of the token presented, if one was.
    pub fn token_id(&self) -> Option<&str> {
        self.token.as_ref().map(|t| t.claims().jti.as_str())
    }

    /// `Ok` when the caller's scopes allow `needed`, else [`AuthError::Forbidden`].
    pub fn require(&self, needed: &Scope) -> Result<(), AuthError> {
        if self.scopes.allows(needed) {
            Ok(())
        } else {
            Err(AuthError::Forbidden {
                required: needed.to_string(),
            })
        }
    }
}

/// Why a caller was refused or a token not issued. Never carries a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The token is not valid (bad signature, malformed, wrong issuer or audience, ...):
    /// the sentence says which.
    #[error("{0}")]
    Invalid(String),
    /// The token expired at `at`. With `deriving`, something was to be derived from it.
    #[error("the token expired at {at}{}", if *deriving { ", so nothing can be derived from it" } else { "" })]
    Expired { at: Timestamp, deriving: bool },
    /// The token, or one it was derived from, has been revoked.
    #[error("the token has been revoked")]
    Revoked,
    /// A single-use token presented again.
    #[error("the single-use token has already been used")]
    AlreadyUsed,
    /// A single-use token cannot be the parent of a derived token.
    #[error(
        "a single-use token cannot be refreshed or exchanged for an offline token; use it once as it is, or ask for a token that is not single-use"
    )]
    SingleUse,
    /// The username given is not the token's subject.
    #[error("the username does not match the token's subject `{subject}`; log in with that name")]
    SubjectMismatch { subject: String },
    /// Wrong username or password (or password login is off).
    #[error("the username or password is wrong")]
    InvalidCredentials,
    /// The caller lacks the scope `required`.
    #[error("this request needs a token with scope `{required}`")]
    Forbidden { required: String },
    /// Too many failed logins; try again in `retry_after` seconds.
    #[error("too many failed logins; try again in {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// The subject holds as many unexpired tokens as are issued on request.
    #[error(
        "`{}` already holds {limit} unexpired tokens, the most the server issues through refresh and offline tokens; use one of them, or wait until some expire",
        shown(subject)
    )]
    TooMany { subject: String, limit: usize },
    /// The expiry asked for is longer than `auth.max_token_expiry`.
    #[error("expiry `{asked}` is longer than the server's maximum ({max})")]
    ExpiryTooLong {
        asked: HumanDuration,
        max: HumanDuration,
    },
    /// An expiry that cannot be computed (it overflows).
    #[error(transparent)]
    Duration(#[from] DurationError),
    /// The token cannot be minted (bad subject, expiry out of range, signing failure).
    #[error(transparent)]
    Mint(#[from] MintError),
    /// The token store cannot answer: nothing can be decided (fail closed).
    #[error("the token store cannot answer: {0}")]
    StoreUnavailable(StoreError),
    /// The thread running a store call failed.
    #[error("the token store call failed: {0}")]
    TaskFailed(String),
    /// The server cannot do it now (shutting down, no thread).
    #[error("{0}")]
    Unavailable(String),
    /// A bug: what should not happen did.
    #[error("internal error: {0}")]
    Internal(String),
    // --- API keys (contract section 9) ---
    /// The API key is disabled.
    #[error(
        "the API key is disabled; enable it with `tessera auth key enable`, or use another key"
    )]
    KeyDisabled,
    /// The API key is revoked (or was replaced by a rotation and its grace period is over).
    #[error(
        "the API key has been revoked (or replaced by a rotation whose grace period is over); use its successor or create a new key"
    )]
    KeyRevoked,
    /// The API key expired at `at`.
    #[error("the API key expired at {at}; create or rotate a key")]
    KeyExpired { at: Timestamp },
    /// The client address is not on the key's allow-list.
    #[error(
        "this API key may not be used from your address; use it from an allowed network, or ask its owner to extend its allow-list"
    )]
    IpNotAllowed,
    /// The key's rate limit is used up until `status.reset`.
    #[error("the API key's rate limit of {} requests is used up; try again in {retry_after} s", status.limit)]
    KeyRateLimited {
        retry_after: u64,
        status: keys::RateStatus,
    },
}

impl From<VerifyError> for AuthError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Expired(at) => AuthError::Expired {
                at,
                deriving: false,
            },
            VerifyError::Revoked => AuthError::Revoked,
            other => AuthError::Invalid(format!("the token is not valid: {}", other.reason())),
        }
    }
}

/// A subject for a message: control characters escaped, cut at 40 characters.
fn shown(subject: &str) -> String {
    crate::term::escaped_head(subject, 40)
}

/// SHA-256 of a username (so that constant-time comparison sees equal lengths) or of a token
/// (so that the table of verified tokens never holds one).
pub(crate) fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

#[cfg(test)]
mod tests;
