//! Browser sessions (contract section 9) through a real server: the cookie's attributes,
//! CSRF and Origin on every write made with the cookie, sign out and sign out everywhere,
//! sessions kept in the store across a restart, and ended by the user's removal from the
//! configuration.

use serde_json::{Value, json};

use crate::support::http::{client, status_and_code, status_and_json};
use crate::support::principals::{Browser, USER_PASSWORD, sign_in_response, users_home};

const USERS: &str = "[[auth.users]]\nname = \"alice\"\nroles = [\"developer\"]\n\n[[auth.users]]\nname = \"bob\"\nroles = [\"viewer\"]\n";

#[test]
fn the_session_cookie_is_strict_and_stands_for_a_token() {
    let h = users_home(USERS, &["alice", "bob"], false);
    let (_srv, base) = h.serve_base();
    let r = sign_in_response(&base, "alice", USER_PASSWORD);
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(
            set.split("; ").any(|a| a == attribute),
            "{attribute} missing: {set}"
        );
    }
    assert!(!set.contains("Secure"), "no Secure over plain HTTP: {set}");
    let b = Browser::sign_in(&base, "alice", USER_PASSWORD);
    let (s, v) = b.whoami();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["subject"], "alice");
    assert_eq!(v["method"], "session");
    assert_eq!(
        v["scopes"],
        json!([
            "repository:*:pull",
            "repository:*:push",
            "admin:tokens:read"
        ])
    );
    let csrf = v["csrf_token"].as_str().unwrap().to_owned();
    assert!(csrf.len() >= 40 && !b.cookie.contains(&csrf) && csrf != b.cookie);
    // Reads need only the cookie.
    let (s, v) = status_and_json(b.request("GET", "/auth/tokens").send().unwrap());
    assert_eq!(s, 200, "{v}");
    // A write: no CSRF token, a wrong one, no Origin, another Origin: all refused.
    let body = json!({"scopes": "pull", "expiry": "1h"});
    let post = || b.request("POST", "/auth/tokens").json(&body);
    let refused = |r: reqwest::blocking::Response, code: &str, case: &str| {
        assert_eq!(status_and_code(r), (403, code.to_owned()), "{case}");
    };
    refused(
        post().header("origin", &base).send().unwrap(),
        "CSRF_REQUIRED",
        "no token",
    );
    refused(
        post()
            .header("origin", &base)
            .header("x-csrf-token", "AAAA")
            .send()
            .unwrap(),
        "CSRF_REQUIRED",
        "wrong token",
    );
    refused(
        post().header("x-csrf-token", &csrf).send().unwrap(),
        "CROSS_ORIGIN",
        "no origin",
    );
    refused(
        post()
            .header("x-csrf-token", &csrf)
            .header("origin", "http://evil.example")
            .send()
            .unwrap(),
        "CROSS_ORIGIN",
        "another origin with a valid cookie and token",
    );
    // Another session's CSRF token does not do.
    let other = Browser::sign_in(&base, "alice", USER_PASSWORD);
    refused(
        post()
            .header("x-csrf-token", other.csrf())
            .header("origin", &base)
            .send()
            .unwrap(),
        "CSRF_REQUIRED",
        "another session's token",
    );
    // Nothing was minted by the refused writes.
    let (_, v) = status_and_json(b.request("GET", "/auth/tokens").send().unwrap());
    assert_eq!(v["tokens"], json!([]), "{v}");
    // The real thing: the token is alice's, within her scopes.
    let r = b.write("POST", "/auth/tokens").json(&body).send().unwrap();
    let (s, v) = status_and_json(r);
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["subject"], "alice");
    assert_eq!(v["scopes"], json!(["repository:*:pull"]));
    // More than alice has is refused; minting for bob too.
    let r = b
        .write("POST", "/auth/tokens")
        .json(&json!({"scopes": "admin"}))
        .send()
        .unwrap();
    assert_eq!(status_and_code(r), (403, "FORBIDDEN".into()));
    let r = b
        .write("POST", "/auth/tokens")
        .json(&json!({"subject": "bob", "scopes": "pull"}))
        .send()
        .unwrap();
    let (s, v) = status_and_json(r);
    assert_eq!(
        (s, v["required_scope"].as_str()),
        (403, Some("admin:tokens:write"))
    );
    // A bearer token wins over the cookie: the session's CSRF rule does not apply to it.
    let r = b
        .request("POST", "/auth/refresh")
        .bearer_auth(h.mint("alice", "pull").0)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn unknown_users_and_wrong_passwords_get_the_same_answer() {
    let h = users_home(USERS, &["alice"], false);
    let (_srv, base) = h.serve_base();
    let wrong = status_and_json(sign_in_response(&base, "alice", "not the password"));
    let unknown = status_and_json(sign_in_response(&base, "mallory", USER_PASSWORD));
    // bob is configured but has no hash yet: the same again.
    let no_hash = status_and_json(sign_in_response(&base, "bob", USER_PASSWORD));
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, no_hash);
    let login = |u: &str, p: &str| status_and_json(crate::support::http::login(&base, u, p));
    assert_eq!(login("alice", "nope"), login("mallory", "nope"));
    // The login rate limiter covers sign-in as it covers /auth/login (10 failures a minute
    // per account by default; the failures above count too).
    let mut last = 0;
    for _ in 0..12 {
        last = sign_in_response(&base, "alice", "guess").status().as_u16();
        if last == 429 {
            break;
        }
    }
    assert_eq!(last, 429, "sign-in failures are rate-limited");
    let r = sign_in_response(&base, "alice", "guess");
    assert_eq!(status_and_code(r), (429, "RATE_LIMITED".into()));
}

#[test]
fn sign_out_and_sign_out_everywhere() {
    let h = users_home(USERS, &["alice", "bob"], false);
    let (_srv, base) = h.serve_base();
    let a = Browser::sign_in(&base, "alice", USER_PASSWORD);
    let a2 = Browser::sign_in(&base, "alice", USER_PASSWORD);
    let bob = Browser::sign_in(&base, "bob", USER_PASSWORD);
    let (s, v) = status_and_json(a.request("GET", "/auth/sessions").send().unwrap());
    assert_eq!(s, 200, "{v}");
    let listed = v["sessions"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{v}");
    assert_eq!(listed.iter().filter(|s| s["current"] == true).count(), 1);
    for secret in [&a.cookie, &a2.cookie] {
        assert!(!v.to_string().contains(secret.as_str()), "a secret in {v}");
    }
    assert!(listed[0]["address"] == "127.0.0.1" && listed[0]["last_seen_at"].is_string());
    // DELETE /auth/session needs the CSRF token too.
    let r = a.request("DELETE", "/auth/session").send().unwrap();
    assert_eq!(status_and_code(r), (403, "CSRF_REQUIRED".into()));
    let r = a2.write("DELETE", "/auth/session").send().unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(a2.whoami().0, 401);
    assert_eq!(a.whoami().0, 200);
    // Sign out everywhere from one session ends the others, and only alice's.
    let a3 = Browser::sign_in(&base, "alice", USER_PASSWORD);
    let r = a.write("DELETE", "/auth/sessions").send().unwrap();
    let (s, v) = status_and_json(r);
    assert_eq!((s, &v["ended"]), (200, &json!(2)), "{v}");
    assert_eq!(a.whoami().0, 401);
    assert_eq!(a3.whoami().0, 401);
    assert_eq!(bob.whoami().0, 200);
    // An ended session's cookie gets nothing.
    let (s, v) = status_and_json(a3.request("GET", "/auth/tokens").send().unwrap());
    assert_eq!(s, 401, "{v}");
    // With a token, sign out everywhere works too (a CLI can end a stolen browser session).
    let (tok, _) = h.mint("bob", "pull");
    let r = client()
        .delete(format!("{base}/auth/sessions"))
        .bearer_auth(&tok)
        .send()
        .unwrap();
    let (s, v): (u16, Value) = status_and_json(r);
    assert_eq!((s, &v["ended"]), (200, &json!(1)), "{v}");
    assert_eq!(bob.whoami().0, 401);
}

#[test]
fn sessions_survive_a_restart_and_end_with_the_user() {
    let h = users_home(USERS, &["alice", "bob"], false);
    let (srv, base) = h.serve_base();
    let a = Browser::sign_in(&base, "alice", USER_PASSWORD);
    let b = Browser::sign_in(&base, "bob", USER_PASSWORD);
    drop(srv);
    // Same store, new server (on a new port: the browser follows it).
    let (srv, base) = h.serve_base();
    let a = Browser {
        base: base.clone(),
        ..a
    };
    let b = Browser {
        base: base.clone(),
        ..b
    };
    assert_eq!(a.whoami().0, 200);
    assert_eq!(b.whoami().0, 200);
    drop(srv);
    // alice leaves the configuration; bob becomes a viewer of `public/*` only.
    let config = std::fs::read_to_string(h.config_file()).unwrap();
    let edited = config
        .replace(
            "[[auth.users]]\nname = \"alice\"\nroles = [\"developer\"]\n",
            "",
        )
        .replace(
            "[[auth.users]]\nname = \"bob\"",
            "[auth.roles.viewer]\nscopes = [\"repository:public/*:pull\"]\n\n[[auth.users]]\nname = \"bob\"",
        );
    assert_ne!(edited, config);
    std::fs::write(h.config_file(), edited).unwrap();
    let (_srv, base) = h.serve_base();
    let a = Browser {
        base: base.clone(),
        ..a
    };
    let b = Browser {
        base: base.clone(),
        ..b
    };
    let (s, v) = a.whoami();
    assert_eq!(s, 401, "a removed user's session is over: {v}");
    let (s, v) = status_and_json(a.request("GET", "/auth/tokens").send().unwrap());
    assert_eq!(s, 401, "{v}");
    let (s, v) = b.whoami();
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["scopes"],
        json!(["repository:public/*:pull"]),
        "the user's scopes of now"
    );
}

#[test]
fn under_tls_the_cookie_is_secure() {
    let h = users_home(USERS, &["alice"], false);
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert_path = h.home().join("cert.pem");
    let key_path = h.home().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    h.append_config(&format!(
        "\n[server]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert_path.display(),
        key_path.display()
    ));
    let srv = h.serve_process_as(h.std_cmd(), None, "https");
    crate::support::api::install_crypto_provider();
    let c = reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", srv.addr.port());
    let r = c
        .post(format!("{base}/auth/session"))
        .json(&json!({"username": "alice", "password": USER_PASSWORD}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let set = r.headers()["set-cookie"].to_str().unwrap();
    assert!(set.split("; ").any(|a| a == "Secure"), "{set}");
    assert!(set.split("; ").any(|a| a == "HttpOnly"), "{set}");
}

/// Attacks on sessions: piling them up, forging a cookie (also from the store's own id of a
/// session), and reading secrets from the server's log.
#[test]
fn sessions_cannot_pile_up_be_forged_or_leak_into_the_log() {
    let h = users_home(USERS, &["alice"], false);
    let mut srv = h.serve_process(None);
    let base = srv.url();
    let mut browsers: Vec<Browser> = (0..23)
        .map(|_| Browser::sign_in(&base, "alice", USER_PASSWORD))
        .collect();
    let last = browsers.pop().unwrap();
    let (_, v) = status_and_json(last.request("GET", "/auth/sessions").send().unwrap());
    assert_eq!(v["sessions"].as_array().unwrap().len(), 20, "{v}");
    // The three oldest were ended to make room; the newest work.
    for old in &browsers[..3] {
        assert_eq!(old.whoami().0, 401);
    }
    assert_eq!(browsers[3].whoami().0, 200);
    let csrf = last.csrf();
    // Forged cookies: random, the CSRF token, and the store's id of the session (its
    // SHA-256, which a copy of the database would show) are no way in.
    use sha2::Digest;
    let store_id = hex::encode(sha2::Sha256::digest(last.cookie.as_bytes()));
    for forged in [
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &csrf,
        &store_id,
    ] {
        let b = Browser {
            base: base.clone(),
            cookie: forged.to_owned(),
        };
        assert_eq!(b.whoami().0, 401, "{forged}");
        let (s, _) = status_and_json(b.request("GET", "/auth/tokens").send().unwrap());
        assert_eq!(s, 401);
    }
    let r = last
        .write("POST", "/auth/tokens")
        .json(&json!({"scopes": "pull"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let r = last.write("DELETE", "/auth/sessions").send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    srv.alive();
    let log = srv.stop();
    for secret in [USER_PASSWORD, last.cookie.as_str(), csrf.as_str()] {
        assert!(!log.contains(secret), "a secret in the log:\n{log}");
    }
    assert!(
        log.lines()
            .any(|l| l.contains("\"alice\"") && l.contains("session") && l.contains("opened")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("\"alice\"") && l.contains("sign out everywhere")),
        "{log}"
    );
}
