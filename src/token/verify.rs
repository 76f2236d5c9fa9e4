//! Verification: signature, structure and claims of a presented token.
//!
//! Verification decisions:
//! - Input longer than [`MAX_TOKEN_LEN`] is refused as `Malformed` before anything is parsed.
//! - The header is decoded by us first; an `alg` other than `HS256` (`none`, `HS384`, `RS256`,
//!   ...) is `BadSignature`: such a token was not signed by any key we hold, whatever it claims.
//! - The key is chosen by `kid` among the current and previous keys; a missing or unknown `kid`
//!   is `BadSignature`. Keys are never tried one after the other.
//! - A structurally broken token (not three base64url parts, a signature that is not 32 bytes,
//!   a header or payload that is not the expected JSON) is `Malformed`; a well-formed token
//!   whose signature does not match (tampered header or payload) is `BadSignature`.
//! - A header with `crit` is `Malformed`: tessera understands no JWS extension, and RFC 7515
//!   section 4.1.11 requires refusing a token whose critical extensions are not understood.
//! - Duplicate members in the header or the claims (two `alg`, two `sub`) are `Malformed`,
//!   never "first" or "last wins".
//! - Time is checked against [`VerifyOptions::now`] with [`LEEWAY_SECS`] of leeway; a token
//!   without `exp` never expires; an `iat` in the future is refused like an `nbf` in the
//!   future (it would escape revocation by subject, which compares `iat`). jsonwebtoken only
//!   checks the HMAC (`crypto::verify`); the header and the claims are each parsed once, here.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use jsonwebtoken::{Algorithm, errors::ErrorKind};

use super::claims::RawClaims;
use super::{Claims, KeyRing};
use crate::scope::ScopeSet;

/// Largest token accepted for verification, in bytes; longer input is refused before parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Clock leeway for `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 60;
/// Length of an HS256 signature in base64url without padding.
const HS256_SIG_B64_LEN: usize = 43;

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
    if token.len() > MAX_TOKEN_LEN {
        return Err(VerifyError::Malformed(format!(
            "longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed(
            "expected three base64url parts separated by `.`".to_owned(),
        ));
    };
    let header = decode_header(header)?;
    if header.crit {
        return Err(VerifyError::Malformed(
            "the header lists critical extensions (`crit`), which tessera does not support"
                .to_owned(),
        ));
    }
    if header.alg != "HS256" {
        return Err(VerifyError::BadSignature);
    }
    if signature.len() != HS256_SIG_B64_LEN {
        return Err(VerifyError::Malformed(
            "the signature has the wrong length".to_owned(),
        ));
    }
    let key = header
        .kid
        .as_deref()
        .and_then(|kid| keys.find(kid))
        .ok_or(VerifyError::BadSignature)?;
    // The header is parsed once, above; jsonwebtoken checks the signature only (its `decode`
    // would parse the header twice more and the claims twice).
    let signed = &token[..token.len() - signature.len() - 1];
    match jsonwebtoken::crypto::verify(
        signature,
        signed.as_bytes(),
        &key.decoding,
        Algorithm::HS256,
    ) {
        Ok(true) => {}
        Ok(false) => return Err(VerifyError::BadSignature),
        Err(e) => {
            return Err(match e.kind() {
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                    VerifyError::BadSignature
                }
                _ => VerifyError::Malformed("undecodable".to_owned()),
            });
        }
    }
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| VerifyError::Malformed("undecodable".to_owned()))?;
    let raw: RawClaims = serde_json::from_slice(&json)
        .map_err(|e| VerifyError::Malformed(format!("unexpected claims: {e}")))?;
    let claims = parse_claims(raw)?;
    check_claims(&claims, opts)?;
    Ok(claims)
}

/// The header fields we read; other unknown fields are ignored.
#[derive(serde::Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// Present at all (even empty or null) means refused: we implement no extension.
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// `true` for any value, so that a `crit` member is noticed whatever it holds.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    <serde::de::IgnoredAny as serde::Deserialize>::deserialize(d).map(|_| true)
}

fn decode_header(part: &str) -> Result<RawHeader, VerifyError> {
    let json = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| VerifyError::Malformed("the header is not base64url".to_owned()))?;
    serde_json::from_slice(&json)
        .map_err(|_| VerifyError::Malformed("the header is not a JWT header".to_owned()))
}

pub(super) fn timestamp(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap_or(if secs < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// Checks that `sub` and `jti` are not empty, then parses the `scope` claim.
fn parse_claims(raw: RawClaims) -> Result<Claims, VerifyError> {
    if raw.sub.is_empty() || raw.jti.is_empty() {
        return Err(VerifyError::Malformed("empty `sub` or `jti`".to_owned()));
    }
    let scope = ScopeSet::parse_claim(&raw.scope)
        .map_err(|_| VerifyError::Malformed("the `scope` claim is not valid".to_owned()))?;
    Ok(Claims {
        iss: raw.iss,
        sub: raw.sub,
        jti: raw.jti,
        iat: raw.iat,
        nbf: raw.nbf,
        exp: raw.exp,
        scope,
        aud: raw.aud,
    })
}

fn check_claims(claims: &Claims, opts: &VerifyOptions<'_>) -> Result<(), VerifyError> {
    if claims.iss != opts.issuer {
        return Err(VerifyError::WrongIssuer(crate::term::escaped_head(
            &claims.iss,
            80,
        )));
    }
    if let Some(expected) = opts.audience
        && claims.aud.as_deref() != Some(expected)
    {
        return Err(VerifyError::WrongAudience);
    }
    check_times(claims, opts.now)
}

/// The part of the claims check that depends on the time: `exp`, `nbf`, and an `iat` in the
/// future, with the leeway. The rest of [`verify`]'s checks depend only on the token and the
/// options, so a caller that has already verified this exact token with the same options may
/// check just this.
pub fn check_times(claims: &Claims, now: Timestamp) -> Result<(), VerifyError> {
    let now = now.as_second();
    let leeway = LEEWAY_SECS as i64;
    if let Some(exp) = claims.exp
        && now > exp.saturating_add(leeway)
    {
        return Err(VerifyError::Expired(timestamp(exp)));
    }
    if claims.nbf > now.saturating_add(leeway) {
        return Err(VerifyError::NotYetValid(timestamp(claims.nbf)));
    }
    // A token from the future would also escape `revoke --subject`, which compares `iat`.
    if claims.iat > now.saturating_add(leeway) {
        return Err(VerifyError::NotYetValid(timestamp(claims.iat)));
    }
    Ok(())
}
