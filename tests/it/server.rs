//! HTTP server tests: a real server on 127.0.0.1:0 (in-process or the real binary) and the
//! real CLI through assert_cmd. Every spawned binary gets its own HOME and XDG folders.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use crate::support::Run;
use crate::support::api::RunningServer;
use crate::support::argv;
use crate::support::http::{
    client, create_token, login, no_store_json, post_form, refresh, status_and_code,
    status_and_json, verify,
};
use crate::support::{Home, PASSWORD, SECRET, WRONG_PASSWORD};
use jiff::Timestamp;
use reqwest::blocking::Client;
use secrecy::SecretString;
use serde_json::{Value, json};
use tessera::store::{Standing, StoreError, TokenRecord, TokenState, TokenStore};
use tessera::token::{self, KeyRing, MintRequest, ScopeSet, SigningKey};

/// A home with `config`, its server in this process, and the server's base URL.
fn served(config: &str) -> (Home, RunningServer, String) {
    let h = Home::with_config(config);
    let (srv, base) = h.serve_base();
    (h, srv, base)
}

/// Verifies `token` at `base` three times, each accepted, so that the server's answer for it
/// is one it reuses.
fn verify_until_cached(base: &str, token: &str) {
    for _ in 0..3 {
        let (s, v) = verify(base, token);
        assert_eq!(s, 200, "{v}");
    }
}

#[test]
fn round_trip_through_the_binary_and_no_secret_in_the_log() {
    let h = Home::with_login("");
    let srv = h.serve_process(Some("debug"));
    let url = srv.url();
    h.ok(&["remotes", "add", "local", &url]);
    h.ok_with_stdin(
        &argv("auth login --remote local --username deploy --password-stdin"),
        format!("{PASSWORD}\n"),
    );
    // A wrong password is refused with a clear sentence.
    let out = h
        .cmd()
        .args(["auth", "login", "--username", "deploy", "--password-stdin"])
        .write_stdin(format!("{WRONG_PASSWORD}\n"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("refused the login: the username or password is wrong")
    );

    let out = h.cmd().args(["--json", "auth", "status"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["subject"], "deploy");
    assert_eq!(
        status["scopes"],
        json!(["repository:*:pull", "repository:*:push"])
    );
    assert!(status["expires_at"].is_string());

    let out = h
        .cmd()
        .args(["auth", "token", "show", "--remote", "local"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3);
    // The server's token verifies with the CLI (same key ring code path).
    h.ok(&["auth", "token", "verify", &token]);

    h.ok(&["auth", "logout", "--revoke"]);
    let (s, body) = verify(&url, &token);
    assert_eq!((s, body["code"].as_str()), (401, Some("TOKEN_REVOKED")));
    let remotes = std::fs::read_to_string(h.remotes()).unwrap();
    assert!(!remotes.contains(&token), "logout must forget the token");
    h.cmd()
        .args(["auth", "token", "show"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("not logged in"));

    // Some failed attempts and a refresh, then the log must hold none of the secrets.
    let (admin, _) = h.mint("root", "admin");
    let r = login(&url, "nobody", WRONG_PASSWORD);
    assert_eq!(r.status().as_u16(), 401);
    let r = refresh(&url, &admin);
    let refreshed = no_store_json(r, 200)["token"].as_str().unwrap().to_owned();
    let log = srv.stop();
    assert!(log.contains("audit"), "{log}");
    assert!(log.contains("tessera::audit"), "{log}");
    for secret in [PASSWORD, WRONG_PASSWORD, SECRET, &token, &admin, &refreshed] {
        assert!(!log.contains(secret), "the log contains a secret");
    }
    // Parts of a token (the signature) must not appear either.
    for t in [&token, &admin, &refreshed] {
        let sig = t.rsplit('.').next().unwrap();
        assert!(!log.contains(sig));
    }
    assert!(!log.to_ascii_lowercase().contains("bearer "));
}

#[test]
fn cli_minted_token_is_accepted_and_cli_revocation_is_seen_at_once() {
    let (h, _srv, base) = served("");
    let (tok, jti) = h.mint("ci", "push,pull");
    // Asked several times, so that the server's answer for this token is one it reuses while
    // the store is unchanged.
    for _ in 0..3 {
        let (s, v) = verify(&base, &tok);
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["valid"], true);
        assert_eq!(v["subject"], "ci");
        assert_eq!(v["jti"], jti.as_str());
    }
    h.ok(&["auth", "token", "revoke", &jti]);
    let (s, v) = verify(&base, &tok);
    assert_eq!((s, v["code"].as_str()), (401, Some("TOKEN_REVOKED")));
    // Revocation by subject too.
    let (tok2, _) = h.mint("ci", "pull");
    assert_eq!(verify(&base, &tok2).0, 200);
    assert_eq!(verify(&base, &tok2).0, 200);
    h.ok(&["auth", "token", "revoke", "--subject", "ci"]);
    assert_eq!(verify(&base, &tok2).1["code"], "TOKEN_REVOKED");
    // And every token.
    let (tok3, _) = h.mint("bot", "pull");
    assert_eq!(verify(&base, &tok3).0, 200);
    assert_eq!(verify(&base, &tok3).0, 200);
    h.ok(&["auth", "token", "revoke", "--all", "--yes"]);
    assert_eq!(verify(&base, &tok3).1["code"], "TOKEN_REVOKED");
}

/// A token the server has verified before is reused by its exact text only: any change to it
/// is verified from scratch and refused.
#[test]
fn a_token_verified_before_does_not_vouch_for_a_changed_one() {
    let (h, _srv, base) = served("");
    let (tok, _) = h.mint("ci", "pull");
    verify_until_cached(&base, &tok);
    let (head, sig) = tok.rsplit_once('.').unwrap();
    let mut changed_sig: Vec<u8> = sig.bytes().collect();
    changed_sig[0] = if changed_sig[0] == b'A' { b'B' } else { b'A' };
    let forged = [
        format!("{head}.{}", String::from_utf8(changed_sig).unwrap()),
        format!("{tok}A"),
        tok[..tok.len() - 1].to_owned(),
    ];
    for t in &forged {
        let (s, v) = verify(&base, t);
        assert_eq!(s, 401, "{t}: {v}");
    }
    assert_eq!(verify(&base, &tok).0, 200);
}

/// A revocation written by another program with its own SQLite (Debian's `sqlite3` shell, a
/// different SQLite version from the one built into tessera) is seen by the next request: the
/// server reuses answers only while SQLite's shared WAL-index header is unchanged.
#[test]
fn a_revocation_written_by_the_sqlite3_shell_is_seen_at_once() {
    let (h, _srv, base) = served("");
    let (tok, jti) = h.mint("ci", "pull");
    verify_until_cached(&base, &tok);
    let store = h.data().join("tessera/tokens.db");
    let out = std::process::Command::new("sqlite3")
        .arg(&store)
        .arg(format!(
            "INSERT INTO revoked_jtis (jti, revoked_at) VALUES ('{jti}', 0);"
        ))
        .output()
        .expect("the sqlite3 shell (Debian package sqlite3; scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, v) = verify(&base, &tok);
    assert_eq!((s, v["code"].as_str()), (401, Some("TOKEN_REVOKED")), "{v}");
}

#[test]
fn api_revocation_is_seen_by_the_cli_and_admin_api_works() {
    let (h, _srv, base) = served("");
    let (admin, _) = h.mint("root", "admin:tokens:read,admin:tokens:write,pull");
    let r = client()
        .post(format!("{base}/auth/tokens"))
        .bearer_auth(&admin)
        .json(&json!({"subject": "bot", "scopes": "pull", "expiry": "2h", "single_use": false}))
        .send()
        .unwrap();
    let created = no_store_json(r, 201);
    let tok = created["token"].as_str().unwrap().to_owned();
    let jti = created["jti"].as_str().unwrap().to_owned();
    h.ok(&["auth", "token", "verify", &tok]);
    // Listed by the API.
    let list: Value = client()
        .get(format!("{base}/auth/tokens"))
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        list["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["jti"] == jti.as_str())
    );
    assert!(
        !list.to_string().contains(&tok),
        "the list must not hold tokens"
    );
    // Asking for more than the caller has is forbidden.
    let r = client()
        .post(format!("{base}/auth/tokens"))
        .bearer_auth(&admin)
        .json(&json!({"subject": "bot", "scopes": "push"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(
        r.json::<Value>().unwrap()["required_scope"],
        "repository:*:push"
    );
    // DELETE /auth/tokens/ID with the admin token: (status, body).
    let revoke = |id: &str| {
        status_and_json(
            client()
                .delete(format!("{base}/auth/tokens/{id}"))
                .bearer_auth(&admin)
                .send()
                .unwrap(),
        )
    };
    let (s, v) = revoke(&jti);
    assert_eq!((s, &v["already_revoked"]), (200, &json!(false)), "{v}");
    // Again: it says so; an id the store never heard of (a typo) is 404, and stays unknown.
    let (s, v) = revoke(&jti);
    assert_eq!((s, &v["already_revoked"]), (200, &json!(true)), "{v}");
    for _ in 0..2 {
        let (s, v) = revoke("0123456789abcdef0123456789abcdef");
        assert_eq!(s, 404, "{v}");
        assert_eq!(v["code"], "NOT_FOUND", "{v}");
        assert!(
            v["error"].as_str().unwrap().contains("no token with id"),
            "{v}"
        );
    }
    h.refuses(&["auth", "token", "verify", &tok], 1, "revoked");
}

fn expired_token(h: &Home) -> String {
    let keys =
        KeyRing::single(SigningKey::new(&SecretString::from(SECRET.to_owned()), "").unwrap());
    let scopes = ScopeSet::parse_list("pull", "*").unwrap();
    let minted = token::mint(
        &keys,
        &MintRequest {
            issuer: &h.config().0.auth.issuer,
            subject: "old",
            scopes: &scopes,
            expiry: "1h".parse().unwrap(),
            audience: None,
            now: Timestamp::now() - jiff::SignedDuration::from_hours(3),
        },
    )
    .unwrap();
    use secrecy::ExposeSecret;
    minted.token.expose_secret().to_owned()
}

#[test]
fn every_status_code_of_the_contract() {
    let h = Home::with_login("[server]\nlogin_attempts_per_minute = 3\n");
    let (_srv, base) = h.serve_base();
    let c = client();

    // 200 health, JSON 404, request ids.
    let r = c.get(format!("{base}/health")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.json::<Value>().unwrap(), json!({"status": "ok"}));
    let r = c.get(format!("{base}/nope")).send().unwrap();
    assert_eq!(status_and_code(r), (404, "NOT_FOUND".into()));

    // 400: malformed JSON, missing field, no body.
    let login_with = |body: &str| {
        c.post(format!("{base}/auth/login"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .unwrap()
    };
    for body in ["{not json", "{\"username\": \"deploy\"}", "", "[1,2]"] {
        let r = login_with(body);
        assert_eq!(r.status().as_u16(), 400, "{body}");
        let v: Value = r.json().unwrap();
        assert_eq!(v["code"], "BAD_REQUEST");
        assert!(v["error"].is_string());
    }
    // A password of the wrong type is not echoed back.
    let r = login_with(r#"{"username": "deploy", "password": 987654321}"#);
    assert_eq!(r.status().as_u16(), 400);
    assert!(!r.text().unwrap().contains("987654321"));

    // 413: oversized body.
    let big = format!(
        "{{\"username\":\"{}\",\"password\":\"x\"}}",
        "a".repeat(70_000)
    );
    let r = login_with(&big);
    assert_eq!(status_and_code(r), (413, "PAYLOAD_TOO_LARGE".into()));

    // 401s.
    let r = c.get(format!("{base}/auth/verify")).send().unwrap();
    assert!(r.headers().contains_key("www-authenticate"));
    assert_eq!(status_and_code(r), (401, "AUTH_REQUIRED".into()));
    for garbage in [
        "Bearer garbage",
        "Basic ZGVwbG95OnB3",
        "Bearer ",
        "Bearer a.b.c",
        "bearer \u{1}x",
    ] {
        let r = c
            .get(format!("{base}/auth/verify"))
            .header("authorization", garbage.as_bytes())
            .send();
        let Ok(r) = r else { continue }; // a header reqwest itself refuses to send
        assert_eq!(
            status_and_code(r),
            (401, "INVALID_TOKEN".into()),
            "{garbage}"
        );
    }
    let (s, v) = verify(&base, &expired_token(&h));
    assert_eq!((s, v["code"].as_str()), (401, Some("TOKEN_EXPIRED")));

    // 403 with the required scope (listing is self-service since contract section 9: a
    // non-admin sees its own tokens only; tests/it/users.rs covers it).
    let (pull, _) = h.mint("puller", "pull");
    for (method, path, scope) in [
        ("POST", "/auth/tokens", "admin:tokens:write"),
        ("DELETE", "/auth/tokens/abc", "admin:tokens:write"),
    ] {
        let r = c
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .bearer_auth(&pull)
            .json(&json!({"subject": "x"}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{path}");
        let v: Value = r.json().unwrap();
        assert_eq!(v["code"], "FORBIDDEN");
        assert_eq!(v["required_scope"], scope);
    }

    // Single-use tokens: the second use is refused.
    let (admin, _) = h.mint("root", "admin");
    let once = create_token(
        &base,
        &admin,
        &json!({"subject": "once", "scopes": ["pull"], "single_use": true}),
    );
    assert_eq!(verify(&base, &once).0, 200);
    let (s, v) = verify(&base, &once);
    assert_eq!((s, v["code"].as_str()), (401, Some("TOKEN_REVOKED")));

    // DELETE /auth/token revokes the presented token.
    let (mine, _) = h.mint("me", "pull");
    let r = c
        .delete(format!("{base}/auth/token"))
        .bearer_auth(&mine)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(verify(&base, &mine).1["code"], "TOKEN_REVOKED");

    // Login: 200 with no-store; unknown user and wrong password answer identically; 429.
    let r = login(&base, "deploy", PASSWORD);
    let v = no_store_json(r, 200);
    assert!(v["token"].is_string() && v["expires_at"].is_string());
    let a = login(&base, "nobody", PASSWORD);
    let b = login(&base, "deploy", WRONG_PASSWORD);
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (401, 401));
    let (a, b): (Value, Value) = (a.json().unwrap(), b.json().unwrap());
    assert_eq!(a, b);
    assert_eq!(a["code"], "INVALID_CREDENTIALS");
    // Only failures count (the 200 above did not): a third one, then 429 even for the right
    // password.
    assert_eq!(
        login(&base, "deploy", WRONG_PASSWORD).status().as_u16(),
        401
    );
    let r = login(&base, "deploy", PASSWORD);
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(r.json::<Value>().unwrap()["code"], "RATE_LIMITED");
}

/// A token store that cannot answer.
#[derive(Debug)]
struct BrokenStore;

impl BrokenStore {
    fn err() -> StoreError {
        StoreError::Unavailable {
            location: "broken".into(),
            message: "disk on fire".into(),
            hint: "test",
        }
    }
}

impl TokenStore for BrokenStore {
    fn record(&self, _: &TokenRecord) -> Result<(), StoreError> {
        Err(Self::err())
    }
    fn record_checked(
        &self,
        _: &TokenRecord,
        _: Option<Timestamp>,
        _: usize,
    ) -> Result<(), tessera::store::IssueError> {
        Err(Self::err().into())
    }
    fn is_revoked(&self, _: &str, _: &str, _: Timestamp) -> Result<bool, StoreError> {
        Err(Self::err())
    }
    fn check(&self, _: &str, _: &str, _: Timestamp) -> Result<Standing, StoreError> {
        Err(Self::err())
    }
    fn token_state(&self, _: &str) -> Result<TokenState, StoreError> {
        Err(Self::err())
    }
    fn revoke(&self, _: &str, _: Timestamp) -> Result<bool, StoreError> {
        Err(Self::err())
    }
    fn revoke_subject(&self, _: &str, _: Timestamp) -> Result<usize, StoreError> {
        Err(Self::err())
    }
    fn revoke_all(&self, _: Timestamp) -> Result<usize, StoreError> {
        Err(Self::err())
    }
    fn mark_used(&self, _: &str, _: Timestamp) -> Result<bool, StoreError> {
        Err(Self::err())
    }
    fn list(&self, _: Timestamp) -> Result<Vec<TokenRecord>, StoreError> {
        Ok(Vec::new())
    }
    fn prune(&self, _: Timestamp) -> Result<usize, StoreError> {
        Err(Self::err())
    }
    // --- API keys (contract section 9) ---
    fn create_key(
        &self,
        _: &tessera::store::ApiKeyRecord,
        _: usize,
    ) -> Result<tessera::store::KeyCreated, StoreError> {
        Err(Self::err())
    }
    fn key_by_digest(
        &self,
        _: &[u8; 32],
    ) -> Result<Option<tessera::store::ApiKeyRecord>, StoreError> {
        Err(Self::err())
    }
    fn key_by_id(&self, _: &str) -> Result<Option<tessera::store::ApiKeyRecord>, StoreError> {
        Err(Self::err())
    }
    fn list_keys(&self, _: Option<&str>) -> Result<Vec<tessera::store::ApiKeyRecord>, StoreError> {
        Err(Self::err())
    }
    fn set_key_state(
        &self,
        _: &str,
        _: tessera::store::StoredKeyState,
    ) -> Result<tessera::store::KeyChange, StoreError> {
        Err(Self::err())
    }
    fn rotate_key(
        &self,
        _: &str,
        _: &tessera::store::ApiKeyRecord,
        _: Option<Timestamp>,
    ) -> Result<tessera::store::KeyChange, StoreError> {
        Err(Self::err())
    }
    fn touch_keys(&self, _: &[tessera::store::KeyUse]) -> Result<(), StoreError> {
        Err(Self::err())
    }
    fn mark_id_token_exchanged(
        &self,
        _: &str,
        _: Timestamp,
        _: Timestamp,
    ) -> Result<bool, StoreError> {
        Err(Self::err())
    }
    fn update_counters(
        &self,
        _: &[String],
        _: Timestamp,
        _: tessera::store::CounterUpdate,
    ) -> Result<u64, StoreError> {
        Err(Self::err())
    }
    fn health(&self) -> Result<(), StoreError> {
        Err(Self::err())
    }
    fn report(&self) -> Result<tessera::store::StoreReport, StoreError> {
        Err(Self::err())
    }
}

#[test]
fn a_store_that_cannot_answer_fails_closed_with_503() {
    let h = Home::with_config("");
    let keys =
        KeyRing::single(SigningKey::new(&SecretString::from(SECRET.to_owned()), "").unwrap());
    let srv = crate::support::api::serve_with_store(&h.config().0, keys, Arc::new(BrokenStore));
    let (tok, _) = h.mint("ci", "pull");
    let (s, v) = verify(&format!("http://{}", srv.addr()), &tok);
    assert_eq!((s, v["code"].as_str()), (503, Some("STORE_UNAVAILABLE")));
    // /health still answers, with the reason and no address.
    let r = reqwest::blocking::get(format!("http://{}/health", srv.addr())).unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(
        v,
        serde_json::json!({"status": "degraded", "store": "disk on fire"})
    );
}

#[test]
fn many_concurrent_logins_into_one_remotes_file_lose_nothing() {
    let h = Arc::new(Home::with_login(
        "[server]\nlogin_attempts_per_minute = 0\n",
    ));
    let srv = h.serve();
    let url = format!("http://{}", srv.addr());
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let h = Arc::clone(&h);
            let url = url.clone();
            std::thread::spawn(move || {
                let name = format!("r{i}");
                h.ok(&["remotes", "add", &name, &url]);
                if i % 2 == 0 {
                    h.ok_with_stdin(
                        &[
                            "auth",
                            "login",
                            "--remote",
                            &name,
                            "--username",
                            "deploy",
                            "--password-stdin",
                        ],
                        format!("{PASSWORD}\n"),
                    );
                } else {
                    h.ok_with_stdin(&["remotes", "set-token", &name], format!("token-{i}\n"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let out = h
        .cmd()
        .args(["--json", "remotes", "list"])
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 16);
    assert!(
        list.iter().all(|r| r["token"] == "remotes.toml"),
        "{list:?}"
    );
    assert_eq!(list.iter().filter(|r| r["active"] == true).count(), 1);
    for i in (1..16).step_by(2) {
        h.cmd()
            .args(["auth", "token", "show", "--remote", &format!("r{i}")])
            .assert()
            .success()
            .stdout(format!("token-{i}\n"));
    }
    h.ok(&["auth", "status", "--remote", "r4"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(h.remotes()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn https_with_a_certificate_made_in_the_test() {
    let h = Home::with_config("");
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert_path = h.home().join("cert.pem");
    let key_path = h.home().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    std::fs::write(
        h.config_dir().join("tessera.toml"),
        format!(
            "[server]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert_path.display(),
            key_path.display()
        ),
    )
    .unwrap();
    let srv = h.serve_process_as(h.std_cmd(), None, "https");
    let url = format!("https://localhost:{}", srv.addr.port());

    // Without --insecure the self-signed certificate is refused with a sentence naming the fix.
    let out = h
        .cmd()
        .args(["remotes", "add", "tls", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TLS with") && err.contains("--insecure"),
        "{err}"
    );
    // With the CA in the trust store (SSL_CERT_FILE), it works without --insecure.
    h.cmd()
        .env("SSL_CERT_FILE", &cert_path)
        .args(["remotes", "add", "tls", &url])
        .assert()
        .success();
    // With --insecure, the whole flow works.
    h.ok(&["remotes", "add", "tls-insecure", &url, "--insecure"]);
    let (tok, _) = h.mint("ci", "pull");
    h.ok_with_stdin(
        &["auth", "login", "--remote", "tls-insecure", "--token-stdin"],
        format!("{tok}\n"),
    );
    h.prints(
        &["auth", "status", "--remote", "tls-insecure"],
        "subject: ci",
    );
    // And a Rust client trusting the certificate.
    crate::support::api::install_crypto_provider();
    let c = Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let r = c.get(format!("{url}/health")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    srv.stop();
}

#[test]
fn bad_input_from_the_command_line() {
    let h = Home::with_config("");
    for bad in ["a/b", "..", "../x", ".hidden", "a b", "x..y"] {
        h.refuses(
            &["remotes", "add", bad, "http://127.0.0.1:1", "--no-verify"],
            2,
            "invalid remote name",
        );
    }
    h.refuses(
        &["remotes", "add", "x", "http://example.com", "--no-verify"],
        2,
        "loopback",
    );
    // An unreachable remote: one sentence naming the URL.
    h.refuses(
        &["remotes", "add", "down", "http://127.0.0.1:9"],
        1,
        "cannot reach http://127.0.0.1:9",
    );
    // Something that is not tessera.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut line = String::new();
            let mut r = BufReader::new(s.try_clone().unwrap());
            while r.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: text/html\r\n\r\nhello",
            );
        }
    });
    h.cmd()
        .args(["remotes", "add", "web", &format!("http://{addr}")])
        .assert()
        .code(1)
        .stderr(
            predicates::str::contains("no tessera JSON")
                .and(predicates::str::contains("tessera server")),
        );

    // A hand-broken remotes.toml is reported with its line and never overwritten.
    let broken = "active = \"a\"\n[remotes.a]\nurl = \"http://127.0.0.1:1\"\ninsecure = maybe\n";
    std::fs::write(h.remotes(), broken).unwrap();
    h.refuses_with_stdin(
        &["remotes", "set-token", "a"],
        "tok\n",
        1,
        "remotes.toml:4:",
    );
    h.cmd()
        .args(["remotes", "add", "b", "http://127.0.0.1:1", "--no-verify"])
        .assert()
        .failure();
    assert_eq!(std::fs::read_to_string(h.remotes()).unwrap(), broken);
}

use predicates::prelude::PredicateBooleanExt;

#[test]
fn start_up_refusals() {
    let h = Home::with_config("[auth]\nenabled = false\n");
    h.refuses(&["serve", "--bind", "0.0.0.0:0"], 1, "auth.enabled = false");
    let h = Home::with_config("[auth]\nusername = \"deploy\"\n");
    h.refuses(&["serve", "--bind", "127.0.0.1:0"], 1, "no password hash");
    h.fails(&["serve", "--bind", "not an address"], "", 2);
}

#[test]
fn with_the_age_backend_the_token_lives_in_the_backend_not_in_remotes_toml() {
    let h = Home::with_config("[secrets]\nbackend = \"age\"\n");
    std::fs::remove_file(h.config_dir().join("tessera.toml")).unwrap();
    h.ok(&["init", "--backend", "age"]);
    let srv = h.serve();
    let url = format!("http://{}", srv.addr());
    h.ok(&["remotes", "add", "a", &url]);
    let (tok, _) = h.mint("ci", "pull");
    h.ok_with_stdin(&["auth", "login", "--token-stdin"], format!("{tok}\n"));
    let file = std::fs::read_to_string(h.remotes()).unwrap();
    assert!(!file.contains(&tok));
    assert!(file.contains("token_backend = \"age\""), "{file}");
    h.cmd()
        .args(["secrets", "get", "tessera/remotes/a/token"])
        .assert()
        .success()
        .stdout(format!("{tok}\n"));
    h.cmd()
        .args(["auth", "token", "show"])
        .assert()
        .success()
        .stdout(format!("{tok}\n"));
    h.ok(&["remotes", "remove", "a"]);
    h.cmd()
        .args(["secrets", "get", "tessera/remotes/a/token"])
        .assert()
        .failure();
}

/// Every refusal is JSON `{error, code}`, also when axum's extractors refuse the request: a
/// token id that is not UTF-8 in the path, a body that is not JSON.
#[test]
fn extractor_rejections_are_json() {
    let (h, _srv, base) = served("");
    let (admin, _) = h.mint("root", "admin");
    for path in [
        "/auth/tokens/%FF",
        "/auth/tokens/%C3%28",
        "/auth/tokens/a%00b",
    ] {
        let r = client()
            .delete(format!("{base}{path}"))
            .bearer_auth(&admin)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{path}");
        let v: Value = r.json().unwrap_or_else(|e| panic!("{path}: not JSON: {e}"));
        assert_eq!(v["code"], "BAD_REQUEST", "{path}");
        assert!(v["error"].is_string(), "{path}");
    }
    for (body, content_type) in [("{", "application/json"), ("[]", "application/json")] {
        let r = client()
            .post(format!("{base}/auth/tokens"))
            .bearer_auth(&admin)
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap();
        assert_eq!(status_and_code(r), (400, "BAD_REQUEST".into()), "{body}");
    }
}

/// DNS rebinding against a loopback server with `auth.enabled = false`: a web page whose
/// name points at 127.0.0.1 sends its own name as `Host` (421), its own `Origin` (403) and a
/// `text/plain` or form body (415), and cannot mint a token. Programs that send the
/// server's own name, no `Origin` and JSON still can.
#[test]
fn a_loopback_server_refuses_rebinding_cross_origin_and_non_json_writes() {
    let h = Home::with_config("[auth]\nenabled = false\n");
    let srv = h.serve();
    let port = srv.addr().port();
    let base = format!("http://{}", srv.addr());
    let c = client();
    let body = json!({"subject": "evil", "scopes": "admin", "expiry": "0"}).to_string();
    let refused = |r: reqwest::blocking::Response, status: u16, code: &str, case: &str| {
        assert_eq!(r.status().as_u16(), status, "{case}");
        let v: Value = r.json().unwrap_or_else(|e| panic!("{case}: not JSON: {e}"));
        assert_eq!(v["code"], code, "{case}");
        assert!(v["error"].is_string(), "{case}");
    };
    // A POST of `body` to /auth/tokens with the given headers.
    let post = |headers: &[(&str, &str)]| {
        let mut r = c.post(format!("{base}/auth/tokens"));
        for (name, value) in headers {
            r = r.header(*name, *value);
        }
        r.body(body.clone()).send().unwrap()
    };
    // A foreign Host, on a write and on a read.
    for host in [
        format!("rebind.example:{port}"),
        "rebind.example".to_owned(),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        format!("127.0.0.1.nip.io:{port}"),
    ] {
        let r = post(&[("host", &host), ("content-type", "application/json")]);
        refused(r, 421, "WRONG_HOST", &host);
        let r = c
            .get(format!("{base}/auth/tokens"))
            .header("host", &host)
            .send()
            .unwrap();
        refused(r, 421, "WRONG_HOST", &host);
    }
    // Another origin.
    for origin in [
        "http://rebind.example".to_owned(),
        format!("http://rebind.example:{port}"),
        "null".to_owned(),
        format!("https://127.0.0.1:{port}"),
    ] {
        let r = post(&[("origin", &origin), ("content-type", "application/json")]);
        refused(r, 403, "CROSS_ORIGIN", &origin);
    }
    // Bodies a page can send without asking first.
    for content_type in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let r = post(&[("content-type", content_type)]);
        refused(r, 415, "UNSUPPORTED_MEDIA_TYPE", content_type);
    }
    let r = c
        .post(format!("{base}/auth/login"))
        .body(r#"{"username":"a","password":"b"}"#)
        .send()
        .unwrap();
    refused(r, 415, "UNSUPPORTED_MEDIA_TYPE", "no content type");
    let (tokens, _) = (c.get(format!("{base}/auth/tokens")).send().unwrap(), ());
    let list: Value = tokens.json().unwrap();
    assert_eq!(list["tokens"], json!([]), "nothing was minted");
    // What programs send still works: the server's own names, its own origin, JSON.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
    ] {
        let r = c
            .post(format!("{base}/auth/tokens"))
            .header("host", &host)
            .header("origin", format!("http://{host}"))
            .json(&json!({"subject": "ci", "scopes": "pull"}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "{host}");
    }
    let r = c
        .post(format!("{base}/auth/tokens"))
        .header("content-type", "application/json; charset=utf-8")
        .body(json!({"subject": "ci", "scopes": "pull"}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(
        c.get(format!("{base}/health")).send().unwrap().status(),
        200
    );
}

/// A refused `/token` request is logged at the default level with why (never the token, the
/// password, or the username given, which may be a password typed into the wrong field); a
/// username that is not the token's subject says which subject the token has.
#[test]
fn refused_token_requests_are_logged_with_the_reason_and_no_credentials() {
    let h = Home::with_login(
        "\n[registry]\nservice = \"svc.test\"\nissuer = \"tessera\"\ncertificate = \"registry-token.crt\"\n",
    );
    h.ok(&["registry", "init"]);
    let srv = h.serve_process(None);
    let url = srv.url();
    let (token, _) = h.mint("deploy", "pull");
    let typed_username = "Hunter2-typed-into-the-username-field";
    let get = |user: &str, secret: &str| {
        client()
            .get(format!(
                "{url}/token?service=svc.test&scope=repository:app:pull"
            ))
            .basic_auth(user, Some(secret))
            .send()
            .unwrap()
    };
    // A token of `deploy` with another username.
    let r = get("ci-typo", &token);
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("does not match the token's subject `deploy`"),
        "{v}"
    );
    // A password in the username field, with a wrong password: GET and POST.
    assert_eq!(get(typed_username, WRONG_PASSWORD).status().as_u16(), 401);
    let r = post_form(
        &client(),
        &format!("{url}/token"),
        &[
            ("grant_type", "password"),
            ("username", typed_username),
            ("password", WRONG_PASSWORD),
            ("service", "svc.test"),
        ],
    );
    assert_eq!(r.status().as_u16(), 401);
    // The right credentials still work.
    assert_eq!(get("deploy", PASSWORD).status().as_u16(), 200);
    let log = srv.stop();
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused a /token request"))
        .collect();
    assert_eq!(refusals.len(), 3, "{log}");
    assert!(
        refusals[0].contains("the username does not match the token's subject `deploy`"),
        "{log}"
    );
    assert!(refusals[1].contains("INVALID_CREDENTIALS"), "{log}");
    assert!(refusals.iter().all(|l| l.contains("127.0.0.1")), "{log}");
    for secret in [typed_username, "ci-typo", PASSWORD, WRONG_PASSWORD, &token] {
        assert!(!log.contains(secret), "the log holds `{secret}`:\n{log}");
    }
}

#[test]
fn a_token_minted_right_after_revoke_subject_is_valid() {
    let h = Home::with_config("");
    for _ in 0..25 {
        h.ok(&["auth", "token", "revoke", "--subject", "ci"]);
        let (tok, _) = h.mint("ci", "pull");
        h.ok(&["auth", "token", "verify", &tok]);
    }
    // And one minted before the cut-off is revoked, however close.
    let (before, _) = h.mint("ci", "pull");
    h.ok(&["auth", "token", "revoke", "--subject", "ci"]);
    h.refuses(&["auth", "token", "verify", &before], 1, "revoked");
}

/// The same for tokens the server issues: a login right after `revoke --subject` of the user.
#[test]
fn a_login_right_after_revoke_subject_gives_a_valid_token() {
    let h = Home::with_login("");
    let (_srv, base) = h.serve_base();
    for round in 0..8 {
        h.ok(&["auth", "token", "revoke", "--subject", "deploy"]);
        let r = login(&base, "deploy", PASSWORD);
        assert_eq!(r.status(), 200);
        let tok = r.json::<Value>().unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let (s, v) = verify(&base, &tok);
        assert_eq!(s, 200, "round {round}: {v}");
    }
}

fn store_path(h: &Home) -> PathBuf {
    h.data().join("tessera/tokens.db")
}

/// Writes `n` token records of `subject`, expiring at `expires_at`, straight into the store's
/// database (as records that accumulated over time would be).
fn fill_store(h: &Home, subject: &str, n: usize, expires_at: Timestamp) {
    drop(tessera::store::SqliteStore::open(&store_path(h)).unwrap());
    let mut conn = rusqlite::Connection::open(store_path(h)).unwrap();
    let tx = conn.transaction().unwrap();
    let issued = expires_at - jiff::SignedDuration::from_hours(1);
    for i in 0..n {
        tx.execute(
            "INSERT INTO tokens (jti, subject, scopes, issued_at, expires_at, single_use)
             VALUES (?1, ?2, 'repository:*:pull', ?3, ?4, 0)",
            rusqlite::params![
                format!("{subject}-filler-{i}"),
                subject,
                issued.as_millisecond(),
                expires_at.as_millisecond()
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// Rows of the `tokens` table whose token expired before now.
fn expired_rows(h: &Home) -> i64 {
    let conn = rusqlite::Connection::open(store_path(h)).unwrap();
    conn.query_row(
        "SELECT COUNT(*) FROM tokens WHERE expires_at < ?1",
        [Timestamp::now().as_millisecond()],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn the_server_prunes_expired_records_as_it_issues_tokens() {
    let h = Home::with_login("");
    fill_store(
        &h,
        "gone",
        250,
        Timestamp::now() - jiff::SignedDuration::from_hours(2),
    );
    fill_store(
        &h,
        "live",
        3,
        Timestamp::now() + jiff::SignedDuration::from_hours(2),
    );
    assert_eq!(expired_rows(&h), 250);
    let (_srv, base) = h.serve_base();
    let mut left = Vec::new();
    for _ in 0..4 {
        let r = login(&base, "deploy", PASSWORD);
        assert_eq!(r.status(), 200);
        left.push(expired_rows(&h));
    }
    // Each issue prunes a bounded batch, so the records went down step by step, then to none.
    assert!(left[0] < 250 && left[0] > 0, "{left:?}");
    assert_eq!(left.last(), Some(&0), "{left:?}");
    let store = tessera::store::SqliteStore::open(&store_path(&h)).unwrap();
    let live = store.list(Timestamp::now()).unwrap();
    assert_eq!(live.iter().filter(|r| r.subject == "live").count(), 3);
}

#[test]
fn one_subject_cannot_pile_up_derived_tokens() {
    let h = Home::with_login("");
    let limit = tessera::store::MAX_LIVE_TOKENS_PER_SUBJECT;
    fill_store(
        &h,
        "ci",
        limit,
        Timestamp::now() + jiff::SignedDuration::from_hours(2),
    );
    let (_srv, base) = h.serve_base();
    let (tok, _) = h.mint("ci", "pull");
    assert_eq!(verify(&base, &tok).0, 200, "the token itself is fine");
    let r = refresh(&base, &tok);
    assert_eq!(r.status(), 429);
    let v: Value = r.json().unwrap();
    assert_eq!(v["code"], "TOO_MANY_TOKENS", "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains(&limit.to_string()) && msg.contains("`ci`"),
        "{msg}"
    );
    // Another subject is not affected.
    let (other, _) = h.mint("bot", "pull");
    assert_eq!(refresh(&base, &other).status(), 200);
}

/// Two servers in this process sharing the store of one home, and a single-use token for `ci`
/// minted through the first one's admin API (after both started).
struct TwoServers {
    _servers: [RunningServer; 2],
    _home: Home,
    first: String,
    second: String,
    once: String,
}

fn single_use_token_on_two_servers() -> TwoServers {
    let home = Home::with_config("");
    let servers = [home.serve(), home.serve()];
    let [first, second] = servers.each_ref().map(|s| format!("http://{}", s.addr()));
    let (admin, _) = home.mint("root", "admin");
    let once = create_token(
        &first,
        &admin,
        &json!({"subject": "ci", "scopes": "pull", "single_use": true}),
    );
    TwoServers {
        _servers: servers,
        _home: home,
        first,
        second,
        once,
    }
}

/// A server that did not mint a single-use token (another server on the host did, after this
/// one started) still refuses to derive from it: the store knows it is single-use.
#[test]
fn a_single_use_token_minted_by_another_server_cannot_be_refreshed() {
    let t = single_use_token_on_two_servers();
    let r = refresh(&t.second, &t.once);
    assert_eq!(status_and_code(r), (403, "SINGLE_USE".into()));
    // Still usable once, where it is known as single-use.
    assert_eq!(verify(&t.first, &t.once).0, 200);
    assert_eq!(verify(&t.first, &t.once).0, 401);
}

/// Single-use marks live in the store, not in a server's memory: a single-use token minted on
/// one server is used once across every server sharing the store.
#[test]
fn a_single_use_token_is_used_once_across_servers() {
    let t = single_use_token_on_two_servers();
    assert_eq!(verify(&t.second, &t.once).0, 200, "the first use");
    for base in [&t.first, &t.second] {
        let (s, v) = verify(base, &t.once);
        assert_eq!((s, v["code"].as_str()), (401, Some("TOKEN_REVOKED")), "{v}");
    }
}
