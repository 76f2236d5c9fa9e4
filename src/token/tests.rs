use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use jsonwebtoken::{Algorithm, Header};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::*;
use crate::duration::HumanDuration;
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
