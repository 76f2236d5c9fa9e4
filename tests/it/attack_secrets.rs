//! Secret leaks: known secret values (the token secret from the environment and from the
//! backend, a password, its hash, a stored secret, the registry signing key, minted tokens)
//! are searched for in everything a user, a log collector or another process can see:
//! stdout and stderr of commands (except where the secret is the requested output, e.g.
//! `secrets get`), the server's log at `trace` level, HTTP error bodies, the arguments and
//! environment of every child process, and the `Debug` output of every secret-holding type
//! (which is what a panic message would print).

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output};

use crate::support::Run;
use crate::support::argv;
use crate::support::http::{create_token, login, post_form, verify};
use crate::support::pass::PassStore;
use crate::support::{Home, PASSWORD, SECRET, SERVICE};
use reqwest::blocking::Client;
use secrecy::SecretString;
use serde_json::{Value, json};
use tessera::config::Env;
use tessera::token::{KeyRing, SigningKey};

/// The token secret stored in the backend (used when TESSERA_AUTH_TOKEN_SECRET is unset).
const BACKEND_SECRET: &str = "backend-token-secret-BKND-0123456789-abcdefgh";
/// A value stored with `secrets set`.
const STORED: &str = "stored-value-STRD-database-password-42";
/// A wrong password tried at login.
const WRONG: &str = "wrong-password-WRNG-hunter2";

/// Fails when `text` contains any of `secrets`, naming the case and which one (by its first
/// characters only).
fn assert_clean(case: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!s.is_empty());
        assert!(
            !text.contains(s),
            "{case}: contains the secret starting {:?}",
            &s[..s.len().min(6)]
        );
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Reads a value through the CLI (`secrets get` prints it by design).
fn get(home: &Home, key: &str) -> String {
    let (value, _) = home.ok(&["secrets", "get", key]);
    value.trim_end().to_owned()
}

/// Every secret value of a `home()`: the token secrets, a stored value, the password, its
/// hash and the body of the registry signing key.
fn known_secrets(home: &Home) -> Vec<String> {
    let hash = get(home, "tessera/auth/password_hash");
    let pem = get(home, "tessera/registry/signing_key");
    let pem_body = pem.lines().nth(1).unwrap().to_owned();
    [SECRET, BACKEND_SECRET, STORED, PASSWORD]
        .map(str::to_owned)
        .into_iter()
        .chain([hash, pem_body])
        .collect()
}

/// A home whose backend also holds [`BACKEND_SECRET`] and [`STORED`].
fn home() -> Home {
    let home = Home::new();
    for (key, value) in [
        ("tessera/auth/token_secret", BACKEND_SECRET),
        ("app/db", STORED),
    ] {
        let out = home
            .cmd()
            .args(["secrets", "set", key])
            .write_stdin(format!("{value}\n"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_clean("secrets set", &text(&out), &[value]);
    }
    home
}

#[test]
fn cli_output_never_shows_a_secret_it_was_not_asked_for() {
    let home = home();
    let known = known_secrets(&home);
    let all: Vec<&str> = known.iter().map(String::as_str).collect();
    // Tokens from the environment's secret and from the backend's.
    let env_token = home.token(&["--subject", "ci", "--scopes", "pull"]);
    let (backend_token, out) = backend_token(home.cmd());
    assert_clean("generate (backend), stderr", &stderr(&out), &all);
    assert_clean(
        "generate (backend), stderr",
        &stderr(&out),
        &[&backend_token],
    );
    let out = home
        .cmd()
        .args(["auth", "token", "generate", "--subject", "ci"])
        .output()
        .unwrap();
    assert_clean("generate (env), stderr", &stderr(&out), &all);

    let mut tampered = env_token.clone();
    tampered.push('x');
    // Runs one case: `args`, with `input` on stdin, without the environment's secret when
    // `no_env`; nothing it prints may hold a secret or a token given to it.
    let check = |case: &str, line: &str, input: Option<&str>, no_env: bool| {
        let mut cmd = home.cmd();
        if no_env {
            cmd.env_remove("TESSERA_AUTH_TOKEN_SECRET");
        }
        cmd.args(argv(line));
        if let Some(i) = input {
            cmd.write_stdin(format!("{i}\n"));
        }
        let out = cmd.output().unwrap();
        let secrets: Vec<&str> = if case == "password hash" {
            vec![PASSWORD, SECRET, BACKEND_SECRET]
        } else {
            all.to_vec()
        };
        assert_clean(case, &text(&out), &secrets);
        // A token given as input is not repeated either.
        assert_clean(case, &text(&out), &[&env_token, &backend_token]);
    };
    let verify = |token: &str| format!("auth token verify {token}");
    check("verify, env", &verify(&env_token), None, false);
    let json_verify = format!("--json {}", verify(&env_token));
    check("verify --json, env", &json_verify, None, false);
    check("verify, backend", &verify(&backend_token), None, true);
    check("verify tampered", &verify(&tampered), None, false);
    check("verify from stdin", &verify(""), Some(&env_token), false);
    check("token list", "auth token list", None, false);
    check("token list --json", "--json auth token list", None, false);
    check("secrets list", "secrets list", None, false);
    check("secrets list --json", "--json secrets list", None, false);
    check("secrets check", "secrets check", None, false);
    check("secrets set", "secrets set app/other", Some(STORED), false);
    let hash_store = "auth password hash --stdin --cost 10 --store";
    check("password hash --store", hash_store, Some(PASSWORD), false);
    check("registry init again", "registry init", None, false);
    check("remotes list", "remotes list", None, false);
    // The password hash prints the hash by design, never the password.
    let hash = "auth password hash --stdin --cost 10";
    check("password hash", hash, Some(PASSWORD), false);
}

/// A token minted with the backend's secret (no `TESSERA_AUTH_TOKEN_SECRET`), and the
/// command's output.
fn backend_token(mut tessera: assert_cmd::Command) -> (String, Output) {
    let out = tessera
        .env_remove("TESSERA_AUTH_TOKEN_SECRET")
        .args(["auth", "token", "generate", "--subject", "ci"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let token = String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    (token, out)
}

/// Error paths that read a secret (too short, from the environment and from the backend) or
/// a password (too long) never echo it.
#[test]
fn errors_about_a_secret_never_echo_it() {
    let home = home();
    let (backend_token, _) = backend_token(home.cmd());
    let short_env = "short-ENVSHORT-secret";
    let out = home
        .cmd()
        .env("TESSERA_AUTH_TOKEN_SECRET", short_env)
        .args(["auth", "token", "generate", "--subject", "ci"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("TESSERA_AUTH_TOKEN_SECRET"),
        "{}",
        stderr(&out)
    );
    assert_clean("short env secret", &text(&out), &[short_env]);
    let short_backend = "short-BKSHORT-secret";
    home.ok_with_stdin(
        &["secrets", "set", "tessera/auth/token_secret", "--yes"],
        format!("{short_backend}\n"),
    );
    let out = home
        .cmd()
        .env_remove("TESSERA_AUTH_TOKEN_SECRET")
        .args(["auth", "token", "verify", &backend_token])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("at least 32"), "{}", stderr(&out));
    assert_clean(
        "short backend secret",
        &text(&out),
        &[short_backend, &backend_token],
    );
    // An over-long password is refused by bcrypt without being echoed (argon2id has no limit).
    let long = format!("{PASSWORD}-{}", "LONGPW".repeat(20));
    let out = home
        .cmd()
        .args(["auth", "password", "hash", "--stdin", "--bcrypt"])
        .write_stdin(format!("{long}\n"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_clean("long password", &text(&out), &[PASSWORD, "LONGPWLONGPW"]);
}

#[test]
fn server_log_and_error_bodies_never_show_a_secret() {
    let home = home();
    let known = known_secrets(&home);
    let cli_token = home.token(&["--subject", "ci", "--scopes", "admin"]);
    let server = home.serve_process(Some("trace"));
    crate::support::api::install_crypto_provider();
    let http = Client::new();
    let base = server.url();
    let mut tokens = vec![cli_token.clone()];
    let mut bodies = Vec::new();

    let r = login(&base, "deploy", PASSWORD);
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    tokens.push(v["token"].as_str().unwrap().to_owned());
    for (user, pw) in [("deploy", WRONG), ("nobody", WRONG), ("deploy", "")] {
        let r = login(&base, user, pw);
        assert_eq!(r.status(), 401);
        bodies.push(r.text().unwrap());
    }
    // A body whose password has the wrong type: the error must not quote it.
    let r = http
        .post(format!("{base}/auth/login"))
        .header("Content-Type", "application/json")
        .body(format!(
            "{{\"username\":\"deploy\",\"password\":[\"{WRONG}\"]}}"
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    bodies.push(r.text().unwrap());
    for t in [&cli_token, &tokens[1]] {
        assert_eq!(verify(&base, t).0, 200);
    }
    let r = http
        .get(format!("{base}/auth/verify"))
        .bearer_auth(format!("{cli_token}x"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    bodies.push(r.text().unwrap());
    tokens.push(create_token(
        &base,
        &cli_token,
        &json!({"subject": "bot", "scopes": "pull", "expiry": "1h"}),
    ));
    // The registry flow: password, token, refresh token, and wrong ones.
    let scope = format!("{base}/token?service={SERVICE}&scope=repository:team/app:pull");
    let r = http
        .get(format!("{scope}&access_type=offline"))
        .basic_auth("deploy", Some(PASSWORD))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    tokens.push(v["token"].as_str().unwrap().to_owned());
    let refresh = v["refresh_token"].as_str().unwrap().to_owned();
    tokens.push(refresh.clone());
    let r = http
        .get(&scope)
        .basic_auth("ci", Some(&cli_token))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = post_form(
        &http,
        &format!("{base}/token"),
        &[
            ("grant_type", "refresh_token"),
            ("service", SERVICE),
            ("refresh_token", refresh.as_str()),
        ],
    );
    assert_eq!(r.status(), 200);
    for (user, pw) in [("deploy", WRONG), ("ci", &format!("{cli_token}x")[..])] {
        let r = http.get(&scope).basic_auth(user, Some(pw)).send().unwrap();
        assert_eq!(r.status(), 401);
        bodies.push(r.text().unwrap());
    }
    let r = post_form(
        &http,
        &format!("{base}/token"),
        &[
            ("grant_type", "password"),
            ("username", "deploy"),
            ("password", WRONG),
        ],
    );
    assert_eq!(r.status(), 401);
    bodies.push(r.text().unwrap());

    let log = server.stop();
    assert!(
        log.contains("audit"),
        "control: the log has the audit lines"
    );
    let mut secrets: Vec<&str> = known.iter().map(String::as_str).collect();
    secrets.push(WRONG);
    // Tokens, and their signatures alone (a log line could cut a token).
    let signatures: Vec<String> = tokens
        .iter()
        .map(|t| t.rsplit('.').next().unwrap().to_owned())
        .collect();
    secrets.extend(tokens.iter().map(String::as_str));
    secrets.extend(signatures.iter().map(String::as_str));
    assert_clean("server log", &log, &secrets);
    for (i, body) in bodies.iter().enumerate() {
        assert_clean(&format!("error body {i}: {body}"), body, &secrets);
    }
}

/// Writes an executable shell script.
fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Every `*.cmdline` and `*.environ` file the fake or wrapped tools wrote, as text
/// (NUL separators shown as spaces), by file name.
fn calls(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".cmdline") || name.ends_with(".environ") {
            let bytes = std::fs::read(e.path()).unwrap();
            out.push((name, String::from_utf8_lossy(&bytes).replace('\0', " ")));
        }
    }
    out.sort();
    out
}

/// A home using a fake `pass` first on PATH that records its arguments, environment and
/// stdin, gives back what was inserted (a fixed token secret otherwise) for `show`, and
/// echoes its stdin on stderr (then fails) for keys containing `fail`.
struct FakePass {
    home: Home,
    bin: PathBuf,
    log: PathBuf,
}

const FAKE_SHOWN: &str = "fake-pass-token-secret-FAKE-0123456789abcdef";

impl Run for FakePass {
    fn tessera(&self) -> assert_cmd::Command {
        self.cmd()
    }
}

impl FakePass {
    fn new() -> FakePass {
        let home = Home::new();
        let bin = home.home().join("fakebin");
        let log = home.home().join("calls");
        let store = home.home().join("store");
        for d in [&bin, &log, &store.join("tessera/auth")] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(store.join(".gpg-id"), "fake\n").unwrap();
        std::fs::write(store.join("tessera/auth/token_secret.gpg"), "").unwrap();
        script(
            &bin.join("pass"),
            &format!(
                r#"log={log}
cat /proc/$$/cmdline > "$log/pass.$$.cmdline"
cat /proc/$$/environ > "$log/pass.$$.environ"
case "$1" in
  show)
    k=$(echo "$2" | tr / _)
    if [ -f "$log/value.$k" ]; then cat "$log/value.$k"; else echo "{FAKE_SHOWN}"; fi ;;
  insert)
    for last; do :; done
    case "$last" in
      *fail*) cat >&2; echo "pass: could not encrypt" >&2; exit 1 ;;
      *) cat > "$log/pass.$$.stdin"; cp "$log/pass.$$.stdin" "$log/value.$(echo "$last" | tr / _)"; mkdir -p "$(dirname "{store}/$last")"; : > "{store}/$last.gpg" ;;
    esac ;;
  *) echo "pass v1.7.4" ;;
esac
"#,
                log = log.display(),
                store = store.display(),
            ),
        );
        let config = std::fs::read_to_string(home.config_file()).unwrap();
        let config = config.replace(
            "[secrets.unsafe]\ndir = \"secrets\"\n",
            &format!(
                "[secrets]\nbackend = \"pass\"\n\n[secrets.pass]\nstore_dir = \"{}\"\n",
                store.display()
            ),
        );
        std::fs::write(home.config_file(), config).unwrap();
        FakePass { home, bin, log }
    }

    fn cmd(&self) -> assert_cmd::Command {
        let mut c = self.home.cmd();
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.env("PATH", path);
        c
    }
}

#[test]
fn child_processes_get_secrets_only_on_stdin() {
    let f = FakePass::new();
    let env_secret = "env-token-secret-ENVS-0123456789-abcdefghij";
    let pem_marker = "PRIVATE KEY";
    // A stored value, with a token secret in our own environment.
    let out = f
        .cmd()
        .env("TESSERA_AUTH_TOKEN_SECRET", env_secret)
        .env("TESSERA_SOMETHING_ELSE", env_secret)
        .args(["secrets", "set", "app/db"])
        .write_stdin(format!("{STORED}\n"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // The password hash and the registry key go to pass the same way.
    let out = f
        .cmd()
        .args(argv("auth password hash --stdin --cost 10 --store"))
        .write_stdin(format!("{PASSWORD}\n"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    f.ok(&["registry", "init", "--force"]);
    // The token secret comes back from `pass show` and signs a token.
    let (_, out) = backend_token(f.cmd());
    assert_clean("generate via pass", &stderr(&out), &[FAKE_SHOWN]);

    // Control: the secrets did reach pass, on stdin.
    let stdins: String = std::fs::read_dir(&f.log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "stdin"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(
        stdins.contains(STORED),
        "the stored value went through stdin"
    );
    assert!(stdins.contains("$2y$10$"), "the hash went through stdin");
    assert!(
        stdins.contains(pem_marker),
        "the signing key went through stdin"
    );
    let hash_line = stdins
        .lines()
        .find(|l| l.starts_with("$2y$10$"))
        .unwrap()
        .to_owned();

    let calls = calls(&f.log);
    assert!(calls.len() >= 8, "pass was called: {calls:?}");
    for (name, content) in &calls {
        assert_clean(
            name,
            content,
            &[env_secret, STORED, PASSWORD, &hash_line, pem_marker, SECRET],
        );
        if name.ends_with(".environ") {
            assert!(!content.contains("TESSERA_"), "{name}: {content}");
            assert!(
                content.contains("LC_ALL=C"),
                "{name}: the environment was read"
            );
        }
    }

    // A tool that echoes its stdin in an error: the error we print masks it.
    let out = f
        .cmd()
        .args(["secrets", "set", "app/fail-here"])
        .write_stdin(format!("{STORED}\n"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("could not encrypt"),
        "the tool's error is shown: {err}"
    );
    assert_clean("failing pass echoing stdin", &err, &[STORED]);
}

#[test]
fn real_pass_and_gpg_never_see_a_secret_in_arguments_or_environment() {
    if StdCommand::new("pass").arg("version").output().is_err()
        || StdCommand::new("gpg").arg("--version").output().is_err()
    {
        eprintln!("skipped: pass or gpg is not installed");
        return;
    }
    let home = Home::new();
    let dir = home.home();
    let gnupg = dir.join("gnupg");
    let store = dir.join("store");
    let bin = dir.join("wrapbin");
    let log = dir.join("calls");
    for d in [&gnupg, &bin, &log] {
        std::fs::create_dir_all(d).unwrap();
    }
    let _pass = PassStore::create(
        gnupg.clone(),
        store.clone(),
        "tessera attack <t@example.invalid>",
    );
    // Wrappers that record their own /proc entries, then run the real tools.
    for tool in ["pass", "gpg", "gpg2"] {
        let real = if tool == "gpg2" { "gpg" } else { tool };
        let Ok(out) = StdCommand::new("sh")
            .args(["-c", &format!("command -v {real}")])
            .output()
        else {
            continue;
        };
        let real_path = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        if tool == "gpg2" && !Path::new("/usr/bin/gpg2").exists() {
            continue;
        }
        script(
            &bin.join(tool),
            &format!(
                "cat /proc/$$/cmdline > {log}/{tool}.$$.cmdline\ncat /proc/$$/environ > {log}/{tool}.$$.environ\nexec {real_path} \"$@\"\n",
                log = log.display()
            ),
        );
    }
    let config = std::fs::read_to_string(home.config_file())
        .unwrap()
        .replace(
            "[secrets.unsafe]\ndir = \"secrets\"\n",
            &format!(
                "[secrets]\nbackend = \"pass\"\n\n[secrets.pass]\nstore_dir = \"{}\"\n",
                store.display()
            ),
        );
    std::fs::write(home.config_file(), config).unwrap();
    let cmd = || {
        let mut c = home.cmd();
        c.env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("GNUPGHOME", &gnupg);
        c
    };
    let out = cmd()
        .args(["secrets", "set", "app/db"])
        .write_stdin(format!("{STORED}\n"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cmd().args(["secrets", "get", "app/db"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        STORED,
        "control"
    );
    let calls = calls(&log);
    assert!(
        calls.iter().any(|(n, _)| n.starts_with("gpg"))
            && calls.iter().any(|(n, _)| n.starts_with("pass")),
        "both real tools ran through the wrappers: {calls:?}"
    );
    for (name, content) in &calls {
        assert_clean(name, content, &[STORED, SECRET]);
        if name.ends_with(".environ") {
            assert!(!content.contains("TESSERA_"), "{name}");
        }
    }
    // The agent stops when `_pass` is dropped.
}

#[test]
fn debug_output_of_secret_holding_types_shows_no_secret() {
    let home = home();
    let known = known_secrets(&home);
    let secrets: Vec<&str> = known.iter().map(String::as_str).collect();

    let key = SigningKey::new(&SecretString::from(SECRET.to_owned()), "").unwrap();
    assert_clean("SigningKey", &format!("{key:?} {key:#?}"), &secrets);
    let ring = KeyRing {
        current: key,
        previous: vec![
            SigningKey::new(&SecretString::from(BACKEND_SECRET.to_owned()), "").unwrap(),
        ],
    };
    let shown = format!("{ring:?} {ring:#?}");
    assert!(shown.contains("kid"), "control: {shown}");
    assert_clean("KeyRing", &shown, &secrets);

    let (config, env) = home.config();
    assert_clean("Env", &format!("{env:?} {env:#?}"), &secrets);
    assert_clean("Config", &format!("{config:?} {config:#?}"), &secrets);
    let env2 = Env::from_pairs([
        ("TESSERA_AUTH_TOKEN_SECRET", SECRET),
        ("TESSERA_TOKEN", STORED),
    ]);
    assert_clean("Env with secrets", &format!("{env2:?}"), &secrets);

    // The whole server state: key ring, password login (hash and dummy), registry key.
    let state = crate::support::api::state(&config, &env);
    let shown = format!("{state:?} {state:#?}");
    assert!(
        shown.contains("deploy"),
        "control: the login is in the state: {shown}"
    );
    assert_clean("ServerState", &shown, &secrets);
    assert!(
        !shown.contains("$2y$"),
        "no bcrypt hash of any kind: {shown}"
    );

    // A panic that formats the state prints the same thing.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        panic!("state: {state:?}");
    }));
    let message = result
        .err()
        .and_then(|p| p.downcast::<String>().ok())
        .map(|s| *s)
        .unwrap();
    assert_clean("panic message", &message, &secrets);
}
