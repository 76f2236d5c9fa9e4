//! Several replicas on one PostgreSQL (contract section 12), with the real binary, the real
//! PostgreSQL and the real haproxy: what one replica does, the others see; single use is
//! single across replicas; the login limit counts across replicas; and the faults: a replica
//! killed under load, PostgreSQL stopped for 10 s, the notification channel lost.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::PASSWORD;
use crate::support::http::{client, create_token, health, login, status_and_json, verify};
use crate::support::keys::{create_key, key_action, verify_key};
use crate::support::principals::Browser;
use crate::support::replicas::{
    Haproxy, OwnCluster, Replicas, fresh_database, psql, server_url, time_until,
};
use crate::support::workload::{GithubIssuer, RsaKey, exchange, policy};

/// `DELETE /auth/token` with `token`: revokes it on the replica at `base`.
fn revoke_own(base: &str, token: &str) -> u16 {
    client()
        .delete(format!("{base}/auth/token"))
        .bearer_auth(token)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn code(v: &serde_json::Value) -> &str {
    v["code"].as_str().unwrap_or_default()
}

#[test]
fn a_token_revoked_through_one_replica_is_refused_by_the_others_within_a_second() {
    let Some(server) = server_url() else { return };
    let r = Replicas::start(&fresh_database(&server), 3, "");
    for round in 0..3 {
        let (token, _) = r.home.mint("ci", "pull");
        // Every replica accepts it, and keeps that answer in its cache.
        for i in 0..3 {
            for _ in 0..3 {
                assert_eq!(verify(&r.base(i), &token).0, 200, "replica {i}");
            }
        }
        let a = round % 3;
        assert_eq!(revoke_own(&r.base(a), &token), 200);
        for i in (0..3).filter(|i| *i != a) {
            let took = time_until(Duration::from_secs(5), || {
                let (s, v) = verify(&r.base(i), &token);
                assert!(
                    s == 200 || (s == 401 && code(&v) == "TOKEN_REVOKED"),
                    "{s} {v}"
                );
                s == 401
            })
            .unwrap_or_else(|| panic!("replica {i} still accepts a revoked token after 5 s"));
            assert!(
                took <= Duration::from_secs(1),
                "replica {i} refused it only after {took:?}"
            );
        }
    }
}

#[test]
fn a_single_use_token_raced_from_30_clients_across_replicas_succeeds_exactly_once() {
    let Some(server) = server_url() else { return };
    let r = Replicas::start(&fresh_database(&server), 3, "");
    let (admin, _) = r.home.mint("root", "admin");
    for _round in 0..3 {
        let once = create_token(
            &r.base(0),
            &admin,
            &json!({"subject": "deployer", "scopes": "pull", "expiry": "1h", "single_use": true}),
        );
        let go = Arc::new(Barrier::new(30));
        let ok = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..30)
            .map(|n| {
                let base = r.base(n % 3);
                let (once, go, ok) = (once.clone(), Arc::clone(&go), Arc::clone(&ok));
                std::thread::spawn(move || {
                    go.wait();
                    let (s, v) = verify(&base, &once);
                    match s {
                        200 => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        401 => assert_eq!(code(&v), "TOKEN_REVOKED", "{v}"),
                        _ => panic!("{s} {v}"),
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(
            ok.load(Ordering::SeqCst),
            1,
            "successes across the replicas"
        );
    }
}

#[test]
fn the_login_failure_limit_counts_across_replicas() {
    let Some(server) = server_url() else { return };
    let r = Replicas::start(
        &fresh_database(&server),
        3,
        "[server]\nlogin_attempts_per_minute = 3\n",
    );
    // Three failures, one per replica: the limit of 3 per minute for this address is used up
    // everywhere, not once per replica.
    for i in 0..3 {
        let (s, v) = status_and_json(login(&r.base(i), "deploy", "wrong password"));
        assert_eq!((s, code(&v)), (401, "INVALID_CREDENTIALS"), "replica {i}");
    }
    for i in 0..3 {
        let resp = login(&r.base(i), "deploy", "wrong again");
        assert_eq!(resp.status(), 429, "replica {i} let a 4th failure through");
        assert!(resp.headers().contains_key("retry-after"));
    }
    // The counts are rows of the shared store.
    let db = r.home.config().0.store.url.unwrap();
    let rows: i64 = psql(&db, "SELECT COUNT(*) FROM login_counters")
        .parse()
        .unwrap();
    assert!(rows >= 3, "{rows} counter rows");
}

#[test]
fn a_replica_killed_under_load_costs_no_more_than_the_requests_in_flight() {
    let Some(server) = server_url() else { return };
    let mut r = Replicas::start(&fresh_database(&server), 3, "");
    let lb = Haproxy::start(&r, &r.home.home().join("haproxy.log"));
    let (token, _) = r.home.mint("ci", "pull");
    const CLIENTS: usize = 8;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, token) = (lb.url(), token.clone());
            let (stop, ok, bad) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&bad));
            std::thread::spawn(move || {
                let c = client();
                while !stop.load(Ordering::Relaxed) {
                    let r = c
                        .get(format!("{url}/auth/verify"))
                        .bearer_auth(&token)
                        .send();
                    match r.map(|r| r.status().as_u16()) {
                        Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                        _ => bad.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let before = ok.load(Ordering::Relaxed);
    // kill -9 of replica B, mid-load.
    let victim = r.servers.remove(1);
    let pid = victim.pid();
    let st = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Relaxed);
    for h in load {
        h.join().unwrap();
    }
    drop(victim);
    let (ok, bad) = (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    assert!(
        before > 0 && ok > before,
        "the load ran: {before} then {ok}"
    );
    assert!(
        bad <= CLIENTS,
        "{bad} failed requests for {CLIENTS} in flight ({ok} succeeded)"
    );
    // The survivors still answer through haproxy.
    assert_eq!(verify(&lb.url(), &token).0, 200);
}

#[test]
fn a_replica_that_loses_postgres_answers_503_with_the_reason_and_recovers_by_itself() {
    if server_url().is_none() {
        return;
    }
    let pg = OwnCluster::start();
    let r = Replicas::start(&fresh_database(&pg.url), 2, "");
    let (good, _) = r.home.mint("ci", "pull");
    let (revoked, _) = r.home.mint("ci", "pull");
    for i in 0..2 {
        assert_eq!(verify(&r.base(i), &good).0, 200);
        assert_eq!(verify(&r.base(i), &revoked).0, 200);
    }
    assert_eq!(revoke_own(&r.base(0), &revoked), 200);
    pg.halt();
    let stopped = Instant::now();
    // While it is down (10 s): never a wrong answer. The revoked token is never accepted;
    // what cannot be decided is 503 STORE_UNAVAILABLE; /health says why.
    let mut unavailable = 0;
    while stopped.elapsed() < Duration::from_secs(10) {
        for i in 0..2 {
            let (s, v) = verify(&r.base(i), &revoked);
            assert!(
                s == 401 || (s == 503 && code(&v) == "STORE_UNAVAILABLE"),
                "revoked token while the store is down: {s} {v}"
            );
            let (s, v) = verify(&r.base(i), &good);
            assert!(s == 200 || s == 503, "{s} {v}");
            if s == 503 {
                assert_eq!(code(&v), "STORE_UNAVAILABLE", "{v}");
                unavailable += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(unavailable > 0, "no 503 while PostgreSQL was down");
    for i in 0..2 {
        let (s, v) = status_and_json(
            client()
                .get(format!("{}/health", r.base(i)))
                .send()
                .unwrap(),
        );
        assert_eq!(s, 200);
        assert_eq!(v["status"], "degraded", "{v}");
        assert!(!v["store"].as_str().unwrap().is_empty(), "{v}");
        assert!(
            !v.to_string().contains("127.0.0.1"),
            "/health names the database address: {v}"
        );
    }
    // A login needs the store (the failure counters): 503, not a token.
    let (s, v) = status_and_json(login(&r.base(1), "deploy", PASSWORD));
    assert_eq!((s, code(&v)), (503, "STORE_UNAVAILABLE"), "{v}");

    pg.resume();
    for i in 0..2 {
        time_until(Duration::from_secs(20), || {
            verify(&r.base(i), &good).0 == 200
        })
        .unwrap_or_else(|| panic!("replica {i} did not recover"));
        // Never a wrong answer while the pool reconnects: 401, or 503 for a moment.
        time_until(Duration::from_secs(20), || {
            let (s, v) = verify(&r.base(i), &revoked);
            assert!(
                s == 401 || s == 503,
                "revoked token after recovery: {s} {v}"
            );
            s == 401
        })
        .unwrap_or_else(|| panic!("replica {i}: the revoked token is not refused"));
        // The listener reconnects on its own schedule (every 250 ms), so /health follows.
        let mut last = None;
        time_until(Duration::from_secs(20), || {
            let v: serde_json::Value = client()
                .get(format!("{}/health", r.base(i)))
                .send()
                .unwrap()
                .json()
                .unwrap();
            let ok = v == json!({"status": "ok"});
            last = Some(v);
            ok
        })
        .unwrap_or_else(|| panic!("replica {i}: /health after recovery: {last:?}"));
        // Logging in needs the counters again; each try is a full login (a password check).
        let mut last = None;
        time_until(Duration::from_secs(30), || {
            let (s, v) = status_and_json(login(&r.base(i), "deploy", PASSWORD));
            last = Some((s, v));
            s == 200
        })
        .unwrap_or_else(|| panic!("replica {i}: no login after recovery: {last:?}"));
    }
    let _ = health;
}

#[test]
fn a_lost_notification_channel_still_keeps_revocation_within_a_second() {
    let Some(server) = server_url() else { return };
    let db = fresh_database(&server);
    let r = Replicas::start(&db, 3, "");
    for _ in 0..3 {
        let (token, _) = r.home.mint("ci", "pull");
        for i in 0..3 {
            for _ in 0..3 {
                assert_eq!(verify(&r.base(i), &token).0, 200);
            }
        }
        // Every replica's listener connection is cut, and the revocation's notification is
        // sent while they are gone.
        psql(
            &db,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'tessera-listener' AND datname = current_database()",
        );
        assert_eq!(revoke_own(&r.base(0), &token), 200);
        for i in 1..3 {
            let took = time_until(Duration::from_secs(5), || {
                verify(&r.base(i), &token).0 == 401
            })
            .unwrap_or_else(|| panic!("replica {i} accepts a revoked token after 5 s"));
            assert!(took <= Duration::from_secs(1), "replica {i}: {took:?}");
        }
        // The listeners come back (their answers are cached again).
        std::thread::sleep(Duration::from_millis(500));
        let n: i64 = psql(
            &db,
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE application_name = 'tessera-listener' AND datname = current_database()",
        )
        .parse()
        .unwrap();
        assert_eq!(n, 3, "listeners reconnected");
    }
}

/// `tessera` in `home` with `TESSERA_STORE_URL` set to `url`; (status, stdout, stderr).
fn with_store_url(home: &crate::support::Home, url: &str, args: &[&str]) -> (bool, String, String) {
    let out = home
        .cmd()
        .env("TESSERA_STORE_URL", url)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn store_migrate_copies_sqlite_into_postgres_once_and_store_check_reports_it() {
    use crate::support::run::Run;
    let Some(server) = server_url() else { return };
    let db = fresh_database(&server);
    let h = crate::support::Home::with_config("");
    let (kept, _) = h.mint("ci", "pull");
    let (gone, gone_jti) = h.mint("ci", "pull");
    let (bot, _) = h.mint("bot", "pull");
    h.ok(&["auth", "token", "revoke", &gone_jti]);
    h.ok(&["auth", "token", "revoke", "--subject", "bot"]);
    // An API key (and a revoked one): they move too.
    h.ok(&[
        "auth",
        "key",
        "create",
        "--name",
        "deploy",
        "--subject",
        "ci",
        "--scopes",
        "pull",
    ]);
    h.ok(&[
        "auth",
        "key",
        "create",
        "--name",
        "old",
        "--subject",
        "ci",
        "--scopes",
        "pull",
    ]);
    h.ok(&["auth", "key", "revoke", "old"]);

    let (out, _) = h.ok(&["--json", "store", "check"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["engine"], "sqlite");
    assert_eq!(v["rows"]["tokens"], 3);
    assert_eq!(v["rows"]["revoked_jtis"], 1);

    let (out, _) = h.ok(&["--json", "store", "migrate", "--to", &db]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["copied"]["tokens"], 3, "{v}");
    assert_eq!(v["copied"]["revoked_jtis"], 1, "{v}");
    assert_eq!(v["copied"]["subject_cutoffs"], 1, "{v}");
    assert_eq!(v["copied"]["api_keys"], 2, "{v}");
    // Again: nothing is copied twice.
    let (out, _) = h.ok(&["--json", "store", "migrate", "--to", &db]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["copied"].as_object().unwrap().values().all(|n| n == 0),
        "{v}"
    );
    assert_eq!(psql(&db, "SELECT COUNT(*) FROM tokens"), "3");

    // The same tokens, judged on PostgreSQL.
    let (ok, out, _) = with_store_url(&h, &db, &["--json", "store", "check"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["engine"], "postgres");
    assert_eq!(v["rows"]["tokens"], 3);
    assert_eq!(v["healthy"], true);
    assert!(!v["location"].as_str().unwrap().contains("password"));
    for (token, valid) in [(&kept, true), (&gone, false), (&bot, false)] {
        let (ok, _, err) = with_store_url(&h, &db, &["auth", "token", "verify", token]);
        assert_eq!(ok, valid, "{err}");
        if !valid {
            assert!(err.contains("revoked"), "{err}");
        }
    }
    // The keys, with their states, read from PostgreSQL.
    let (ok, out, err) = with_store_url(&h, &db, &["--json", "auth", "key", "list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("\"deploy\"") && out.contains("\"old\""),
        "{out}"
    );
    assert!(out.contains("\"revoked\""), "{out}");
    // Human output names the engine and the schema version.
    let (_, out, _) = with_store_url(&h, &db, &["store", "check"]);
    assert!(out.contains("engine:          postgres"), "{out}");
    assert!(out.contains("schema version:"), "{out}");
}

#[test]
fn a_store_url_with_a_password_is_refused_with_the_fix() {
    let h = crate::support::Home::with_config("");
    let out = h
        .cmd()
        .args([
            "store",
            "migrate",
            "--to",
            "postgres://tessera:hunter2-secret@db.internal:5432/tessera",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("TESSERA_STORE_PASSWORD"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    let h = crate::support::Home::with_config(
        "[store]\nengine = \"postgres\"\nurl = \"postgres://tessera:hunter2-secret@db/tessera\"\n",
    );
    let out = h.cmd().args(["store", "check"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("store.url") && err.contains("TESSERA_STORE_PASSWORD"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    // An unreachable database: one sentence with the address and the fix, exit 1.
    let out = h
        .cmd()
        .env(
            "TESSERA_STORE_URL",
            "postgres://tessera@127.0.0.1:1/tessera",
        )
        .args(["store", "check"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("127.0.0.1:1") && err.contains("running"),
        "{err}"
    );
}

// --- Sessions, API keys and exchanged ID tokens across replicas (issue 14, section 12) ---

/// The browser `b` talking to replica `base` (same cookie, that replica's Origin).
fn on(b: &Browser, base: String) -> Browser {
    Browser {
        base,
        cookie: b.cookie.clone(),
    }
}

#[test]
fn a_session_made_on_one_replica_works_on_another_and_signing_out_everywhere_ends_it_everywhere() {
    let Some(server) = server_url() else { return };
    let r = Replicas::start(&fresh_database(&server), 3, "");
    let a = Browser::sign_in(&r.base(0), "deploy", PASSWORD);
    let (b, c) = (on(&a, r.base(1)), on(&a, r.base(2)));
    // Made on A, known to C (and B) at once: the session is a row of the shared store.
    for x in [&a, &b, &c] {
        let (s, v) = x.whoami();
        assert_eq!((s, v["subject"].as_str()), (200, Some("deploy")), "{v}");
    }
    // A second session of the same user, made on C, so that "everywhere" means two.
    let other = Browser::sign_in(&r.base(2), "deploy", PASSWORD);
    assert_eq!(on(&other, r.base(0)).whoami().0, 200);
    // Sign out everywhere through B.
    let resp = b.write("DELETE", "/auth/sessions").send().unwrap();
    let (s, v) = status_and_json(resp);
    assert_eq!((s, v["ended"].as_u64()), (200, Some(2)), "{v}");
    for (name, x) in [("A", &a), ("C", &c), ("A (2nd)", &on(&other, r.base(0)))] {
        let took = time_until(Duration::from_secs(5), || {
            let (s, v) = x.whoami();
            assert!(s == 200 || s == 401, "{s} {v}");
            s == 401
        })
        .unwrap_or_else(|| panic!("replica {name} still accepts the session after 5 s"));
        assert!(
            took <= Duration::from_secs(1),
            "{name} refused it only after {took:?}"
        );
    }
    // No write is accepted with the ended session either (CSRF token from before included).
    assert_eq!(
        c.request("GET", "/auth/sessions").send().unwrap().status(),
        401
    );
}

#[test]
fn an_api_key_disabled_through_one_replica_is_refused_by_the_others_within_a_second() {
    let Some(server) = server_url() else { return };
    let r = Replicas::start(&fresh_database(&server), 3, "");
    let (admin, _) = r.home.mint("root", "admin");
    let (key, id) = create_key(
        &r.base(0),
        &admin,
        &json!({"name": "ci", "subject": "ci", "scopes": "pull"}),
    );
    for round in 0..2 {
        // Every replica accepts it, and keeps what the store said in its key table.
        for i in 0..3 {
            for _ in 0..3 {
                let (s, v) = verify_key(&r.base(i), &key);
                assert_eq!((s, v["key_id"].as_str()), (200, Some(id.as_str())), "{v}");
            }
        }
        let (s, v) = key_action(&r.base(0), &admin, &id, "disable", None);
        assert_eq!((s, v["state"].as_str()), (200, Some("disabled")), "{v}");
        for i in [1, 2] {
            let took = time_until(Duration::from_secs(5), || {
                let (s, v) = verify_key(&r.base(i), &key);
                assert!(
                    s == 200 || (s == 401 && code(&v) == "KEY_DISABLED"),
                    "{s} {v}"
                );
                s == 401
            })
            .unwrap_or_else(|| panic!("replica {i} still accepts a disabled key after 5 s"));
            assert!(
                took <= Duration::from_secs(1),
                "replica {i} refused it only after {took:?} (round {round})"
            );
        }
        // Enabled again through C: obeyed by A and B within the same bound.
        let (s, _) = key_action(&r.base(2), &admin, &id, "enable", None);
        assert_eq!(s, 200);
        for i in [0, 1] {
            let took = time_until(Duration::from_secs(5), || {
                verify_key(&r.base(i), &key).0 == 200
            })
            .unwrap_or_else(|| panic!("replica {i} still refuses an enabled key after 5 s"));
            assert!(took <= Duration::from_secs(1), "replica {i}: {took:?}");
        }
    }
    // Revoked through B: refused for good by A and C.
    assert_eq!(key_action(&r.base(1), &admin, &id, "revoke", None).0, 200);
    for i in [0, 2] {
        let took = time_until(Duration::from_secs(5), || {
            verify_key(&r.base(i), &key).0 == 401
        })
        .unwrap_or_else(|| panic!("replica {i} still accepts a revoked key after 5 s"));
        assert!(took <= Duration::from_secs(1), "replica {i}: {took:?}");
    }
}

#[test]
fn an_id_token_exchanged_through_one_replica_is_refused_as_a_replay_by_another() {
    let Some(server) = server_url() else { return };
    let a_key = RsaKey::fixture("a");
    let gh = GithubIssuer::start(&[&a_key]);
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("github-jwks.json");
    std::fs::write(&jwks, gh.jwks().to_string()).unwrap();
    let trust = policy(
        "release",
        &gh.issuer,
        "tessera",
        &format!("jwks_file = \"{}\"", jwks.display()),
        "repository = \"acme/app\"\nref = \"refs/heads/main\"\n",
    );
    let r = Replicas::start(&fresh_database(&server), 3, &trust);
    let id_token = gh.token(&a_key, "tessera");
    let (s, v) = exchange(&r.base(0), &id_token);
    assert_eq!(s, 200, "{v}");
    assert!(v["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    for i in [1, 2, 0] {
        let (s, v) = exchange(&r.base(i), &id_token);
        assert_eq!((s, code(&v)), (401, "INVALID_TOKEN"), "replica {i}: {v}");
        assert!(
            v["error_description"]
                .as_str()
                .unwrap_or_default()
                .contains("jti"),
            "replica {i}: {v}"
        );
    }
    // Raced: a fresh ID token sent to all three replicas at once is exchanged once.
    let fresh = gh.token(&a_key, "tessera");
    let go = Arc::new(Barrier::new(9));
    let handles: Vec<_> = (0..9)
        .map(|n| {
            let (base, t, go) = (r.base(n % 3), fresh.clone(), Arc::clone(&go));
            std::thread::spawn(move || {
                go.wait();
                exchange(&base, &t).0
            })
        })
        .collect();
    let codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 200 || *c == 401), "{codes:?}");
    // The ids are rows of the shared store.
    let db = r.home.config().0.store.url.unwrap();
    let rows: i64 = psql(&db, "SELECT COUNT(*) FROM exchanged_id_tokens")
        .parse()
        .unwrap();
    assert_eq!(rows, 2);
}
