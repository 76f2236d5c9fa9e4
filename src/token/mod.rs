//! Tessera tokens: HS256 JWTs with a pinned algorithm, `kid` naming the secret, and scopes.
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

pub mod scope;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, errors::ErrorKind};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

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
///
/// The secret lives only inside the jsonwebtoken keys, which zeroize it on drop; they are built
/// once here so that verification does not rebuild them per call.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// Domain separation for the key id, so it is never the hash of the bare secret.
const KID_DOMAIN: &[u8] = b"tessera token kid v1\0";
/// Longest subject accepted, in bytes.
pub const MAX_SUBJECT_LEN: usize = 256;
/// Bytes of randomness in a `jti`.
const JTI_BYTES: usize = 16;
/// Length of an HS256 signature in base64url without padding.
const HS256_SIG_B64_LEN: usize = 43;

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
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < MIN_SECRET_LEN {
            return Err(KeyError::TooShort {
                origin: origin.to_owned(),
                len: bytes.len(),
            });
        }
        let digest = Sha256::new()
            .chain_update(KID_DOMAIN)
            .chain_update(bytes)
            .finalize();
        let mut kid = hex::encode(digest);
        kid.truncate(16);
        Ok(SigningKey {
            kid,
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
        })
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

impl KeyRing {
    /// A ring with only `current`.
    pub fn single(current: SigningKey) -> Self {
        KeyRing {
            current,
            previous: Vec::new(),
        }
    }

    /// The key whose id is `kid`, current first.
    fn find(&self, kid: &str) -> Option<&SigningKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.kid == kid)
    }
}

/// Claims of a tessera token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    /// Absent means never; `null` (or anything but an integer) is refused, not "never".
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    pub exp: Option<i64>,
    pub scope: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    pub aud: Option<String>,
}

/// An optional claim that, when present, must hold a value of its type (never `null`).
fn not_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
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
        scope: req.scopes.to_string(),
        aud: req.audience.map(str::to_owned),
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(keys.current.kid.clone());
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
    let shown: String = subject
        .chars()
        .take(40)
        .flat_map(char::escape_debug)
        .collect();
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
    let claims: Claims = serde_json::from_slice(&json)
        .map_err(|e| VerifyError::Malformed(format!("unexpected claims: {e}")))?;
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

fn timestamp(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap_or(if secs < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

fn check_claims(claims: &Claims, opts: &VerifyOptions<'_>) -> Result<(), VerifyError> {
    if claims.sub.is_empty() || claims.jti.is_empty() {
        return Err(VerifyError::Malformed("empty `sub` or `jti`".to_owned()));
    }
    if ScopeSet::parse_claim(&claims.scope).is_err() {
        return Err(VerifyError::Malformed(
            "the `scope` claim is not valid".to_owned(),
        ));
    }
    if claims.iss != opts.issuer {
        let shown: String = claims
            .iss
            .chars()
            .take(80)
            .flat_map(char::escape_debug)
            .collect();
        return Err(VerifyError::WrongIssuer(shown));
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
pub(crate) fn check_times(claims: &Claims, now: Timestamp) -> Result<(), VerifyError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-current";
    const OLD: &str = "0123456789abcdef0123456789abcdef-previous";

    fn key(secret: &str) -> SigningKey {
        SigningKey::new(&SecretString::from(secret.to_owned()), "").unwrap()
    }

    fn ring() -> KeyRing {
        KeyRing::single(key(SECRET))
    }

    fn now() -> Timestamp {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    fn at(offset_secs: i64) -> Timestamp {
        now() + jiff::SignedDuration::from_secs(offset_secs)
    }

    fn scopes() -> ScopeSet {
        ScopeSet::parse_list("push,pull", "team/*").unwrap()
    }

    fn mint_with(keys: &KeyRing, expiry: &str, audience: Option<&str>) -> Minted {
        let scopes = scopes();
        let req = MintRequest {
            issuer: "tessera",
            subject: "ci",
            scopes: &scopes,
            expiry: HumanDuration::parse(expiry).unwrap(),
            audience,
            now: now(),
        };
        mint(keys, &req).unwrap()
    }

    fn opts(now: Timestamp) -> VerifyOptions<'static> {
        VerifyOptions {
            issuer: "tessera",
            audience: None,
            now,
        }
    }

    fn b64json(v: serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
    }

    fn parts(token: &str) -> Vec<String> {
        token.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn short_secrets_are_refused_and_kid_reveals_nothing() {
        let err = SigningKey::new(&SecretString::from("x".repeat(31)), " from TEST").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("31 bytes") && msg.contains(" from TEST"),
            "{msg}"
        );
        assert!(!msg.contains("xxxx"));
        let k = key(SECRET);
        assert_eq!(k.kid().len(), 16);
        assert_eq!(k.kid(), key(SECRET).kid(), "same secret, same kid");
        assert_ne!(k.kid(), key(OLD).kid());
        let plain = hex::encode(Sha256::digest(SECRET.as_bytes()));
        assert!(!plain.starts_with(k.kid()), "kid is domain-separated");
        let debug = format!("{:?}", ring());
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
        assert!(debug.contains(k.kid()));
    }

    #[test]
    fn mint_then_verify() {
        let keys = ring();
        let m = mint_with(&keys, "30d", None);
        let token = m.token.expose_secret();
        let p = parts(token);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&p[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "HS256");
        assert_eq!(header["kid"], keys.current.kid());
        let body: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&p[1]).unwrap()).unwrap();
        assert_eq!(
            body["scope"],
            "repository:team/*:pull repository:team/*:push"
        );
        assert!(body.get("aud").is_none());
        assert_eq!(m.claims.jti.len(), 32);
        assert_eq!(m.claims.iat, now().as_second());
        assert_eq!(m.claims.nbf, now().as_second());
        assert_eq!(m.claims.exp, Some(now().as_second() + 30 * 86_400));

        let claims = verify(&keys, token, &opts(now())).unwrap();
        assert_eq!(claims, m.claims);
        assert_ne!(mint_with(&keys, "30d", None).claims.jti, m.claims.jti);
    }

    #[test]
    fn never_expiring_tokens_have_no_exp_and_verify_forever() {
        let keys = ring();
        let m = mint_with(&keys, "0", None);
        assert_eq!(m.claims.exp, None);
        let body = parts(m.token.expose_secret())[1].clone();
        let body: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
        assert!(body.get("exp").is_none());
        let far: Timestamp = "9999-01-01T00:00:00Z".parse().unwrap();
        assert!(verify(&keys, m.token.expose_secret(), &opts(far)).is_ok());
    }

    #[test]
    fn expiry_and_not_before_use_the_given_clock_with_leeway() {
        let keys = ring();
        let m = mint_with(&keys, "1h", None);
        let t = m.token.expose_secret();
        assert!(verify(&keys, t, &opts(at(3600 + 60))).is_ok());
        assert_eq!(
            verify(&keys, t, &opts(at(3600 + 61))),
            Err(VerifyError::Expired(at(3600)))
        );
        assert!(verify(&keys, t, &opts(at(-60))).is_ok());
        let err = verify(&keys, t, &opts(at(-61))).unwrap_err();
        assert_eq!(err, VerifyError::NotYetValid(now()));
        assert_eq!(err.reason(), "not yet valid");
    }

    #[test]
    fn issuer_and_audience() {
        let keys = ring();
        let plain = mint_with(&keys, "1h", None);
        let with_aud = mint_with(&keys, "1h", Some("registry"));
        let wrong_iss = VerifyOptions {
            issuer: "other",
            ..opts(now())
        };
        assert_eq!(
            verify(&keys, plain.token.expose_secret(), &wrong_iss),
            Err(VerifyError::WrongIssuer("tessera".to_owned()))
        );
        // No audience configured: a token carrying one is still accepted.
        assert!(verify(&keys, with_aud.token.expose_secret(), &opts(now())).is_ok());
        let want = |aud| VerifyOptions {
            audience: Some(aud),
            ..opts(now())
        };
        assert!(verify(&keys, with_aud.token.expose_secret(), &want("registry")).is_ok());
        assert_eq!(
            verify(&keys, with_aud.token.expose_secret(), &want("other")),
            Err(VerifyError::WrongAudience)
        );
        assert_eq!(
            verify(&keys, plain.token.expose_secret(), &want("registry")),
            Err(VerifyError::WrongAudience)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let keys = ring();
        let good = mint_with(&keys, "1h", None);
        let good = good.token.expose_secret();
        let p = parts(good);
        let non_json = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("not json"), p[1], p[2]);
        let payload_not_json = {
            // Correctly signed, but the payload is not our claims.
            let header = &p[0];
            let body = URL_SAFE_NO_PAD.encode("[1,2]");
            let sig = jsonwebtoken::crypto::sign(
                format!("{header}.{body}").as_bytes(),
                &keys.current.encoding,
                Algorithm::HS256,
            )
            .unwrap();
            format!("{header}.{body}.{sig}")
        };
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        for bad in [
            "",
            "garbage",
            "a.b",
            "a.b.c.d",
            "...",
            "!!.??.**",
            &huge,
            &good[..good.len() - 1],
            &good[..good.len() - 10],
            &good[..good.rfind('.').unwrap()],
            &good[..20],
            &format!("{good}x"),
            &format!("{good}.x"),
            &non_json,
            &payload_not_json,
        ] {
            let err = verify(&keys, bad, &opts(now())).unwrap_err();
            assert!(
                matches!(err, VerifyError::Malformed(_)),
                "{bad:.40}: {err:?}"
            );
            assert_eq!(err.reason(), "malformed");
        }
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        // A real token padded past the limit would verify if it were parsed at all.
        let keys = ring();
        let m = mint_with(&keys, "1h", None);
        let padded = format!("{}{}", m.token.expose_secret(), " ".repeat(MAX_TOKEN_LEN));
        assert_eq!(
            verify(&keys, &padded, &opts(now())),
            Err(VerifyError::Malformed(format!(
                "longer than {MAX_TOKEN_LEN} bytes"
            )))
        );
    }

    #[test]
    fn tampering_is_a_bad_signature() {
        let keys = ring();
        let m = mint_with(&keys, "1h", None);
        let p = parts(m.token.expose_secret());
        let mut body: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&p[1]).unwrap()).unwrap();
        body["scope"] = "admin".into();
        let tampered_body = format!("{}.{}.{}", p[0], b64json(body), p[2]);
        let tampered_header = format!(
            "{}.{}.{}",
            b64json(
                serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": keys.current.kid(), "x": 1})
            ),
            p[1],
            p[2]
        );
        let mut sig = p[2].clone().into_bytes();
        sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
        let tampered_sig = format!("{}.{}.{}", p[0], p[1], String::from_utf8(sig).unwrap());
        for bad in [tampered_body, tampered_header, tampered_sig] {
            assert_eq!(
                verify(&keys, &bad, &opts(now())),
                Err(VerifyError::BadSignature)
            );
        }
    }

    #[test]
    fn other_algorithms_and_unknown_keys_are_bad_signatures() {
        let keys = ring();
        let m = mint_with(&keys, "1h", None);
        let p = parts(m.token.expose_secret());
        let kid = keys.current.kid().to_owned();
        let none = format!(
            "{}.{}.",
            b64json(serde_json::json!({"alg": "none", "kid": kid})),
            p[1]
        );
        let mut forged = vec![none];
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let mut h = Header::new(alg);
            h.kid = Some(kid.clone());
            forged.push(jsonwebtoken::encode(&h, &m.claims, &keys.current.encoding).unwrap());
        }
        forged.push(format!(
            "{}.{}.{}",
            b64json(serde_json::json!({"alg": "RS256", "kid": kid})),
            p[1],
            p[2]
        ));
        // Signed by a key the ring does not hold, and a token without kid.
        forged.push(
            mint_with(&KeyRing::single(key(OLD)), "1h", None)
                .token
                .expose_secret()
                .to_owned(),
        );
        let mut h = Header::new(Algorithm::HS256);
        h.kid = None;
        forged.push(jsonwebtoken::encode(&h, &m.claims, &keys.current.encoding).unwrap());
        for bad in forged {
            assert_eq!(
                verify(&keys, &bad, &opts(now())),
                Err(VerifyError::BadSignature),
                "{bad}"
            );
        }
    }

    #[test]
    fn rotation_accepts_previous_keys_by_kid() {
        let old_ring = KeyRing::single(key(OLD));
        let old_token = mint_with(&old_ring, "1h", None);
        let rotated = KeyRing {
            current: key(SECRET),
            previous: vec![key(OLD)],
        };
        let claims = verify(&rotated, old_token.token.expose_secret(), &opts(now())).unwrap();
        assert_eq!(claims.jti, old_token.claims.jti);
        let new_token = mint_with(&rotated, "1h", None);
        assert!(verify(&rotated, new_token.token.expose_secret(), &opts(now())).is_ok());
        // Dropped from the ring: refused.
        assert_eq!(
            verify(&ring(), old_token.token.expose_secret(), &opts(now())),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn subjects_are_checked() {
        let keys = ring();
        let scopes = scopes();
        let long = "s".repeat(MAX_SUBJECT_LEN + 1);
        for bad in ["", "ci\n", "a\u{7}b", " ci", "ci ", long.as_str()] {
            let req = MintRequest {
                issuer: "tessera",
                subject: bad,
                scopes: &scopes,
                expiry: HumanDuration::parse("1h").unwrap(),
                audience: None,
                now: now(),
            };
            assert!(
                matches!(mint(&keys, &req), Err(MintError::Subject(_))),
                "{bad:?}"
            );
        }
        let ok = "s".repeat(MAX_SUBJECT_LEN);
        for good in ["ci", "deploy bot", "équipe/ci", ok.as_str()] {
            let req = MintRequest {
                issuer: "tessera",
                subject: good,
                scopes: &scopes,
                expiry: HumanDuration::parse("1h").unwrap(),
                audience: None,
                now: now(),
            };
            assert!(mint(&keys, &req).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn overflowing_expiry_is_an_error_not_never() {
        let keys = ring();
        let scopes = scopes();
        let req = MintRequest {
            issuer: "tessera",
            subject: "ci",
            scopes: &scopes,
            expiry: HumanDuration::parse("9000y").unwrap(),
            audience: None,
            now: now(),
        };
        assert!(matches!(mint(&keys, &req), Err(MintError::Duration(_))));
    }

    #[test]
    fn keys_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SigningKey>();
        assert_send_sync::<KeyRing>();
    }

    proptest::proptest! {
        #[test]
        fn verify_never_panics(s in "\\PC{0,300}") {
            let _ = verify(&ring(), &s, &opts(now()));
        }

        #[test]
        fn verify_never_panics_on_token_like_input(
            h in "[A-Za-z0-9_-]{0,60}", p in "[A-Za-z0-9_-]{0,200}", sig in "[A-Za-z0-9_-]{0,50}"
        ) {
            let keys = ring();
            let _ = verify(&keys, &format!("{h}.{p}.{sig}"), &opts(now()));
            // A real header and signature with random payloads.
            let good = mint_with(&keys, "1h", None);
            let parts = parts(good.token.expose_secret());
            let r = verify(&keys, &format!("{}.{p}.{}", parts[0], parts[2]), &opts(now()));
            proptest::prop_assert!(r.is_err() || p == parts[1]);
        }
    }

    #[test]
    fn a_derived_expiry_is_cut_to_the_parent_and_the_cap() {
        let never = HumanDuration::parse("0").unwrap();
        let hour = HumanDuration::parse("1h").unwrap();
        let parent_exp = at(600).as_second();
        // No cap, no parent: no limit.
        assert_eq!(latest_expiry(now(), never, None).unwrap(), None);
        // A parent that never expires still leaves the cap.
        assert_eq!(latest_expiry(now(), hour, None).unwrap(), Some(at(3600)));
        assert_eq!(
            latest_expiry(now(), hour, Some(parent_exp)).unwrap(),
            Some(at(600))
        );
        assert_eq!(
            latest_expiry(now(), never, Some(at(7200).as_second())).unwrap(),
            Some(at(7200))
        );
        let scopes = scopes();
        let req = MintRequest {
            issuer: "tessera",
            subject: "ci",
            scopes: &scopes,
            expiry: HumanDuration::parse("30d").unwrap(),
            audience: None,
            now: now() + jiff::SignedDuration::from_millis(750),
        };
        let m = mint_until(&ring(), &req, Some(at(600))).unwrap();
        assert_eq!(m.claims.exp, Some(parent_exp));
        assert_eq!(m.claims.iat, now().as_second(), "iat keeps the second");
        let m = mint_until(&ring(), &req, Some(at(90 * 86400))).unwrap();
        assert_eq!(m.claims.exp, Some(at(30 * 86400).as_second()));
        // A token that never expires, cut: it gets the cut.
        let req = MintRequest {
            expiry: never,
            ..req
        };
        assert_eq!(mint_until(&ring(), &req, None).unwrap().claims.exp, None);
        assert_eq!(
            mint_until(&ring(), &req, Some(at(60))).unwrap().claims.exp,
            Some(at(60).as_second())
        );
    }
}
