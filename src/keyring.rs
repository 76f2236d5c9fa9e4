//! Loading the secrets that tokens need, through one code path for the CLI and the server, so
//! a token minted by one always verifies on the other.

use base64::Engine;
use secrecy::SecretString;
use tessera_backends::{BackendError, BackendKind, KeyPath, SecretsBackend};
use zeroize::Zeroizing;

use crate::config::{Config, ConfigError, Env, vars};
use crate::token::{KeyError, KeyRing, SigningKey};

/// Why the signing keys cannot be loaded (or a random secret made). Never carries a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The environment (`TESSERA_AUTH_TOKEN_SECRET`) cannot be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A secret is unusable (too short).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The secrets backend cannot be opened or written.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// No current signing secret in the backend.
    #[error("no token signing secret at `{key}` in the {backend} backend")]
    NoSecret { key: KeyPath, backend: BackendKind },
    /// The current signing secret cannot be read.
    #[error("cannot read the token signing secret: {0}")]
    ReadSecret(BackendError),
    /// A previous signing secret cannot be read.
    #[error("cannot read a previous token secret: {0}")]
    ReadPrevious(BackendError),
    /// The system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

impl KeyringError {
    /// What to do about it, where there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            KeyringError::NoSecret { .. } => {
                Some("run `tessera init` to create one, or set TESSERA_AUTH_TOKEN_SECRET")
            }
            _ => None,
        }
    }
}

/// A new random secret of `bytes` random bytes, base64url-encoded without padding
/// (32 bytes give 43 characters).
pub fn random_secret(bytes: usize) -> Result<SecretString, KeyringError> {
    let mut buf = Zeroizing::new(vec![0u8; bytes]);
    getrandom::fill(&mut buf).map_err(|e| KeyringError::Random(e.to_string()))?;
    Ok(SecretString::from(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&*buf),
    ))
}

/// Where the current signing secret came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretOrigin {
    /// `TESSERA_AUTH_TOKEN_SECRET`.
    Environment,
    /// The backend, at this key.
    Backend(KeyPath),
    /// Created just now in the backend; the string says where it lives.
    Created(String),
}

/// Loads the current and previous token signing secrets. `backend` opens the secrets backend;
/// it is only called when a secret has to come from there (so CI with
/// `TESSERA_AUTH_TOKEN_SECRET` never touches the backend).
///
/// `TESSERA_AUTH_TOKEN_SECRET` wins over the backend. When `create_missing` is set and the
/// backend is `unsafe`, a missing secret is created (256 random bits) and the origin says
/// where, so that the first `tessera auth token generate` on a new machine just works.
pub fn load_keyring<'a>(
    config: &Config,
    env: &Env,
    backend: &dyn Fn() -> Result<&'a dyn SecretsBackend, BackendError>,
    create_missing: bool,
) -> Result<(KeyRing, SecretOrigin), KeyringError> {
    let key = &config.auth.token_secret;
    let (current, origin) = match env.tessera_var(vars::TOKEN_SECRET)? {
        Some(raw) => (
            SigningKey::new(&SecretString::from(raw), " from TESSERA_AUTH_TOKEN_SECRET")?,
            SecretOrigin::Environment,
        ),
        None => match backend()?
            .get_optional(key)
            .map_err(KeyringError::ReadSecret)?
        {
            Some(secret) => (
                SigningKey::new(&secret, &format!(" at `{key}`"))?,
                SecretOrigin::Backend(key.clone()),
            ),
            None => {
                if create_missing && config.secrets.backend == BackendKind::Unsafe {
                    let secret = random_secret(32)?;
                    backend()?.set(key, &secret)?;
                    let place = config.secrets.unsafe_dir.join(key.as_str());
                    (
                        SigningKey::new(&secret, "")?,
                        SecretOrigin::Created(place.display().to_string()),
                    )
                } else {
                    return Err(KeyringError::NoSecret {
                        key: key.clone(),
                        backend: config.secrets.backend,
                    });
                }
            }
        },
    };
    let mut previous = Vec::new();
    for k in &config.auth.previous_token_secrets {
        let secret = backend()?.get(k).map_err(KeyringError::ReadPrevious)?;
        previous.push(SigningKey::new(&secret, &format!(" at `{k}`"))?);
    }
    Ok((KeyRing { current, previous }, origin))
}
