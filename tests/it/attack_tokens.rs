//! Token attacks (RFC 8725, OWASP JWT cheat sheet), each built by hand and presented to the
//! two places that accept tessera tokens: the tessera API (`GET /auth/verify`, Bearer) and the
//! registry token endpoint (`GET /token`, Basic with the token as password, and `POST /token`
//! with `grant_type=refresh_token`). A hand-built control token signed the right way is
//! accepted first, so every refusal below is the attack's doing, not a broken builder.

use crate::support::Run;
use crate::support::argv;
use crate::support::http::{Served, basic, refresh, status_and_json};
use crate::support::{Home, SECRET, SERVICE};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Validation};
use serde_json::{Value, json};

struct Fixture {
    served: Served,
    /// The `kid` the server's current key has (read from a CLI-minted token).
    kid: String,
}

impl std::ops::Deref for Fixture {
    type Target = Served;
    fn deref(&self) -> &Served {
        &self.served
    }
}

impl Fixture {
    fn new() -> Fixture {
        let home = Home::new();
        // Tokens that do not look like JWTs are password attempts at /token; no rate limit
        // here, so every answer below is about the token.
        home.append_config("\n[server]\nlogin_attempts_per_minute = 0\n");
        let minted = home.token(&["--subject", "ci", "--scopes", "pull"]);
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(minted.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        let kid = header["kid"].as_str().unwrap().to_owned();
        Fixture {
            served: Served::start(home),
            kid,
        }
    }

    /// `GET /auth/verify` with the token: (status, code, error sentence).
    fn api(&self, token: &str) -> (u16, String, String) {
        let r = self
            .http
            .get(self.url("/auth/verify"))
            .header("Authorization", format!("Bearer {token}"))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().unwrap();
        (
            status,
            body["code"].as_str().unwrap_or("OK").to_owned(),
            body["error"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// `GET /token` with Basic `user:token` asking for pull on `team/app`: (status, code).
    fn registry(&self, user: &str, token: &str) -> (u16, String) {
        let r = self
            .http
            .get(self.url(&format!(
                "/token?service={SERVICE}&scope=repository:team/app:pull"
            )))
            .header("Authorization", basic(user, token))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().unwrap();
        (status, body["code"].as_str().unwrap_or("OK").to_owned())
    }

    /// `POST /token` with `grant_type=refresh_token`: (status, code).
    fn refresh(&self, token: &str) -> (u16, String) {
        let r = self.post_token(&[
            ("grant_type", "refresh_token"),
            ("service", SERVICE),
            ("refresh_token", token),
        ]);
        let status = r.status().as_u16();
        let body: Value = r.json().unwrap();
        (status, body["code"].as_str().unwrap_or("OK").to_owned())
    }

    /// Asserts that the API refuses `token` with 401 and one of `codes`, and that `/token`
    /// refuses it as the password of `ci` with 401.
    fn refused_everywhere(&self, case: &str, token: &str, codes: &[&str]) {
        let (status, code, error) = self.api(token);
        assert_eq!(status, 401, "{case}: API status ({code}: {error})");
        assert!(codes.contains(&code.as_str()), "{case}: API code {code}");
        let (status, code) = self.registry("ci", token);
        assert_eq!(status, 401, "{case}: /token status ({code})");
        assert!(
            ["INVALID_TOKEN", "INVALID_CREDENTIALS", "TOKEN_EXPIRED"].contains(&code.as_str()),
            "{case}: /token code {code}"
        );
    }

    /// Asserts that the API refuses `token` with 401 `INVALID_TOKEN` and an error that says
    /// `reason`, and that `/token` refuses it as the password of `ci` with 401.
    fn refused_because(&self, case: &str, token: &str, reason: &str) {
        let (status, code, error) = self.api(token);
        assert_eq!((status, code.as_str()), (401, "INVALID_TOKEN"), "{case}");
        assert!(error.contains(reason), "{case}: {error}");
        assert_eq!(self.registry("ci", token).0, 401, "{case}");
    }

    /// The header every hand-built token starts from.
    fn header(&self) -> Value {
        json!({"alg": "HS256", "typ": "JWT", "kid": self.kid})
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Claims of a valid token for `ci` with pull on every repository, valid for an hour.
fn claims() -> Value {
    let mut jti = [0u8; 16];
    getrandom::fill(&mut jti).unwrap();
    json!({
        "iss": "tessera",
        "sub": "ci",
        "jti": hex::encode(jti),
        "iat": now(),
        "nbf": now(),
        "exp": now() + 3600,
        "scope": "repository:*:pull",
    })
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.payload.signature` from raw header and payload text, signed with `key` by `alg`.
fn sign_raw(header: &str, payload: &str, alg: Algorithm, key: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig =
        jsonwebtoken::crypto::sign(input.as_bytes(), &EncodingKey::from_secret(key), alg).unwrap();
    format!("{input}.{sig}")
}

/// A token from JSON header and claims, HS256-signed with the server's secret.
fn good(header: &Value, claims: &Value) -> String {
    sign_raw(
        &header.to_string(),
        &claims.to_string(),
        Algorithm::HS256,
        SECRET.as_bytes(),
    )
}

fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

/// The token in `field` of an answer that must be 200 (as `(status, body)`).
#[track_caller]
fn issued((status, body): (u16, Value), field: &str) -> String {
    assert_eq!(status, 200, "{body}");
    body[field].as_str().unwrap().to_owned()
}

#[test]
fn control_a_hand_built_token_is_accepted_by_both_endpoints() {
    let f = Fixture::new();
    let token = good(&f.header(), &claims());
    let (status, code, error) = f.api(&token);
    assert_eq!((status, code.as_str()), (200, "OK"), "{error}");
    assert_eq!(f.registry("ci", &token).0, 200);
}

#[test]
fn alg_none_in_any_spelling_is_refused_with_or_without_a_signature() {
    let f = Fixture::new();
    let body = claims();
    let real = parts(&good(&f.header(), &body));
    for alg in ["none", "None", "nOnE", "NONE"] {
        let header = b64(json!({"alg": alg, "typ": "JWT", "kid": f.kid}).to_string());
        let payload = b64(body.to_string());
        f.refused_everywhere(
            &format!("{alg}, empty signature"),
            &format!("{header}.{payload}."),
            &["INVALID_TOKEN"],
        );
        // The signature of the genuine token over the same payload.
        f.refused_everywhere(
            &format!("{alg}, a real HS256 signature"),
            &format!("{header}.{payload}.{}", real[2]),
            &["INVALID_TOKEN"],
        );
        f.refused_everywhere(
            &format!("{alg}, no kid"),
            &format!("{}.{payload}.", b64(json!({"alg": alg}).to_string())),
            &["INVALID_TOKEN"],
        );
    }
}

#[test]
fn hs384_and_hs512_signed_with_the_hs256_secret_are_refused() {
    let f = Fixture::new();
    for (name, alg) in [("HS384", Algorithm::HS384), ("HS512", Algorithm::HS512)] {
        let header = json!({"alg": name, "typ": "JWT", "kid": f.kid}).to_string();
        let token = sign_raw(&header, &claims().to_string(), alg, SECRET.as_bytes());
        f.refused_everywhere(name, &token, &["INVALID_TOKEN"]);
        // The same signature relabelled HS256: the length gives it away.
        let p = parts(&token);
        let relabelled = format!("{}.{}.{}", b64(f.header().to_string()), p[1], p[2]);
        f.refused_everywhere(
            &format!("{name} relabelled"),
            &relabelled,
            &["INVALID_TOKEN"],
        );
    }
}

#[test]
fn key_confusion_with_the_registry_public_key_is_refused() {
    let f = Fixture::new();
    let jwks = f.jwks();
    let jwk = &jwks["keys"][0];
    let registry_kid = jwk["kid"].as_str().unwrap().to_owned();
    let mut point = vec![4u8];
    point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap());
    point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
    let cert_pem = std::fs::read(f.home.certificate()).unwrap();
    let public_keys: [(&str, Vec<u8>); 3] = [
        ("the EC point", point),
        ("the certificate PEM", cert_pem),
        ("the JWK JSON", jwk.to_string().into_bytes()),
    ];
    for (what, key) in &public_keys {
        for (alg_name, kid) in [
            ("HS256", registry_kid.as_str()),
            ("HS256", f.kid.as_str()),
            ("ES256", registry_kid.as_str()),
        ] {
            let header = json!({"alg": alg_name, "typ": "JWT", "kid": kid}).to_string();
            let token = sign_raw(&header, &claims().to_string(), Algorithm::HS256, key);
            f.refused_everywhere(
                &format!("HMAC keyed with {what}, alg {alg_name}, kid {kid}"),
                &token,
                &["INVALID_TOKEN"],
            );
        }
    }
}

#[test]
fn tampered_header_payload_or_signature_is_refused() {
    let f = Fixture::new();
    let token = good(&f.header(), &claims());
    let p = parts(&token);
    let mut escalated = claims();
    escalated["scope"] = "admin".into();
    let mut other_sub = claims();
    other_sub["sub"] = "deploy".into();
    let mut extra_header = f.header();
    extra_header["x5u"] = "https://attacker.example/key".into();
    let mut sig = p[2].clone().into_bytes();
    sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
    for (case, bad) in [
        (
            "scope raised to admin",
            format!("{}.{}.{}", p[0], b64(escalated.to_string()), p[2]),
        ),
        (
            "subject changed",
            format!("{}.{}.{}", p[0], b64(other_sub.to_string()), p[2]),
        ),
        (
            "header member added",
            format!("{}.{}.{}", b64(extra_header.to_string()), p[1], p[2]),
        ),
        (
            "one signature character changed",
            format!("{}.{}.{}", p[0], p[1], String::from_utf8(sig).unwrap()),
        ),
        (
            "signature of another token",
            format!(
                "{}.{}.{}",
                p[0],
                p[1],
                parts(&good(&f.header(), &claims()))[2]
            ),
        ),
    ] {
        f.refused_everywhere(case, &bad, &["INVALID_TOKEN"]);
    }
}

#[test]
fn truncated_tokens_and_wrong_segment_counts_are_refused() {
    let f = Fixture::new();
    let token = good(&f.header(), &claims());
    let p = parts(&token);
    for (case, bad) in [
        ("last character cut", token[..token.len() - 1].to_owned()),
        ("signature cut", format!("{}.{}.", p[0], p[1])),
        ("half the token", token[..token.len() / 2].to_owned()),
        ("2 segments", format!("{}.{}", p[0], p[1])),
        ("4 segments", format!("{token}.{}", p[2])),
        ("5 segments", format!("{token}.{}.{}", p[1], p[2])),
        (
            "JWE-like 5 segments",
            format!("{}.{}.{}.{}.{}", p[0], p[1], p[1], p[1], p[2]),
        ),
        ("empty segments", "..".to_owned()),
        ("header only", p[0].clone()),
    ] {
        f.refused_everywhere(case, &bad, &["INVALID_TOKEN"]);
    }
}

#[test]
fn bad_base64_padding_and_non_json_are_refused() {
    let f = Fixture::new();
    let body = claims();
    let token = good(&f.header(), &body);
    let p = parts(&token);
    let padded_sig = format!("{}.{}.{}=", p[0], p[1], p[2]);
    let std_alphabet = STANDARD.encode(f.header().to_string());
    let padded_header = format!("{std_alphabet}.{}.{}", p[1], p[2]);
    let bad_chars = format!("{}!.{}.{}", p[0], p[1], p[2]);
    let space = format!("{}. {}.{}", p[0], p[1], p[2]);
    let header_text = f.header().to_string();
    let cases = [
        ("padding on the signature", padded_sig),
        ("standard base64 with padding in the header", padded_header),
        ("a character outside base64url", bad_chars),
        ("a space inside", space),
        (
            "header is not JSON",
            sign_raw("not json", &body.to_string(), Algorithm::HS256, SECRET.as_bytes()),
        ),
        (
            "header is a JSON array",
            sign_raw("[\"HS256\"]", &body.to_string(), Algorithm::HS256, SECRET.as_bytes()),
        ),
        (
            "payload is not JSON (correctly signed)",
            sign_raw(&header_text, "sub=ci", Algorithm::HS256, SECRET.as_bytes()),
        ),
        (
            "payload is a JSON string (correctly signed)",
            sign_raw(&header_text, "\"ci\"", Algorithm::HS256, SECRET.as_bytes()),
        ),
        (
            "payload misses `sub` (correctly signed)",
            sign_raw(
                &header_text,
                &json!({"iss": "tessera", "jti": "abc", "iat": now(), "nbf": now(), "scope": "admin"})
                    .to_string(),
                Algorithm::HS256,
                SECRET.as_bytes(),
            ),
        ),
    ];
    for (case, bad) in cases {
        f.refused_everywhere(case, &bad, &["INVALID_TOKEN"]);
    }
}

/// Safe means refused: a duplicate member is never resolved as "first wins" or "last wins"
/// (a parser that picks the other one than ours would disagree on who the token is for).
#[test]
fn duplicate_json_members_are_refused_not_resolved() {
    let f = Fixture::new();
    let c = claims();
    let rest = format!(
        "\"iss\":\"tessera\",\"jti\":{},\"iat\":{},\"nbf\":{},\"exp\":{}",
        c["jti"], c["iat"], c["nbf"], c["exp"]
    );
    let kid = &f.kid;
    let header = f.header().to_string();
    let cases = [
        (
            "two `sub`, the second privileged",
            header.clone(),
            format!("{{{rest},\"sub\":\"ci\",\"sub\":\"deploy\",\"scope\":\"repository:*:pull\"}}"),
        ),
        (
            "two `scope`, the second admin",
            header.clone(),
            format!(
                "{{{rest},\"sub\":\"ci\",\"scope\":\"repository:*:pull\",\"scope\":\"admin\"}}"
            ),
        ),
        (
            "two `exp`, the second later",
            header.clone(),
            format!(
                "{{{rest},\"exp\":{},\"sub\":\"ci\",\"scope\":\"repository:*:pull\"}}",
                now() + 999_999
            ),
        ),
        (
            "two `alg`, HS256 then none",
            format!("{{\"alg\":\"HS256\",\"alg\":\"none\",\"kid\":\"{kid}\"}}"),
            format!("{{{rest},\"sub\":\"ci\",\"scope\":\"repository:*:pull\"}}"),
        ),
        (
            "two `alg`, none then HS256",
            format!("{{\"alg\":\"none\",\"alg\":\"HS256\",\"kid\":\"{kid}\"}}"),
            format!("{{{rest},\"sub\":\"ci\",\"scope\":\"repository:*:pull\"}}"),
        ),
        (
            "two `kid`",
            format!("{{\"alg\":\"HS256\",\"kid\":\"unknown\",\"kid\":\"{kid}\"}}"),
            format!("{{{rest},\"sub\":\"ci\",\"scope\":\"repository:*:pull\"}}"),
        ),
    ];
    for (case, header, payload) in cases {
        let token = sign_raw(&header, &payload, Algorithm::HS256, SECRET.as_bytes());
        f.refused_everywhere(case, &token, &["INVALID_TOKEN"]);
    }
}

#[test]
fn unknown_critical_header_extensions_are_refused() {
    let f = Fixture::new();
    for crit in [
        json!(["x-tessera-unknown"]),
        json!(["exp"]),
        json!([]),
        json!(null),
    ] {
        let mut header = f.header();
        header["crit"] = crit.clone();
        header["x-tessera-unknown"] = true.into();
        let token = good(&header, &claims());
        f.refused_because(&format!("crit {crit}"), &token, "malformed");
    }
}

#[test]
fn unknown_path_like_huge_or_missing_kid_never_falls_back_to_other_keys() {
    let f = Fixture::new();
    // Every token below is signed with the right secret: only the `kid` is wrong, so an
    // acceptance would mean the server tried its keys one after the other.
    let mut cases: Vec<(String, Value)> = vec![
        ("unknown".into(), json!("0000000000000000")),
        ("path-like".into(), json!("../../etc/passwd")),
        ("absolute path".into(), json!("/dev/zero")),
        ("SQL-like".into(), json!("' OR 1=1 --")),
        ("URL".into(), json!("https://attacker.example/jwks.json")),
        ("empty".into(), json!("")),
        ("number".into(), json!(1)),
        ("list".into(), json!([f.kid])),
        (
            "upper-case of the real one".into(),
            json!(f.kid.to_uppercase()),
        ),
        (
            "the real one with a NUL".into(),
            json!(format!("{}\u{0}", f.kid)),
        ),
        (
            "huge, under the token limit".into(),
            json!("k".repeat(5_000)),
        ),
        (
            "huge, over the token limit".into(),
            json!("k".repeat(20_000)),
        ),
    ];
    cases.push(("missing".into(), Value::Null));
    for (case, kid) in cases {
        let mut header = f.header();
        if kid.is_null() {
            header.as_object_mut().unwrap().remove("kid");
        } else {
            header["kid"] = kid;
        }
        let token = good(&header, &claims());
        f.refused_everywhere(&format!("kid {case}"), &token, &["INVALID_TOKEN"]);
    }
}

#[test]
fn expiry_edges_and_odd_types() {
    let f = Fixture::new();
    let with_exp = |exp: Value| {
        let mut c = claims();
        c["iat"] = (now() - 7200).into();
        c["nbf"] = (now() - 7200).into();
        c["exp"] = exp;
        good(&f.header(), &c)
    };
    // Within the 60 s leeway: accepted.
    let (status, _, error) = f.api(&with_exp(json!(now() - 59)));
    assert_eq!(status, 200, "59 s past: {error}");
    assert_eq!(f.registry("ci", &with_exp(json!(now() - 59))).0, 200);
    // Beyond it, or long past, or before 1970: expired.
    for (case, exp) in [
        ("61 s past", json!(now() - 61)),
        ("an hour past", json!(now() - 3600)),
        ("zero", json!(0)),
        ("negative", json!(-1)),
        ("most negative", json!(i64::MIN)),
    ] {
        f.refused_everywhere(case, &with_exp(exp), &["TOKEN_EXPIRED"]);
    }
    // Not an integer number of seconds that fits: malformed, never "no expiry".
    for (case, exp) in [
        ("a string", json!((now() + 3600).to_string())),
        ("a float", json!(now() as f64 + 3600.5)),
        ("a float in exponent form", json!(1e12)),
        ("beyond i64", json!(u64::MAX)),
        ("null", Value::Null),
        ("a list", json!([now() + 3600])),
        ("true", json!(true)),
    ] {
        f.refused_everywhere(case, &with_exp(exp), &["INVALID_TOKEN"]);
    }
    // The largest i64 is a far future, like "never" (which the contract allows: no `exp`).
    let (status, _, error) = f.api(&with_exp(json!(i64::MAX)));
    assert_eq!(status, 200, "i64::MAX: {error}");
    let mut never = claims();
    never.as_object_mut().unwrap().remove("exp");
    let (status, _, error) = f.api(&good(&f.header(), &never));
    assert_eq!(status, 200, "no exp is `never` for tessera tokens: {error}");
}

#[test]
fn registry_tokens_always_carry_an_expiry() {
    // The registry refuses a token without `exp`; check that we never issue one.
    let f = Fixture::new();
    let token = good(&f.header(), &claims());
    let (status, body) = f.token_get("ci", &token, "&scope=repository:team/app:pull");
    assert_eq!(status, 200);
    let payload = parts(body["token"].as_str().unwrap())[1].clone();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let exp = claims["exp"].as_i64().expect("registry token without exp");
    assert!(exp > now() && exp <= now() + 3600, "{claims}");
}

#[test]
fn not_before_or_issued_at_in_the_future_is_refused() {
    let f = Fixture::new();
    for (case, field, offset) in [
        ("nbf in an hour", "nbf", 3600),
        ("nbf 61 s ahead", "nbf", 61),
        ("iat in an hour", "iat", 3600),
        ("iat far ahead", "iat", 10 * 365 * 86_400),
    ] {
        let mut c = claims();
        c[field] = (now() + offset).into();
        f.refused_because(case, &good(&f.header(), &c), "not yet valid");
    }
    // The leeway is 60 s both ways.
    let mut c = claims();
    c["nbf"] = (now() + 30).into();
    assert_eq!(f.api(&good(&f.header(), &c)).0, 200);
}

#[test]
fn wrong_issuer_or_audience_is_refused() {
    let f = Fixture::new();
    for iss in ["evil", "Tessera", "tessera ", ""] {
        let mut c = claims();
        c["iss"] = iss.into();
        f.refused_because(
            &format!("iss {iss:?}"),
            &good(&f.header(), &c),
            "wrong issuer",
        );
    }
    let mut missing = claims();
    missing.as_object_mut().unwrap().remove("iss");
    f.refused_everywhere("no iss", &good(&f.header(), &missing), &["INVALID_TOKEN"]);
    // At /token a credential's `aud`, when present, must be the service.
    for aud in [json!("other-registry"), json!([SERVICE]), json!("")] {
        let mut c = claims();
        c["aud"] = aud.clone();
        let (status, code) = f.registry("ci", &good(&f.header(), &c));
        assert_eq!((status, code.as_str()), (401, "INVALID_TOKEN"), "aud {aud}");
    }
    // The subject must match the Basic username: a token for `ci` does not log in `deploy`.
    let token = good(&f.header(), &claims());
    assert_eq!(
        f.registry("deploy", &token),
        (401, "INVALID_CREDENTIALS".to_owned())
    );
}

#[test]
fn refresh_tokens_and_api_tokens_do_not_cross_over() {
    let f = Fixture::new();
    // A refresh token from the registry flow (aud = the service).
    let token = good(&f.header(), &claims());
    let refresh = issued(
        f.token_get(
            "ci",
            &token,
            "&scope=repository:team/app:pull&access_type=offline",
        ),
        "refresh_token",
    );
    assert_eq!(f.refresh(&refresh).0, 200, "control: it is a refresh token");
    let (status, code, error) = f.api(&refresh);
    assert_eq!(
        (status, code.as_str()),
        (401, "INVALID_TOKEN"),
        "refresh token on the API: {error}"
    );
    // Nor can a refresh token mint API tokens through /auth/refresh.
    assert_eq!(f.api_refresh(&refresh).0, 401);
    // The reverse: an API token (no aud) is not a refresh token.
    let api_token = f.home.token(&["--subject", "ci", "--scopes", "pull"]);
    assert_eq!(f.api(&api_token).0, 200, "control: it is an API token");
    assert_eq!(f.refresh(&api_token), (401, "INVALID_TOKEN".to_owned()));
}

#[test]
fn registry_and_tessera_tokens_are_not_interchangeable() {
    let f = Fixture::new();
    let token = good(&f.header(), &claims());
    let registry_token = issued(
        f.token_get("ci", &token, "&scope=repository:team/app:pull"),
        "token",
    );
    // An ES256 registry token is not a tessera token, on the API or as a credential.
    f.refused_everywhere("registry token", &registry_token, &["INVALID_TOKEN"]);
    assert_eq!(f.refresh(&registry_token).0, 401);
    // A tessera token is not a registry token: verification with the published JWK, as a
    // registry does, refuses it whatever algorithms the verifier allows.
    let (_, key) = f.jwk();
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[SERVICE]);
    assert!(
        jsonwebtoken::decode::<Value>(&registry_token, &key, &v).is_ok(),
        "control"
    );
    for algs in [
        vec![Algorithm::ES256],
        vec![Algorithm::HS256],
        vec![Algorithm::ES256, Algorithm::HS256],
    ] {
        let mut v = Validation::new(algs[0]);
        v.algorithms = algs.clone();
        v.validate_aud = false;
        assert!(
            jsonwebtoken::decode::<Value>(&token, &key, &v).is_err(),
            "tessera token accepted by a JWK verifier allowing {algs:?}"
        );
    }
}

// ---- derived tokens (refresh, offline tokens) ------------------------------------------------

/// The claims of a tessera token (not verified: the server under test made it).
fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts(token)[1].as_bytes()).unwrap()).unwrap()
}

impl Fixture {
    /// A fixture whose config gets `extra` lines in `[auth]` before the server starts.
    fn with_auth(extra: &str) -> Fixture {
        let home = Home::new();
        let config = std::fs::read_to_string(home.config_file())
            .unwrap()
            .replace("[auth]\n", &format!("[auth]\n{extra}\n"));
        std::fs::write(home.config_file(), config).unwrap();
        Fixture {
            served: Served::start(home),
            kid: String::new(),
        }
    }

    /// `POST /auth/refresh` with `token`: (status, body).
    fn api_refresh(&self, token: &str) -> (u16, Value) {
        status_and_json(refresh(&self.url(""), token))
    }

    /// `GET /token` with Basic `user:secret` and the extra `query`: (status, body).
    fn token_get(&self, user: &str, secret: &str, query: &str) -> (u16, Value) {
        let r = self.get_token(
            &format!("?service={SERVICE}{query}"),
            Some(&basic(user, secret)),
        );
        (r.status().as_u16(), r.json().unwrap())
    }

    /// `POST /token` with `grant_type=refresh_token` and the extra form fields: (status, body).
    fn renew(&self, refresh: &str, extra: &[(&str, &str)]) -> (u16, Value) {
        let mut pairs = vec![
            ("grant_type", "refresh_token"),
            ("service", SERVICE),
            ("refresh_token", refresh),
        ];
        pairs.extend_from_slice(extra);
        let r = self.post_token(&pairs);
        (r.status().as_u16(), r.json().unwrap())
    }
}

#[test]
fn a_derived_token_never_outlives_or_outscopes_its_parent() {
    // Tokens from login and refresh last an hour on this server.
    let f = Fixture::new();
    let parent = f.home.token(&argv(
        "--subject ci --scopes pull --repo team/* --expiry 10m",
    ));
    let parent_exp = claims_of(&parent)["exp"].as_i64().unwrap();

    // POST /auth/refresh, twice down the chain.
    let child = issued(f.api_refresh(&parent), "token");
    let c = claims_of(&child);
    assert!(
        c["exp"].as_i64().unwrap() <= parent_exp,
        "a refreshed token outlives its parent: {c} (parent expires at {parent_exp})"
    );
    assert_eq!(c["scope"], "repository:team/*:pull");
    assert_eq!(c["sub"], "ci");
    let grandchild = claims_of(&issued(f.api_refresh(&child), "token"));
    assert!(
        grandchild["exp"].as_i64().unwrap() <= parent_exp,
        "{grandchild}"
    );

    // The registry: an offline token for the parent, and its renewal.
    let refresh = issued(
        f.token_get(
            "ci",
            &parent,
            "&scope=repository:team/app:pull&access_type=offline",
        ),
        "refresh_token",
    );
    let r = claims_of(&refresh);
    assert!(
        r["exp"].as_i64().unwrap() <= parent_exp,
        "offline token {r}"
    );
    assert_eq!(r["scope"], "repository:team/*:pull");
    let renewed = claims_of(&issued(
        f.renew(&refresh, &[("access_type", "offline")]),
        "refresh_token",
    ));
    assert!(
        renewed["exp"].as_i64().unwrap() <= parent_exp,
        "renewed refresh token {renewed}"
    );
    // Asking for more than the parent holds still grants no more.
    let access = issued(
        f.renew(&refresh, &[("scope", "repository:team/app:push,pull")]),
        "access_token",
    );
    let access = &claims_of_registry(&access)["access"];
    assert_eq!(access[0]["actions"], json!(["pull"]), "{access}");
}

/// The payload of a registry token (ES256; only read here).
fn claims_of_registry(token: &str) -> Value {
    claims_of(token)
}

#[test]
fn registry_refresh_tokens_keep_to_the_cap_and_do_not_renew_themselves() {
    // Refresh tokens from password login would last an hour, but nothing may outlast 20 min.
    let f = Fixture::with_auth("max_token_expiry = \"20m\"");
    let refresh = issued(
        f.token_get(
            "deploy",
            crate::support::PASSWORD,
            "&scope=repository:team/app:pull&access_type=offline",
        ),
        "refresh_token",
    );
    let r = claims_of(&refresh);
    let exp = r["exp"].as_i64().unwrap();
    assert!(
        exp <= r["iat"].as_i64().unwrap() + 20 * 60,
        "a refresh token beyond auth.max_token_expiry: {r}"
    );
    // A renewal a second later does not move the end of the chain.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let renewed = issued(
        f.renew(&refresh, &[("access_type", "offline")]),
        "refresh_token",
    );
    let n = claims_of(&renewed);
    assert!(n["exp"].as_i64().unwrap() <= exp, "renewed {n}, parent {r}");
    // Nor does renewing the renewed one.
    let again = issued(
        f.renew(&renewed, &[("access_type", "offline")]),
        "refresh_token",
    );
    assert!(claims_of(&again)["exp"].as_i64().unwrap() <= exp);
    // Without `access_type=offline`, a renewal gives an access token only.
    let (status, body) = f.renew(&refresh, &[]);
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
}

#[test]
fn a_single_use_token_cannot_be_refreshed_or_exchanged_for_an_offline_token() {
    let f = Fixture::new();
    let admin = f.home.token(&["--subject", "root", "--scopes", "admin"]);
    let once = crate::support::http::create_token(
        &f.url(""),
        &admin,
        &json!({"subject": "ci", "scopes": "pull", "single_use": true}),
    );

    let (status, body) = f.api_refresh(&once);
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("SINGLE_USE")),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("single-use"),
        "{body}"
    );
    for offline in ["&access_type=offline", "&offline_token=true"] {
        let (status, body) =
            f.token_get("ci", &once, &format!("&scope=repository:a:pull{offline}"));
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("SINGLE_USE")),
            "{offline}: {body}"
        );
    }
    // The refusals did not use it up: it still works exactly once.
    assert_eq!(f.api(&once).0, 200);
    assert_eq!(f.api(&once).1, "TOKEN_REVOKED");
}

#[test]
fn revoking_a_parent_revokes_everything_derived_from_it() {
    let f = Fixture::new();
    let (parent, _) = f
        .home
        .token_with_jti(&["--subject", "ci", "--scopes", "pull"]);
    let refreshed = f.api_refresh(&parent);
    let child_jti = refreshed.1["jti"].as_str().unwrap().to_owned();
    let child = issued(refreshed, "token");
    let grandchild = issued(f.api_refresh(&child), "token");
    // Registry offline tokens derived from the child, and a renewal of one.
    let offline = issued(
        f.token_get("ci", &child, "&access_type=offline"),
        "refresh_token",
    );
    let renewed = issued(
        f.renew(&offline, &[("access_type", "offline")]),
        "refresh_token",
    );
    // An unrelated token of the same subject, and one derived from it.
    let other = f.home.token(&["--subject", "ci", "--scopes", "pull"]);
    let other_child = issued(f.api_refresh(&other), "token");
    for t in [&parent, &child, &grandchild, &other, &other_child] {
        assert_eq!(f.api(t).0, 200, "control");
    }
    assert_eq!(f.renew(&renewed, &[]).0, 200, "control");

    // Revoking the child (by id, with the CLI) revokes what was derived from it, transitively.
    f.home.ok(&["auth", "token", "revoke", &child_jti]);
    assert_eq!(
        f.api(&parent).0,
        200,
        "the parent of a revoked token stays valid"
    );
    for (name, t) in [("child", &child), ("grandchild", &grandchild)] {
        assert_eq!(f.api(t).1, "TOKEN_REVOKED", "{name}");
    }
    for (name, t) in [("offline", &offline), ("renewed", &renewed)] {
        let (status, body) = f.renew(t, &[]);
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("TOKEN_REVOKED")),
            "{name}: {body}"
        );
    }
    assert_eq!(f.api(&other).0, 200);
    assert_eq!(f.api(&other_child).0, 200);
    // Nothing new can be derived from a revoked token.
    assert_eq!(f.api_refresh(&grandchild).0, 401);
    // Revoking the parent through the API (DELETE /auth/token) takes the rest of its line.
    let late_child = issued(f.api_refresh(&parent), "token");
    let r = f
        .http
        .delete(f.url("/auth/token"))
        .bearer_auth(&parent)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(f.api(&late_child).1, "TOKEN_REVOKED");
    // A subject cut-off covers derived tokens like any other.
    f.home.ok(&["auth", "token", "revoke", "--subject", "ci"]);
    assert_eq!(f.api(&other_child).1, "TOKEN_REVOKED");
}
