//! Tessera tokens: HS256 JWTs with a pinned algorithm, `kid` naming the secret, and scopes.

pub mod scope;

use jiff::Timestamp;
use secrecy::{SecretBox, SecretString};

pub use scope::{Scope, ScopeError, ScopeSet};

use crate::duration::HumanDuration;

/// Shortest accepted signing secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
/// Largest token accepted for verification, in bytes; longer input is refused before parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Clock leeway for `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 60;

/// One HMAC signing secret and its key id (a fingerprint of the secret, so the CLI and the
/// server derive the same `kid` from the same secret wherever it was loaded from).
pub struct SigningKey {
    kid: String,
    secret: SecretBox<[u8]>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the token signing secret{origin} is {len} bytes; at least {MIN_SECRET_LEN} are required (generate one with `tessera secrets set KEY --generate 32`)"
    )]
    TooShort { origin: String, len: usize },
}

impl SigningKey {
    /// Wraps a secret, refusing one shorter than [`MIN_SECRET_LEN`]. `origin` names where it
    /// came from for the error (e.g. ` from TESSERA_AUTH_TOKEN_SECRET`); never the value.
    pub fn new(secret: &SecretString, origin: &str) -> Result<Self, KeyError> {
        let _ = (secret, origin);
        todo!()
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// The current signing key and the previous ones still accepted for verification.
#[derive(Debug)]
pub struct KeyRing {
    pub current: SigningKey,
    pub previous: Vec<SigningKey>,
}

/// Claims of a tessera token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// What to mint.
#[derive(Debug, Clone)]
pub struct MintRequest<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub scopes: &'a ScopeSet,
    pub expiry: HumanDuration,
    pub audience: Option<&'a str>,
    pub now: Timestamp,
}

/// A freshly minted token.
pub struct Minted {
    pub token: SecretString,
    pub claims: Claims,
}

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("invalid subject: {0}")]
    Subject(String),
    #[error(transparent)]
    Duration(#[from] crate::duration::DurationError),
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Mints an HS256 token signed with `keys.current`.
pub fn mint(keys: &KeyRing, req: &MintRequest<'_>) -> Result<Minted, MintError> {
    let _ = (keys, req);
    todo!()
}

/// Why a token was refused. `reason()` gives the short words of the contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("token is malformed: {0}")]
    Malformed(String),
    #[error("token has a bad signature")]
    BadSignature,
    #[error("token expired at {0}")]
    Expired(Timestamp),
    #[error("token is not valid before {0}")]
    NotYetValid(Timestamp),
    #[error("token was issued by `{0}`, not by this issuer")]
    WrongIssuer(String),
    #[error("token is for another audience")]
    WrongAudience,
    #[error("token has been revoked")]
    Revoked,
}

impl VerifyError {
    /// `malformed`, `bad signature`, `expired`, `not yet valid`, `wrong issuer`,
    /// `wrong audience`, `revoked`.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::Malformed(_) => "malformed",
            VerifyError::BadSignature => "bad signature",
            VerifyError::Expired(_) => "expired",
            VerifyError::NotYetValid(_) => "not yet valid",
            VerifyError::WrongIssuer(_) => "wrong issuer",
            VerifyError::WrongAudience => "wrong audience",
            VerifyError::Revoked => "revoked",
        }
    }
}

/// What verification checks besides the signature.
#[derive(Debug, Clone)]
pub struct VerifyOptions<'a> {
    pub issuer: &'a str,
    /// When set, `aud` must equal it; when `None`, a token carrying `aud` is still accepted.
    pub audience: Option<&'a str>,
    pub now: Timestamp,
}

/// Verifies signature (pinned HS256; `kid` selects the key among current and previous),
/// structure, `iss`, `exp`/`nbf` with [`LEEWAY_SECS`], and `aud` when configured. Revocation
/// is the caller's job (see `crate::store`).
pub fn verify(
    keys: &KeyRing,
    token: &str,
    opts: &VerifyOptions<'_>,
) -> Result<Claims, VerifyError> {
    let _ = (keys, token, opts);
    todo!()
}
