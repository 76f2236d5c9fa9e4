//! Reaching PostgreSQL: the client settings from `[store]`, TLS with the process's ring
//! provider, the pool and its time limits, and the mapping of driver errors to [`StoreError`].

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;
use crate::store::settings::{SslMode, StoreConfig};

/// How long to wait for a connection to be made (TCP, TLS, authentication).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call waits for a free connection of the pool.
const WAIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long checking a pooled connection before reuse may take.
const RECYCLE_TIMEOUT: Duration = Duration::from_secs(2);
/// Set on every connection: no statement and no lock wait runs longer (the server side of
/// the bound on a call).
const SESSION_OPTIONS: &str =
    "-c statement_timeout=5000 -c lock_timeout=5000 -c idle_in_transaction_session_timeout=10000";

pub(super) const HINT_DOWN: &str =
    "check that PostgreSQL is running and reachable at that address; tessera reconnects by itself";
pub(super) const HINT_AUTH: &str = "check the user in `store.url` and the password (TESSERA_STORE_PASSWORD or the backend key tessera/store/password)";
pub(super) const HINT_BUSY: &str = "the database is busy; retry";
pub(super) const HINT_CONFLICT: &str = "a token id is recorded only once";
pub(super) const HINT_SCHEMA: &str = "the database is not a tessera store, or was changed by hand; point `store.url` at a tessera database";
pub(super) const HINT_NEWER: &str = "it was written by a newer tessera; upgrade this one";
pub(super) const HINT_TLS: &str = "check `sslmode` in `store.url` and `store.ca_file` (a PEM file of the CA that signed the database's certificate)";

/// What a connection needs: the driver's settings, TLS, and the address to name in messages
/// (the URL, which never holds a password).
#[derive(Clone)]
pub(super) struct Target {
    pub pg: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub location: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Target {
    pub(super) fn new(
        config: &StoreConfig,
        password: Option<&SecretString>,
    ) -> Result<Target, StoreError> {
        let url = config.url.clone().unwrap_or_default();
        let location = url.clone();
        let bad = |message: String| StoreError::Unavailable {
            location: location.clone(),
            message,
            hint: "write `store.url` as \"postgres://USER@HOST:PORT/DATABASE\"",
        };
        let mut pg = tokio_postgres::Config::from_str(&url).map_err(|e| bad(e.to_string()))?;
        if let Some(p) = password {
            pg.password(p.expose_secret().as_bytes());
        }
        pg.connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .application_name("tessera")
            .options(SESSION_OPTIONS)
            .ssl_mode(match config.sslmode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                SslMode::Require => tokio_postgres::config::SslMode::Require,
            });
        #[cfg(target_os = "linux")]
        pg.tcp_user_timeout(Duration::from_secs(10));
        let tls = MakeRustlsConnect::new(tls_config(config, &location)?);
        Ok(Target { pg, tls, location })
    }

    /// The pool of connections for calls, with every time limit set (deadpool has none by
    /// default: a call would wait for ever for a database that does not answer).
    pub(super) fn pool(&self, size: usize) -> Result<Pool, StoreError> {
        let manager = Manager::from_config(
            self.pg.clone(),
            self.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(RECYCLE_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Unavailable {
                location: self.location.clone(),
                message: format!("cannot set up the connection pool: {e}"),
                hint: HINT_DOWN,
            })
    }
}

/// The rustls client settings: the process's ring provider, the CAs of `store.ca_file` or
/// else the system's.
fn tls_config(config: &StoreConfig, location: &str) -> Result<rustls::ClientConfig, StoreError> {
    crate::tls::install_crypto_provider();
    let tls_err = |message: String| StoreError::Unavailable {
        location: location.to_owned(),
        message,
        hint: HINT_TLS,
    };
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect::<Result<_, _>>())
                .map_err(|e| tls_err(format!("cannot read {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(tls_err(format!("{} holds no certificate", path.display())));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
            }
        }
        None if config.sslmode != SslMode::Disable => {
            // Unreadable system certificates are skipped; none at all fails at connect time
            // with rustls's own message.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
        None => {}
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Maps a driver error to what the store reports: unreachable, refused login, busy,
/// conflict, or a database that is not a tessera store.
pub(super) fn db_error(location: &str, e: &tokio_postgres::Error) -> StoreError {
    let location = location.to_owned();
    let message = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            // The driver's sentence, then its causes ("connection refused", a TLS error).
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    };
    let Some(code) = e.code() else {
        // No SQLSTATE: the connection failed or closed.
        let lower = message.to_lowercase();
        let hint = if lower.contains("tls") || lower.contains("certificate") {
            HINT_TLS
        } else {
            HINT_DOWN
        };
        return StoreError::Unavailable {
            location,
            message,
            hint,
        };
    };
    let code = code.code();
    match &code[..2] {
        "23" => StoreError::Conflict {
            location,
            message,
            hint: HINT_CONFLICT,
        },
        "28" => StoreError::Unavailable {
            location,
            message,
            hint: HINT_AUTH,
        },
        "40" | "55" => StoreError::Busy {
            location,
            message,
            hint: HINT_BUSY,
        },
        // Connection exceptions, shutting down, out of resources, canceled (timeouts).
        "08" | "57" | "53" | "58" => StoreError::Unavailable {
            location,
            message,
            hint: HINT_DOWN,
        },
        _ => StoreError::Corrupt {
            location,
            message,
            hint: HINT_SCHEMA,
        },
    }
}

/// Maps a pool error (no free connection in time, or the connection could not be made).
pub(super) fn pool_error(location: &str, e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => db_error(location, &e),
        PoolError::Timeout(t) => StoreError::Unavailable {
            location: location.to_owned(),
            message: format!("no database connection in time ({t:?})"),
            hint: HINT_DOWN,
        },
        other => StoreError::Unavailable {
            location: location.to_owned(),
            message: other.to_string(),
            hint: HINT_DOWN,
        },
    }
}
