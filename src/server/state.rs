//! What the server loads at start-up: signing keys, token store, password login.

use std::cell::OnceCell;
use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tessera_backends::SecretsBackend;

use super::ratelimit::RateLimiter;
use crate::cli::error::CliError;
use crate::config::{Config, Env};
use crate::duration::HumanDuration;
use crate::keyring::load_keyring;
use crate::store::{SqliteStore, TokenStore};
use crate::token::{KeyRing, ScopeSet};

/// Password login settings, loaded once at start-up.
pub(crate) struct PasswordLogin {
    /// The configured username (not secret; for the audit line and the token subject).
    pub username: String,
    /// SHA-256 of the username, compared in constant time with the digest of the one sent.
    pub username_digest: [u8; 32],
    /// The bcrypt hash from the backend.
    pub hash: SecretString,
    /// A bcrypt hash of a random password with the same cost, checked for unknown users so
    /// that they cost as much as a wrong password.
    pub dummy_hash: SecretString,
    /// Scopes of tokens issued by password login.
    pub scopes: ScopeSet,
}

impl std::fmt::Debug for PasswordLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordLogin")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Everything the request handlers share.
#[derive(Debug)]
pub struct ServerState {
    pub(crate) keys: KeyRing,
    pub(crate) store: Arc<dyn TokenStore>,
    pub(crate) issuer: String,
    pub(crate) auth_enabled: bool,
    pub(crate) token_expiry: HumanDuration,
    pub(crate) max_token_expiry: HumanDuration,
    pub(crate) login: Option<PasswordLogin>,
    pub(crate) limiter: RateLimiter,
    /// Ids of single-use tokens (loaded from the store at start, extended when this server
    /// mints one); their use is recorded in the store with `mark_used`.
    pub(crate) single_use: RwLock<HashSet<String>>,
    /// The Docker registry token service, when configured (see `crate::registry`).
    pub(crate) registry: Option<Arc<crate::registry::RegistryState>>,
    /// The bounded pool of password checks.
    pub(crate) hashing: Hashing,
    /// Tokens already verified, so that a token presented again is not decoded again.
    pub(crate) verified: super::verified::Verified,
}

impl ServerState {
    /// Checks a username and password against `[auth]`: failures rate-limited per client
    /// address and per account (see `ratelimit`), the username compared in constant time, bcrypt on a blocking thread with at most all cores
    /// but one at once, and an unknown user checked against a dummy hash of the same cost, so
    /// it costs what a wrong password costs. `Ok(false)` for wrong credentials or when password
    /// login is off; `Err` for a rate limit (429) or a server shutting down.
    pub(crate) async fn check_password(
        &self,
        peer: std::net::IpAddr,
        username: &str,
        password: SecretString,
    ) -> Result<bool, super::ApiError> {
        let Some(login) = &self.login else {
            return Ok(false);
        };
        let attempt = self
            .limiter
            .begin(username, peer, std::time::Instant::now())
            .map_err(super::ApiError::rate_limited)?;
        let user_ok: bool = subtle::ConstantTimeEq::ct_eq(
            &login.username_digest[..],
            &digest(username.as_bytes())[..],
        )
        .into();
        let hash = SecretString::from(
            if user_ok {
                login.hash.expose_secret()
            } else {
                login.dummy_hash.expose_secret()
            }
            .to_owned(),
        );
        let password_ok = self.hashing.check(password, hash).await?;
        let ok = user_ok && password_ok;
        if ok {
            self.limiter.succeeded(attempt, std::time::Instant::now());
        }
        Ok(ok)
    }
}

/// At most all cores but one bcrypt checks at once, so that a flood of logins cannot starve
/// token verification. A check holds its slot until the hash is done, even when the request
/// that asked for it is gone (the client hung up, or the request timed out): the slot moves
/// into the hashing thread with the work.
#[derive(Debug)]
pub(crate) struct Hashing {
    slots: Arc<tokio::sync::Semaphore>,
    limit: usize,
    running: Arc<std::sync::atomic::AtomicUsize>,
    peak: Arc<std::sync::atomic::AtomicUsize>,
}

/// How many password checks may run at once, and the most that ever did (for tests).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordChecks {
    /// The limit.
    pub limit: usize,
    /// The most hashes that ran at the same time since the server started.
    pub peak: usize,
}

impl Hashing {
    fn new() -> Hashing {
        let limit = std::thread::available_parallelism()
            .map_or(1, |n| n.get().saturating_sub(1))
            .max(1);
        Hashing {
            slots: Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
            running: Default::default(),
            peak: Default::default(),
        }
    }

    pub(crate) fn stats(&self) -> PasswordChecks {
        PasswordChecks {
            limit: self.limit,
            peak: self.peak.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Waits for a slot, then checks `password` against `hash` on a thread of its own that
    /// keeps the slot until it is done.
    async fn check(
        &self,
        password: SecretString,
        hash: SecretString,
    ) -> Result<bool, super::ApiError> {
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| super::ApiError::unavailable("the server is shutting down"))?;
        let running = Arc::clone(&self.running);
        let peak = Arc::clone(&self.peak);
        bcrypt_in_background(move || {
            use std::sync::atomic::Ordering;
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let ok = crate::password::verify(&password, &hash).unwrap_or(false);
            running.fetch_sub(1, Ordering::SeqCst);
            drop(slot);
            ok
        })
        .await
    }
}

/// Runs a password check on a thread of its own with a lower scheduling
/// priority (nice 10 on Linux). A bcrypt check is a quarter of a second of CPU that cannot
/// yield: at the default priority, a flood of logins took whole time slices from the runtime
/// threads and delayed token checks queued behind them by tens of milliseconds. At nice 10 the
/// scheduler lets a runtime thread with work preempt it at once; logins get the CPU the token
/// checks leave (and at least a tenth of a core each when both compete).
async fn bcrypt_in_background(
    check: impl FnOnce() -> bool + Send + 'static,
) -> Result<bool, super::ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("tessera-bcrypt".to_owned())
        .spawn(move || {
            lower_thread_priority();
            let _ = tx.send(check());
        })
        .map_err(|e| {
            tracing::error!(error = %e, "cannot start a thread for a password check");
            super::ApiError::unavailable("the server cannot check passwords right now; try again")
        })?;
    Ok(rx.await.unwrap_or(false))
}

/// Lowers the calling thread's priority to nice 10 (best effort).
#[cfg(target_os = "linux")]
fn lower_thread_priority() {
    // SAFETY: gettid and setpriority take no pointers and have no preconditions; on Linux,
    // PRIO_PROCESS with a thread id changes the priority of that one thread.
    let result = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10)
    };
    if result != 0 {
        tracing::debug!("cannot lower the priority of the password check thread");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_thread_priority() {}

impl ServerState {
    /// Why a token that verified may still not be used now: revoked (by id, by subject or by
    /// `revoke --all`), or a single-use token used before (this use is recorded). The store is
    /// asked every time (no cache, so a revocation made with the CLI is seen at once); a store
    /// that cannot answer is 503 (fail closed).
    pub(crate) async fn refusal(
        &self,
        claims: &crate::token::Claims,
    ) -> Result<Option<&'static str>, super::ApiError> {
        let single = match self.single_use.read() {
            Ok(set) => set.contains(&claims.jti),
            Err(p) => p.into_inner().contains(&claims.jti),
        };
        let iat = Timestamp::from_second(claims.iat).unwrap_or(Timestamp::MIN);
        if !single {
            // A read on the store's own read connections, which never wait for a writer, and
            // it takes microseconds: inline, since a hop to the blocking pool costs more.
            return match self.store.is_revoked(&claims.jti, &claims.sub, iat) {
                Ok(true) => Ok(Some("the token has been revoked")),
                Ok(false) => Ok(None),
                Err(e) => Err(super::ApiError::store_unavailable(e)),
            };
        }
        let (jti, sub) = (claims.jti.clone(), claims.sub.clone());
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || -> Result<_, crate::store::StoreError> {
            if store.is_revoked(&jti, &sub, iat)? {
                return Ok(Some("the token has been revoked"));
            }
            if !store.mark_used(&jti, Timestamp::now())? {
                return Ok(Some("the single-use token has already been used"));
            }
            Ok(None)
        })
        .await
        .map_err(super::ApiError::store_unavailable)?
        .map_err(super::ApiError::store_unavailable)
    }
}

/// SHA-256 of a username (so that constant-time comparison sees equal lengths) or of a token
/// (so that the table of verified tokens never holds one).
pub(crate) fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

impl ServerState {
    /// Loads the state from the configuration: the key ring through
    /// [`load_keyring`] (the CLI's code path, never creating a secret), the token store, and,
    /// when `auth.username` is set, the password hash (an error when it is missing).
    pub fn load(config: &Config, env: &Env) -> Result<ServerState, CliError> {
        let backend_cell: OnceCell<Box<dyn SecretsBackend>> = OnceCell::new();
        let backend = || -> Result<&dyn SecretsBackend, CliError> {
            if let Some(b) = backend_cell.get() {
                return Ok(b.as_ref());
            }
            let b = tessera_backends::open(config.backend_config())?;
            Ok(backend_cell.get_or_init(|| b).as_ref())
        };
        let (keys, _) = load_keyring(config, env, &backend, false)?;
        let store = SqliteStore::open(&config.token_store_path())
            .map_err(|e| CliError::from(e).context("cannot open the token store"))?;
        let login = match &config.auth.username {
            None => None,
            Some(username) => {
                let key = &config.auth.password_hash;
                let hash = match backend()?.get(key) {
                    Ok(h) => h,
                    Err(e) if e.is_not_found() => {
                        return Err(CliError::new(format!(
                            "`auth.username` is set to `{username}` but there is no password hash at `{key}` in the {} backend",
                            config.secrets.backend
                        ))
                        .with_hint(
                            "store one with `tessera auth password hash --store`, or remove `auth.username` to turn password login off",
                        ));
                    }
                    Err(e) => {
                        return Err(CliError::from(e).context("cannot read the password hash"));
                    }
                };
                let hash = SecretString::from(hash.expose_secret().trim().to_owned());
                let cost = crate::password::hash_cost(&hash).map_err(|_| {
                    CliError::new(format!(
                        "the value at `{key}` is not a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters)"
                    ))
                    .with_hint("store one with `tessera auth password hash --store`")
                })?;
                if let Err(why) = crate::password::check_stored_cost(cost) {
                    return Err(CliError::new(format!("the password hash at `{key}` {why}"))
                    .with_hint(
                        "store a new hash with `tessera auth password hash --store` (cost 12 by default)",
                    ));
                }
                let dummy_password = crate::keyring::random_secret(32)?;
                let dummy_hash = crate::password::hash(&dummy_password, cost)?;
                let scopes = ScopeSet::parse_list(&config.auth.login_scopes, "*")
                    .map_err(|e| CliError::new(format!("`auth.login_scopes`: {e}")))?;
                Some(PasswordLogin {
                    username: username.clone(),
                    username_digest: digest(username.as_bytes()),
                    hash,
                    dummy_hash,
                    scopes,
                })
            }
        };
        let mut state = ServerState::new(keys, Arc::new(store), config, login)?;
        state.registry = crate::registry::RegistryState::load(config, &backend)?.map(Arc::new);
        Ok(state)
    }

    /// A state without password login from a key ring and any token store (for embedding,
    /// and for tests with a store that fails).
    pub fn from_parts(
        config: &Config,
        keys: KeyRing,
        store: Arc<dyn TokenStore>,
    ) -> Result<ServerState, CliError> {
        ServerState::new(keys, store, config, None)
    }

    /// Assembles a state from parts.
    pub(crate) fn new(
        keys: KeyRing,
        store: Arc<dyn TokenStore>,
        config: &Config,
        login: Option<PasswordLogin>,
    ) -> Result<ServerState, CliError> {
        let single_use = store
            .list(Timestamp::now())
            .map_err(|e| CliError::from(e).context("cannot read the token store"))?
            .into_iter()
            .filter(|r| r.single_use && !r.revoked)
            .map(|r| r.jti)
            .collect();
        Ok(ServerState {
            keys,
            store,
            issuer: config.auth.issuer.clone(),
            auth_enabled: config.auth.enabled,
            token_expiry: config.auth.token_expiry,
            max_token_expiry: config.auth.max_token_expiry,
            login,
            limiter: RateLimiter::new(config.server.login_attempts_per_minute),
            single_use: RwLock::new(single_use),
            registry: None,
            hashing: Hashing::new(),
            verified: Default::default(),
        })
    }
}
