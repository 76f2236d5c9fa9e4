//! A new user's first hour, through the real binary in a scratch HOME: the README's order of
//! steps, `init` and backends, login against a server, what reaches the terminal, durations,
//! `--help` examples and the credential helper's installation.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command as StdCommand;

use serde_json::Value;

use crate::support::Run;
use crate::support::argv;
use crate::support::pass::PassStore;
use crate::support::user::{User, texts};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Whether `program` runs; locally a missing tool skips the test, with `CI=true` it fails.
fn have(program: &str, arg: &str) -> bool {
    if StdCommand::new(program).arg(arg).output().is_ok() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "`{program}` is not installed and CI=true"
    );
    eprintln!("skipping: `{program}` is not installed (this would fail with CI=true)");
    false
}

// ---- item 11: the README order keeps tokens valid; secrets move between backends -------

#[test]
fn init_with_age_after_a_first_token_carries_the_secret_over() {
    let u = User::new();
    // README step 1: no config, the default `unsafe` backend creates the secret.
    let token = u.mint(&["--subject", "ci", "--scopes", "push,pull"]);
    let plain = std::fs::read_to_string(u.secret_file()).unwrap();
    // Quick start: init with another backend.
    let (_, err) = u.ok(&["init", "--backend", "age"]);
    assert!(
        err.contains("carried over from the unsafe backend"),
        "init says what it did: {err}"
    );
    assert!(
        err.contains("tessera secrets move --from unsafe tessera/auth/token_secret"),
        "and how to remove the plain copy: {err}"
    );
    assert!(
        u.verifies(&token),
        "a token minted before init still verifies"
    );
    let (o, _) = u.ok(&["secrets", "get", "tessera/auth/token_secret"]);
    assert_eq!(o, plain, "the age backend holds the same secret");
    // The command init named removes the plain copy, and tokens keep verifying.
    let (_, err) = u.ok(&argv(
        "secrets move --from unsafe tessera/auth/token_secret",
    ));
    assert!(
        err.contains("already in the age backend with the same value"),
        "{err}"
    );
    assert!(!u.secret_file().exists(), "the plaintext file is gone");
    assert!(u.verifies(&token));
    // A second init keeps everything.
    let (_, err) = u.ok(&["init"]);
    assert!(err.contains("(kept)"), "{err}");
    assert!(u.verifies(&token));

    // copy the other way, with JSON, and a conflict.
    u.ok_with_stdin(&["secrets", "set", "app/db"], "in-age\n");
    let (o, _) = u.ok(&argv("--json secrets copy --from age --to unsafe app"));
    let v: Value = serde_json::from_str(&o).unwrap();
    assert_eq!(v["copied"], serde_json::json!(["app/db"]));
    let copy = u.home().join(".local/share/tessera/secrets/app/db");
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "in-age\n");
    assert_eq!(mode(&copy), 0o600);
    u.ok_with_stdin(&["secrets", "set", "app/db"], "changed\n");
    let err = u.fails(
        &["secrets", "copy", "--from", "age", "--to", "unsafe"],
        "",
        1,
    );
    assert!(
        err.contains("`app/db` already holds a different value") && err.contains("--overwrite"),
        "{err}"
    );
    assert!(
        !u.home()
            .join(".local/share/tessera/secrets/tessera/auth/token_secret")
            .exists(),
        "a refused copy writes nothing"
    );
    u.ok(&argv("secrets copy --from age --to unsafe --overwrite"));
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "changed\n");
    // Usage errors.
    let err = u.fails(&["secrets", "copy", "--from", "age"], "", 2);
    assert!(err.contains("--to"), "{err}");
    let err = u.fails(&["secrets", "copy", "--from", "nope"], "", 2);
    assert!(err.contains("valid backends"), "{err}");
    let err = u.fails(
        &["secrets", "copy", "--from", "unsafe", "missing/key"],
        "",
        1,
    );
    assert!(err.contains("no key `missing/key`"), "{err}");
}

/// A throwaway gpg key without passphrase and a pass store, in `u`'s home; `u` uses it.
fn pass_store(u: &mut User) -> PassStore {
    let pass = PassStore::create(
        u.home().join("gnupg"),
        u.home().join("store"),
        "tessera first run <t@example.invalid>",
    );
    for (k, v) in pass.vars() {
        u.vars.push((k.into(), v));
    }
    pass
}

#[test]
fn init_with_real_pass_after_a_first_token_carries_the_secret_over() {
    if !have("pass", "version") || !have("gpg", "--version") {
        return;
    }
    let mut u = User::new();
    let pass = pass_store(&mut u);
    let token = u.mint(&["--subject", "ci", "--scopes", "push,pull"]);
    u.ok_with_stdin(&["secrets", "set", "app/db"], "plain-value\n");
    let (_, err) = u.ok(&["init", "--backend", "pass"]);
    assert!(
        err.contains("carried over from the unsafe backend"),
        "{err}"
    );
    assert!(
        err.contains("1 other key(s)") && err.contains("tessera secrets copy --from unsafe"),
        "init points at the keys it did not take: {err}"
    );
    assert!(
        u.verifies(&token),
        "bad signature after init --backend pass"
    );
    let store = u.home().join("store");
    assert!(store.join("tessera/auth/token_secret.gpg").exists());
    // Move the rest out of the plain files into pass.
    let (_, err) = u.ok(&["secrets", "move", "--from", "unsafe"]);
    assert!(err.contains("copied app/db: unsafe -> pass"), "{err}");
    assert!(
        err.contains("removed 2 key(s) from the unsafe backend"),
        "{err}"
    );
    assert!(!u.secret_file().exists());
    assert!(
        !u.home()
            .join(".local/share/tessera/secrets/app/db")
            .exists()
    );
    let (o, _) = u.ok(&["secrets", "get", "app/db"]);
    assert_eq!(o, "plain-value\n");
    let gpg_file = std::fs::read(store.join("app/db.gpg")).unwrap();
    assert!(!String::from_utf8_lossy(&gpg_file).contains("plain-value"));
    assert!(u.verifies(&token));
    pass.stop_agent();
}

// ---- item 15: init --force and --rotate-secret keep backups ----------------------------

#[test]
fn init_force_backs_up_the_config_and_keeps_the_secret() {
    let u = User::new();
    u.ok(&["init"]);
    let custom = std::fs::read_to_string(u.config_file())
        .unwrap()
        .replace("token_expiry = \"30d\"", "token_expiry = \"7d\"");
    std::fs::write(u.config_file(), &custom).unwrap();
    let token = u.mint(&["--subject", "ci"]);
    let secret = std::fs::read_to_string(u.secret_file()).unwrap();

    let (_, err) = u.ok(&["init", "--force"]);
    assert!(err.contains("the old file is kept as"), "{err}");
    assert!(err.contains("(kept; --rotate-secret replaces it)"), "{err}");
    assert!(
        u.verifies(&token),
        "--force alone never replaces the secret"
    );
    assert_eq!(std::fs::read_to_string(u.secret_file()).unwrap(), secret);
    let dir = u.home().join(".config/tessera");
    let backups: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("tessera.toml.bak-"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(std::fs::read_to_string(&backups[0]).unwrap(), custom);
    assert_eq!(mode(&backups[0]), 0o600);
    assert!(err.contains(&backups[0].display().to_string()), "{err}");

    let (o, err) = u.ok(&["--json", "init", "--rotate-secret"]);
    assert!(!u.verifies(&token), "--rotate-secret replaces it");
    let v: Value = serde_json::from_str(&o).unwrap();
    let backup = v["token_secret_backup"].as_str().unwrap().to_owned();
    assert!(
        backup.starts_with("tessera/auth/token_secret.bak-"),
        "{backup}"
    );
    assert!(
        err.contains(&backup),
        "stderr names where the old secret is: {err}"
    );
    let (old, _) = u.ok(&["secrets", "get", &backup]);
    assert_eq!(old, secret, "the old secret is kept under the backup key");
    // Listing the backup key as a previous secret accepts the old tokens again.
    let cfg = std::fs::read_to_string(u.config_file()).unwrap().replace(
        "previous_token_secrets = []",
        &format!("previous_token_secrets = [\"{backup}\"]"),
    );
    std::fs::write(u.config_file(), cfg).unwrap();
    assert!(u.verifies(&token));
}

// ---- item 13: the Quick start's login, and the server's reason -------------------------

#[test]
fn quick_start_login_works_and_the_servers_reason_reaches_the_user() {
    let u = User::new();
    // Without a username, the server says password login is off, and the user sees that.
    u.ok(&["init"]);
    let srv = u.serve_process();
    let url = srv.url();
    u.ok(&["remotes", "add", "prod", &url]);
    let err = u.fails(
        &argv("auth login --remote prod --username deploy --password-stdin"),
        "pw-for-deploy-123\n",
        1,
    );
    assert!(
        err.contains("password login is not enabled on this server"),
        "the server's reason: {err}"
    );
    drop(srv);

    // The Quick start: init --username, password hash --store, serve, login.
    let u = User::new();
    let (_, err) = u.ok(&["init", "--username", "deploy"]);
    assert!(err.contains("created"), "{err}");
    u.ok_with_stdin(
        &["auth", "password", "hash", "--stdin", "--store"],
        "pw-for-deploy-123\n",
    );
    let srv = u.serve_process();
    u.ok(&["remotes", "add", "prod", &srv.url()]);
    u.ok_with_stdin(
        &argv("auth login --remote prod --username deploy --password-stdin"),
        "pw-for-deploy-123\n",
    );
    let (o, _) = u.ok(&["auth", "status", "--remote", "prod"]);
    assert!(o.contains("subject: deploy"), "{o}");
    let err = u.fails(
        &argv("auth login --remote prod --username deploy --password-stdin"),
        "wrong-password-456\n",
        1,
    );
    assert!(err.contains("the username or password is wrong"), "{err}");
    // Under --json the refusal carries the code scripts match on (docs/scripting.md).
    let err = u.fails(
        &[
            "--json",
            "auth",
            "login",
            "--remote",
            "prod",
            "--username",
            "deploy",
            "--password-stdin",
        ],
        "wrong-password-456\n",
        1,
    );
    let line: serde_json::Value = serde_json::from_str(err.trim()).expect("one line of JSON");
    assert_eq!(line["code"], "INVALID_CREDENTIALS", "{err}");
    assert!(
        line["error"]
            .as_str()
            .is_some_and(|e| e.contains("the username or password is wrong")),
        "{err}"
    );
    drop(srv);

    // init --username on an existing config adds it, and refuses to change it silently.
    let u = User::new();
    u.ok(&["init"]);
    u.ok(&["init", "--username", "deploy"]);
    let (o, _) = u.ok(&["secrets", "check"]);
    assert!(o.contains("tessera/auth/password_hash"), "{o}");
    let err = u.fails(&["init", "--username", "other"], "", 2);
    assert!(
        err.contains("already sets auth.username = `deploy`"),
        "{err}"
    );
}

// ---- item 6: text from a remote or a token cannot drive the terminal -------------------

/// A fake tessera server whose every answer carries terminal escape sequences.
fn hostile_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let (status, json) = if request_line.starts_with("GET /health") {
                ("200 OK", serde_json::json!({"status": "ok"}))
            } else if request_line.starts_with("GET /auth/verify") {
                (
                    "200 OK",
                    serde_json::json!({
                        "subject": "evil\u{1b}[2J\u{1b}]0;pwned\u{7}",
                        "scopes": ["repository:x:pull\u{9b}31m"],
                        "jti": "abc\u{1b}[1A",
                        "issued_at": "2026-01-01T00:00:00Z",
                        "expires_at": null,
                    }),
                )
            } else {
                (
                    "401 Unauthorized",
                    serde_json::json!({
                        "error": "go away\u{1b}[2J\u{1b}[31m",
                        "code": "INVALID_CREDENTIALS",
                    }),
                )
            };
            let body = json.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

fn assert_no_escape(what: &str, text: &str) {
    assert!(
        !text
            .chars()
            .any(|c| matches!(c, '\u{1b}' | '\u{7}' | '\u{7f}'..='\u{9f}')),
        "{what} reached the terminal raw: {text:?}"
    );
}

#[test]
fn remote_text_is_escaped_before_it_reaches_the_terminal() {
    let u = User::new();
    let url = hostile_server();
    u.ok(&["remotes", "add", "evil", &url]);
    let out = u
        .cmd()
        .args(["auth", "login", "--remote", "evil", "--token-stdin"])
        .write_stdin("eyJhbGciOiJIUzI1NiJ9.e30.c2ln\n")
        .output()
        .unwrap();
    let (o, e) = texts(&out);
    assert!(out.status.success(), "{e}");
    assert_no_escape("auth login", &(o + &e));
    assert!(e.contains("evil\\u{1b}[2J"), "shown, escaped: {e}");

    let (o, e) = u.ok(&["auth", "status", "--remote", "evil"]);
    assert_no_escape("auth status", &(o.clone() + &e));
    assert!(o.contains("subject: evil\\u{1b}[2J"), "{o}");
    assert!(o.contains("\\u{9b}31m"), "{o}");

    let e = u.fails(
        &argv("auth login --remote evil --username x --password-stdin"),
        "pw\n",
        1,
    );
    assert_no_escape("login refusal", &e);
    assert!(
        e.contains("go away\\u{1b}[2J"),
        "the server's reason, escaped: {e}"
    );

    // remotes.toml edited by hand.
    let file = u.home().join(".config/tessera/remotes.toml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(&url, &format!("{url}/\\u001b[2J"));
    std::fs::write(&file, text).unwrap();
    let out = u.cmd().args(["remotes", "list"]).output().unwrap();
    let (o, e) = texts(&out);
    assert!(out.status.success(), "{e}");
    assert!(o.contains("\\u{1b}[2J"), "shown, escaped: {o}");
    assert_no_escape("remotes list", &(o + &e));
    for args in [
        &["auth", "status", "--remote", "evil"][..],
        &["auth", "logout", "--remote", "evil", "--revoke"][..],
    ] {
        let out = u.cmd().args(args).output().unwrap();
        let (o, e) = texts(&out);
        assert_no_escape(&args.join(" "), &(o + &e));
    }
}

// ---- item 18: durations say their unit, and refusals say why -----------------------------

#[test]
fn expiry_summary_spells_the_unit_and_refusals_say_why() {
    let u = User::new();
    let (_, e) = u.ok(&argv("auth token generate --subject ci --expiry 6m"));
    assert!(e.contains("(6 minutes from now)"), "{e}");
    let (_, e) = u.ok(&argv("auth token generate --subject ci --expiry 6M"));
    assert!(e.contains("(6 months from now)"), "{e}");
    for (bad, reason) in [
        ("1.5h", "fractions are not accepted; write `1h30m`"),
        ("6M1y", "units must go from largest to smallest"),
        ("1d1d", "`d` appears twice"),
        (
            "1q",
            "unknown unit `q`; units are y M w d h m s (m = minutes, M = months)",
        ),
        ("-1d", "durations cannot be negative"),
        ("", "it is empty"),
        ("99999999999y", "too large"),
    ] {
        let e = u.fails(
            &[
                "auth",
                "token",
                "generate",
                "--subject",
                "ci",
                &format!("--expiry={bad}"),
            ],
            "",
            2,
        );
        assert!(e.contains(reason), "{bad:?}: {e}");
    }
}

// ---- item 20: every command's --help has examples; the credential helper's installation ---

/// Every subcommand path, from `tessera --help` down (clap's own `help` left out).
fn subcommands(u: &User, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut args = prefix.to_vec();
    args.push("--help".into());
    let (help, _) = u.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut in_commands = false;
    for line in help.lines() {
        if line == "Commands:" {
            in_commands = true;
            continue;
        }
        if in_commands {
            let Some(name) = line
                .strip_prefix("  ")
                .and_then(|l| l.split_whitespace().next())
            else {
                in_commands = false;
                continue;
            };
            if line.starts_with("   ") || name == "help" {
                continue;
            }
            let mut path = prefix.to_vec();
            path.push(name.trim_end_matches(',').to_owned());
            out.push(path.clone());
            subcommands(u, &path, out);
        }
    }
}

#[test]
fn every_command_help_has_examples() {
    let u = User::new();
    let mut all = vec![Vec::new()];
    subcommands(&u, &[], &mut all);
    assert!(
        all.len() >= 39,
        "found only {} commands: {all:?}",
        all.len()
    );
    let mut missing = Vec::new();
    for path in &all {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let (help, _) = u.ok(&args);
        let examples = help
            .split_once("EXAMPLES:\n")
            .map(|(_, rest)| rest)
            .unwrap_or("");
        // At least one example line that runs this very command.
        let this = if path.is_empty() {
            "tessera ".to_owned()
        } else {
            format!("tessera {}", path.join(" "))
        };
        let has = examples
            .lines()
            .take_while(|l| l.starts_with("  "))
            .any(|l| {
                l.contains(&this) || (path.is_empty() && l.trim_start().starts_with("tessera "))
            });
        if !has {
            missing.push(this.clone());
        }
        // No example is wrapped by the help formatter: each line can be copied as it is.
        for line in examples.lines().take_while(|l| !l.is_empty()) {
            let ok = [
                "  tessera ",
                "  printf ",
                "  echo ",
                "  # ",
                "  TESSERA_TOKEN=",
                "  RUST_LOG=",
                "    | ",
            ]
            .iter()
            .any(|p| line.starts_with(p));
            assert!(
                ok,
                "{this}: an example line was wrapped or is not a command: {line:?}"
            );
            assert!(
                !line.contains("\\\""),
                "{this}: a stray backslash: {line:?}"
            );
        }
    }
    assert!(
        missing.is_empty(),
        "no EXAMPLES with the command itself: {missing:?}"
    );
}

#[test]
fn credential_helper_install_warns_off_path_and_creates_only_when_asked() {
    let u = User::new();
    let bin = u.home().join("bin");
    // A missing folder that was named is refused, not created.
    let e = u.fails(
        &["credential-helper", "install", bin.to_str().unwrap()],
        "",
        2,
    );
    assert!(
        e.contains("does not exist") && e.contains("--create"),
        "{e}"
    );
    assert!(!bin.exists());
    // --create creates it, says so, and warns that it is not on PATH, with the line to add.
    let (_, e) = u.ok(&[
        "credential-helper",
        "install",
        "--create",
        bin.to_str().unwrap(),
    ]);
    assert!(
        e.contains(&format!("created the folder {}", bin.display())),
        "{e}"
    );
    assert!(e.contains("is not on PATH"), "{e}");
    assert!(
        e.contains(&format!("export PATH=\"{}:$PATH\"", bin.display())),
        "{e}"
    );
    let link = bin.join("docker-credential-tessera");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // On PATH: no warning.
    let out = u
        .cmd()
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .args(["credential-helper", "install", bin.to_str().unwrap()])
        .output()
        .unwrap();
    let (_, e) = texts(&out);
    assert!(out.status.success(), "{e}");
    assert!(!e.contains("not on PATH"), "{e}");
    // The default folder (~/.local/bin) is created when missing, and the output says so.
    let (_, e) = u.ok(&["credential-helper", "install"]);
    assert!(e.contains("created the folder"), "{e}");
    assert!(
        u.home()
            .join(".local/bin/docker-credential-tessera")
            .exists()
    );
}

#[test]
fn token_verify_escapes_the_claims_of_a_token_minted_elsewhere() {
    // Another program holding the same secret can put anything in `sub` and `scope`.
    let secret = "a-shared-secret-for-another-minting-program-0123";
    let key = tessera::token::SigningKey::new(&secret.to_owned().into(), "").unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(key.kid().to_owned());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "tessera", "sub": "evil\u{1b}[2J\u{9b}1m", "jti": "0123456789abcdef0123456789abcdef",
        "iat": now, "nbf": now, "exp": now + 600, "scope": "repository:x:pull",
    });
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let u = User::new();
    let out = u
        .cmd()
        .env("TESSERA_AUTH_TOKEN_SECRET", secret)
        .args(["auth", "token", "verify", &token])
        .output()
        .unwrap();
    let (o, e) = texts(&out);
    assert!(out.status.success(), "{e}");
    assert_no_escape("token verify", &(o.clone() + &e));
    assert!(
        o.contains("valid token for `evil\\u{1b}[2J\\u{9b}1m`"),
        "{o}"
    );
}
