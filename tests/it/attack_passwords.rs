//! Password attacks: bcrypt's 72-byte truncation, malformed or foreign stored hashes, and
//! hashes too cheap to resist brute force. The server checks the stored hash at start; a
//! broken or weak one stops it with a sentence that names the key and the fix, never the
//! hash itself.

use crate::support::Run;
use crate::support::{Home, SERVICE};
use reqwest::blocking::Client;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tessera::password::{self, HashKind, PasswordError};

const HASH_KEY: &str = "tessera/auth/password_hash";

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

/// Replaces the stored password hash with `value` (through the CLI, like a user would).
fn store_hash(home: &Home, value: &str) {
    home.ok_with_stdin(&["secrets", "set", HASH_KEY], format!("{value}\n"));
}

/// A 72-byte password with something in every byte.
fn password_72() -> String {
    let p = "Seventy-two bytes: correct horse battery staple, then padding to the end";
    assert_eq!(p.len(), 72);
    p.to_owned()
}

#[test]
fn passwords_sharing_their_first_72_bytes_never_both_verify_in_the_library() {
    let p72 = password_72();
    let longer = format!("{p72}-and-more");
    let h = password::hash(&secret(&p72), 10).unwrap();
    assert!(password::verify(&secret(&p72), &h).unwrap(), "control");
    assert!(!password::verify(&secret(&longer), &h).unwrap());
    assert!(!password::verify(&secret(&format!("{p72}x")), &h).unwrap());
    // The longer one cannot even be hashed (it would be truncated to the shorter one).
    assert!(matches!(
        password::hash(&secret(&longer), 10),
        Err(PasswordError::TooLong(81))
    ));
    // Multi-byte characters count in bytes: 36 two-byte characters are 72 bytes, 37 are not.
    let e36 = "é".repeat(36);
    assert!(password::hash(&secret(&e36), 4).is_ok());
    assert!(matches!(
        password::hash(&secret(&"é".repeat(37)), 4),
        Err(PasswordError::TooLong(74))
    ));
}

#[test]
fn the_cli_refuses_to_hash_a_password_over_72_bytes() {
    let home = Home::new();
    let longer = format!("{}x", password_72());
    let out = home
        .cmd()
        .args(["auth", "password", "hash", "--stdin", "--cost", "10"])
        .write_stdin(format!("{longer}\n"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no hash printed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("72"), "{err}");
    assert!(
        !err.contains(&longer[..20]),
        "the password is not echoed: {err}"
    );
}

#[test]
fn the_server_refuses_the_longer_of_two_passwords_sharing_72_bytes() {
    let home = Home::new();
    let p72 = password_72();
    let h = password::hash(&secret(&p72), 10).unwrap();
    store_hash(&home, h.expose_secret());
    let server = home.serve();
    crate::support::api::install_crypto_provider();
    let http = Client::new();
    let login = |pw: &str| {
        http.post(format!("http://{}/auth/login", server.addr()))
            .json(&json!({"username": "deploy", "password": pw}))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let token = |pw: &str| {
        http.get(format!("http://{}/token?service={SERVICE}", server.addr()))
            .basic_auth("deploy", Some(pw))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(login(&p72), 200, "control");
    assert_eq!(token(&p72), 200, "control");
    for longer in [format!("{p72}x"), format!("{p72}{p72}")] {
        assert_eq!(login(&longer), 401);
        assert_eq!(token(&longer), 401);
    }
    // The 72nd byte counts.
    let mut last_changed = p72.clone();
    last_changed.pop();
    last_changed.push('?');
    assert_eq!(login(&last_changed), 401);
}

/// Hashes that are neither a usable argon2id nor a usable bcrypt hash, each with what it is.
fn malformed_hashes() -> Vec<(&'static str, String)> {
    let good = password::hash(&secret("pw"), 10).unwrap();
    let g = good.expose_secret().to_owned();
    vec![
        ("empty", String::new()),
        (
            "`$2x$` (the buggy-implementation marker)",
            format!("$2x{}", &g[3..]),
        ),
        ("`$2$` (the original, pre-2a)", format!("$2{}", &g[3..])),
        ("truncated by one", g[..59].to_owned()),
        ("truncated to the salt", g[..29].to_owned()),
        ("one character too many", format!("{g}A")),
        ("one-digit cost field", format!("$2y$9${}", &g[7..])),
        ("letters in the cost field", format!("$2y$1x{}", &g[6..])),
        ("cost 99", format!("$2y$99{}", &g[6..])),
        ("cost 00", format!("$2y$00{}", &g[6..])),
        (
            "a character outside bcrypt's base64",
            format!("{}!", &g[..59]),
        ),
        (
            "{SHA} (htpasswd SHA-1)",
            "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=".to_owned(),
        ),
        ("MD5-crypt", "$1$saltsalt$2vnaRpHa6Jxjz5n83ok8Z0".to_owned()),
        (
            "apr1 (htpasswd MD5)",
            "$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/".to_owned(),
        ),
        (
            "SHA-512 crypt",
            "$6$rounds=5000$salt$abcdefghijklmnopqrstuvwxyz".to_owned(),
        ),
        (
            "argon2i (not argon2id)",
            "$argon2i$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_owned(),
        ),
        (
            "argon2id with a 4-byte output",
            "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA".to_owned(),
        ),
        ("the plain password", "pw".to_owned()),
    ]
}

#[test]
fn malformed_hashes_fail_closed_in_the_library() {
    for (what, bad) in malformed_hashes() {
        let result = password::verify(&secret("pw"), &secret(&bad));
        assert!(
            matches!(result, Err(PasswordError::BadHash)),
            "{what}: {result:?}"
        );
        assert!(password::hash_cost(&secret(&bad)).is_err(), "{what}");
    }
    // An empty or long password against a malformed hash is still the hash's error.
    assert!(password::verify(&secret(""), &secret("{SHA}x")).is_err());
}

#[test]
fn the_server_refuses_to_start_with_a_malformed_hash_and_does_not_echo_it() {
    let home = Home::new();
    for (what, bad) in malformed_hashes() {
        if bad.is_empty() {
            continue; // `secrets set` refuses an empty value; covered in the library test.
        }
        store_hash(&home, &bad);
        let err = home.start_error();
        assert!(
            err.contains("not an argon2id hash") && err.contains("or a bcrypt hash"),
            "{what}: {err}"
        );
        assert!(err.contains(HASH_KEY), "{what} names the key: {err}");
        if bad.len() > 8 {
            assert!(
                !err.contains(&bad[..bad.len().min(40)]),
                "{what} echoed: {err}"
            );
        }
    }
}

#[test]
fn the_server_refuses_a_stored_hash_cheaper_than_cost_10() {
    let home = Home::new();
    for cost in [4, 5, 9] {
        let h = password::hash(&secret("pw"), cost).unwrap();
        store_hash(&home, h.expose_secret());
        let err = home.start_error();
        assert!(
            err.contains(&format!("cost {cost}")) && err.contains("below 10"),
            "cost {cost}: {err}"
        );
        assert!(
            err.contains("tessera auth password hash --store"),
            "the fix: {err}"
        );
        assert!(
            !err.contains(&h.expose_secret()[7..30]),
            "hash echoed: {err}"
        );
    }
    // Through the real binary: exit 1 and the same sentence on stderr.
    let out = home
        .cmd()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("below 10"));
    // Cost 10 starts.
    let h = password::hash(&secret("pw"), 10).unwrap();
    store_hash(&home, h.expose_secret());
    let (config, env) = home.config();
    assert_eq!(crate::support::api::start_error(&config, &env), None);
}

#[test]
fn a_server_with_an_argon2id_hash_logs_in_by_api_and_registry_basic() {
    let home = Home::new();
    // `auth password hash --store` makes argon2id by default.
    home.ok_with_stdin(
        &["auth", "password", "hash", "--stdin", "--store"],
        "argon pass\n",
    );
    let (stored, _) = home.ok(&["secrets", "get", HASH_KEY]);
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    let server = home.serve();
    crate::support::api::install_crypto_provider();
    let http = Client::new();
    let login = |user: &str, pw: &str| {
        http.post(format!("http://{}/auth/login", server.addr()))
            .json(&json!({"username": user, "password": pw}))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let token = |user: &str, pw: &str| {
        http.get(format!("http://{}/token?service={SERVICE}", server.addr()))
            .basic_auth(user, Some(pw))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(login("deploy", "argon pass"), 200);
    assert_eq!(token("deploy", "argon pass"), 200);
    assert_eq!(login("deploy", "argon pasS"), 401);
    assert_eq!(token("deploy", "argon pasS"), 401);
    assert_eq!(login("nobody", "argon pass"), 401);
    assert_eq!(token("deploy", ""), 401);
}

#[test]
fn the_server_refuses_an_argon2id_hash_below_m19456_t2_p1() {
    let home = Home::new();
    for (m_kib, t, p) in [(4096, 2, 1), (19456, 1, 1)] {
        let h = password::hash_like(&secret("pw"), HashKind::Argon2id { m_kib, t, p }).unwrap();
        store_hash(&home, h.expose_secret());
        let err = home.start_error();
        assert!(
            err.contains(&format!("m={m_kib}, t={t}, p={p}"))
                && err.contains("less than m=19456, t=2, p=1"),
            "{err}"
        );
        assert!(err.contains(HASH_KEY), "names the key: {err}");
        assert!(
            err.contains("tessera auth password hash --store"),
            "the fix: {err}"
        );
        let salt_and_output = &h.expose_secret()[30..];
        assert!(!err.contains(salt_and_output), "hash echoed: {err}");
    }
    // At the floor it starts.
    let h = password::hash_argon2id(&secret("pw")).unwrap();
    store_hash(&home, h.expose_secret());
    let (config, env) = home.config();
    assert_eq!(crate::support::api::start_error(&config, &env), None);
}
