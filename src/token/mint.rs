//! Minting: a new token for a subject, its scopes and an expiry.

use jiff::Timestamp;
use jsonwebtoken::{Algorithm, Header};
use secrecy::SecretString;

use super::verify::timestamp;
use super::{Claims, KeyRing};
use crate::duration::HumanDuration;
use crate::scope::ScopeSet;

/// Longest subject accepted, in bytes.
pub const MAX_SUBJECT_LEN: usize = 256;
/// Bytes of randomness in a `jti`.
const JTI_BYTES: usize = 16;

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
///
/// The subject must be non-empty, at most [`MAX_SUBJECT_LEN`] bytes, without control
/// characters and without leading or trailing whitespace. `iat` and `nbf` are `req.now` in
/// whole seconds (as JWTs carry them); give `req.now` to the full precision of the clock and
/// record that instant, so that a revocation cut-off in the same second is told apart.
pub fn mint(keys: &KeyRing, req: &MintRequest<'_>) -> Result<Minted, MintError> {
    mint_until(keys, req, None)
}

/// [`mint`], with an expiry of at most `not_after` (for a token derived from another, which
/// never outlives it; see [`latest_expiry`]).
pub fn mint_until(
    keys: &KeyRing,
    req: &MintRequest<'_>,
    not_after: Option<Timestamp>,
) -> Result<Minted, MintError> {
    check_subject(req.subject)?;
    let exp = earliest(req.expiry.after(req.now)?, not_after).map(|t| t.as_second());
    let mut random = [0u8; JTI_BYTES];
    getrandom::fill(&mut random)
        .map_err(|e| MintError::Sign(format!("no randomness for the token id: {e}")))?;
    let claims = Claims {
        iss: req.issuer.to_owned(),
        sub: req.subject.to_owned(),
        jti: hex::encode(random),
        iat: req.now.as_second(),
        nbf: req.now.as_second(),
        exp,
        scope: req.scopes.clone(),
        aud: req.audience.map(str::to_owned),
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(keys.current.kid().to_owned());
    let token = jsonwebtoken::encode(&header, &claims, &keys.current.encoding)
        .map_err(|e| MintError::Sign(e.to_string()))?;
    Ok(Minted {
        token: SecretString::from(token),
        claims,
    })
}

/// The earlier of two expiries, where `None` is never.
fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The latest expiry a token issued at `now` may get under `max` (`auth.max_token_expiry`;
/// never = no cap) and, for a token derived from another, under its parent's `exp`
/// (`parent_exp`: `None` for no parent or a parent that never expires, which still leaves the
/// cap). `None` means no limit at all. Give it to [`mint_until`] with the normal expiry.
pub fn latest_expiry(
    now: Timestamp,
    max: HumanDuration,
    parent_exp: Option<i64>,
) -> Result<Option<Timestamp>, crate::duration::DurationError> {
    let cap = if max.is_never() {
        None
    } else {
        max.after(now)?
    };
    Ok(earliest(cap, parent_exp.map(timestamp)))
}

fn check_subject(subject: &str) -> Result<(), MintError> {
    let shown = crate::term::escaped_head(subject, 40);
    if subject.is_empty() {
        return Err(MintError::Subject("the subject is empty".to_owned()));
    }
    if subject.len() > MAX_SUBJECT_LEN {
        return Err(MintError::Subject(format!(
            "`{shown}…` is {} bytes; at most {MAX_SUBJECT_LEN} are allowed",
            subject.len()
        )));
    }
    if subject.chars().any(char::is_control) {
        return Err(MintError::Subject(format!(
            "`{shown}` contains control characters; use printable text"
        )));
    }
    if subject.trim() != subject {
        return Err(MintError::Subject(format!(
            "`{shown}` starts or ends with whitespace"
        )));
    }
    Ok(())
}
