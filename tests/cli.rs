//! The CLI as a user drives it: the real binary, a scratch HOME, the default `unsafe` backend.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

const SECRET: &str = "an-env-secret-that-is-long-enough-0123456789";

/// A scratch user: HOME, config and data folders of its own.
struct User {
    home: tempfile::TempDir,
}

impl User {
    fn new() -> Self {
        User {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn home(&self) -> &Path {
        self.home.path()
    }

    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("tessera").unwrap();
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.home().join(".config"))
            .env("XDG_DATA_HOME", self.home().join(".local/share"));
        c
    }

    fn secret_file(&self) -> PathBuf {
        self.home()
            .join(".local/share/tessera/secrets/tessera/auth/token_secret")
    }

    fn write_config(&self, text: &str) -> PathBuf {
        let dir = self.home().join(".config/tessera");
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("tessera.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Mints a token and returns it.
    fn mint(&self, args: &[&str]) -> String {
        let out = self
            .cmd()
            .args(["auth", "token", "generate"])
            .args(args)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s.lines().count(), 1, "the token alone, on one line: {s:?}");
        s.trim().to_owned()
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

#[test]
fn main_job_works_on_a_fresh_machine() {
    let u = User::new();
    let a = u
        .cmd()
        .args([
            "auth",
            "token",
            "generate",
            "--subject",
            "ci",
            "--scopes",
            "push,pull",
        ])
        .assert()
        .success();
    let err = stderr_of(&a);
    let token = String::from_utf8(a.get_output().stdout.clone()).unwrap();
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
    let a = u
        .cmd()
        .args(["auth", "token", "generate", "--subject", "ci"])
        .assert()
        .success();
    assert!(!stderr_of(&a).contains("created"));
    u.cmd()
        .args(["auth", "token", "verify", token.trim()])
        .assert()
        .success()
        .stdout(predicate::str::contains("valid token for `ci`"));
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
    for bad in [
        "1.5h",
        "-1d",
        "1q",
        "6M1y",
        "1d1d",
        "",
        "99999999999999999999y",
    ] {
        let a = u
            .cmd()
            .env("TESSERA_AUTH_TOKEN_SECRET", SECRET)
            .args(["auth", "token", "generate", "--subject", "ci"])
            .arg(format!("--expiry={bad}"))
            .assert()
            .code(2);
        let err = stderr_of(&a);
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
        let a = u
            .cmd()
            .env("TESSERA_AUTH_TOKEN_SECRET", SECRET)
            .args([
                "auth",
                "token",
                "generate",
                "--subject",
                "ci",
                "--scopes",
                bad,
            ])
            .assert()
            .code(2);
        assert!(
            stderr_of(&a).contains("invalid scope"),
            "{bad}: {}",
            stderr_of(&a)
        );
    }
    u.cmd()
        .env("TESSERA_AUTH_TOKEN_SECRET", SECRET)
        .args(["auth", "token", "generate"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--subject"));
}

#[test]
fn max_token_expiry_is_enforced() {
    let u = User::new();
    u.write_config("[auth]\nmax_token_expiry = \"90d\"\n");
    u.cmd()
        .env("TESSERA_AUTH_TOKEN_SECRET", SECRET)
        .args([
            "auth",
            "token",
            "generate",
            "--subject",
            "ci",
            "--expiry",
            "1y",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("max_token_expiry"));
    u.cmd()
        .env("TESSERA_AUTH_TOKEN_SECRET", SECRET)
        .args([
            "auth",
            "token",
            "generate",
            "--subject",
            "ci",
            "--expiry",
            "0",
        ])
        .assert()
        .code(2);
    u.cmd()
        .env("TESSERA_AUTH_TOKEN_SECRET", SECRET)
        .args([
            "auth",
            "token",
            "generate",
            "--subject",
            "ci",
            "--expiry",
            "30d",
        ])
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
            .args([
                "auth",
                "token",
                "generate",
                "--subject",
                "ci",
                "--scopes",
                "pull",
            ])
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

    // Another secret: bad signature.
    u.cmd()
        .env(
            "TESSERA_AUTH_TOKEN_SECRET",
            "another-secret-that-is-long-enough-9876543210",
        )
        .args(["auth", "token", "verify", &token])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("bad signature"));
    // Tampered payload: bad signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].chars().rev().collect();
    env_cmd()
        .args(["auth", "token", "verify", &parts.join(".")])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("invalid token"));
    // Garbage: malformed, and JSON says so too.
    env_cmd()
        .args(["auth", "token", "verify", "not-a-token"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("malformed"));
    let a = env_cmd()
        .args(["--json", "auth", "token", "verify", "not-a-token"])
        .assert()
        .code(1);
    let v: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["reason"], "malformed");
    // Oversized input is refused without trouble.
    env_cmd()
        .args(["auth", "token", "verify", "-"])
        .write_stdin("a".repeat(100_000))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("malformed"));
    // Another issuer.
    u.write_config("[auth]\nissuer = \"someone-else\"\n");
    env_cmd()
        .args(["auth", "token", "verify", &token])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("wrong issuer"));
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
    let expired = at(3600, "30m");
    u.cmd()
        .env("TESSERA_AUTH_TOKEN_SECRET", SECRET)
        .args(["auth", "token", "verify", &expired])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("expired"));
    let future = at(-3600, "2h");
    u.cmd()
        .env("TESSERA_AUTH_TOKEN_SECRET", SECRET)
        .args(["auth", "token", "verify", &future])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not yet valid"));
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
    u.cmd()
        .args(["auth", "token", "revoke", &a_id])
        .assert()
        .success();
    u.cmd()
        .args(["auth", "token", "verify", &a])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("revoked"));
    u.cmd()
        .args(["auth", "token", "verify", &b])
        .assert()
        .success();

    u.cmd()
        .args(["auth", "token", "revoke", "--subject", "ci"])
        .assert()
        .success();
    u.cmd()
        .args(["auth", "token", "verify", &b])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("revoked"));
    u.cmd()
        .args(["auth", "token", "verify", &c])
        .assert()
        .success();

    u.cmd()
        .args(["auth", "token", "revoke", "--all"])
        .assert()
        .success();
    u.cmd()
        .args(["auth", "token", "verify", &c])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("revoked"));
    u.cmd().args(["auth", "token", "revoke"]).assert().code(2);
}

#[test]
fn secrets_roundtrip_on_the_default_backend() {
    let u = User::new();
    u.cmd()
        .args(["secrets", "set", "app/db"])
        .write_stdin("s3cret-value\n")
        .assert()
        .success();
    u.cmd()
        .args(["secrets", "get", "app/db"])
        .assert()
        .success()
        .stdout("s3cret-value\n");
    let pem = "-----BEGIN PRIVATE KEY-----\nAAAA\nBBBB\n-----END PRIVATE KEY-----\n";
    u.cmd()
        .args(["secrets", "set", "app/key"])
        .write_stdin(pem)
        .assert()
        .success();
    u.cmd()
        .args(["secrets", "get", "app/key"])
        .assert()
        .success()
        .stdout(pem);
    u.cmd()
        .args(["secrets", "set", "other/x", "--generate", "32"])
        .assert()
        .success();
    u.cmd()
        .args(["secrets", "list"])
        .assert()
        .success()
        .stdout("app/db\napp/key\nother/x\n");
    u.cmd()
        .args(["secrets", "list", "app"])
        .assert()
        .success()
        .stdout("app/db\napp/key\n");
    u.cmd()
        .args(["--json", "secrets", "list", "app"])
        .assert()
        .success()
        .stdout("[\"app/db\",\"app/key\"]\n");
    u.cmd().args(["secrets", "rm", "app/db"]).assert().success();
    u.cmd()
        .args(["secrets", "get", "app/db"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no secret named `app/db`"));
    u.cmd().args(["secrets", "rm", "app/db"]).assert().code(1);
    // Nothing on stdin is refused, not stored as empty.
    u.cmd()
        .args(["secrets", "set", "app/empty"])
        .write_stdin("")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no secret value on stdin"));
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
    u.cmd()
        .args(["--config", "/nonexistent/tessera.toml", "secrets", "list"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("does not exist"));
    u.write_config("[secrets]\nbackend = \"vault\"\n");
    u.cmd()
        .args(["secrets", "list"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "valid backends are pass, sops, unsafe and age",
        ));
    u.write_config("[secrets]\nbakend = \"pass\"\n");
    u.cmd().args(["secrets", "list"]).assert().code(1).stderr(
        predicate::str::contains("tessera.toml:2:")
            .and(predicate::str::contains("did you mean `backend`")),
    );
    u.write_config("[secrets]\nbackend = \"unsafe\"\n");
    u.cmd()
        .env("TESSERA_SECRETS_BACKEND", "")
        .args(["secrets", "list"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("set but empty"));
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
    u.cmd()
        .args(["secrets", "check"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "present  tessera/auth/token_secret",
        ));
    u.cmd()
        .args(["init", "--backend", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("valid backends"));
}

#[test]
fn password_hash_is_htpasswd_bcrypt_and_refuses_long_input() {
    let u = User::new();
    let a = u
        .cmd()
        .args(["auth", "password", "hash", "--stdin", "--cost", "4"])
        .write_stdin("correct horse\n")
        .assert()
        .success();
    let out = String::from_utf8(a.get_output().stdout.clone()).unwrap();
    assert!(
        out.starts_with("$2y$04$") && out.trim().len() == 60,
        "{out}"
    );
    assert!(bcrypt::verify("correct horse", out.trim()).unwrap());
    let a = u
        .cmd()
        .args(["auth", "password", "hash", "--stdin", "--cost", "4"])
        .write_stdin(format!("{}\n", "x".repeat(73)))
        .assert()
        .code(1);
    assert!(stderr_of(&a).contains("72"), "{}", stderr_of(&a));
    u.cmd()
        .args(["auth", "password", "hash", "--stdin", "--cost", "3"])
        .write_stdin("pw\n")
        .assert()
        .code(2);
    u.cmd()
        .args([
            "auth", "password", "hash", "--stdin", "--cost", "4", "--store",
        ])
        .write_stdin("correct horse\n")
        .assert()
        .success();
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
    u.cmd()
        .args(["auth", "token", "generate", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--expiry").and(predicate::str::contains("1y6M")));
    u.cmd()
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(predicate::str::contains("_tessera"));
    u.cmd()
        .arg("man")
        .assert()
        .success()
        .stdout(predicate::str::contains(".TH tessera"));
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
    u.cmd()
        .args(["secrets", "set", "app/db"])
        .write_stdin("value-in-age\n")
        .assert()
        .success();
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
