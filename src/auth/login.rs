//! Password login: the configured users, checked in constant time against an argon2id or
//! bcrypt hash on a bounded pool of threads, with failures rate-limited.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use secrecy::{ExposeSecret, SecretString};
use tessera_backends::{BackendError, BackendKind, KeyPath, SecretsBackend};

use super::users::Directory;
use super::{Auth, AuthError, Principal, digest, ratelimit};
use crate::config::Config;
use crate::keyring::KeyringError;
use crate::password::{HashKind, PasswordError};
use crate::scope::{ScopeError, ScopeSet};

/// Password login settings, loaded once at start-up: every user of the configuration (the
/// single-user keys' and `[[auth.users]]`), with its hash and effective scopes.
pub struct PasswordLogin {
    users: Vec<LoginUser>,
    /// The directory the users come from (roles, where each hash lives).
    directory: Directory,
    /// A hash of a random password of the same kind and parameters as most users' hashes
    /// (argon2id with the same m, t and p, or bcrypt with the same cost), checked for unknown
    /// users (and users without a hash) so that they cost as much as a wrong password.
    dummy_hash: SecretString,
    /// The kind and cost of `dummy_hash` (not secret; shown by `Debug`).
    dummy_kind: HashKind,
}

/// One user who may log in.
struct LoginUser {
    /// The name (not secret; for the audit line and the token subject).
    name: String,
    /// SHA-256 of the name, compared in constant time with the digest of the one sent.
    digest: [u8; 32],
    /// The argon2id or bcrypt hash from the backend; `None` when the backend holds none (a
    /// `[[auth.users]]` user whose password was never set: it cannot log in).
    hash: Option<SecretString>,
    /// The user's effective scopes.
    scopes: ScopeSet,
}

impl std::fmt::Debug for PasswordLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordLogin")
            .field(
                "users",
                &self.users.iter().map(|u| &u.name).collect::<Vec<_>>(),
            )
            .field("dummy_kind", &self.dummy_kind)
            .finish_non_exhaustive()
    }
}

/// Why password login cannot be set up. Never carries a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The secrets backend cannot be opened.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// `auth.username` is set but the backend holds no hash.
    #[error(
        "`auth.username` is set to `{username}` but there is no password hash at `{key}` in the {backend} backend"
    )]
    NoHash {
        username: String,
        key: KeyPath,
        backend: BackendKind,
    },
    /// The hash cannot be read.
    #[error("cannot read the password hash: {0}")]
    ReadHash(BackendError),
    /// The stored value is neither an argon2id nor a bcrypt hash.
    #[error(
        "the value at `{key}` is not an argon2id hash ($argon2id$v=19$...) or a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters)"
    )]
    NotAHash { key: KeyPath },
    /// The stored hash is cheaper than tessera's floor (bcrypt cost, argon2id parameters).
    #[error("the password hash at `{key}` {why}")]
    Cost { key: KeyPath, why: String },
    /// No randomness for the dummy password.
    #[error(transparent)]
    Random(#[from] KeyringError),
    /// The dummy hash cannot be made.
    #[error(transparent)]
    Hash(#[from] PasswordError),
    /// `auth.login_scopes` is not a scope list.
    #[error("`auth.login_scopes`: {0}")]
    Scopes(ScopeError),
}

impl LoginError {
    /// What to do about it, where there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            LoginError::NoHash { .. } => Some(
                "store one with `tessera auth password hash --store`, or remove `auth.username` to turn password login off",
            ),
            LoginError::NotAHash { .. } => {
                Some("store one with `tessera auth password hash --store`")
            }
            LoginError::Cost { .. } => Some(
                "store a new hash with `tessera auth password hash --store` (argon2id, m=19456 KiB, t=2, p=1)",
            ),
            _ => None,
        }
    }
}

impl PasswordLogin {
    /// The password login of `[auth]`: `None` when there is no user (neither `auth.username`
    /// nor `[[auth.users]]`); else each user's hash from `backend` and a dummy hash of the
    /// kind most users have. The single-user keys' hash must exist (an error when it is
    /// missing, as before); a `[[auth.users]]` user without a hash is logged and cannot log in
    /// until `tessera users passwd` sets one. A hash that is not a usable argon2id or bcrypt
    /// hash, or is cheaper than tessera accepts, is an error.
    pub fn load<'a>(
        config: &Config,
        backend: &dyn Fn() -> Result<&'a dyn SecretsBackend, BackendError>,
    ) -> Result<Option<PasswordLogin>, LoginError> {
        let directory = Directory::from_config(&config.auth).map_err(LoginError::Scopes)?;
        if directory.is_empty() {
            return Ok(None);
        }
        let mut users = Vec::with_capacity(directory.len());
        let mut kinds: Vec<HashKind> = Vec::new();
        for user in directory.iter() {
            let key = &user.password_hash;
            let hash = backend()?.get_optional(key).map_err(LoginError::ReadHash)?;
            let hash = match hash {
                Some(h) => SecretString::from(h.expose_secret().trim().to_owned()),
                None if user.single_user_keys => {
                    return Err(LoginError::NoHash {
                        username: user.name.clone(),
                        key: key.clone(),
                        backend: config.secrets.backend,
                    });
                }
                None => {
                    tracing::warn!(
                        user = %crate::term::escaped_head(&user.name, 40),
                        key = %key,
                        "no password hash for this user: it cannot log in until `tessera users passwd` sets one"
                    );
                    users.push(LoginUser {
                        name: user.name.clone(),
                        digest: digest(user.name.as_bytes()),
                        hash: None,
                        scopes: user.scopes.clone(),
                    });
                    continue;
                }
            };
            let kind = crate::password::hash_kind(&hash)
                .map_err(|_| LoginError::NotAHash { key: key.clone() })?;
            if let Err(why) = crate::password::check_stored(kind) {
                return Err(LoginError::Cost {
                    key: key.clone(),
                    why,
                });
            }
            kinds.push(kind);
            users.push(LoginUser {
                name: user.name.clone(),
                digest: digest(user.name.as_bytes()),
                hash: Some(hash),
                scopes: user.scopes.clone(),
            });
        }
        // The kind most users have (the first one written on a tie); the default argon2id
        // when no user has a hash yet.
        let kind = kinds
            .iter()
            .max_by_key(|k| {
                (
                    kinds.iter().filter(|o| o == k).count(),
                    std::cmp::Reverse(kinds.iter().position(|o| o == *k)),
                )
            })
            .copied()
            .unwrap_or(HashKind::Argon2id {
                m_kib: crate::password::ARGON2_MIN_M_KIB,
                t: crate::password::ARGON2_MIN_T,
                p: crate::password::ARGON2_MIN_P,
            });
        let dummy_password = crate::keyring::random_secret(32).map_err(LoginError::Random)?;
        let dummy_hash =
            crate::password::hash_like(&dummy_password, kind).map_err(LoginError::Hash)?;
        Ok(Some(PasswordLogin {
            users,
            directory,
            dummy_hash,
            dummy_kind: kind,
        }))
    }

    /// The first configured username (the single-user keys' user when there is one).
    pub fn username(&self) -> &str {
        self.users.first().map_or("", |u| u.name.as_str())
    }

    /// The users and roles the logins come from.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Whether the backend held a password hash for `name` when the server started.
    pub fn has_hash(&self, name: &str) -> bool {
        self.users
            .iter()
            .any(|u| u.name == name && u.hash.is_some())
    }

    /// The effective scopes of user `name`, when it is configured.
    pub fn user_scopes(&self, name: &str) -> Option<&ScopeSet> {
        self.users
            .iter()
            .find(|u| u.name == name)
            .map(|u| &u.scopes)
    }
}

impl Auth {
    /// The effective scopes of the configured user `name` (its roles' and its own scopes,
    /// `${user}` expanded); `None` when no such user is configured. Sessions call it on every
    /// use, so a session never carries more than its user's current scopes and ends with the
    /// user's removal from the configuration.
    pub fn user_scopes(&self, name: &str) -> Option<ScopeSet> {
        self.login.as_ref()?.user_scopes(name).cloned()
    }

    /// Checks a username and password against the configured users: failures rate-limited
    /// per client address and per account (see `ratelimit`), the username compared in
    /// constant time with every configured name (no early exit: the position of a user in
    /// the file does not show in the time taken), the hash (argon2id or bcrypt) checked on a
    /// thread of its own with at most all cores but one at once, and an unknown user (or one
    /// without a hash) checked against a dummy hash of the kind most users have, so it costs
    /// what a wrong password costs. The principal of the user with its effective scopes, or
    /// `InvalidCredentials` (also when password login is off), `RateLimited`, or
    /// `Unavailable` for a server shutting down.
    pub async fn login(
        &self,
        peer: std::net::IpAddr,
        username: &str,
        password: SecretString,
    ) -> Result<Principal, AuthError> {
        let Some(login) = &self.login else {
            return Err(AuthError::InvalidCredentials);
        };
        // The counts are in the store, shared by every replica: a write, off the async threads.
        let limiter = self.limiter;
        let account = username.to_owned();
        let attempt = match self
            .with_store(move |store| {
                Ok(limiter.begin(store, &account, peer, jiff::Timestamp::now()))
            })
            .await?
        {
            Ok(attempt) => attempt,
            Err(ratelimit::Refused::Wait(retry_after)) => {
                return Err(AuthError::RateLimited { retry_after });
            }
            Err(ratelimit::Refused::Store(e)) => return Err(AuthError::StoreUnavailable(e)),
        };
        let sent = digest(username.as_bytes());
        let mut found: Option<&LoginUser> = None;
        for user in &login.users {
            let same: bool = subtle::ConstantTimeEq::ct_eq(&user.digest[..], &sent[..]).into();
            if same {
                found = Some(user);
            }
        }
        let known = found.and_then(|u| u.hash.as_ref().map(|h| (u, h)));
        let hash = SecretString::from(
            match known {
                Some((_, h)) => h.expose_secret(),
                None => login.dummy_hash.expose_secret(),
            }
            .to_owned(),
        );
        let password_ok = self.hashing.check(password, hash).await?;
        let Some((user, _)) = known.filter(|_| password_ok) else {
            return Err(AuthError::InvalidCredentials);
        };
        self.with_store(move |store| limiter.succeeded(store, attempt, jiff::Timestamp::now()))
            .await?;
        Ok(Principal::password(&user.name, user.scopes.clone()))
    }
}

/// At most all cores but one password checks (argon2id or bcrypt) at once, so that a flood of
/// logins cannot starve token verification. A check holds its slot until the hash is done,
/// even when the request that asked for it is gone (the client hung up, or the request timed
/// out): the slot moves into the hashing thread with the work.
#[derive(Debug)]
pub(crate) struct Hashing {
    slots: Arc<tokio::sync::Semaphore>,
    limit: usize,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
}

/// How many password checks may run at once, and the most that ever did (for tests).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordChecks {
    /// The limit.
    pub limit: usize,
    /// The most hashes that ran at the same time since the server started.
    pub peak: usize,
    /// How many password checks ran since the server started (every login attempt that was
    /// not rate-limited runs exactly one, whatever the username).
    pub done: usize,
}

impl Hashing {
    pub(crate) fn new() -> Hashing {
        let limit = std::thread::available_parallelism()
            .map_or(1, |n| n.get().saturating_sub(1))
            .max(1);
        Hashing {
            slots: Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
            running: Default::default(),
            peak: Default::default(),
            done: Default::default(),
        }
    }

    pub(crate) fn stats(&self) -> PasswordChecks {
        PasswordChecks {
            limit: self.limit,
            peak: self.peak.load(Ordering::Relaxed),
            done: self.done.load(Ordering::SeqCst),
        }
    }

    /// Waits for a slot, then checks `password` against `hash` on a thread of its own that
    /// keeps the slot until it is done.
    pub(crate) async fn check(
        &self,
        password: SecretString,
        hash: SecretString,
    ) -> Result<bool, AuthError> {
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| AuthError::Unavailable("the server is shutting down".to_owned()))?;
        let running = Arc::clone(&self.running);
        let peak = Arc::clone(&self.peak);
        let done = Arc::clone(&self.done);
        hash_in_background(move || {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let ok = crate::password::verify(&password, &hash).unwrap_or(false);
            running.fetch_sub(1, Ordering::SeqCst);
            done.fetch_add(1, Ordering::SeqCst);
            drop(slot);
            ok
        })
        .await
    }
}

/// Runs a password check on a thread of its own with a lower scheduling
/// priority (nice 10 on Linux). A password check (bcrypt cost 12 or argon2id) is tens to
/// hundreds of milliseconds of CPU that cannot yield: at the default priority, a flood of logins took whole time slices from the runtime
/// threads and delayed token checks queued behind them by tens of milliseconds. At nice 10 the
/// scheduler lets a runtime thread with work preempt it at once; logins get the CPU the token
/// checks leave (and at least a tenth of a core each when both compete).
async fn hash_in_background(
    check: impl FnOnce() -> bool + Send + 'static,
) -> Result<bool, AuthError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("tessera-password".to_owned())
        .spawn(move || {
            lower_thread_priority();
            let _ = tx.send(check());
        })
        .map_err(|e| {
            tracing::error!(error = %e, "cannot start a thread for a password check");
            AuthError::Unavailable(
                "the server cannot check passwords right now; try again".to_owned(),
            )
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
