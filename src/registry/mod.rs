//! The Docker registry token service, as a domain: the ES256 signing key and its certificate
//! ([`key`]), registry tokens and what a credential's scopes grant of a request ([`token`]),
//! and the service's settings loaded at start ([`RegistryService`]). The HTTP endpoints
//! (`/token`, `/.well-known/jwks.json`) are in `crate::http`.

pub mod key;
pub mod token;
pub mod validity;

use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use tessera_backends::{BackendError, BackendKind, KeyPath, SecretsBackend};

use crate::config::{Config, RegistryConfig};
use crate::scope::ScopeSet;
use key::RegistryKey;
use token::{RegistryClaims, Requested, ScopeParseError};

/// What the token service needs, loaded once at server start.
#[derive(Debug)]
pub struct RegistryService {
    /// The signing key and its certificate.
    pub key: RegistryKey,
    /// `registry.service`: the `aud` of every token; a request for another service is refused.
    pub service: String,
    /// `registry.issuer`.
    pub issuer: String,
    /// Lifetime of registry tokens (at least 60 s).
    pub ttl: Duration,
}

/// Why the registry token service cannot start, or a request to it is refused. Never carries
/// a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// `registry.token_ttl` is under a minute.
    #[error("`registry.token_ttl` must be at least 60 s")]
    TokenTtl,
    /// `[registry] service` is not set.
    #[error("the registry token service needs `[registry] service` in the config file")]
    NoService,
    /// The certificate file exists but cannot be read.
    #[error("cannot read the registry certificate {}: {source}", path.display())]
    ReadCertificate {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The secrets backend cannot be opened.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The certificate exists but the backend holds no key.
    #[error(
        "the registry certificate {} exists but there is no registry signing key at `{key}` in the {backend} backend",
        certificate.display()
    )]
    NoKey {
        certificate: PathBuf,
        key: KeyPath,
        backend: BackendKind,
    },
    /// The key cannot be read.
    #[error("cannot read the registry signing key: {0}")]
    ReadKey(BackendError),
    /// The key is unusable or matches no certificate of the bundle.
    #[error("registry key `{key}` and certificate {}: {source}", certificate.display())]
    Key {
        key: KeyPath,
        certificate: PathBuf,
        source: key::KeyError,
    },
    /// A request for another service than this one.
    #[error(
        "this server issues tokens for service `{service}`, not for the one asked; check the registry's `auth.token.service`"
    )]
    WrongService { service: String },
    /// A `scope` parameter that is not `TYPE:NAME:ACTIONS`.
    #[error(transparent)]
    Scope(#[from] ScopeParseError),
    /// A token cannot be made (no randomness, signing failed).
    #[error("{0}")]
    Sign(String),
}

impl RegistryError {
    /// What to do about it, where there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            RegistryError::NoService => Some(
                "add `[registry]` with `service = \"NAME\"` to the config file, NAME being the registry's `auth.token.service` (e.g. its host name, \"registry.example.com\")",
            ),
            RegistryError::NoKey { .. } => Some(
                "run `tessera registry init --force` to make a new key and certificate (then restart the registry), or remove the certificate file to turn the token service off",
            ),
            RegistryError::Key { .. } => Some(
                "run `tessera registry init --rotate` to make a new key with a matching certificate",
            ),
            _ => None,
        }
    }
}

impl RegistryService {
    /// A service from a loaded key and the `[registry]` settings.
    pub fn new(key: RegistryKey, config: &Config) -> Result<RegistryService, RegistryError> {
        let ttl = config
            .registry
            .token_ttl
            .as_fixed()
            .filter(|d| *d >= Duration::from_secs(60))
            .ok_or(RegistryError::TokenTtl)?;
        Ok(RegistryService {
            key,
            service: service(&config.registry)?.to_owned(),
            issuer: config.registry.issuer.clone(),
            ttl,
        })
    }

    /// Loads the registry key at server start.
    ///
    /// The token service is "in use" when the certificate file `registry.certificate`
    /// exists (`tessera registry init` writes it, and the registry reads it). Then the key must
    /// be in the backend and match a certificate of the bundle, or the server refuses to start.
    /// Without the certificate file the service is off (`Ok(None)`) and `/token` answers 404.
    pub fn load<'a>(
        config: &Config,
        backend: &dyn Fn() -> Result<&'a dyn SecretsBackend, BackendError>,
    ) -> Result<Option<RegistryService>, RegistryError> {
        let cert_path = &config.registry.certificate;
        let bundle = match std::fs::read(cert_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RegistryError::ReadCertificate {
                    path: cert_path.clone(),
                    source,
                });
            }
        };
        let key_path = &config.registry.signing_key;
        let pem = backend()?
            .get_optional(key_path)
            .map_err(RegistryError::ReadKey)?
            .ok_or_else(|| RegistryError::NoKey {
                certificate: cert_path.clone(),
                key: key_path.clone(),
                backend: config.secrets.backend,
            })?;
        let key = RegistryKey::new(&pem, &bundle)
            .and_then(|k| k.with_header(config.registry.header))
            .map_err(|source| RegistryError::Key {
                key: key_path.clone(),
                certificate: cert_path.clone(),
                source,
            })?;
        RegistryService::new(key, config).map(Some)
    }

    /// Checks the `service` a request names (if any) and parses its scopes.
    pub fn check_request(
        &self,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<Vec<Requested>, RegistryError> {
        if let Some(s) = service
            && s != self.service
        {
            return Err(RegistryError::WrongService {
                service: self.service.clone(),
            });
        }
        scopes
            .iter()
            .map(|s| token::parse_scope(s).map_err(RegistryError::from))
            .collect()
    }

    /// A signed registry token for `subject`, granting what `scopes` allow of `requested`,
    /// valid for the service's lifetime from `now`. Returns the token and its claims.
    pub fn issue(
        &self,
        subject: &str,
        scopes: &ScopeSet,
        requested: &[Requested],
        now: Timestamp,
    ) -> Result<(String, RegistryClaims), RegistryError> {
        let now = now.as_second();
        let claims = RegistryClaims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: self.service.clone(),
            exp: now.saturating_add(self.ttl_secs()),
            nbf: now,
            iat: now,
            jti: token::new_jti().map_err(RegistryError::Sign)?,
            access: token::grant(scopes, requested),
        };
        let signed = token::sign(&self.key, &claims).map_err(RegistryError::Sign)?;
        Ok((signed, claims))
    }

    /// The lifetime of a registry token, in seconds.
    pub fn ttl_secs(&self) -> i64 {
        i64::try_from(self.ttl.as_secs()).unwrap_or(300)
    }
}

/// `registry.service`, which the token service and `registry init` need: there is no default,
/// since a made-up name would only make the registry refuse every token (`aud` must equal the
/// registry's `auth.token.service`).
pub fn service(config: &RegistryConfig) -> Result<&str, RegistryError> {
    config.service.as_deref().ok_or(RegistryError::NoService)
}
