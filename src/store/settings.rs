//! The `[store]` section: which engine keeps what tessera remembers, and how to reach it.
//!
//! ```toml
//! [store]
//! engine = "postgres"                                    # default "sqlite"
//! url = "postgres://tessera@db.internal:5432/tessera?sslmode=require"
//! ca_file = "db-ca.pem"                                  # optional: trust this CA for TLS
//! pool_size = 8                                          # connections per process
//! ```
//!
//! The database password is never in the file: `TESSERA_STORE_PASSWORD`, else the secrets
//! backend key `tessera/store/password` (read when the store is opened), else none (trust,
//! peer or certificate authentication). A URL with a password in it is refused.
//! `TESSERA_STORE_URL` overrides `url` and implies `engine = "postgres"`.

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;
use tessera_backends::KeyPath;

use crate::config::{ConfigError, Env, vars};

/// The key of the database password in the secrets backend.
pub const PASSWORD_KEY: &str = "tessera/store/password";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    engine: Option<String>,
    url: Option<String>,
    ca_file: Option<String>,
    pool_size: Option<usize>,
}

/// Which engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreEngine {
    Sqlite,
    Postgres,
}

/// How to talk TLS to PostgreSQL (`sslmode` in the URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it (certificate verified when used), else plain.
    Prefer,
    /// TLS required; the certificate and host name are verified (`require`, `verify-ca` and
    /// `verify-full` all mean this: rustls always verifies).
    Require,
}

/// The `[store]` section, resolved.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub engine: StoreEngine,
    /// The PostgreSQL URL without `sslmode` (and never with a password).
    pub url: Option<String>,
    pub sslmode: SslMode,
    /// A PEM file of CA certificates to trust for TLS to the database (else the system's).
    pub ca_file: Option<PathBuf>,
    /// Connections per process.
    pub pool_size: usize,
    /// `TESSERA_STORE_PASSWORD`, when set.
    pub password_from_env: Option<Arc<SecretString>>,
    /// The backend key holding the password when the environment does not.
    pub password_key: KeyPath,
}

impl StoreConfig {
    pub(crate) fn resolve(
        raw: RawStore,
        env: &Env,
        fix: &dyn Fn(&str) -> PathBuf,
        bad: &dyn Fn(&'static str, String) -> ConfigError,
    ) -> Result<StoreConfig, ConfigError> {
        let env_url = env.tessera_var(vars::STORE_URL)?;
        let engine = match (raw.engine.as_deref(), env_url) {
            (_, Some(_)) => StoreEngine::Postgres,
            (None | Some("sqlite"), None) => StoreEngine::Sqlite,
            (Some("postgres" | "postgresql"), None) => StoreEngine::Postgres,
            (Some(other), None) => {
                return Err(bad(
                    "store.engine",
                    format!("unknown engine `{other}`; use \"sqlite\" or \"postgres\""),
                ));
            }
        };
        let (url, sslmode) = match (env_url, raw.url.as_deref()) {
            (Some(u), _) => check_url(u).map_err(|message| ConfigError::BadVar {
                var: vars::STORE_URL,
                message,
            })?,
            (None, Some(u)) if engine == StoreEngine::Postgres => {
                check_url(u).map_err(|m| bad("store.url", m))?
            }
            (None, None) if engine == StoreEngine::Postgres => {
                return Err(bad(
                    "store.url",
                    "is missing; the postgres engine needs e.g. \"postgres://tessera@db.internal:5432/tessera\"".into(),
                ));
            }
            _ => (None, SslMode::Prefer),
        };
        let pool_size = raw.pool_size.unwrap_or(8);
        if !(1..=256).contains(&pool_size) {
            return Err(bad("store.pool_size", "must be between 1 and 256".into()));
        }
        let password_from_env = env
            .tessera_var(vars::STORE_PASSWORD)?
            .map(|p| Arc::new(SecretString::from(p.to_owned())));
        Ok(StoreConfig {
            engine,
            url,
            sslmode,
            ca_file: raw.ca_file.as_deref().filter(|s| !s.is_empty()).map(fix),
            pool_size,
            password_from_env,
            password_key: KeyPath::new(PASSWORD_KEY).expect("a valid key path"),
        })
    }
}

/// Checks a PostgreSQL URL: the scheme, no password, a host; takes `sslmode` out of it.
/// Returns the URL (without `sslmode`) and the mode. The message never repeats a password.
pub(crate) fn check_url(text: &str) -> Result<(Option<String>, SslMode), String> {
    let mut url = url::Url::parse(text).map_err(|e| {
        format!("is not a URL ({e}); write it as \"postgres://USER@HOST:PORT/DATABASE\"")
    })?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "has the scheme `{}`; write it as \"postgres://USER@HOST:PORT/DATABASE\"",
            url.scheme()
        ));
    }
    if url.password().is_some() {
        return Err(format!(
            "carries a password; remove it from the URL (\"postgres://{}@{}/...\") and set {} or store it with `tessera secrets set {PASSWORD_KEY}`",
            url.username(),
            url.host_str().unwrap_or("HOST"),
            vars::STORE_PASSWORD
        ));
    }
    let mut sslmode = SslMode::Prefer;
    let mut kept = Vec::new();
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "sslmode" => {
                sslmode = match v.as_ref() {
                    "disable" => SslMode::Disable,
                    "prefer" | "allow" => SslMode::Prefer,
                    "require" | "verify-ca" | "verify-full" => SslMode::Require,
                    other => {
                        return Err(format!(
                            "has sslmode `{other}`; use disable, prefer, require or verify-full"
                        ));
                    }
                }
            }
            "password" => {
                return Err(format!(
                    "carries a password; remove it and set {} or store it with `tessera secrets set {PASSWORD_KEY}`",
                    vars::STORE_PASSWORD
                ));
            }
            _ => kept.push((k.into_owned(), v.into_owned())),
        }
    }
    if url.host_str().is_none_or(str::is_empty) && !kept.iter().any(|(k, _)| k == "host") {
        return Err("names no host; write it as \"postgres://USER@HOST:PORT/DATABASE\"".into());
    }
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((Some(url.to_string()), sslmode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_a_password_are_refused_without_repeating_it() {
        for u in [
            "postgres://tessera:hunter2secret@db:5432/t",
            "postgres://tessera@db/t?password=hunter2secret",
        ] {
            let e = check_url(u).unwrap_err();
            assert!(e.contains("TESSERA_STORE_PASSWORD"), "{e}");
            assert!(!e.contains("hunter2secret"), "{e}");
        }
    }

    #[test]
    fn sslmode_is_taken_out_and_other_parameters_kept() {
        let (u, m) =
            check_url("postgres://t@db:5432/t?sslmode=verify-full&application_name=x").unwrap();
        assert_eq!(m, SslMode::Require);
        assert_eq!(u.unwrap(), "postgres://t@db:5432/t?application_name=x");
        let (u, m) = check_url("postgresql://t@127.0.0.1/t").unwrap();
        assert_eq!(m, SslMode::Prefer);
        assert_eq!(u.unwrap(), "postgresql://t@127.0.0.1/t");
        assert!(check_url("postgres://t@db/t?sslmode=bogus").is_err());
        assert!(check_url("mysql://t@db/t").is_err());
        assert!(check_url("not a url").is_err());
    }
}
