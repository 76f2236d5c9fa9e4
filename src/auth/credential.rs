//! What a caller presents to prove who it is, read once from the request by the HTTP
//! adapter (`http/extract.rs`) and dispatched once (`http/api.rs`, `authenticate`): a tessera
//! token (JWT) or an API key. A new way in (a session cookie) is one more variant.

use secrecy::{ExposeSecret, SecretString};

use super::apikey;

/// A credential, held as a secret from the moment it is read.
pub enum Credential {
    /// A tessera token (a JWT), from `Authorization: Bearer`.
    Jwt(SecretString),
    /// An API key, from `Authorization: Bearer` or `X-API-Key`.
    ApiKey(SecretString),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::Jwt(_) => "Credential::Jwt(..)",
            Credential::ApiKey(_) => "Credential::ApiKey(..)",
        })
    }
}

impl Credential {
    /// A bearer credential: an API key when it looks like one (no `.`, a `PREFIX_`), else a
    /// token. Only chooses the check; the check itself refuses what is neither.
    pub fn bearer(text: &str) -> Credential {
        if apikey::looks_like_key(text) {
            Credential::ApiKey(SecretString::from(text.to_owned()))
        } else {
            Credential::Jwt(SecretString::from(text.to_owned()))
        }
    }

    /// The credential's text, for the one place that checks it.
    pub fn expose(&self) -> &str {
        match self {
            Credential::Jwt(s) | Credential::ApiKey(s) => s.expose_secret(),
        }
    }
}
