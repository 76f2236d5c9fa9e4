//! API keys (contract section 9) through the binary and HTTP: every key state, the checksum,
//! the allow-list with and without trusted proxies, rate limits, who may manage which keys,
//! the CLI locally and with `--remote`, config-held argon2id keys, the scanner rules of
//! docs/api-keys.md, and the real registry flow with skopeo and podman.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::Home;
use crate::support::Run;
use crate::support::http::{client, status_and_json};
use crate::support::keys::{
    Via, create_key, get_with_key, key_action, keys_call, one_char_changed, show_key, verify_key,
};

/// A home with no password login, its server, its base URL and an `admin` token of `ops`.
fn served(extra_config: &str) -> (Home, crate::support::api::RunningServer, String, String) {
    // `ops` holds `admin`: keys it creates are bound to this token (see
    // `a_key_never_outlives_the_credential_it_was_created_with`).
    let h = Home::with_config(extra_config);
    let (admin, _) = h.mint("ops", "admin");
    let (srv, base) = h.serve_base();
    (h, srv, base, admin)
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or_default()
}

#[test]
fn a_key_works_as_bearer_and_x_api_key_and_names_its_owner_and_scopes() {
    let (_h, _srv, base, admin) = served("");
    let (key, id) = create_key(
        &base,
        &admin,
        &json!({"name": "ci", "subject": "ci", "scopes": "pull"}),
    );
    assert!(key.starts_with("tsk_") && key.len() == 40, "{key}");
    let (s, v) = verify_key(&base, &key);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["subject"], "ci");
    assert_eq!(v["scopes"], json!(["repository:*:pull"]));
    assert_eq!(v["key_id"], json!(id));
    assert_eq!(v["key_name"], "ci");
    let (s, v) = status_and_json(get_with_key(&base, "/auth/verify", &key, Via::XApiKey, &[]));
    assert_eq!((s, v["subject"].as_str()), (200, Some("ci")), "{v}");
    // Both headers at once is refused rather than guessed.
    let r = client()
        .get(format!("{base}/auth/verify"))
        .bearer_auth(&key)
        .header("X-API-Key", &key)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // The key is never listed or shown again.
    let (_, list) = keys_call(&base, Method::GET, "/auth/keys", &admin, None);
    assert!(!list.to_string().contains(&key));
    assert!(list.to_string().contains(&id));
    // A key cannot be refreshed into a token that would outlive it.
    let r = client()
        .post(format!("{base}/auth/refresh"))
        .bearer_auth(&key)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[test]
fn every_key_state_is_obeyed_and_stays_listed() {
    let (h, _srv, base, admin) = served("");
    let (key, id) = create_key(
        &base,
        &admin,
        &json!({"name": "ci", "subject": "ci", "scopes": ["pull"]}),
    );
    assert_eq!(verify_key(&base, &key).0, 200);

    // Disabled (by this server): refused at once.
    let (s, v) = key_action(&base, &admin, &id, "disable", None);
    assert_eq!((s, v["state"].as_str()), (200, Some("disabled")), "{v}");
    let (s, v) = verify_key(&base, &key);
    assert_eq!((s, code(&v)), (401, "KEY_DISABLED"), "{v}");
    // Enabled again.
    key_action(&base, &admin, &id, "enable", None);
    assert_eq!(verify_key(&base, &key).0, 200);

    // Disabled by another process (the CLI on the shared store): obeyed within a second.
    h.ok(&["auth", "key", "disable", &id]);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(code(&verify_key(&base, &key).1), "KEY_DISABLED");
    h.ok(&["auth", "key", "enable", "ci"]);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(verify_key(&base, &key).0, 200);

    // Revoked: final, and still listed.
    let (s, v) = key_action(&base, &admin, &id, "revoke", None);
    assert_eq!((s, v["state"].as_str()), (200, Some("revoked")), "{v}");
    let (s, v) = verify_key(&base, &key);
    assert_eq!((s, code(&v)), (401, "TOKEN_REVOKED"), "{v}");
    let (s, v) = key_action(&base, &admin, &id, "enable", None);
    assert_eq!((s, code(&v)), (409, "KEY_REVOKED"), "{v}");
    assert_eq!(show_key(&base, &admin, &id)["state"], "revoked");
    // The name is free again.
    create_key(&base, &admin, &json!({"name": "ci", "subject": "ci"}));

    // Expired: refused, and listed as expired.
    let (short, sid) = create_key(
        &base,
        &admin,
        &json!({"name": "short", "subject": "ci", "expiry": "1s"}),
    );
    std::thread::sleep(Duration::from_millis(1300));
    let (s, v) = verify_key(&base, &short);
    assert_eq!((s, code(&v)), (401, "TOKEN_EXPIRED"), "{v}");
    assert_eq!(show_key(&base, &admin, &sid)["state"], "expired");
    let (out, _) = h.ok(&["--json", "auth", "key", "list"]);
    let listed: Value = serde_json::from_str(&out).unwrap();
    let states: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].as_str().unwrap())
        .collect();
    assert!(
        states.contains(&"revoked") && states.contains(&"expired"),
        "{states:?}"
    );
}

#[test]
fn rotation_keeps_the_old_key_for_the_grace_period_only() {
    let (_h, _srv, base, admin) = served("");
    let (old, id) = create_key(
        &base,
        &admin,
        &json!({"name": "ci", "subject": "ci", "scopes": "pull", "rate_limit": "100/1h"}),
    );
    let (s, v) = key_action(&base, &admin, &id, "rotate", Some(&json!({"grace": "2s"})));
    assert_eq!(s, 201, "{v}");
    let new = v["key"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(v["name"], "ci");
    assert_eq!(v["rate_limit"], "100/1h");
    assert_eq!(v["previous"]["successor"], v["id"]);
    // Within the grace both work.
    assert_eq!(verify_key(&base, &old).0, 200);
    assert_eq!(verify_key(&base, &new).0, 200);
    // A replaced key cannot be rotated again.
    let (s, _) = key_action(&base, &admin, &id, "rotate", None);
    assert_eq!(s, 409);
    std::thread::sleep(Duration::from_millis(2100));
    let (s, v) = verify_key(&base, &old);
    assert_eq!((s, code(&v)), (401, "TOKEN_REVOKED"), "{v}");
    assert_eq!(verify_key(&base, &new).0, 200);

    // Without a grace period the old key is refused at once.
    let new_id = v_id(&base, &admin, "ci");
    let (s, v) = key_action(&base, &admin, &new_id, "rotate", None);
    assert_eq!(s, 201, "{v}");
    assert_eq!(code(&verify_key(&base, &new).1), "TOKEN_REVOKED");
    assert_eq!(verify_key(&base, v["key"].as_str().unwrap()).0, 200);
}

/// The id of the current key named `name`.
fn v_id(base: &str, admin: &str, name: &str) -> String {
    let (_, v) = keys_call(base, Method::GET, "/auth/keys", admin, None);
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name && k["successor"].is_null() && k["state"] == "active")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_one_character_change_is_refused_and_leaves_the_key_untouched() {
    let (_h, _srv, base, admin) = served("");
    let (key, id) = create_key(&base, &admin, &json!({"name": "ci", "subject": "ci"}));
    assert_eq!(verify_key(&base, &key).0, 200);
    // The listing writes the noted uses first: the use above is recorded.
    let before = show_key(&base, &admin, &id);
    assert!(before["last_used_at"].is_string(), "{before}");
    assert_eq!(before["last_addresses"], json!(["127.0.0.1"]));
    std::thread::sleep(Duration::from_millis(1100));
    let changed = one_char_changed(&key);
    for via in [Via::Bearer, Via::XApiKey] {
        let (s, v) = status_and_json(get_with_key(&base, "/auth/verify", &changed, via, &[]));
        assert_eq!((s, code(&v)), (401, "INVALID_TOKEN"), "{v}");
        assert!(v["error"].as_str().unwrap().contains("checksum"), "{v}");
        assert!(!v.to_string().contains(&changed), "the key is echoed: {v}");
    }
    let after = show_key(&base, &admin, &id);
    assert_eq!(after["last_used_at"], before["last_used_at"]);
    // A key of the right shape that nobody created is refused too.
    let (s, v) = verify_key(&base, "tsk_000000000000000000000000000000000000");
    assert_eq!(s, 401, "{v}");
}

#[test]
fn the_allow_list_refuses_other_addresses_and_a_spoofed_forwarded_for() {
    let (_h, _srv, base, admin) = served("");
    let (outside, _) = create_key(
        &base,
        &admin,
        &json!({"name": "office", "subject": "ci", "allow_ip": "10.0.0.0/8"}),
    );
    let (local, _) = create_key(
        &base,
        &admin,
        &json!({"name": "local", "subject": "ci", "allow_ip": ["127.0.0.1/32", "::1"]}),
    );
    assert_eq!(verify_key(&base, &local).0, 200);
    let (s, v) = verify_key(&base, &outside);
    assert_eq!((s, code(&v)), (403, "IP_NOT_ALLOWED"), "{v}");
    // Without a trusted proxy, X-Forwarded-For is not believed.
    let r = get_with_key(
        &base,
        "/auth/verify",
        &outside,
        Via::XApiKey,
        &[("X-Forwarded-For", "10.1.2.3")],
    );
    assert_eq!(status_and_json(r).0, 403);

    // Behind a trusted proxy (this test's loopback), the rightmost untrusted hop is the
    // client.
    let (_h2, _srv2, base2, admin2) =
        served("[server]\ntrusted_proxies = [\"127.0.0.0/8\", \"192.0.2.0/24\"]\n");
    let (office, id) = create_key(
        &base2,
        &admin2,
        &json!({"name": "office", "subject": "ci", "allow_ip": "10.0.0.0/8"}),
    );
    let with = |xff: &str| {
        status_and_json(get_with_key(
            &base2,
            "/auth/verify",
            &office,
            Via::Bearer,
            &[("X-Forwarded-For", xff)],
        ))
    };
    assert_eq!(with("10.1.2.3").0, 200);
    assert_eq!(
        with("10.1.2.3, 192.0.2.9").0,
        200,
        "trusted hops are skipped"
    );
    // A client that puts an allowed address in front of its own real one is not believed.
    let (s, v) = with("10.9.9.9, 198.51.100.7");
    assert_eq!((s, code(&v)), (403, "IP_NOT_ALLOWED"), "{v}");
    assert_eq!(
        verify_key(&base2, &office).0,
        403,
        "no header: the proxy itself"
    );
    let seen = show_key(&base2, &admin2, &id);
    assert_eq!(seen["last_addresses"][0], "10.1.2.3", "{seen}");
}

#[test]
fn rate_limit_headers_count_down_and_then_429_with_retry_after() {
    let (_h, _srv, base, admin) = served("");
    let (key, _) = create_key(
        &base,
        &admin,
        &json!({"name": "ci", "subject": "ci", "rate_limit": "3/1d"}),
    );
    let mut resets = Vec::new();
    for left in [2, 1, 0] {
        let r = get_with_key(&base, "/auth/verify", &key, Via::Bearer, &[]);
        assert_eq!(r.status().as_u16(), 200);
        let h = r.headers();
        assert_eq!(h["x-ratelimit-limit"], "3");
        assert_eq!(h["x-ratelimit-remaining"], left.to_string().as_str());
        resets.push(
            h["x-ratelimit-reset"]
                .to_str()
                .unwrap()
                .parse::<i64>()
                .unwrap(),
        );
    }
    let r = get_with_key(&base, "/auth/verify", &key, Via::XApiKey, &[]);
    assert_eq!(r.status().as_u16(), 429);
    let h = r.headers().clone();
    assert_eq!(h["x-ratelimit-remaining"], "0");
    let retry: i64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    let reset: i64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!(resets.iter().all(|r| *r == reset), "{resets:?} {reset}");
    let now = jiff::Timestamp::now().as_second();
    assert!(
        retry >= 1 && (reset - now - retry).abs() <= 2,
        "{retry} {reset} {now}"
    );
    let v: Value = r.json().unwrap();
    assert_eq!(code(&v), "RATE_LIMITED");
    // A key without a limit carries no headers.
    let (free, _) = create_key(&base, &admin, &json!({"name": "free", "subject": "ci"}));
    let r = get_with_key(&base, "/auth/verify", &free, Via::Bearer, &[]);
    assert!(r.headers().get("x-ratelimit-limit").is_none());
}

#[test]
fn principals_manage_their_own_keys_never_beyond_their_scopes() {
    let (h, _srv, base, admin) = served("");
    let (alice, _) = h.mint("alice", "pull");
    // Own key, own scopes: fine; more than held: 403.
    let (akey, aid) = create_key(&base, &alice, &json!({"name": "laptop", "scopes": "pull"}));
    assert_eq!(verify_key(&base, &akey).1["subject"], "alice");
    let (s, v) = keys_call(
        &base,
        Method::POST,
        "/auth/keys",
        &alice,
        Some(&json!({"name": "more", "scopes": "push"})),
    );
    assert_eq!((s, code(&v)), (403, "FORBIDDEN"), "{v}");
    // A key for someone else needs admin:tokens:write.
    let (s, _) = keys_call(
        &base,
        Method::POST,
        "/auth/keys",
        &alice,
        Some(&json!({"name": "x", "subject": "bob"})),
    );
    assert_eq!(s, 403);
    // A key can create keys for its owner with at most its own scopes.
    let (s, v) = keys_call(
        &base,
        Method::POST,
        "/auth/keys",
        &akey,
        Some(&json!({"name": "child", "scopes": "push,pull"})),
    );
    assert_eq!((s, code(&v)), (403, "FORBIDDEN"), "{v}");
    create_key(&base, &akey, &json!({"name": "child", "scopes": "pull"}));
    // Others' keys are invisible (404) without admin:tokens:read.
    let (_, bid) = create_key(&base, &admin, &json!({"name": "b", "subject": "bob"}));
    let (s, _) = keys_call(
        &base,
        Method::GET,
        &format!("/auth/keys/{bid}"),
        &alice,
        None,
    );
    assert_eq!(s, 404);
    let (s, _) = key_action(&base, &alice, &bid, "revoke", None);
    assert_eq!(s, 404);
    let (_, mine) = keys_call(&base, Method::GET, "/auth/keys", &alice, None);
    let owners: Vec<&str> = mine["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["owner"].as_str().unwrap())
        .collect();
    assert!(
        owners.iter().all(|o| *o == "alice") && owners.len() == 2,
        "{owners:?}"
    );
    let (s, _) = keys_call(&base, Method::GET, "/auth/keys?owner=bob", &alice, None);
    assert_eq!(s, 403);
    // admin:tokens:read sees everyone's but cannot change them.
    let (reader, _) = h.mint("auditor", "admin:tokens:read");
    let (_, all) = keys_call(&base, Method::GET, "/auth/keys", &reader, None);
    assert!(all["keys"].as_array().unwrap().len() >= 3);
    assert_eq!(key_action(&base, &reader, &aid, "disable", None).0, 403);
    // Alice manages her own.
    assert_eq!(key_action(&base, &alice, &aid, "disable", None).0, 200);
    // Unknown ids and bad bodies.
    assert_eq!(key_action(&base, &admin, "nope", "enable", None).0, 404);
    let (s, _) = keys_call(
        &base,
        Method::POST,
        "/auth/keys",
        &admin,
        Some(&json!({"name": "bad name!", "subject": "x"})),
    );
    assert_eq!(s, 400);
    for bad in [
        json!({"allow_ip": "10.0.0.0/33"}),
        json!({"rate_limit": "5/1M"}),
        json!({"expiry": "1q"}),
    ] {
        let mut body = json!({"name": "n", "subject": "x"});
        body.as_object_mut()
            .unwrap()
            .extend(bad.as_object().unwrap().clone());
        let (s, v) = keys_call(&base, Method::POST, "/auth/keys", &admin, Some(&body));
        assert_eq!(s, 400, "{body} {v}");
    }
    // A name is unique per owner.
    let (s, v) = keys_call(
        &base,
        Method::POST,
        "/auth/keys",
        &alice,
        Some(&json!({"name": "laptop"})),
    );
    assert_eq!((s, code(&v)), (409, "NAME_TAKEN"), "{v}");
}

#[test]
fn the_cli_prints_a_key_once_and_works_locally_and_with_a_remote() {
    let h = Home::with_config("");
    let (out, err) = h.ok(&[
        "auth",
        "key",
        "create",
        "--name",
        "ci",
        "--subject",
        "ci",
        "--scopes",
        "pull",
        "--allow-ip",
        "127.0.0.1",
        "--rate-limit",
        "10/1m",
    ]);
    let key = out.trim().to_owned();
    assert!(
        key.starts_with("tsk_") && !out.trim().contains('\n'),
        "{out}"
    );
    assert!(err.contains("shown once") && !err.contains(&key), "{err}");
    let (list, _) = h.ok(&["auth", "key", "list"]);
    assert!(list.contains("ci") && !list.contains(&key), "{list}");
    let (show, _) = h.ok(&["auth", "key", "show", "ci"]);
    assert!(
        show.contains("10/1m") && show.contains("127.0.0.1"),
        "{show}"
    );
    // Bad input is a usage error naming the grammar.
    let e = h.fails(
        &[
            "auth",
            "key",
            "create",
            "--name",
            "x",
            "--subject",
            "x",
            "--rate-limit",
            "ten",
        ],
        "",
        2,
    );
    assert!(e.contains("N/PERIOD"), "{e}");
    let e = h.fails(&["auth", "key", "create", "--name", "x"], "", 2);
    assert!(e.contains("--subject"), "{e}");

    // Against a server, as the remote's stored token.
    let (srv, base) = h.serve_base();
    let (alice, _) = h.mint("alice", "pull");
    h.ok(&["remotes", "add", "prod", &base]);
    h.ok_with_stdin(&["remotes", "set-token", "prod"], format!("{alice}\n"));
    let (out, _) = h.ok(&[
        "--json", "auth", "key", "create", "--remote", "prod", "--name", "laptop", "--scopes",
        "pull",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["owner"], "alice");
    let rkey = v["key"].as_str().unwrap().to_owned();
    assert_eq!(verify_key(&base, &rkey).0, 200);
    let (out, _) = h.ok(&["--json", "auth", "key", "list", "--remote", "prod"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["keys"].as_array().unwrap().len(), 1, "{v}");
    let (out, _) = h.ok(&[
        "auth", "key", "rotate", "laptop", "--remote", "prod", "--grace", "1h",
    ]);
    let rotated = out.trim().to_owned();
    assert_eq!(verify_key(&base, &rotated).0, 200);
    assert_eq!(verify_key(&base, &rkey).0, 200, "within the grace");
    h.ok(&["auth", "key", "revoke", "laptop", "--remote", "prod"]);
    assert_eq!(verify_key(&base, &rotated).0, 401);
    drop(srv);
}

#[test]
fn a_config_held_argon2id_key_is_accepted_and_a_wrong_one_refused() {
    let h = Home::with_config("");
    let (out, _) = h.ok(&[
        "--json", "auth", "key", "hash", "--name", "ci", "--scopes", "pull",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let (key, hash) = (v["key"].as_str().unwrap(), v["hash"].as_str().unwrap());
    assert!(hash.starts_with("$argon2id$v=19$"));
    h.append_config(&format!(
        "[[auth.api_keys]]\nname = \"ci\"\nsubject = \"ci-bot\"\nhash = \"{hash}\"\nscopes = \"pull\"\n"
    ));
    let (srv, base) = h.serve_base();
    for _ in 0..3 {
        let (s, v) = verify_key(&base, key);
        assert_eq!((s, v["subject"].as_str()), (200, Some("ci-bot")), "{v}");
    }
    let checks = srv.password_checks();
    assert!(checks.peak >= 1, "verified on the hashing pool: {checks:?}");
    let (other, _) = h.ok(&["auth", "key", "hash"]);
    let other = other.lines().next().unwrap();
    assert_eq!(verify_key(&base, other).0, 401);
    let (admin, _) = h.mint("ops", "admin");
    let (_, list) = keys_call(&base, Method::GET, "/auth/keys", &admin, None);
    assert!(list.to_string().contains("\"config\""), "{list}");
    // A config entry that is not an argon2id hash is refused at load.
    let bad = Home::with_config("[[auth.api_keys]]\nname = \"x\"\nhash = \"$2b$10$abc\"\n");
    let e = bad.fails(&["auth", "key", "list"], "", 1);
    assert!(e.contains("argon2id"), "{e}");
}

/// The regular expressions published in docs/api-keys.md, taken from the document itself.
fn doc_patterns() -> (regex::Regex, regex::Regex) {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api-keys.md")).unwrap();
    let gitleaks = doc
        .lines()
        .find_map(|l| l.trim().strip_prefix("regex = '''"))
        .and_then(|r| r.strip_suffix("'''"))
        .expect("a gitleaks regex line in docs/api-keys.md");
    let github = doc
        .split("<!-- github-pattern -->")
        .nth(1)
        .and_then(|s| s.split('`').nth(1))
        .expect("a GitHub pattern in docs/api-keys.md");
    (
        regex::Regex::new(gitleaks).unwrap(),
        regex::Regex::new(&format!(r"(^|[^0-9A-Za-z_]){github}($|[^0-9A-Za-z_])")).unwrap(),
    )
}

#[test]
fn the_scanner_patterns_of_the_docs_find_keys_and_only_keys() {
    let (gitleaks, github) = doc_patterns();
    let h = Home::with_config("");
    for _ in 0..5 {
        let (key, _) = h.ok(&["auth", "key", "hash"]);
        let key = key.lines().next().unwrap();
        let text = format!("export TESSERA_KEY=\"{key}\" # leaked");
        assert_eq!(
            gitleaks.captures(&text).unwrap().get(1).unwrap().as_str(),
            key
        );
        assert!(github.is_match(&text), "{text}");
        // A character changed to one outside the alphabet, one lost, one added: no match.
        let broken = key.replacen(&key[10..11], "-", 1);
        let short = &key[..key.len() - 1];
        let long = format!("{key}x");
        for bad in [broken.as_str(), short, long.as_str()] {
            let t = format!("x = \"{bad}\"");
            assert!(!gitleaks.is_match(&t), "{bad}");
            assert!(!github.is_match(&t), "{bad}");
        }
        // A base62 substitution still matches the pattern (scanners cannot compute CRC-32);
        // the server's checksum refuses it.
        let changed = one_char_changed(key);
        assert!(gitleaks.is_match(&changed));
    }
}

#[test]
fn a_key_is_the_registry_password_of_skopeo_and_podman_and_a_pull_only_key_cannot_push() {
    use crate::docker_e2e::Podman;
    use crate::support::real::{
        Rig, Skopeo, fails, oci_image, ok, rootfs_tar, text, tools_present,
    };
    if !tools_present(
        &["docker-registry", "skopeo", "podman", "tar", "gzip"],
        "apt-get install docker-registry skopeo podman",
    ) {
        return;
    }
    let mut rig = Rig::start();
    let host = rig.host.clone();
    let key = |args: &[&str]| {
        let (out, _) = rig.home.ok(&[&["auth", "key", "create"], args].concat());
        out.trim().to_owned()
    };
    let pusher = key(&["--name", "ci", "--subject", "ci", "--scopes", "push,pull"]);
    let reader = key(&["--name", "ro", "--subject", "reader", "--scopes", "pull"]);
    let image = rig.work.path().join("image");
    oci_image(&image, "v1");

    // skopeo: the owner as username pushes; `key` as username with a pull-only key pulls and
    // is refused a push.
    let ci = Skopeo::new();
    ok(ci.login(&host, "ci", &pusher));
    ok(ci.push(&image, "v1", &format!("{host}/team/app:v1")));
    ok(ci.inspect(&format!("{host}/team/app:v1")));
    let ro = Skopeo::new();
    ok(ro.login(&host, "key", &reader));
    ok(ro.inspect(&format!("{host}/team/app:v1")));
    let denied = fails(ro.push(&image, "v1", &format!("{host}/team/app:v2")));
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("denied"),
        "{}",
        text(&denied)
    );
    fails(ci.inspect(&format!("{host}/team/app:v2")));
    // Another user name, or a key with one character changed, cannot log in.
    fails(Skopeo::new().login(&host, "someone", &pusher));
    fails(Skopeo::new().login(&host, "ci", &one_char_changed(&pusher)));

    // podman, with the same keys.
    let pc = Podman::new();
    ok(pc.remote(
        "login",
        &["-u", "ci", "--password-stdin", &host],
        Some(format!("{pusher}\n").as_bytes()),
    ));
    let app = format!("{host}/team/podman:1");
    let tar = rootfs_tar(rig.work.path(), "hello from a key\n");
    ok(pc.run(&["import", "-", &app], Some(&tar)));
    ok(pc.remote("push", &[&app], None));
    let pr = Podman::new();
    ok(pr.remote(
        "login",
        &["-u", "key", "--password-stdin", &host],
        Some(format!("{reader}\n").as_bytes()),
    ));
    ok(pr.remote("pull", &[&app], None));
    let second = format!("{host}/team/podman:2");
    ok(pr.run(&["tag", &app, &second], None));
    fails(pr.remote("push", &[&second], None));

    // Revoked (by the CLI, another process): refused within a second.
    rig.home
        .ok(&["auth", "key", "revoke", "ci", "--owner", "ci"]);
    std::thread::sleep(Duration::from_millis(1100));
    fails(Skopeo::new().login(&host, "ci", &pusher));
    rig.registry.assert_no_token_trouble();
}

#[test]
fn a_key_never_outlives_the_credential_it_was_created_with() {
    let (h, _srv, base, admin) = served("");
    let (alice, jti) =
        h.token_with_jti(&["--subject", "alice", "--scopes", "pull", "--expiry", "1h"]);
    // Made with a token: expires with it at the latest, and dies with its revocation.
    let (s, v) = keys_call(
        &base,
        Method::POST,
        "/auth/keys",
        &alice,
        Some(&json!({"name": "laptop", "expiry": "1y"})),
    );
    assert_eq!(s, 201, "{v}");
    let from_token = v["key"].as_str().unwrap().to_owned();
    let exp: jiff::Timestamp = v["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(
        exp <= jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600),
        "{v}"
    );
    // Made with that key: dies with the key, but lives on through the key's rotation.
    let (child, _) = create_key(&base, &from_token, &json!({"name": "child"}));
    assert_eq!(verify_key(&base, &child).0, 200);
    let parent_id = v["id"].as_str().unwrap().to_owned();
    let (s, rotated) = key_action(&base, &alice, &parent_id, "rotate", None);
    assert_eq!(s, 201, "{rotated}");
    assert_eq!(code(&verify_key(&base, &from_token).1), "TOKEN_REVOKED");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        verify_key(&base, &child).0,
        200,
        "the parent's line lives on"
    );
    // Revoking the token (another process) takes the whole line of keys with it.
    h.ok(&["auth", "token", "revoke", &jti]);
    std::thread::sleep(Duration::from_millis(1100));
    let new_parent = rotated["key"].as_str().unwrap();
    assert_eq!(code(&verify_key(&base, new_parent).1), "TOKEN_REVOKED");
    assert_eq!(code(&verify_key(&base, &child).1), "TOKEN_REVOKED");
    // Keys made by an admin token are bound to it the same way; a key made on the local
    // store (no credential) is not.
    let (local, _) = h.ok(&["auth", "key", "create", "--name", "cli", "--subject", "bob"]);
    assert_eq!(verify_key(&base, local.trim()).0, 200);
    let (by_admin, _) = create_key(&base, &admin, &json!({"name": "svc", "subject": "svc"}));
    let (_, admin_jti) = h.token_with_jti(&["--subject", "x"]);
    assert_ne!(admin_jti, jti);
    assert_eq!(verify_key(&base, &by_admin).0, 200);
}

#[test]
fn keys_never_reach_the_log_and_cross_origin_writes_are_refused() {
    let h = Home::with_config("");
    let (admin, _) = h.mint("ops", "admin");
    let srv = h.serve_process(Some("debug"));
    let base = srv.url();
    let (key, id) = create_key(
        &base,
        &admin,
        &json!({"name": "ci", "subject": "ci", "scopes": "pull", "rate_limit": "2/1d", "allow_ip": "127.0.0.1"}),
    );
    for _ in 0..3 {
        verify_key(&base, &key);
    }
    verify_key(&base, &one_char_changed(&key));
    let (s, rotated) = key_action(&base, &admin, &id, "rotate", Some(&json!({"grace": "1h"})));
    assert_eq!(s, 201);
    // A web page of another origin cannot create or change keys with a stolen bearer.
    let r = client()
        .post(format!("{base}/auth/keys"))
        .bearer_auth(&admin)
        .header("Origin", "https://evil.example")
        .json(&json!({"name": "x", "subject": "x"}))
        .send()
        .unwrap();
    assert_eq!(status_and_json(r).1["code"], "CROSS_ORIGIN");
    let log = srv.stop();
    let new_key = rotated["key"].as_str().unwrap();
    for secret in [key.as_str(), new_key, &one_char_changed(&key), &key[4..30]] {
        assert!(!log.contains(secret), "a key is in the log:\n{log}");
    }
    // The audit line names the key.
    assert!(log.contains(&format!("key ci ({id}) of ci")), "{log}");
}

#[test]
fn made_up_keys_checked_against_config_hashes_are_rate_limited_per_address() {
    let h = Home::with_config("[server]\nlogin_attempts_per_minute = 2\n");
    let (out, _) = h.ok(&["auth", "key", "hash"]);
    let (key, hash) = {
        let mut l = out.lines();
        (l.next().unwrap().to_owned(), l.next().unwrap().to_owned())
    };
    h.append_config(&format!(
        "\n[[auth.api_keys]]\nname = \"ci\"\nhash = \"{hash}\"\nscopes = \"pull\"\n"
    ));
    let (_srv, base) = h.serve_base();
    assert_eq!(verify_key(&base, &key).0, 200);
    let made_up = || {
        let (out, _) = h.ok(&["auth", "key", "hash"]);
        out.lines().next().unwrap().to_owned()
    };
    assert_eq!(verify_key(&base, &made_up()).0, 401);
    assert_eq!(verify_key(&base, &made_up()).0, 401);
    let (s, v) = verify_key(&base, &made_up());
    assert_eq!((s, code(&v)), (429, "RATE_LIMITED"), "{v}");
    // The config-held key verified before is answered from the table, with no check to limit.
    assert_eq!(verify_key(&base, &key).0, 200);
}
