//! The token endpoint at the HTTP level: a real tessera server on 127.0.0.1:0, bad input of
//! every kind, and the registry token's header and claims checked with the published JWK.

use crate::support::Run;
use crate::support::argv;
use crate::support::http::{Served, basic, get_status, no_store_json, status_and_code};
use crate::support::{Home, PASSWORD, SERVICE};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::blocking::{Client, Response};
use serde_json::Value;

/// Verifies a registry token with the published JWK and returns header and claims.
fn check(f: &Served, token: &str) -> (Value, Value) {
    let (jwk, key) = f.jwk();
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[SERVICE]);
    v.set_issuer(&["tessera"]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims;
    let header_b64 = token.split('.').next().unwrap();
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header_b64).unwrap()).unwrap();
    assert_eq!(header["kid"], jwk["kid"]);
    (header, claims)
}

/// A 401 with a JSON body, a Basic challenge and the given code.
fn assert_401(r: Response, code: &str) {
    assert_eq!(r.status(), 401);
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");
    let body: Value = r.json().unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert!(body["error"].is_string());
}

#[test]
fn token_grants_the_intersection_with_a_trusted_header() {
    let f = Served::start(Home::new());
    let tok = f
        .home
        .token(&["--subject", "ci", "--scopes", "pull", "--repo", "team/*"]);
    let r = f.get_token(
        &format!(
            "?service={SERVICE}&account=ci&scope=repository:team/app:pull,push&scope=repository:other/app:pull&scope=repository:team/app:delete"
        ),
        Some(&basic("ci", &tok)),
    );
    let body = no_store_json(r, 200);
    assert_eq!(body["token"], body["access_token"]);
    assert!(body["expires_in"].as_i64().unwrap() >= 60);
    let issued: jiff::Timestamp = body["issued_at"].as_str().unwrap().parse().unwrap();
    assert!((jiff::Timestamp::now() - issued).get_seconds().abs() < 60);
    let (header, claims) = check(&f, body["token"].as_str().unwrap());
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["x5c"].as_array().unwrap().len(), 1);
    let kid = header["kid"].as_str().unwrap();
    assert_eq!(kid.len(), 59);
    assert_eq!(claims["sub"], "ci");
    assert!(claims["aud"].is_string());
    for c in ["exp", "nbf", "iat", "jti"] {
        assert!(!claims[c].is_null(), "{c}");
    }
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type":"repository","name":"team/app","actions":["pull"]}])
    );

    // No scope at all (skopeo login): 200 with an empty access list.
    let r = f.get_token(&format!("?service={SERVICE}"), Some(&basic("ci", &tok)));
    assert_eq!(r.status(), 200);
    let body: Value = r.json().unwrap();
    let (_, claims) = check(&f, body["token"].as_str().unwrap());
    assert_eq!(claims["access"], serde_json::json!([]));

    // Extra colons, unknown types and actions are granted nothing, not refused.
    let r = f.get_token(
        "?scope=repository:127.0.0.1:5000/team/app:pull&scope=widget:team/app:pull&scope=repository:team/app:fly&scope=registry:catalog:*",
        Some(&basic("ci", &tok)),
    );
    assert_eq!(r.status(), 200);
    let body: Value = r.json().unwrap();
    let (_, claims) = check(&f, body["token"].as_str().unwrap());
    assert_eq!(claims["access"], serde_json::json!([]));
}

#[test]
fn password_login_and_refresh_tokens() {
    let f = Served::start(Home::new());
    // The password contains a colon: Basic splits at the first one.
    let r = f.get_token(
        "?scope=repository:any/thing:push&access_type=offline",
        Some(&basic("deploy", PASSWORD)),
    );
    assert_eq!(r.status(), 200);
    let body: Value = r.json().unwrap();
    let (_, claims) = check(&f, body["token"].as_str().unwrap());
    assert_eq!(claims["sub"], "deploy");
    assert_eq!(claims["access"][0]["actions"], serde_json::json!(["push"]));
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();

    // Wrong password, unknown user.
    assert_401(
        f.get_token("", Some(&basic("deploy", "wrong"))),
        "INVALID_CREDENTIALS",
    );
    assert_401(
        f.get_token("", Some(&basic("nobody", PASSWORD))),
        "INVALID_CREDENTIALS",
    );

    // POST: password grant and refresh grant, reusable.
    let r = f.post_token(&[
        ("grant_type", "password"),
        ("username", "deploy"),
        ("password", PASSWORD),
        ("service", SERVICE),
        ("scope", "repository:a/b:pull"),
    ]);
    assert_eq!(r.status(), 200);
    for _ in 0..2 {
        let r = f.post_token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("service", SERVICE),
            ("scope", "repository:a/b:pull,push"),
        ]);
        assert_eq!(r.status(), 200);
        let body: Value = r.json().unwrap();
        let (_, claims) = check(&f, body["access_token"].as_str().unwrap());
        assert_eq!(claims["sub"], "deploy");
        assert_eq!(
            claims["access"][0]["actions"],
            serde_json::json!(["pull", "push"])
        );
    }
    // Refresh token presented for another subject.
    assert_401(
        f.post_token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("username", "mallory"),
        ]),
        "INVALID_CREDENTIALS",
    );
    // A plain token (no audience) is not a refresh token; one for another service neither.
    let plain = f.home.token(&["--subject", "deploy", "--scopes", "pull"]);
    assert_401(
        f.post_token(&[("grant_type", "refresh_token"), ("refresh_token", &plain)]),
        "INVALID_TOKEN",
    );
    let other = f.home.token(&argv(
        "--subject deploy --scopes pull --audience other-registry",
    ));
    assert_401(
        f.post_token(&[("grant_type", "refresh_token"), ("refresh_token", &other)]),
        "INVALID_TOKEN",
    );
    // Revoking the subject revokes its refresh tokens.
    f.home
        .cmd()
        .args(["auth", "token", "revoke", "--subject", "deploy"])
        .assert()
        .success();
    assert_401(
        f.post_token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)]),
        "TOKEN_REVOKED",
    );
    let r = f.post_token(&[("grant_type", "client_credentials")]);
    assert_eq!(r.status(), 400);
}

#[test]
fn bad_credentials_are_401_never_500() {
    let f = Served::start(Home::new());
    let tok = f.home.token(&["--subject", "ci", "--scopes", "push,pull"]);
    assert_401(f.get_token("", None), "AUTH_REQUIRED");
    for bad in [
        "Basic".to_owned(),
        "Basic %%%not-base64%%%".to_owned(),
        format!("Basic {}", STANDARD.encode("no-colon-here")),
        format!("Basic {}", STANDARD.encode([0xff, 0xfe, b':', b'x'])),
        format!("Bearer {tok}"),
        "Basic ".to_owned() + &"A".repeat(10_000),
    ] {
        assert_401(f.get_token("", Some(&bad)), "INVALID_CREDENTIALS");
    }
    // Token of another subject, tampered token, garbage token.
    assert_401(
        f.get_token("", Some(&basic("someone-else", &tok))),
        "INVALID_CREDENTIALS",
    );
    let mut tampered = tok.clone();
    tampered.pop();
    tampered.push(if tok.ends_with('A') { 'B' } else { 'A' });
    assert_401(
        f.get_token("", Some(&basic("ci", &tampered))),
        "INVALID_TOKEN",
    );
    assert_401(
        f.get_token("", Some(&basic("ci", "eyJhbGciOi.x.y"))),
        "INVALID_TOKEN",
    );
    // account different from the user.
    assert_401(
        f.get_token("?account=admin", Some(&basic("ci", &tok))),
        "ACCOUNT_MISMATCH",
    );
    // Revoked and expired tokens.
    let (revoked, jti) = f
        .home
        .token_with_jti(&["--subject", "ci", "--scopes", "pull"]);
    f.home
        .cmd()
        .args(["auth", "token", "revoke", &jti])
        .assert()
        .success();
    assert_401(
        f.get_token("", Some(&basic("ci", &revoked))),
        "TOKEN_REVOKED",
    );
    let expired = {
        use secrecy::ExposeSecret;
        let key = tessera::token::SigningKey::new(
            &secrecy::SecretString::from(crate::support::SECRET),
            "",
        )
        .unwrap();
        let scopes = tessera::token::ScopeSet::parse_list("pull", "*").unwrap();
        let minted = tessera::token::mint(
            &tessera::token::KeyRing::single(key),
            &tessera::token::MintRequest {
                issuer: "tessera",
                subject: "ci",
                scopes: &scopes,
                expiry: tessera::duration::HumanDuration::parse("1m").unwrap(),
                audience: None,
                now: jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
            },
        )
        .unwrap();
        minted.token.expose_secret().to_owned()
    };
    assert_401(
        f.get_token("", Some(&basic("ci", &expired))),
        "TOKEN_EXPIRED",
    );
}

#[test]
fn bad_requests_are_400() {
    let f = Served::start(Home::new());
    let tok = f.home.token(&["--subject", "ci", "--scopes", "push,pull"]);
    let auth = basic("ci", &tok);
    let r = f.get_token("?service=another-registry", Some(&auth));
    assert_eq!(status_and_code(r), (400, "WRONG_SERVICE".into()));
    for scope in [
        "repository",
        "repository:app",
        "repository::pull",
        "repository:app:",
    ] {
        let r = f.get_token(&format!("?scope={scope}"), Some(&auth));
        assert_eq!(status_and_code(r), (400, "BAD_REQUEST".into()), "{scope}");
    }
    let many: String = (0..300)
        .map(|i| format!("scope=repository:team/app{i}:pull"))
        .collect::<Vec<_>>()
        .join("&");
    let r = f.get_token(&format!("?{many}"), Some(&auth));
    assert_eq!(r.status(), 400);
    let r = f.get_token(
        &(0..64)
            .map(|i| format!("scope=repository:team/app{i}:pull"))
            .fold("?x=1".to_owned(), |a, s| a + "&" + &s),
        Some(&auth),
    );
    assert_eq!(r.status(), 200);
}

#[test]
fn jwks_publishes_the_key_and_registry_off_is_404() {
    let f = Served::start(Home::new());
    let jwks = f.jwks();
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert_eq!(jwks["keys"][0]["crv"], "P-256");
    assert!(jwks["keys"][0].get("d").is_none());

    // Without the certificate file the service is off.
    let home = Home::new();
    std::fs::remove_file(home.certificate()).unwrap();
    let server = home.serve();
    assert_eq!(get_status(&format!("http://{}/token", server.addr())), 404);
}

#[test]
fn certificate_without_key_refuses_to_start() {
    let home = Home::new();
    std::fs::remove_file(
        home.dir
            .path()
            .join("config/tessera/secrets/tessera/registry/signing_key"),
    )
    .unwrap();
    let err = home.start_error();
    assert!(err.contains("no registry signing key"), "{err}");
}

#[test]
fn registry_init_without_a_service_refuses_and_names_the_setting() {
    let home = Home::new();
    let config = std::fs::read_to_string(home.config_file()).unwrap();
    let start = config.find("[registry]").unwrap();
    std::fs::write(home.config_file(), &config[..start]).unwrap();
    std::fs::remove_file(home.certificate()).unwrap();
    let out = home.cmd().args(["registry", "init"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`[registry] service`"), "{stderr}");
    assert!(stderr.contains("service = \"NAME\""), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("registry.example.com"));
    assert!(!home.certificate().exists(), "a certificate was written");
}

/// The home of [`Home::new`] switched to `[registry] header = "jwks"`, initialised again.
fn jwks_home() -> (Home, String) {
    let home = Home::new();
    let config = std::fs::read_to_string(home.config_file()).unwrap();
    let config = config.replace("[registry]\n", "[registry]\nheader = \"jwks\"\n");
    std::fs::write(home.config_file(), config).unwrap();
    let out = home.cmd().args(["registry", "init"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (home, String::from_utf8(out.stdout).unwrap())
}

#[test]
fn jwks_header_mode_for_distribution_3() {
    let (home, block) = jwks_home();
    let jwks_file = home.config_dir().join("registry-token.jwks");
    assert!(block.starts_with("auth:\n  token:\n"), "{block}");
    assert!(
        block.contains(&format!(
            "    jwks: \"{}\"",
            jwks_file.canonicalize().unwrap().display()
        )),
        "{block}"
    );
    assert!(!block.contains("rootcertbundle"), "{block}");
    let file: Value = serde_json::from_slice(&std::fs::read(&jwks_file).unwrap()).unwrap();
    let file_kid = file["keys"][0]["kid"].as_str().unwrap().to_owned();
    // An RFC 7638 thumbprint: 43 base64url characters, not the libtrust form.
    assert_eq!(file_kid.len(), 43, "{file_kid}");
    assert!(!file_kid.contains(':'));

    let server = home.serve();
    crate::support::api::install_crypto_provider();
    let http = Client::new();
    let tok = home.token(&["--subject", "ci", "--scopes", "pull"]);
    let r = http
        .get(format!(
            "http://{}/token?service={SERVICE}&scope=repository:a/b:pull",
            server.addr()
        ))
        .header("Authorization", basic("ci", &tok))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().unwrap();
    let token = body["token"].as_str().unwrap();
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(header.get("x5c").is_none(), "{header}");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], file_kid.as_str());
    // The server's JWKS names the key the same way, and its key verifies the token.
    let published: Value = http
        .get(format!("http://{}/.well-known/jwks.json", server.addr()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(published["keys"][0]["kid"], file_kid.as_str());
    let jwk = &file["keys"][0];
    let key =
        DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
            .unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[SERVICE]);
    jsonwebtoken::decode::<Value>(token, &key, &v).unwrap();
}

#[test]
fn registry_init_warns_when_a_service_user_cannot_read_the_certificate() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    // Everything open to others except the 0700 config folder, as ~/.config/tessera is.
    mode(home.home(), 0o755);
    mode(&home.home().join("config"), 0o755);
    mode(&home.config_dir(), 0o700);
    let (_, stderr) = home.ok(&["registry", "init"]);
    assert!(
        stderr.contains("warning: other users cannot read")
            && stderr.contains(&format!("{} has mode 0700", home.config_dir().display())),
        "{stderr}"
    );
    assert!(stderr.contains("`[registry] certificate`"), "{stderr}");

    // A certificate in a folder others can read: no warning, and the block points there.
    let public = home.home().join("etc-docker-registry/tessera");
    home.set_certificate(&public.join("token.crt"));
    let (stdout, stderr) = home.ok(&["registry", "init"]);
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(
        stderr.contains("wrote the certificate of the existing registry signing key"),
        "{stderr}"
    );
    assert!(
        stdout.contains(&format!(
            "rootcertbundle: \"{}/token.crt\"",
            public.display()
        )),
        "{stdout}"
    );
    assert_eq!(
        std::fs::metadata(public.join("token.crt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
}

#[test]
fn a_server_with_a_certificate_but_no_service_refuses_to_start() {
    let home = Home::new();
    let config = std::fs::read_to_string(home.config_file()).unwrap();
    let config = config.replace(&format!("service = \"{SERVICE}\"\n"), "");
    std::fs::write(home.config_file(), config).unwrap();
    let err = home.start_error();
    assert!(err.contains("`[registry] service`"), "{err}");
}

/// What the Docker CLI sends on `docker login` (registry/client/auth/session.go): GET with
/// `account`, `client_id=docker`, `offline_token=true` and `service`, Basic credentials, no
/// scope. The refresh token it gets back is then used with `grant_type=refresh_token`.
#[test]
fn the_docker_cli_login_request_gets_a_refresh_token() {
    let f = Served::start(Home::new());
    let r = f.get_token(
        &format!("?account=deploy&client_id=docker&offline_token=true&service={SERVICE}"),
        Some(&basic("deploy", PASSWORD)),
    );
    assert_eq!(r.status(), 200);
    let body: Value = r.json().unwrap();
    let refresh = body["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh token for Docker's offline_token=true: {body}"))
        .to_owned();
    let (_, claims) = check(&f, body["token"].as_str().unwrap());
    assert_eq!(claims["access"], serde_json::json!([]));
    // Docker's next request, as it sends it.
    let r = f.post_token(&[
        ("client_id", "docker"),
        ("grant_type", "refresh_token"),
        ("refresh_token", &refresh),
        ("scope", "repository:team/app:pull"),
        ("service", SERVICE),
    ]);
    assert_eq!(r.status(), 200);
    let body: Value = r.json().unwrap();
    assert!(body.get("refresh_token").is_none(), "not asked for: {body}");
    let (_, claims) = check(&f, body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], "deploy");
    assert_eq!(claims["access"][0]["actions"], serde_json::json!(["pull"]));
    // With a tessera token as the password, the same request.
    let token = f.home.token(&["--subject", "ci", "--scopes", "pull"]);
    let r = f.get_token(
        &format!("?account=ci&client_id=docker&offline_token=true&service={SERVICE}"),
        Some(&basic("ci", &token)),
    );
    assert_eq!(r.status(), 200);
    let body: Value = r.json().unwrap();
    assert!(body["refresh_token"].is_string(), "{body}");
    // Anything but `true` asks for nothing.
    for value in ["false", ""] {
        let r = f.get_token(
            &format!("?account=ci&client_id=docker&offline_token={value}&service={SERVICE}"),
            Some(&basic("ci", &token)),
        );
        assert_eq!(r.status(), 200);
        let body: Value = r.json().unwrap();
        assert!(body.get("refresh_token").is_none(), "{value}: {body}");
    }
}

/// A subject that holds as many tokens as the server issues on request still gets its access
/// token, without a refresh token (optional in the token-auth flow: Docker then keeps the
/// credentials it logged in with), and the store does not grow.
#[test]
fn at_its_token_limit_a_subject_gets_no_more_refresh_tokens() {
    let f = Served::start(Home::new());
    let limit = tessera::store::MAX_LIVE_TOKENS_PER_SUBJECT;
    let db = f.home.data().join("tessera/tokens.db");
    drop(tessera::store::SqliteStore::open(&db).unwrap());
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    let tx = conn.transaction().unwrap();
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(2);
    for i in 0..limit {
        tx.execute(
            "INSERT INTO tokens (jti, subject, scopes, issued_at, expires_at, single_use)
             VALUES (?1, 'deploy', '', ?2, ?3, 0)",
            rusqlite::params![
                format!("filler-{i}"),
                jiff::Timestamp::now().as_millisecond(),
                later.as_millisecond()
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    let count = |conn: &rusqlite::Connection| -> i64 {
        conn.query_row("SELECT COUNT(*) FROM tokens", [], |r| r.get(0))
            .unwrap()
    };
    let before = count(&conn);
    let r = f.get_token(
        &format!("?scope=repository:a/b:pull&access_type=offline&service={SERVICE}"),
        Some(&basic("deploy", PASSWORD)),
    );
    assert_eq!(r.status(), 200);
    let body: Value = r.json().unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
    let (_, claims) = check(&f, body["token"].as_str().unwrap());
    assert_eq!(claims["access"][0]["actions"], serde_json::json!(["pull"]));
    assert_eq!(count(&conn), before);
}
