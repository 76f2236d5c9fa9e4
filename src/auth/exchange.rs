//! Workload identity (contract section 11): a CI job's OIDC ID token, checked against the
//! `[[auth.trust]]` policies, is exchanged for a short-lived tessera token (RFC 8693, once per
//! ID token) or accepted as a registry login (until it expires).
//!
//! Verification, in this order, each failure named by the first claim that did not match:
//! the token's shape and size; `iss` (exact, one policy at least must trust it); the header's
//! `alg` (RS256 or ES256 only; `none`, HMAC and anything else refused before any key is
//! looked at); the key (by `kid`, from the issuer's JWKS, see [`super::jwks`]) whose own
//! pinned algorithm must be the header's (no key confusion); the signature; `exp`, `nbf` and
//! `iat` with [`LEEWAY_SECS`] of leeway and a lifetime of at most [`MAX_LIFETIME_SECS`]; then,
//! per policy, `aud` (must contain the policy's audience) and the claim conditions. Nothing
//! here ever puts the token itself in a message or a log line.

use std::sync::Arc;

use base64::Engine;
use jiff::Timestamp;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::jwks::{JwksCache, Lookup, Source};
use super::trust::TrustPolicy;
use super::{Auth, AuthError, Expiry, IssueRequest, Method, Origin, Principal};
use crate::token::{LEEWAY_SECS, Minted};

/// The longest ID token accepted, in bytes.
pub const MAX_ID_TOKEN_LEN: usize = 16 * 1024;
/// The longest lifetime (`exp` less `nbf`, else `iat`) of an ID token accepted.
pub const MAX_LIFETIME_SECS: i64 = 3600;

/// Why an ID token does not satisfy a policy: the first claim that did not match, and a
/// sentence that says how (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The claim (`iss`, `alg`, `kid`, `signature`, `exp`, `aud`, `repository`, ...), or
    /// `token` when the token cannot be read at all.
    pub claim: String,
    /// What was wrong.
    pub reason: String,
}

impl Mismatch {
    fn new(claim: &str, reason: impl Into<String>) -> Mismatch {
        Mismatch {
            claim: claim.to_owned(),
            reason: reason.into(),
        }
    }
}

/// An ID token read (not yet verified).
#[derive(Debug, Clone)]
pub struct IdToken {
    alg: String,
    kid: Option<String>,
    claims: Map<String, Value>,
    signing_input: String,
    signature: String,
    digest: [u8; 32],
}

impl IdToken {
    /// Reads the header and claims of `raw` (a compact JWS), without checking anything else.
    pub fn parse(raw: &str) -> Result<IdToken, Mismatch> {
        let bad = |why: &str| Mismatch::new("token", format!("the ID token is malformed: {why}"));
        if raw.len() > MAX_ID_TOKEN_LEN {
            return Err(bad(&format!("it is longer than {MAX_ID_TOKEN_LEN} bytes")));
        }
        let mut parts = raw.split('.');
        let (Some(h), Some(p), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("a JWT has three parts separated by `.`"));
        };
        let json = |part: &str, what: &str| -> Result<Map<String, Value>, Mismatch> {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| bad(&format!("its {what} is not base64url")))?;
            match serde_json::from_slice(&bytes) {
                Ok(Value::Object(m)) => Ok(m),
                _ => Err(bad(&format!("its {what} is not a JSON object"))),
            }
        };
        let header = json(h, "header")?;
        let claims = json(p, "payload")?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| Mismatch::new("alg", "the ID token's header names no `alg`"))?
            .to_owned();
        Ok(IdToken {
            alg,
            kid: header.get("kid").and_then(Value::as_str).map(str::to_owned),
            claims,
            signing_input: format!("{h}.{p}"),
            signature: sig.to_owned(),
            digest: super::digest(raw.as_bytes()),
        })
    }

    fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// `iss`, when it is a string.
    pub fn iss(&self) -> Option<&str> {
        self.str_claim("iss")
    }

    /// `sub`, when it is a string.
    pub fn sub(&self) -> Option<&str> {
        self.str_claim("sub")
    }

    /// `jti`, when it is a string.
    pub fn jti(&self) -> Option<&str> {
        self.str_claim("jti")
    }

    /// `exp`, when it is a number.
    pub fn exp(&self) -> Option<i64> {
        self.claims.get("exp").and_then(Value::as_i64)
    }

    /// The claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The id under which the token is remembered as exchanged: SHA-256 of the issuer and
    /// the `jti`, or of the whole token when it has no `jti` (hex).
    pub fn once_id(&self) -> String {
        match self.jti() {
            Some(jti) => {
                let mut s = self.iss().unwrap_or_default().as_bytes().to_vec();
                s.push(0);
                s.extend_from_slice(jti.as_bytes());
                hex::encode(super::digest(&s))
            }
            None => hex::encode(self.digest),
        }
    }
}

/// A value for a message: control characters escaped, cut at 80 characters.
fn shown(v: &str) -> String {
    crate::term::escaped_head(v, 80)
}

/// A claim's value as text (strings as they are, numbers and booleans as JSON).
fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What the policies say of one ID token.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The token, when it could be read.
    pub token: Option<IdToken>,
    /// For each policy, in config order: `Ok` or the first mismatch.
    pub results: Vec<(String, Result<(), Mismatch>)>,
    /// The index of the first policy that accepts the token.
    pub accepted: Option<usize>,
}

impl Verdict {
    /// The first mismatch to report: the token's own, else that of the first policy of the
    /// token's issuer, else the `iss` one.
    pub fn first_mismatch(&self) -> Option<&Mismatch> {
        if self.accepted.is_some() {
            return None;
        }
        let iss = self.token.as_ref().and_then(IdToken::iss);
        self.results
            .iter()
            .filter_map(|(_, r)| r.as_ref().err())
            .find(|m| m.claim != "iss" || iss.is_none())
            .or_else(|| self.results.iter().find_map(|(_, r)| r.as_ref().err()))
    }

    /// The names of the policies that were tried: those of the token's issuer, else all.
    pub fn tried(&self) -> Vec<&str> {
        let of_issuer: Vec<&str> = self
            .results
            .iter()
            .filter(|(_, r)| r.as_ref().err().is_none_or(|m| m.claim != "iss"))
            .map(|(n, _)| n.as_str())
            .collect();
        if of_issuer.is_empty() {
            self.results.iter().map(|(n, _)| n.as_str()).collect()
        } else {
            of_issuer
        }
    }

    /// The sentence a refused caller gets: the first claim that did not match, per policy
    /// tried.
    pub fn refusal(&self) -> String {
        let Some(first) = self.first_mismatch() else {
            return "the ID token was accepted".to_owned();
        };
        if first.claim == "token" || first.claim == "iss" {
            return format!("claim `{}`: {}", first.claim, first.reason);
        }
        let per: Vec<String> = self
            .results
            .iter()
            .filter_map(|(n, r)| r.as_ref().err().map(|m| (n, m)))
            .filter(|(_, m)| m.claim != "iss")
            .map(|(n, m)| format!("policy `{n}`: claim `{}`: {}", m.claim, m.reason))
            .collect();
        format!(
            "no [[auth.trust]] policy accepts the ID token ({})",
            per.join("; ")
        )
    }
}

/// The trust policies and the keys of their issuers: what a server (or `auth trust test`)
/// holds to judge ID tokens.
#[derive(Debug)]
pub struct Workloads {
    policies: Vec<TrustPolicy>,
    jwks: JwksCache,
}

impl Workloads {
    /// The policies and a key cache for their issuers; `None` without policies. A pinned
    /// `jwks_file` is read here (an error names the file and the policy), so that a server
    /// does not start with a key file it cannot use.
    pub fn new(policies: Vec<TrustPolicy>) -> Result<Option<Workloads>, String> {
        if policies.is_empty() {
            return Ok(None);
        }
        let mut sources: Vec<(String, Source)> = Vec::new();
        for p in &policies {
            let source = match &p.jwks_file {
                Some(f) => {
                    let bytes = super::jwks::read_bounded(f)
                        .map_err(|e| format!("[[auth.trust]] `{}`: {e}", p.name))?;
                    super::jwks::parse_jwks(&bytes).map_err(|e| {
                        format!(
                            "[[auth.trust]] `{}`: the JWKS file {}: {e}",
                            p.name,
                            f.display()
                        )
                    })?;
                    Source::File(f.clone())
                }
                None => Source::Discovery(p.issuer.clone()),
            };
            if let Some((_, other)) = sources.iter().find(|(i, _)| *i == p.issuer) {
                if *other != source {
                    return Err(format!(
                        "[[auth.trust]] `{}`: another policy takes the keys of {} from {other}; give every policy of one issuer the same `jwks_file` (or none)",
                        p.name, p.issuer
                    ));
                }
                continue;
            }
            sources.push((p.issuer.clone(), source));
        }
        Ok(Some(Workloads {
            policies,
            jwks: JwksCache::new(sources)?,
        }))
    }

    /// The policies, in config order.
    pub fn policies(&self) -> &[TrustPolicy] {
        &self.policies
    }

    /// The key cache.
    pub fn jwks(&self) -> &JwksCache {
        &self.jwks
    }

    /// Whether `raw` looks like an ID token of an issuer other than `own_issuer` (read
    /// without verification, only to route a registry login).
    pub fn is_foreign_token(raw: &str, own_issuer: &str) -> bool {
        IdToken::parse(raw)
            .ok()
            .is_some_and(|t| t.iss().is_some_and(|i| i != own_issuer))
    }

    /// Judges `raw` against every policy at `now`.
    pub async fn judge(&self, raw: &str, now: Timestamp) -> Verdict {
        let token = match IdToken::parse(raw) {
            Ok(t) => t,
            Err(m) => {
                return Verdict {
                    token: None,
                    results: self
                        .policies
                        .iter()
                        .map(|p| (p.name.clone(), Err(m.clone())))
                        .collect(),
                    accepted: None,
                };
            }
        };
        let mut issuer_checked: Option<Result<(), Mismatch>> = None;
        let mut results = Vec::with_capacity(self.policies.len());
        let mut accepted = None;
        for (i, p) in self.policies.iter().enumerate() {
            let r = match token.iss() {
                None => Err(Mismatch::new("iss", "the ID token has no `iss` claim")),
                Some(iss) if iss != p.issuer => Err(Mismatch::new(
                    "iss",
                    format!(
                        "no [[auth.trust]] policy trusts the issuer `{}`",
                        shown(iss)
                    ),
                )),
                Some(_) => {
                    // Every policy of one issuer shares the issuer's checks (one key set).
                    if issuer_checked.is_none() {
                        issuer_checked = Some(self.check_issuer(&token, p, now).await);
                    }
                    match issuer_checked.clone().unwrap_or(Ok(())) {
                        Err(m) => Err(m),
                        Ok(()) => check_policy(&token, p),
                    }
                }
            };
            if r.is_ok() && accepted.is_none() {
                accepted = Some(i);
            }
            results.push((p.name.clone(), r));
        }
        Verdict {
            token: Some(token),
            results,
            accepted,
        }
    }

    /// Algorithm, key, signature and times: what depends on the issuer alone.
    async fn check_issuer(
        &self,
        token: &IdToken,
        p: &TrustPolicy,
        now: Timestamp,
    ) -> Result<(), Mismatch> {
        let alg = match token.alg.as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            "none" | "None" | "NONE" => {
                return Err(Mismatch::new(
                    "alg",
                    "`none` (an unsigned token) is never accepted; ID tokens must be signed RS256 or ES256",
                ));
            }
            other => {
                return Err(Mismatch::new(
                    "alg",
                    format!(
                        "`{}` is not accepted; ID tokens must be signed RS256 or ES256 with a key from the issuer's JWKS",
                        shown(other)
                    ),
                ));
            }
        };
        let keys = match self.jwks.keys_for(&p.issuer, token.kid.as_deref()).await {
            Lookup::Keys(k) => k,
            Lookup::Unavailable(why) => {
                return Err(Mismatch::new(
                    "kid",
                    format!("the keys of {} cannot be had: {why}", p.issuer),
                ));
            }
        };
        let candidates: Vec<&super::jwks::Key> = match &token.kid {
            Some(kid) => match keys.by_kid(kid) {
                Some(k) => vec![k],
                None => {
                    return Err(Mismatch::new(
                        "kid",
                        format!(
                            "the issuer's JWKS has no key `{}` (keys are refetched on an unknown kid at most once a minute)",
                            shown(kid)
                        ),
                    ));
                }
            },
            None => keys.keys.iter().filter(|k| k.alg == alg).collect(),
        };
        if let Some(k) = candidates.first()
            && k.alg != alg
        {
            return Err(Mismatch::new(
                "alg",
                format!(
                    "the token says {} but the issuer's key `{}` is for {:?}; refusing to mix algorithms",
                    token.alg,
                    shown(k.kid.as_deref().unwrap_or("?")),
                    k.alg
                ),
            ));
        }
        let verified = candidates.iter().any(|k| {
            jsonwebtoken::crypto::verify(
                &token.signature,
                token.signing_input.as_bytes(),
                &k.key,
                alg,
            )
            .unwrap_or(false)
        });
        if !verified {
            return Err(Mismatch::new(
                "signature",
                "the signature does not verify with the issuer's key",
            ));
        }
        check_times(token, now)
    }
}

/// `exp` (required), `nbf`, `iat` (required) with leeway, and the lifetime.
fn check_times(token: &IdToken, now: Timestamp) -> Result<(), Mismatch> {
    let leeway = i64::try_from(LEEWAY_SECS).unwrap_or(60);
    let now = now.as_second();
    let num = |name: &str| -> Result<Option<i64>, Mismatch> {
        match token.claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_f64().map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| Mismatch::new(name, "is not a number of seconds")),
        }
    };
    let at = |s: i64| {
        Timestamp::from_second(s)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| s.to_string())
    };
    let exp = num("exp")?.ok_or_else(|| Mismatch::new("exp", "the ID token has no `exp`"))?;
    if exp + leeway < now {
        return Err(Mismatch::new(
            "exp",
            format!("the ID token expired at {}", at(exp)),
        ));
    }
    let nbf = num("nbf")?;
    if let Some(nbf) = nbf
        && nbf > now + leeway
    {
        return Err(Mismatch::new(
            "nbf",
            format!("the ID token is not valid before {}", at(nbf)),
        ));
    }
    let iat = num("iat")?.ok_or_else(|| Mismatch::new("iat", "the ID token has no `iat`"))?;
    if iat > now + leeway {
        return Err(Mismatch::new(
            "iat",
            format!(
                "the ID token claims to be issued in the future ({})",
                at(iat)
            ),
        ));
    }
    let start = nbf.map_or(iat, |n| n.min(iat));
    if exp - start > MAX_LIFETIME_SECS {
        return Err(Mismatch::new(
            "exp",
            format!(
                "the ID token lives {} s, more than the {MAX_LIFETIME_SECS} s accepted; CI ID tokens live minutes",
                exp - start
            ),
        ));
    }
    Ok(())
}

/// `aud` and the claim conditions of one policy.
fn check_policy(token: &IdToken, p: &TrustPolicy) -> Result<(), Mismatch> {
    let aud_ok = match token.claims.get("aud") {
        Some(Value::String(a)) => *a == p.audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(&p.audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(Mismatch::new(
            "aud",
            format!(
                "does not contain `{}`; ask the CI platform for an ID token with that audience",
                shown(&p.audience)
            ),
        ));
    }
    for c in &p.claims {
        let actual = match token.claims.get(&c.name) {
            None => {
                return Err(Mismatch::new(
                    &c.name,
                    format!("is missing; the policy wants `{}`", shown(&c.value)),
                ));
            }
            Some(v) => claim_text(v),
        };
        match actual {
            Some(a) if c.matches(&a) => {}
            Some(a) => {
                return Err(Mismatch::new(
                    &c.name,
                    format!("is `{}`; the policy wants `{}`", shown(&a), shown(&c.value)),
                ));
            }
            None => {
                return Err(Mismatch::new(&c.name, "is not a string, number or boolean"));
            }
        }
    }
    Ok(())
}

/// Writes the one log line of a refused ID token: where, the policies tried, the first
/// mismatched claim and why, and `iss`, `sub` and `jti` of the token (never the token).
fn log_refusal(entry: &str, verdict: &Verdict) {
    let t = verdict.token.as_ref();
    let m = verdict.first_mismatch();
    tracing::warn!(
        target: "tessera::exchange",
        entry = %entry,
        policies = ?verdict.tried(),
        claim = %m.map_or("-", |m| m.claim.as_str()),
        reason = %m.map_or("", |m| m.reason.as_str()),
        iss = ?t.and_then(IdToken::iss).map(shown),
        sub = ?t.and_then(IdToken::sub).map(shown),
        jti = ?t.and_then(IdToken::jti).map(shown),
        "refused an OIDC ID token"
    );
}

/// A token issued for an ID token.
pub struct Exchanged {
    /// The tessera token.
    pub minted: Minted,
    /// The policy that accepted the ID token.
    pub policy: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl Auth {
    /// Exchanges an ID token for a tessera token (`POST /auth/exchange`): judged by the
    /// policies, remembered as exchanged in the store until it expires (a second exchange of
    /// the same ID token is refused, atomically across every process sharing the store), then
    /// issued through [`Auth::issue`] with the policy's subject, scopes and expiry.
    pub async fn exchange(&self, workloads: &Workloads, raw: &str) -> Result<Exchanged, AuthError> {
        let now = Timestamp::now();
        let verdict = workloads.judge(raw, now).await;
        let (Some(i), Some(token)) = (verdict.accepted, verdict.token.as_ref()) else {
            log_refusal("exchange", &verdict);
            return Err(AuthError::Invalid(verdict.refusal()));
        };
        let policy = &workloads.policies()[i];
        // What would refuse the issue is checked before the ID token is used up.
        super::issue::check_cap(self.settings().max_token_expiry, policy.expiry, now)?;
        let id = token.once_id();
        let leeway = i64::try_from(LEEWAY_SECS).unwrap_or(60);
        let keep_until = Timestamp::from_second(token.exp().unwrap_or(0).saturating_add(leeway))
            .unwrap_or(Timestamp::MAX);
        let first = self
            .with_store(move |s| s.mark_id_token_exchanged(&id, keep_until, now))
            .await?;
        if !first {
            let replay = Verdict {
                results: vec![(
                    policy.name.clone(),
                    Err(Mismatch::new(
                        "jti",
                        "this ID token was already exchanged; an ID token is exchanged once: ask the CI platform for a new one",
                    )),
                )],
                accepted: None,
                token: verdict.token.clone(),
            };
            log_refusal("exchange", &replay);
            return Err(AuthError::Invalid(replay.refusal()));
        }
        let minted = self
            .issue(IssueRequest {
                subject: &policy.subject,
                scopes: &policy.scopes,
                audience: None,
                origin: Origin::Granted {
                    expiry: Expiry::Asked(policy.expiry),
                    single_use: false,
                },
                now,
            })
            .await?;
        let expires_in = minted
            .claims
            .exp
            .map_or(0, |e| u64::try_from(e - now.as_second()).unwrap_or(0));
        tracing::info!(
            target: "tessera::audit",
            policy = %policy.name,
            subject = %policy.subject,
            jti = %minted.claims.jti,
            id_token_sub = ?token.sub().map(shown),
            "exchanged an OIDC ID token"
        );
        Ok(Exchanged {
            minted,
            policy: policy.name.clone(),
            expires_in,
        })
    }

    /// An ID token as the password of a registry login: judged by the policies, usable any
    /// number of times until it expires; the caller is the policy's subject with its scopes.
    pub async fn workload_login(
        &self,
        workloads: &Workloads,
        raw: &str,
    ) -> Result<Principal, AuthError> {
        let verdict = workloads.judge(raw, Timestamp::now()).await;
        let Some(i) = verdict.accepted else {
            log_refusal("registry", &verdict);
            return Err(AuthError::Invalid(verdict.refusal()));
        };
        let policy = &workloads.policies()[i];
        Ok(Principal {
            subject: policy.subject.clone(),
            scopes: policy.scopes.clone(),
            method: Method::Workload,
            token: None,
            key: None,
        })
    }
}

/// Shared handle on [`Workloads`].
pub type SharedWorkloads = Arc<Workloads>;

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: Value) -> IdToken {
        let b = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        IdToken::parse(&format!(
            "{}.{}.sig",
            b(&serde_json::json!({"alg": "RS256", "kid": "k"})),
            b(&claims)
        ))
        .unwrap()
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn times_are_checked_with_leeway_and_a_one_hour_lifetime() {
        let now = 1_800_000_000;
        let t = |iat: i64, nbf: Option<i64>, exp: i64| {
            let mut c = serde_json::json!({"iat": iat, "exp": exp});
            if let Some(n) = nbf {
                c["nbf"] = n.into();
            }
            check_times(&token(c), at(now)).map_err(|m| m.claim)
        };
        assert_eq!(t(now, None, now + 300), Ok(()));
        assert_eq!(t(now - 400, None, now - 59), Ok(()), "within the leeway");
        assert_eq!(t(now - 400, None, now - 61), Err("exp".into()));
        assert_eq!(t(now, Some(now + 59), now + 300), Ok(()));
        assert_eq!(t(now, Some(now + 61), now + 300), Err("nbf".into()));
        assert_eq!(t(now + 61, None, now + 300), Err("iat".into()));
        assert_eq!(t(now, None, now + 3600), Ok(()));
        assert_eq!(t(now, None, now + 3601), Err("exp".into()));
        assert_eq!(
            t(now, Some(now - 600), now + 3300),
            Err("exp".into()),
            "nbf counts"
        );
        let no_exp = check_times(&token(serde_json::json!({"iat": now})), at(now));
        assert_eq!(no_exp.unwrap_err().claim, "exp");
        let no_iat = check_times(&token(serde_json::json!({"exp": now + 10})), at(now));
        assert_eq!(no_iat.unwrap_err().claim, "iat");
    }

    #[test]
    fn malformed_and_oversized_tokens_are_refused_as_such() {
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.x", "e30.!!.x", "W10.e30.x"] {
            assert_eq!(IdToken::parse(bad).unwrap_err().claim, "token", "{bad}");
        }
        assert_eq!(IdToken::parse("e30.e30.x").unwrap_err().claim, "alg");
        let big = format!("e30.{}.x", "A".repeat(MAX_ID_TOKEN_LEN));
        let e = IdToken::parse(&big).unwrap_err();
        assert!(e.reason.contains("longer than"), "{e:?}");
    }

    #[test]
    fn the_once_id_binds_the_issuer_and_falls_back_to_the_whole_token() {
        let a = token(serde_json::json!({"iss": "https://a", "jti": "1"}));
        let b = token(serde_json::json!({"iss": "https://b", "jti": "1"}));
        assert_ne!(a.once_id(), b.once_id());
        let x = token(serde_json::json!({"iss": "https://a", "n": 1}));
        let y = token(serde_json::json!({"iss": "https://a", "n": 2}));
        assert_ne!(x.once_id(), y.once_id());
        assert_eq!(x.once_id().len(), 64);
    }
}
