//! The Docker registry token service (CONTRACT section 8): the ES256 signing key and its
//! certificate ([`key`]), registry tokens and scope granting ([`token`]), and the HTTP
//! endpoints `GET`/`POST /token` and `GET /.well-known/jwks.json` ([`endpoint`]).

pub mod endpoint;
pub mod key;
pub mod token;

use std::time::Duration;

use tessera_backends::SecretsBackend;

use crate::cli::error::CliError;
use crate::config::Config;
use key::RegistryKey;

/// What the token endpoint needs, loaded once at server start.
#[derive(Debug)]
pub struct RegistryState {
    /// The signing key and its certificate.
    pub key: RegistryKey,
    /// `registry.service`: the `aud` of every token; a request for another service is refused.
    pub service: String,
    /// `registry.issuer`.
    pub issuer: String,
    /// Lifetime of registry tokens (at least 60 s).
    pub ttl: Duration,
}

impl RegistryState {
    /// A state from a loaded key and the `[registry]` settings.
    pub fn new(key: RegistryKey, config: &Config) -> Result<RegistryState, CliError> {
        let ttl = config
            .registry
            .token_ttl
            .as_fixed()
            .filter(|d| *d >= Duration::from_secs(60))
            .ok_or_else(|| CliError::new("`registry.token_ttl` must be at least 60 s"))?;
        Ok(RegistryState {
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
        backend: &dyn Fn() -> Result<&'a dyn SecretsBackend, CliError>,
    ) -> Result<Option<RegistryState>, CliError> {
        let cert_path = &config.registry.certificate;
        let bundle = match std::fs::read(cert_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CliError::new(format!(
                    "cannot read the registry certificate {}: {e}",
                    cert_path.display()
                )));
            }
        };
        let key_path = &config.registry.signing_key;
        let pem = match backend()?.get(key_path) {
            Ok(p) => p,
            Err(e) if e.is_not_found() => {
                return Err(CliError::new(format!(
                    "the registry certificate {} exists but there is no registry signing key at `{key_path}` in the {} backend",
                    cert_path.display(),
                    config.secrets.backend
                ))
                .with_hint(
                    "run `tessera registry init --force` to make a new key and certificate (then restart the registry), or remove the certificate file to turn the token service off",
                ));
            }
            Err(e) => {
                return Err(CliError::from(e).context("cannot read the registry signing key"));
            }
        };
        let key = RegistryKey::new(&pem, &bundle)
            .and_then(|k| k.with_header(config.registry.header))
            .map_err(|e| {
            CliError::new(format!(
                "registry key `{key_path}` and certificate {}: {e}",
                cert_path.display()
            ))
            .with_hint("run `tessera registry init --rotate` to make a new key with a matching certificate")
        })?;
        RegistryState::new(key, config).map(Some)
    }
}

/// `registry.service`, which the token service and `registry init` need: there is no default,
/// since a made-up name would only make the registry refuse every token (`aud` must equal the
/// registry's `auth.token.service`).
pub fn service(config: &crate::config::RegistryConfig) -> Result<&str, CliError> {
    config.service.as_deref().ok_or_else(|| {
        CliError::new("the registry token service needs `[registry] service` in the config file")
            .with_hint(
                "add `[registry]` with `service = \"NAME\"` to the config file, NAME being the \
                 registry's `auth.token.service` (e.g. its host name, \"registry.example.com\")",
            )
    })
}

impl crate::server::ServerState {
    /// This state with the registry token service on (for embedding and tests; `tessera
    /// serve` loads it through [`RegistryState::load`]).
    pub fn with_registry(mut self, registry: RegistryState) -> Self {
        self.registry = Some(std::sync::Arc::new(registry));
        self
    }
}
