//! The CLI as a user drives it: the real binary, a scratch HOME, the default `unsafe` backend.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use predicates::prelude::*;
use serde_json::{Value, json};

use crate::support::Run;
use crate::support::argv;
use crate::support::snapshot::{Transcript, redact};
use crate::support::user::User;

const SECRET: &str = "an-env-secret-that-is-long-enough-0123456789";

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Fails unless the command's stderr contains `needle`.
#[track_caller]
fn stderr_has(a: &assert_cmd::assert::Assert, needle: &str) {
    let err = stderr_of(a);
    assert!(err.contains(needle), "`{needle}` not in: {err}");
}

fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

#[test]
fn main_job_works_on_a_fresh_machine() {
    let u = User::new();
    let (token, err) = u.ok(&argv("auth token generate --subject ci --scopes push,pull"));
    assert_eq!(
        token.trim().split('.').count(),
        3,
        "a JWT on stdout: {token}"
    );
    assert!(
        err.contains("created a new token signing secret at"),
        "{err}"
    );
    assert!(err.contains(u.secret_file().to_str().unwrap()), "{err}");
    assert!(err.contains("repository:*:pull repository:*:push"), "{err}");
    assert!(err.contains("expires:"), "{err}");
    assert_eq!(mode(&u.secret_file()), 0o600);
    assert_eq!(mode(u.secret_file().parent().unwrap()), 0o700);
    // The secret is at least 256 bits and never printed.
    let secret = std::fs::read_to_string(u.secret_file()).unwrap();
    assert!(secret.trim().len() >= 43);
    assert!(!err.contains(secret.trim()) && !token.contains(secret.trim()));

    // A second run reuses it, and the token verifies.
    let (_, err) = u.ok(&["auth", "token", "generate", "--subject", "ci"]);
    assert!(!err.contains("created"));
    u.prints(
        &["auth", "token", "verify", token.trim()],
        "valid token for `ci`",
    );
}

#[test]
fn generate_json_has_the_contract_fields() {
    let u = User::new();
    let a = u
        .cmd()
        .env("TESSERA_AUTH_TOKEN_SECRET", SECRET)
        .args(["--json", "auth", "token", "generate", "--subject", "ci"])
        .args(["--scopes", "pull", "--repo", "team/*", "--expiry", "1y6M"])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    for k in [
        "token",
        "jti",
        "subject",
        "scopes",
        "issued_at",
        "expires_at",
    ] {
        assert!(v.get(k).is_some(), "missing {k}: {v}");
    }
    assert_eq!(v["subject"], "ci");
    assert_eq!(v["scopes"], serde_json::json!(["repository:team/*:pull"]));
    let issued: jiff::Timestamp = v["issued_at"].as_str().unwrap().parse().unwrap();
    let expires: jiff::Timestamp = v["expires_at"].as_str().unwrap().parse().unwrap();
    let span = issued.until(expires).unwrap().get_seconds();
    // 1y6M is between 546 and 549 days.
    assert!((546 * 86400..=549 * 86400).contains(&span), "{span}");
    // The env secret never touched the backend.
    assert!(!u.secret_file().exists());

    // `0` is never: expires_at is null.
    let a = u
        .cmd()
        .env("TESSERA_AUTH_TOKEN_SECRET", SECRET)
        .args(["--json", "auth", "token", "generate", "--subject", "admin"])
        .args(["--scopes", "push,pull,admin:*:*", "--expiry", "0"])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert!(v["expires_at"].is_null(), "{v}");
    assert!(stderr_of(&a).contains("never"));
}

#[test]
fn bad_durations_scopes_and_flags_are_usage_errors() {
    let u = User::new();
    let mut t = Transcript::new();
    t.redact(u.home().display().to_string(), "home");
    for bad in [
        "1.5h",
        "-1d",
        "1q",
        "6M1y",
        "1d1d",
        "",
        "99999999999999999999y",
    ] {
        let err = t.run_as(
            &format!("tessera auth token generate --subject ci --expiry={bad}"),
            u.cmd()
                .env("TESSERA_AUTH_TOKEN_SECRET", SECRET)
                .args(["auth", "token", "generate", "--subject", "ci"])
                .arg(format!("--expiry={bad}")),
            2,
        );
        assert!(
            err.contains("descending order") || err.contains("too large"),
            "{bad}: {err}"
        );
        assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1);
    }
    for bad in [
        "pul",
        "push,,pull",
        "repository:x:eat",
        "admin:tokens",
        "repository::pull",
    ] {
        t.refused(
            &format!("tessera auth token generate --subject ci --scopes {bad:?}"),
            u.cmd().env("TESSERA_AUTH_TOKEN_SECRET", SECRET).args([
                "auth",
                "token",
                "generate",
                "--subject",
                "ci",
                "--scopes",
                bad,
            ]),
            2,
            "invalid scope",
        );
    }
    t.refused(
        "tessera auth token generate",
        u.cmd()
            .env("TESSERA_AUTH_TOKEN_SECRET", SECRET)
            .args(["auth", "token", "generate"]),
        2,
        "--subject",
    );
    insta::assert_snapshot!("bad_durations_scopes_and_flags", t.text());
}

#[test]
fn max_token_expiry_is_enforced() {
    let u = User::new();
    u.write_config("[auth]\nmax_token_expiry = \"90d\"\n");
    u.cmd()
        .env("TESSERA_AUTH_TOKEN_SECRET", SECRET)
        .args(argv("auth token generate --subject ci --expiry 1y"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("max_token_expiry"));
    u.cmd()
        .env("TESSERA_AUTH_TOKEN_SECRET", SECRET)
        .args(argv("auth token generate --subject ci --expiry 0"))
        .assert()
        .code(2);
    u.cmd()
        .env("TESSERA_AUTH_TOKEN_SECRET", SECRET)
        .args(argv("auth token generate --subject ci --expiry 30d"))
        .assert()
        .success();
}

#[test]
fn secret_problems_are_clear_and_never_leak() {
    let u = User::new();
    let a = u
        .cmd()
        .env("TESSERA_AUTH_TOKEN_SECRET", "short-secret-value")
        .args(["auth", "token", "generate", "--subject", "ci"])
        .assert()
        .code(1);
    let err = stderr_of(&a);
    assert!(err.contains("at least 32"), "{err}");
    assert!(!err.contains("short-secret-value"), "{err}");
    u.cmd()
        .env("TESSERA_AUTH_TOKEN_SECRET", "")
        .args(["auth", "token", "generate", "--subject", "ci"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "TESSERA_AUTH_TOKEN_SECRET is set but empty",
        ));
}

#[test]
fn verify_reports_each_reason() {
    let u = User::new();
    let env_cmd = || {
        let mut c = u.cmd();
        c.env("TESSERA_AUTH_TOKEN_SECRET", SECRET);
        c
    };
    let token = {
        let out = env_cmd()
            .args(argv("auth token generate --subject ci --scopes pull"))
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        String::from_utf8(out).unwrap().trim().to_owned()
    };
    // Valid, from the argument and from stdin.
    env_cmd()
        .args(["auth", "token", "verify", &token])
        .assert()
        .success();
    env_cmd()
        .args(["auth", "token", "verify"])
        .write_stdin(format!("{token}\n"))
        .assert()
        .success();
    // JSON form.
    let a = env_cmd()
        .args(["--json", "auth", "token", "verify", &token])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["subject"], "ci");
    assert_eq!(v["scopes"], serde_json::json!(["repository:*:pull"]));

    let mut t = Transcript::new();
    t.redact(u.home().display().to_string(), "home")
        .redact(&token, "token");
    // Another secret: bad signature.
    t.refused(
        "tessera auth token verify [token]  # signed with another secret",
        u.cmd()
            .env(
                "TESSERA_AUTH_TOKEN_SECRET",
                "another-secret-that-is-long-enough-9876543210",
            )
            .args(["auth", "token", "verify", &token]),
        1,
        "bad signature",
    );
    // Tampered payload: bad signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].chars().rev().collect();
    t.redact(parts.join("."), "tampered token");
    t.refused(
        "tessera auth token verify [token with its payload reversed]",
        env_cmd().args(["auth", "token", "verify", &parts.join(".")]),
        1,
        "invalid token",
    );
    // Garbage: malformed, and JSON says so too.
    t.refused(
        "tessera auth token verify not-a-token",
        env_cmd().args(["auth", "token", "verify", "not-a-token"]),
        1,
        "malformed",
    );
    let a = env_cmd()
        .args(["--json", "auth", "token", "verify", "not-a-token"])
        .assert()
        .code(1);
    let v: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["reason"], "malformed");
    // Oversized input is refused without trouble.
    t.refused(
        "tessera auth token verify -  # 100 000 bytes on stdin",
        env_cmd()
            .args(["auth", "token", "verify", "-"])
            .write_stdin("a".repeat(100_000)),
        1,
        "malformed",
    );
    // Another issuer.
    u.write_config("[auth]\nissuer = \"someone-else\"\n");
    t.refused(
        "tessera auth token verify [token]  # issuer = \"someone-else\"",
        env_cmd().args(["auth", "token", "verify", &token]),
        1,
        "wrong issuer",
    );
    insta::assert_snapshot!("verify_refusals", t.text());
}

#[test]
fn expired_and_future_tokens_are_refused() {
    use tessera::token::{KeyRing, MintRequest, ScopeSet, SigningKey, mint};
    let u = User::new();
    let key = || SigningKey::new(&secrecy::SecretString::from(SECRET), "").unwrap();
    let keys = KeyRing {
        current: key(),
        previous: vec![],
    };
    let scopes = ScopeSet::parse_list("pull", "*").unwrap();
    let at = |secs_ago: i64, expiry: &str| {
        let now = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs_ago);
        let now = jiff::Timestamp::from_second(now.as_second()).unwrap();
        let req = MintRequest {
            issuer: "tessera",
            subject: "ci",
            scopes: &scopes,
            expiry: expiry.parse().unwrap(),
            audience: None,
            now,
        };
        secrecy::ExposeSecret::expose_secret(&mint(&keys, &req).unwrap().token).to_owned()
    };
    let refused = |token: &str, reason: &str| {
        u.cmd()
            .env("TESSERA_AUTH_TOKEN_SECRET", SECRET)
            .args(["auth", "token", "verify", token])
            .assert()
            .code(1)
            .stderr(predicate::str::contains(reason));
    };
    refused(&at(3600, "30m"), "expired");
    refused(&at(-3600, "2h"), "not yet valid");
}

#[test]
fn list_and_revoke_by_id_subject_and_all() {
    let u = User::new();
    let a = u.mint(&["--subject", "ci", "--scopes", "pull"]);
    let b = u.mint(&["--subject", "ci", "--scopes", "push"]);
    let c = u.mint(&["--subject", "bot"]);
    // Minting appends records (ids, never tokens) beside the database; `list` moves them in.
    let pending = u.home().join(".local/share/tessera/tokens.db-pending");
    let text = std::fs::read_to_string(&pending).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    for t in [&a, &b, &c] {
        assert!(!text.contains(t.split('.').nth(2).unwrap()), "{text}");
    }
    let out = u
        .cmd()
        .args(["--json", "auth", "token", "list"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let list: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    assert_eq!(std::fs::metadata(&pending).unwrap().len(), 0);
    // The store holds ids, never tokens.
    let db = std::fs::read(u.home().join(".local/share/tessera/tokens.db")).unwrap();
    let db = String::from_utf8_lossy(&db);
    assert!(!db.contains(&a) && !db.contains(a.split('.').nth(2).unwrap()));

    let jti = |t: &str| {
        let a = u
            .cmd()
            .args(["--json", "auth", "token", "verify", t])
            .assert()
            .success();
        let v: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
        v["jti"].as_str().unwrap().to_owned()
    };
    let a_id = jti(&a);
    u.ok(&["auth", "token", "revoke", &a_id]);
    u.refuses(&["auth", "token", "verify", &a], 1, "revoked");
    u.ok(&["auth", "token", "verify", &b]);

    u.ok(&["auth", "token", "revoke", "--subject", "ci"]);
    u.refuses(&["auth", "token", "verify", &b], 1, "revoked");
    u.ok(&["auth", "token", "verify", &c]);

    u.ok(&["auth", "token", "revoke", "--all", "--yes"]);
    u.refuses(&["auth", "token", "verify", &c], 1, "revoked");
    u.fails(&["auth", "token", "revoke"], "", 2);
}

#[test]
fn secrets_roundtrip_on_the_default_backend() {
    let u = User::new();
    u.ok_with_stdin(&["secrets", "set", "app/db"], "s3cret-value\n");
    assert_eq!(u.ok(&["secrets", "get", "app/db"]).0, "s3cret-value\n");
    let pem = "-----BEGIN PRIVATE KEY-----\nAAAA\nBBBB\n-----END PRIVATE KEY-----\n";
    u.ok_with_stdin(&["secrets", "set", "app/key"], pem);
    assert_eq!(u.ok(&["secrets", "get", "app/key"]).0, pem);
    u.ok(&["secrets", "set", "other/x", "--generate", "32"]);
    assert_eq!(u.ok(&["secrets", "list"]).0, "app/db\napp/key\nother/x\n");
    assert_eq!(u.ok(&["secrets", "list", "app"]).0, "app/db\napp/key\n");
    assert_eq!(
        u.ok(&["--json", "secrets", "list", "app"]).0,
        "[\"app/db\",\"app/key\"]\n"
    );
    u.ok(&["secrets", "rm", "app/db"]);
    u.refuses(&["secrets", "get", "app/db"], 1, "no secret named `app/db`");
    u.fails(&["secrets", "rm", "app/db"], "", 1);
    // Nothing on stdin is refused, not stored as empty.
    u.refuses(
        &["secrets", "set", "app/empty"],
        2,
        "no secret value on stdin",
    );
}

#[test]
fn bad_key_paths_are_refused() {
    let u = User::new();
    for bad in ["../x", "/abs", "a//b", "-rf", "a b", "a/./b"] {
        let a = u.cmd().args(["secrets", "get", "--", bad]).assert().code(2);
        assert!(
            stderr_of(&a).contains("key path"),
            "{bad}: {}",
            stderr_of(&a)
        );
    }
}

#[test]
fn config_errors_name_the_file_and_the_fix() {
    let u = User::new();
    let mut t = Transcript::new();
    t.redact(u.home().display().to_string(), "home");
    t.refused(
        "tessera --config /nonexistent/tessera.toml secrets list",
        u.cmd()
            .args(["--config", "/nonexistent/tessera.toml", "secrets", "list"]),
        1,
        "does not exist",
    );
    u.write_config("[secrets]\nbackend = \"vault\"\n");
    t.refused(
        "tessera secrets list  # backend = \"vault\"",
        u.cmd().args(["secrets", "list"]),
        1,
        "valid backends are pass, sops, unsafe and age",
    );
    u.write_config("[secrets]\nbakend = \"pass\"\n");
    let e = t.refused(
        "tessera secrets list  # bakend = \"pass\"",
        u.cmd().args(["secrets", "list"]),
        1,
        "tessera.toml:2:",
    );
    assert!(e.contains("did you mean `backend`"), "{e}");
    u.write_config("[secrets]\nbackend = \"unsafe\"\n");
    t.refused(
        "TESSERA_SECRETS_BACKEND= tessera secrets list",
        u.cmd()
            .env("TESSERA_SECRETS_BACKEND", "")
            .args(["secrets", "list"]),
        1,
        "set but empty",
    );
    insta::assert_snapshot!("config_errors", t.text());
}

#[test]
fn init_creates_config_and_secret_and_keeps_them() {
    let u = User::new();
    let a = u.cmd().arg("init").assert().success();
    let err = stderr_of(&a);
    assert!(err.contains("created, 256 bits"), "{err}");
    let cfg = u.home().join(".config/tessera/tessera.toml");
    assert!(cfg.exists());
    let secret = std::fs::read_to_string(u.secret_file()).unwrap();
    let a = u.cmd().arg("init").assert().success();
    assert!(stderr_of(&a).contains("(kept)"));
    assert_eq!(std::fs::read_to_string(u.secret_file()).unwrap(), secret);
    u.prints(&["secrets", "check"], "present  tessera/auth/token_secret");
    u.refuses(&["init", "--backend", "nope"], 2, "valid backends");
}

#[test]
fn password_hash_is_argon2id_by_default_and_bcrypt_on_request() {
    let u = User::new();
    let (out, _) = u.ok_with_stdin(&argv("auth password hash --stdin"), "correct horse\n");
    assert!(out.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{out}");
    let h = secrecy::SecretString::from(out.trim().to_owned());
    assert!(
        tessera::password::verify(&secrecy::SecretString::from("correct horse".to_owned()), &h)
            .unwrap()
    );
    // No 72-byte limit for argon2id.
    u.ok_with_stdin(
        &argv("auth password hash --stdin"),
        format!("{}\n", "x".repeat(73)),
    );
    let (out, _) = u.ok_with_stdin(
        &argv("auth password hash --stdin --bcrypt"),
        "correct horse\n",
    );
    assert!(
        out.starts_with("$2y$12$") && out.trim().len() == 60,
        "{out}"
    );
    assert!(bcrypt::verify("correct horse", out.trim()).unwrap());
    let (out, _) = u.ok_with_stdin(
        &argv("auth password hash --stdin --bcrypt --cost 10"),
        "correct horse\n",
    );
    assert!(out.starts_with("$2y$10$"), "{out}");
    // The bcrypt limits stay.
    u.fails(
        &argv("auth password hash --stdin --bcrypt"),
        &format!("{}\n", "x".repeat(73)),
        1,
    );
    u.fails(
        &argv("auth password hash --stdin --bcrypt --cost 9"),
        "pw\n",
        2,
    );
}

#[test]
fn password_hash_is_htpasswd_bcrypt_and_refuses_long_input() {
    let u = User::new();
    let a = u
        .cmd()
        .args(["auth", "password", "hash", "--stdin", "--cost", "10"])
        .write_stdin("correct horse\n")
        .assert()
        .success();
    let out = String::from_utf8(a.get_output().stdout.clone()).unwrap();
    assert!(
        out.starts_with("$2y$10$") && out.trim().len() == 60,
        "{out}"
    );
    assert!(bcrypt::verify("correct horse", out.trim()).unwrap());
    let a = u
        .cmd()
        .args(["auth", "password", "hash", "--stdin", "--cost", "10"])
        .write_stdin(format!("{}\n", "x".repeat(73)))
        .assert()
        .code(1);
    stderr_has(&a, "72");
    u.fails(
        &["auth", "password", "hash", "--stdin", "--cost", "3"],
        "pw\n",
        2,
    );
    let (_, note) = u.ok_with_stdin(
        &argv("auth password hash --stdin --cost 10 --store"),
        "correct horse\n",
    );
    // No username configured: the note names the command that sets one.
    assert!(
        note.contains("run `tessera init --username NAME`"),
        "{note}"
    );
    let stored = std::fs::read_to_string(
        u.home()
            .join(".local/share/tessera/secrets/tessera/auth/password_hash"),
    )
    .unwrap();
    assert!(bcrypt::verify("correct horse", stored.trim()).unwrap());
}

#[test]
fn help_completions_and_man_page() {
    let u = User::new();
    let a = u.cmd().arg("--help").assert().success();
    insta::assert_snapshot!(
        "top_level_help",
        String::from_utf8_lossy(&a.get_output().stdout)
    );
    let help = u.prints(&["auth", "token", "generate", "--help"], "--expiry");
    assert!(help.contains("1y6M"), "{help}");
    u.prints(&["completions", "bash"], "_tessera");
    u.prints(&["man"], ".TH tessera");
}

#[test]
fn init_with_the_age_backend_creates_an_identity() {
    let u = User::new();
    let a = u
        .cmd()
        .args(["init", "--backend", "age"])
        .assert()
        .success();
    let err = stderr_of(&a);
    assert!(
        err.contains("age identity:") && err.contains("created"),
        "{err}"
    );
    let id = u.home().join(".config/tessera/age-identity.txt");
    assert_eq!(mode(&id), 0o600);
    let text = std::fs::read_to_string(&id).unwrap();
    assert!(
        text.contains("AGE-SECRET-KEY-1"),
        "an age-keygen style identity"
    );
    // The token secret lives in the encrypted document, not in plain files.
    assert!(!u.secret_file().exists());
    let doc = u.home().join(".local/share/tessera/secrets.age");
    assert_eq!(mode(&doc), 0o600);
    u.ok_with_stdin(&["secrets", "set", "app/db"], "value-in-age\n");
    u.cmd()
        .args(["secrets", "get", "app/db"])
        .assert()
        .success()
        .stdout("value-in-age\n");
    assert!(!String::from_utf8_lossy(&std::fs::read(&doc).unwrap()).contains("value-in-age"));
    u.mint(&["--subject", "ci", "--scopes", "pull"]);
    // A second init keeps the identity.
    u.cmd().arg("init").assert().success();
    assert_eq!(std::fs::read_to_string(&id).unwrap(), text);
}

/// Runs `tessera --json ARGS` (stdin from `input`), expects exit 0 and exactly one JSON
/// document on one line of stdout, and returns it.
fn json_ok(u: &User, args: &[&str], input: &str) -> Value {
    let a = u.cmd().arg("--json").args(args).write_stdin(input).assert();
    let out = a.get_output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "{args:?}: one line: {stdout:?}");
    // `from_slice` refuses anything after the first document.
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: stdout is not one JSON document ({e}): {stdout}"))
}

/// Runs `tessera --json ARGS`, expects `exit`, nothing on stdout and one line of JSON on
/// stderr, `{"error","code"}`, and returns it.
fn json_err(u: &User, args: &[&str], input: &str, exit: i32, code: &str) -> Value {
    let a = u
        .cmd()
        .arg("--json")
        .args(args)
        .write_stdin(input)
        .assert()
        .code(exit);
    let out = a.get_output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.stdout.is_empty(),
        "{args:?}: nothing on stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr:?}");
    let v: Value = serde_json::from_str(&stderr)
        .unwrap_or_else(|e| panic!("{args:?}: stderr is not JSON ({e}): {stderr}"));
    assert_eq!(v["code"], code, "{args:?}: {v}");
    let sentence = v["error"].as_str().unwrap_or_default();
    assert!(
        !sentence.is_empty() && !sentence.contains('\n'),
        "{args:?}: {v}"
    );
    v
}

#[test]
fn secrets_commands_print_one_json_document_under_json() {
    let u = json_user();
    let v = json_ok(&u, &["secrets", "set", "app/db"], "value\n");
    assert_eq!((&v["key"], &v["stored"]), (&json!("app/db"), &json!(true)));
    let v = json_ok(&u, &["secrets", "get", "app/db"], "");
    assert_eq!(v["value"], "value");
    assert_eq!(
        json_ok(&u, &["secrets", "list", "app"], ""),
        json!(["app/db"])
    );
    let v = json_ok(&u, &["secrets", "check"], "");
    assert_eq!(v["usable"], true);
    let v = json_ok(&u, &["secrets", "rm", "app/db"], "");
    assert_eq!(v["removed"], true);
}

/// A user after `tessera --json init` with a `[registry]` section.
fn json_user() -> User {
    let u = User::new();
    u.write_config(
        "[registry]\nservice = \"registry.test\"\ncertificate = \"registry-token.crt\"\n",
    );
    let v = json_ok(&u, &["init"], "");
    assert!(v.is_object(), "{v}");
    u
}

#[test]
fn token_and_password_commands_print_one_json_document_under_json() {
    let u = json_user();
    // Tokens: scopes are an array everywhere, revocations are objects.
    let g = json_ok(
        &u,
        &argv("auth token generate --subject ci --scopes pull"),
        "",
    );
    let token = g["token"].as_str().unwrap().to_owned();
    let jti = g["jti"].as_str().unwrap().to_owned();
    let v = json_ok(&u, &["auth", "token", "verify", &token], "");
    assert_eq!((&v["valid"], &v["jti"]), (&json!(true), &json!(jti)));
    let v = json_ok(&u, &["auth", "token", "list"], "");
    assert_eq!(v[0]["jti"], jti.as_str(), "{v}");
    assert_eq!(v[0]["scopes"], json!(["repository:*:pull"]), "{v}");
    let v = json_ok(&u, &["auth", "token", "revoke", &jti], "");
    assert_eq!(
        v,
        json!({"jti": jti, "revoked": true, "already_revoked": false})
    );
    let v = json_ok(&u, &["auth", "token", "revoke", &jti], "");
    assert_eq!(v["already_revoked"], true);
    // Verification failure is a result: one document on stdout, exit 1.
    let a = u
        .cmd()
        .args(["--json", "auth", "token", "verify", &token])
        .assert()
        .code(1);
    let v: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(
        (&v["valid"], &v["reason"]),
        (&json!(false), &json!("revoked"))
    );

    // Passwords.
    let v = json_ok(
        &u,
        &["auth", "password", "hash", "--stdin", "--cost", "10"],
        "pw\n",
    );
    assert!(v["hash"].as_str().unwrap().starts_with("$2y$10$"), "{v}");
    let v = json_ok(
        &u,
        &argv("auth password hash --stdin --cost 10 --store"),
        "pw\n",
    );
    assert_eq!(v["stored"], "tessera/auth/password_hash");
    // Revocation by subject and of everything (last: a cut-off covers its whole second).
    let v = json_ok(&u, &["auth", "token", "revoke", "--subject", "ci"], "");
    assert_eq!(v["subject"], "ci");
    assert!(
        v["revoked_before"].is_string() && v["recorded_tokens"].is_u64(),
        "{v}"
    );
    let v = json_ok(&u, &["auth", "token", "revoke", "--all", "--yes"], "");
    assert_eq!(v["all"], true);
}

#[test]
fn remote_and_login_commands_print_one_json_document_under_json() {
    let u = json_user();
    let srv = u.serve_process();
    let url = format!("http://{}", srv.addr);
    let v = json_ok(&u, &["remotes", "add", "prod", &url], "");
    assert_eq!(
        v,
        json!({"remote": "prod", "url": url, "insecure": false, "active": true})
    );
    let v = json_ok(
        &u,
        &argv("remotes add stage http://127.0.0.1:9 --no-verify"),
        "",
    );
    assert_eq!(
        (&v["remote"], &v["active"]),
        (&json!("stage"), &json!(false))
    );
    let v = json_ok(&u, &["remotes", "list"], "");
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    let v = json_ok(&u, &["remotes", "use", "stage"], "");
    assert_eq!(v, json!({"remote": "stage", "active": true}));
    let v = json_ok(
        &u,
        &["remotes", "set-token", "stage"],
        "some.stored.token\n",
    );
    assert_eq!(
        (&v["remote"], &v["stored_in"]),
        (&json!("stage"), &json!("remotes.toml"))
    );
    let v = json_ok(&u, &["auth", "token", "show", "--remote", "stage"], "");
    assert_eq!(v["token"], "some.stored.token");
    let v = json_ok(&u, &["auth", "logout", "--remote", "stage"], "");
    assert_eq!(
        (&v["logged_out"], &v["revoked"]),
        (&json!(true), &json!(false))
    );
    let v = json_ok(&u, &["auth", "logout", "--remote", "stage"], "");
    assert_eq!(v["logged_out"], false);
    let v = json_ok(&u, &["remotes", "remove", "stage"], "");
    assert_eq!(
        (&v["remote"], &v["removed"]),
        (&json!("stage"), &json!(true))
    );
    // Logging in with a token, asking about it, logging out and revoking it.
    let fresh = u.mint(&["--subject", "deploy", "--scopes", "pull"]);
    let v = json_ok(
        &u,
        &["auth", "login", "--remote", "prod", "--token-stdin"],
        &format!("{fresh}\n"),
    );
    assert_eq!(
        (&v["remote"], &v["subject"]),
        (&json!("prod"), &json!("deploy"))
    );
    let v = json_ok(&u, &["auth", "status", "--remote", "prod"], "");
    assert_eq!(
        (&v["valid"], &v["subject"]),
        (&json!(true), &json!("deploy"))
    );
    let v = json_ok(&u, &["auth", "logout", "--remote", "prod", "--revoke"], "");
    assert_eq!(
        (&v["logged_out"], &v["revoked"]),
        (&json!(true), &json!(true))
    );
    drop(srv);
}

#[test]
fn registry_helper_and_help_commands_print_one_json_document_under_json() {
    let u = json_user();
    // The registry, the credential helper, completions and the man page.
    let v = json_ok(&u, &["registry", "init"], "");
    assert!(v.is_object(), "{v}");
    let v = json_ok(&u, &["credential-helper", "version"], "");
    assert_eq!(v["name"], "docker-credential-tessera");
    assert!(v["version"].is_string(), "{v}");
    let creds = r#"{"ServerURL":"reg.test:5000","Username":"ci","Secret":"s3cret"}"#;
    let v = json_ok(&u, &["credential-helper", "store"], creds);
    assert_eq!(v["stored"], true);
    let v = json_ok(&u, &["credential-helper", "get"], "reg.test:5000");
    assert_eq!(v["Username"], "ci");
    let v = json_ok(&u, &["credential-helper", "list"], "");
    assert_eq!(v, json!({"reg.test:5000": "ci"}));
    let v = json_ok(&u, &["credential-helper", "erase"], "reg.test:5000");
    assert_eq!(v["erased"], true);
    let v = json_ok(&u, &["completions", "bash"], "");
    assert!(v["script"].as_str().unwrap().contains("_tessera"), "{v}");
    let v = json_ok(&u, &["man"], "");
    assert!(v["man"].as_str().unwrap().contains(".TH tessera"), "{v}");
    let v = json_ok(&u, &["--version"], "");
    assert_eq!(v["name"], "tessera");
}

#[test]
fn errors_under_json_are_one_line_of_json_on_stderr_with_a_stable_code() {
    let u = User::new();
    let mut documents = Vec::new();
    let unknown_id = "0123456789abcdef0123456789abcdef";
    for (args, input, exit, code) in [
        (&["nope"][..], "", 2, "USAGE"),
        (&["auth", "token", "generate"][..], "", 2, "USAGE"),
        (&["auth"][..], "", 2, "USAGE"),
        (
            &argv("auth token generate --subject ci --expiry 1q")[..],
            "",
            2,
            "USAGE",
        ),
        (
            &["auth", "token", "revoke", "not-an-id"][..],
            "",
            2,
            "USAGE",
        ),
        (
            &["auth", "token", "revoke", unknown_id][..],
            "",
            1,
            "NOT_FOUND",
        ),
        (
            &["auth", "token", "revoke", "--all"][..],
            "",
            2,
            "CONFIRMATION_REQUIRED",
        ),
        (&["secrets", "get", "app/missing"][..], "", 1, "NOT_FOUND"),
        (&["secrets", "get", "../x"][..], "", 2, "USAGE"),
        (
            &["auth", "password", "hash", "--stdin", "--cost", "4"][..],
            "pw\n",
            2,
            "USAGE",
        ),
        (&["remotes", "use", "nope"][..], "", 1, "NOT_FOUND"),
        (&["auth", "token", "show"][..], "", 1, "FAILED"),
        (
            &["credential-helper", "get"][..],
            "reg.test",
            1,
            "NOT_FOUND",
        ),
        (
            &["--config", "/nonexistent/tessera.toml", "secrets", "list"][..],
            "",
            1,
            "CONFIG",
        ),
    ] {
        let v = json_err(&u, args, input, exit, code);
        documents.push(json!({"args": args, "exit": exit, "stderr": v}));
    }
    let v = json_err(&u, &["auth", "token", "generate"], "", 2, "USAGE");
    assert!(v["error"].as_str().unwrap().contains("--subject"), "{v}");
    let v = json_err(&u, &["secrets", "get", "app/missing"], "", 1, "NOT_FOUND");
    assert!(v["hint"].as_str().unwrap().contains("secrets list"), "{v}");
    u.ok(&argv("remotes add prod http://127.0.0.1:9 --no-verify"));
    json_err(
        &u,
        &argv("remotes add prod http://127.0.0.1:9 --no-verify"),
        "",
        1,
        "ALREADY_EXISTS",
    );
    json_err(&u, &["auth", "token", "show"], "", 1, "NOT_FOUND");
    let home = u.home().display().to_string();
    let documents: Value = serde_json::from_str(&redact(
        &Value::from(documents).to_string(),
        &[(home, "[home]".to_owned())],
    ))
    .unwrap();
    insta::assert_json_snapshot!("json_errors", documents);
    // Without --json, errors stay readable sentences.
    u.cmd()
        .args(["secrets", "get", "app/missing"])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with("error: no secret named"));
}

/// Runs the binary with stdout and stderr where the caller says (piped ones are captured).
fn run_raw(
    u: &User,
    args: &[&str],
    stdout: std::process::Stdio,
    stderr: std::process::Stdio,
) -> std::process::Output {
    u.std_cmd()
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .output()
        .unwrap()
}

/// Runs the binary with stdout captured and stderr on `stderr`; returns (exit code, stdout).
fn run_with_stderr(u: &User, args: &[&str], stderr: std::process::Stdio) -> (Option<i32>, String) {
    let out = run_raw(u, args, std::process::Stdio::piped(), stderr);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_closed_or_full_stderr_never_makes_tessera_panic() {
    let full = || std::process::Stdio::from(std::fs::File::create("/dev/full").unwrap());
    let closed_pipe = || {
        // A pipe whose reader is gone: every write to it fails with EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        std::process::Stdio::from(writer)
    };
    let generate = ["auth", "token", "generate", "--subject", "ci"];
    for (what, stderr) in [
        ("/dev/full", &full as &dyn Fn() -> std::process::Stdio),
        ("a closed pipe", &closed_pipe),
        ("/dev/null", &std::process::Stdio::null),
    ] {
        // A fresh user: the first run also says on stderr where it created the secret.
        let u = User::new();
        for _ in 0..2 {
            let (code, out) = run_with_stderr(&u, &generate, stderr());
            assert_eq!(code, Some(0), "{what}: {out}");
            assert_eq!(out.trim().split('.').count(), 3, "{what}: the token: {out}");
        }
        // Errors: exit 1 or 2 as usual, never 101.
        let (code, out) = run_with_stderr(&u, &["secrets", "get", "app/missing"], stderr());
        assert_eq!(code, Some(1), "{what}: {out}");
        let (code, _) = run_with_stderr(&u, &["--json", "secrets", "get", "app/x"], stderr());
        assert_eq!(code, Some(1), "{what}");
        let (code, _) = run_with_stderr(&u, &["auth", "token", "generate"], stderr());
        assert_eq!(code, Some(2), "{what}");
        let (code, _) = run_with_stderr(&u, &["auth", "token", "revoke", "--all"], stderr());
        assert_eq!(code, Some(2), "{what}");
    }
    // `2>&-` as a shell writes it: stderr not open at all.
    let u = User::new();
    let out = std::process::Command::new("sh")
        .args(["-c", "\"$0\" auth token generate --subject ci 2>&-"])
        .arg(assert_cmd::cargo::cargo_bin("tessera"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", u.home())
        .env("XDG_CONFIG_HOME", u.home().join(".config"))
        .env("XDG_DATA_HOME", u.home().join(".local/share"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let token = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{token}");
    assert_eq!(token.trim().split('.').count(), 3, "{token}");
}

#[test]
fn a_full_stdout_is_an_error_and_a_closed_one_is_quiet() {
    let u = User::new();
    let generate = ["auth", "token", "generate", "--subject", "ci"];
    let full = std::fs::File::create("/dev/full").unwrap();
    let out = run_raw(&u, &generate, full.into(), std::process::Stdio::piped());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("error: cannot write to stdout"), "{err}");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = run_raw(&u, &generate, writer.into(), std::process::Stdio::piped());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("error"), "{err}");
}

#[test]
fn revoking_an_unknown_or_malformed_id_is_an_error() {
    let u = User::new();
    let token = u.mint(&["--subject", "ci"]);
    let jti = {
        let a = u
            .cmd()
            .args(["--json", "auth", "token", "verify", &token])
            .assert()
            .success();
        let v: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
        v["jti"].as_str().unwrap().to_owned()
    };
    // A typo of a real id: exit 1, named, and nothing recorded (the same answer twice).
    let typo = format!("{}0", &jti[..31]);
    let typo = if typo == jti {
        format!("{}1", &jti[..31])
    } else {
        typo
    };
    let mut t = Transcript::new();
    t.redact(u.home().display().to_string(), "home")
        .redact(&token, "token")
        .redact(&jti, "id")
        .redact(jti.to_uppercase(), "ID")
        .redact(&typo, "typo of id");
    for _ in 0..2 {
        let err = t.run(&u, &["auth", "token", "revoke", &typo], 1);
        assert!(
            err.contains(&format!("no token with id {typo} in the token store"))
                && err.contains("`tessera auth token list` shows the ids"),
            "{err}"
        );
        assert!(!err.contains("revoked token"), "{err}");
    }
    // Not an id at all: a usage error naming the format; a pasted token is not echoed.
    for bad in ["nonexistent", "xyz-123", &token] {
        let err = t.run(&u, &["auth", "token", "revoke", bad], 2);
        assert!(err.contains("32 hexadecimal characters"), "{err}");
        assert!(!err.contains(&token[..50]), "{err}");
    }
    u.ok(&["auth", "token", "verify", &token]);
    // The real id, in capitals as some tools print it: revoked; again: "already revoked", exit 0.
    t.run_says(
        &u,
        &["auth", "token", "revoke", &jti.to_uppercase()],
        0,
        &format!("revoked token {jti}"),
    );
    t.run_says(&u, &["auth", "token", "revoke", &jti], 0, "already revoked");
    insta::assert_snapshot!("revoke_errors", t.text());
}

/// A token minted on another machine (same secret, another store) is unknown here; with
/// --unrecorded its revocation is recorded anyway, and it is refused from then on. A token
/// revoked through its subject counts as already revoked.
#[test]
fn revoking_a_token_of_another_store_needs_unrecorded() {
    let u = User::new();
    u.mint(&["--subject", "ci"]);
    let mut t = Transcript::new();
    t.redact(u.home().display().to_string(), "home");
    let elsewhere = User::new();
    let theirs = u
        .cmd()
        .env("XDG_DATA_HOME", elsewhere.home().join(".local/share"))
        .env("TESSERA_AUTH_TOKEN_SECRET", SECRET)
        .args(["--json", "auth", "token", "generate", "--subject", "far"])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&theirs.get_output().stdout).unwrap();
    let (far_token, far_id) = (v["token"].as_str().unwrap(), v["jti"].as_str().unwrap());
    t.redact(far_token, "far token").redact(far_id, "far id");
    let verify_far = || {
        u.cmd()
            .env("TESSERA_AUTH_TOKEN_SECRET", SECRET)
            .args(["auth", "token", "verify", far_token])
            .assert()
    };
    verify_far().success();
    t.run_says(&u, &["auth", "token", "revoke", far_id], 1, "--unrecorded");
    verify_far().success();
    t.run_says(
        &u,
        &["auth", "token", "revoke", far_id, "--unrecorded"],
        0,
        "revoked token",
    );
    verify_far()
        .code(1)
        .stderr(predicate::str::contains("revoked"));
    t.run(&u, &argv("auth token revoke --subject ci --unrecorded"), 2);

    // A token revoked through its subject counts as already revoked too.
    let v = json_ok(&u, &["auth", "token", "generate", "--subject", "bot"], "");
    let other = v["jti"].as_str().unwrap().to_owned();
    t.redact(&other, "other id");
    std::thread::sleep(std::time::Duration::from_millis(5));
    u.ok(&["auth", "token", "revoke", "--subject", "bot"]);
    t.run_says(
        &u,
        &["auth", "token", "revoke", &other],
        0,
        "already revoked",
    );
    insta::assert_snapshot!("revoke_unrecorded", t.text());
}

#[test]
fn revoke_all_and_replacing_signing_keys_need_confirmation() {
    let u = User::new();
    u.write_config(
        "[auth]\nprevious_token_secrets = [\"tessera/auth/old_secret\"]\n[registry]\nsigning_key = \"tessera/registry/key\"\n",
    );
    // A signing key that is not stored yet breaks nothing: creating it needs no confirmation.
    for key in ["tessera/auth/old_secret", "tessera/registry/key"] {
        u.ok_with_stdin(
            &["secrets", "set", key],
            "first-value-that-is-long-enough-0123456789\n",
        );
    }
    let token = u.mint(&["--subject", "ci"]);
    let secret = std::fs::read_to_string(u.secret_file()).unwrap();

    // No terminal and no --yes: refused, naming --yes, nothing changed.
    let a = u
        .cmd()
        .args(["auth", "token", "revoke", "--all"])
        .assert()
        .code(2);
    stderr_has(&a, "--yes");
    u.ok(&["auth", "token", "verify", &token]);
    for args in [
        &["secrets", "set", "tessera/auth/token_secret"][..],
        &argv("secrets set tessera/auth/token_secret --generate 32")[..],
        &["secrets", "rm", "tessera/auth/token_secret"][..],
    ] {
        let a = u
            .cmd()
            .args(args)
            .write_stdin("a-new-secret-that-is-long-enough-0123456789\n")
            .assert()
            .code(2);
        let err = stderr_of(&a);
        assert!(
            err.contains("token signing secret") && err.contains("--yes"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(std::fs::read_to_string(u.secret_file()).unwrap(), secret);
    u.ok(&["auth", "token", "verify", &token]);
    // Previous secrets and the registry key too.
    for (key, what) in [
        ("tessera/auth/old_secret", "previous token signing secret"),
        ("tessera/registry/key", "registry signing key"),
    ] {
        for args in [&["secrets", "set", key][..], &["secrets", "rm", key][..]] {
            let a = u.cmd().args(args).write_stdin("x\n").assert().code(2);
            stderr_has(&a, what);
            stderr_has(&a, "--yes");
        }
        u.ok_with_stdin(
            &["secrets", "set", key, "--yes"],
            "second-value-that-is-long-enough-0123456789\n",
        );
    }
    u.ok(&["secrets", "rm", "tessera/registry/key", "--yes"]);
    // Other keys are not asked about.
    u.ok_with_stdin(&["secrets", "set", "app/db"], "v\n");
    u.ok(&["secrets", "rm", "app/db"]);

    // With --yes it goes ahead.
    u.ok_with_stdin(
        &["secrets", "set", "tessera/auth/token_secret", "--yes"],
        "a-new-secret-that-is-long-enough-0123456789\n",
    );
    assert_ne!(std::fs::read_to_string(u.secret_file()).unwrap(), secret);
    let token = u.mint(&["--subject", "ci"]);
    std::thread::sleep(std::time::Duration::from_millis(5));
    u.ok(&["auth", "token", "revoke", "--all", "--yes"]);
    u.fails(&["auth", "token", "verify", &token], "", 1);
}

/// Runs `tessera ARGS` on a pseudo-terminal (util-linux `script`), typing `answer`.
fn on_a_terminal(u: &User, args: &str, answer: &str) -> (i32, String) {
    let bin = assert_cmd::cargo::cargo_bin("tessera");
    let out = std::process::Command::new("script")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", u.home())
        .env("XDG_CONFIG_HOME", u.home().join(".config"))
        .env("XDG_DATA_HOME", u.home().join(".local/share"))
        .args(["-qec", &format!("{} {args}", bin.display()), "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(answer.as_bytes())?;
            child.wait_with_output()
        })
        .expect("util-linux `script` runs the command on a pseudo-terminal");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn on_a_terminal_revoke_all_asks_and_only_yes_goes_ahead() {
    let u = User::new();
    let token = u.mint(&["--subject", "ci"]);
    for no in ["n\n", "\n", "whatever\n"] {
        let (code, screen) = on_a_terminal(&u, "auth token revoke --all", no);
        assert_eq!(code, 1, "{screen}");
        assert!(
            screen.contains("Continue? [y/N]") && screen.contains("cancelled"),
            "{screen}"
        );
        u.ok(&["auth", "token", "verify", &token]);
    }
    std::thread::sleep(std::time::Duration::from_millis(5));
    let (code, screen) = on_a_terminal(&u, "auth token revoke --all", "y\n");
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("revoked every token"), "{screen}");
    u.fails(&["auth", "token", "verify", &token], "", 1);
}

#[test]
fn bcrypt_costs_the_server_would_refuse_are_refused_when_hashing() {
    let u = User::new();
    for cost in ["4", "9", "32"] {
        for store in [false, true] {
            let mut args = vec!["auth", "password", "hash", "--stdin", "--cost", cost];
            if store {
                args.push("--store");
            }
            let a = u.cmd().args(&args).write_stdin("pw\n").assert().code(2);
            let err = stderr_of(&a);
            assert!(err.contains("use 10 to 31"), "{cost}: {err}");
            assert!(
                err.contains("too cheap, i.e. too easy to brute-force"),
                "{cost}: {err}"
            );
            assert!(a.get_output().stdout.is_empty());
        }
    }
    assert!(
        !u.home()
            .join(".local/share/tessera/secrets/tessera/auth/password_hash")
            .exists(),
        "nothing stored"
    );
    // The lowest accepted cost is what the server accepts: it starts with that hash.
    u.write_config("[auth]\nusername = \"deploy\"\n");
    u.mint(&["--subject", "ci"]);
    u.ok_with_stdin(
        &argv("auth password hash --stdin --cost 10 --store"),
        "pw\n",
    );
    drop(u.serve_process());
}
