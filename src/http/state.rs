//! What the request handlers share, and how it is loaded at start-up.

use std::cell::OnceCell;
use std::sync::Arc;

use tessera_backends::{BackendError, SecretsBackend};

use crate::auth::{Auth, LoginError, PasswordLogin, Settings};
use crate::config::{Config, Env};
use crate::keyring::{KeyringError, load_keyring};
use crate::registry::{RegistryError, RegistryService};
use crate::store::{self, StoreError, TokenStore};
use crate::token::KeyRing;

/// Everything the request handlers share: the authentication core and, when configured, the
/// Docker registry token service.
#[derive(Debug)]
pub struct ServerState {
    pub(crate) auth: Auth,
    pub(crate) registry: Option<RegistryService>,
    /// `server.trusted_proxies`: whose `X-Forwarded-For` is believed (`extract::client_addr`).
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    /// `[[auth.trust]]` policies and their issuers' keys, when there are policies.
    pub(crate) workloads: Option<Arc<crate::auth::exchange::Workloads>>,
}

/// Why the server cannot start (or stopped with an error). Never carries a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The signing keys cannot be loaded.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// The secrets backend cannot be opened.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The token store cannot be opened.
    #[error("cannot open the token store: {0}")]
    OpenStore(StoreError),
    /// Password login is misconfigured.
    #[error(transparent)]
    Login(#[from] LoginError),
    /// The registry token service is misconfigured.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A non-loopback address with `auth.enabled = false`.
    #[error(
        "refusing to listen on {addr}: `auth.enabled = false` is only allowed on a loopback address"
    )]
    NoAuthOffLoopback { addr: std::net::SocketAddr },
    /// The listening socket cannot be used.
    #[error("cannot use the listening socket: {0}")]
    Socket(std::io::Error),
    /// The listening address cannot be read.
    #[error("cannot read the listening address: {0}")]
    Address(std::io::Error),
    /// The TLS certificate or key cannot be loaded.
    #[error("cannot load the TLS certificate {} and key {}: {reason}", cert.display(), key.display())]
    Tls {
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
        reason: String,
    },
    /// The async runtime cannot start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The server thread panicked.
    #[error("the server thread panicked")]
    Panicked,
    /// An `[[auth.trust]]` policy cannot be used (its `jwks_file`).
    #[error("{0}")]
    Trust(String),
}

impl StartError {
    /// What to do about it, where there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            StartError::Keyring(e) => e.hint(),
            StartError::Login(e) => e.hint(),
            StartError::Registry(e) => e.hint(),
            StartError::NoAuthOffLoopback { .. } => {
                Some("bind to 127.0.0.1 or ::1, or set `auth.enabled = true`")
            }
            StartError::Tls { .. } => {
                Some("both must be PEM files; the key PKCS#8, PKCS#1 or SEC1")
            }
            _ => None,
        }
    }
}

impl ServerState {
    /// Loads the state from the configuration: the key ring through [`load_keyring`] (the
    /// CLI's code path, never creating a secret), the token store, the password hash when
    /// `auth.username` is set (an error when it is missing), and the registry token service
    /// when its certificate exists.
    pub fn load(config: &Config, env: &Env) -> Result<ServerState, StartError> {
        let backend_cell: OnceCell<Box<dyn SecretsBackend>> = OnceCell::new();
        let backend = || -> Result<&dyn SecretsBackend, BackendError> {
            if let Some(b) = backend_cell.get() {
                return Ok(b.as_ref());
            }
            let b = tessera_backends::open(config.backend_config())?;
            Ok(backend_cell.get_or_init(|| b).as_ref())
        };
        let (keys, _) = load_keyring(config, env, &backend, false)?;
        let store = store::open(config).map_err(StartError::OpenStore)?;
        let login = PasswordLogin::load(config, &backend)?;
        let mut state = ServerState::new(config, keys, store, login);
        state.registry = RegistryService::load(config, &backend)?;
        state.workloads = crate::auth::exchange::Workloads::new(config.auth.trust.clone())
            .map_err(StartError::Trust)?
            .map(Arc::new);
        Ok(state)
    }

    /// A state without password login and without the registry token service, from a key
    /// ring and any token store (for embedding, and for tests with a store that fails).
    pub fn from_parts(config: &Config, keys: KeyRing, store: Arc<dyn TokenStore>) -> ServerState {
        ServerState::new(config, keys, store, None)
    }

    fn new(
        config: &Config,
        keys: KeyRing,
        store: Arc<dyn TokenStore>,
        login: Option<PasswordLogin>,
    ) -> ServerState {
        let auth = Auth::new(
            Settings::from_config(config),
            keys,
            store,
            login,
            config.server.login_attempts_per_minute,
        );
        let auth = auth.with_api_keys(crate::auth::keys::KeyAuth::new(
            &config.auth.key_prefix,
            config
                .auth
                .api_keys
                .iter()
                .map(|k| crate::auth::keys::ConfigKey {
                    name: k.name.clone(),
                    subject: k.subject.clone(),
                    hash: k.hash.clone(),
                    scopes: k.scopes.clone(),
                })
                .collect(),
        ));
        ServerState {
            auth,
            registry: None,
            trusted_proxies: config.server.trusted_proxies.clone(),
            workloads: None,
        }
    }

    /// The authentication core.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Sets the least time between two fetches of an issuer's keys (tests shorten the
    /// minute, to see a rotation without waiting for it).
    #[doc(hidden)]
    pub fn set_jwks_min_refetch(&self, d: std::time::Duration) {
        if let Some(w) = &self.workloads {
            w.jwks().set_min_refetch(d);
        }
    }

    /// How many times the issuers' keys were fetched (for tests and benchmarks).
    #[doc(hidden)]
    pub fn jwks_fetches(&self) -> u64 {
        self.workloads.as_ref().map_or(0, |w| w.jwks().fetches())
    }
}
