//! Property tests of the parsers that take outside input: key paths, the config loader, the
//! remotes.toml loader, HTTP Basic credentials and the registry's `scope` parameters. The
//! same invariants are fuzzed by the targets in `fuzz/` (see docs/hardening/fuzzing.md).
//!
//! proptest keeps the seeds of past failures in `tests/proptest-regressions/properties.txt`:
//! it walks up from this file to the first folder with a `main.rs` (`tests/it/`) and puts its
//! `proptest-regressions` folder beside that one.

use std::path::{Component, Path};

use crate::support::api::{MAX_SCOPES, grant, parse_basic as basic, parse_scope};
use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use proptest::prelude::*;
use secrecy::{ExposeSecret, SecretString};
use tessera::backends::{KeyPath, MAX_KEY_PATH_LEN};
use tessera::config::{Config, ConfigError, Env};
use tessera::remotes::{Remote, RemotesError, RemotesFile, RemotesStore, StoredToken};
use tessera::token::{Scope, ScopeSet};

// ---- KeyPath ------------------------------------------------------------------------------

fn segment() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._][A-Za-z0-9._-]{0,11}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn valid_path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 1..6).prop_map(|s| s.join("/"))
}

/// Strings over the characters that matter to the grammar, so that most cases are near misses.
fn path_like() -> impl Strategy<Value = String> {
    "[a./_ -]{0,24}"
}

/// A parse error of `text` (the file at `path`) that says where: a line of the text, a
/// column from 1, and `shown` starting with `PATH:LINE:COLUMN: `.
fn says_where(
    path: &str,
    text: &str,
    line: usize,
    column: usize,
    shown: &str,
) -> Result<(), TestCaseError> {
    let lines = text.split('\n').count();
    prop_assert!(
        (1..=lines).contains(&line),
        "line {} of {}: {}",
        line,
        lines,
        shown
    );
    prop_assert!(column >= 1);
    let expected = format!("{path}:{line}:{column}: ");
    prop_assert!(shown.starts_with(&expected), "{}", shown);
    Ok(())
}

fn assert_safe_path(p: &KeyPath) -> Result<(), TestCaseError> {
    let s = p.as_str();
    prop_assert!(!s.is_empty() && s.len() <= MAX_KEY_PATH_LEN);
    prop_assert!(!s.starts_with('/') && !s.ends_with('/'), "{}", s);
    for seg in p.segments() {
        prop_assert!(!seg.is_empty(), "empty segment in {}", s);
        prop_assert!(seg != "." && seg != "..", "dot segment in {}", s);
        prop_assert!(!seg.starts_with('-'), "leading - in {}", s);
    }
    prop_assert!(!s.split('/').any(|seg| seg == ".."));
    prop_assert!(
        Path::new(s)
            .components()
            .all(|c| matches!(c, Component::Normal(_))),
        "{} would leave the folder it is joined onto",
        s
    );
    Ok(())
}

proptest! {
    #[test]
    fn key_path_valid_paths_round_trip(s in valid_path()) {
        let p = KeyPath::new(&s).unwrap();
        prop_assert_eq!(p.as_str(), s.as_str());
        prop_assert_eq!(p.to_string(), s.clone());
        prop_assert_eq!(KeyPath::new(&p.to_string()).unwrap(), p.clone());
        prop_assert_eq!(p.segments().collect::<Vec<_>>().join("/"), s);
        assert_safe_path(&p)?;
    }

    #[test]
    fn key_path_accepted_paths_are_safe(s in path_like()) {
        if let Ok(p) = KeyPath::new(&s) {
            prop_assert_eq!(p.as_str(), s.as_str());
            assert_safe_path(&p)?;
        }
    }

    #[test]
    fn key_path_join_never_escapes(base in valid_path(), rest in path_like()) {
        let base = KeyPath::new(&base).unwrap();
        if let Ok(joined) = base.join(&rest) {
            assert_safe_path(&joined)?;
            prop_assert!(joined.starts_with(&base), "{:?} escapes {:?}", joined, base);
            prop_assert!(!base.starts_with(&joined));
            prop_assert_eq!(joined.as_str(), format!("{base}/{rest}"));
        }
    }
}

// ---- the config loader ----------------------------------------------------------------------

const CONFIG_PATH: &str = "/etc/tessera/tessera.toml";

/// Lines that look like a config file: real sections and keys with good and bad values,
/// broken syntax and arbitrary text.
fn config_line() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "backend",
        "timeout",
        "dir",
        "file",
        "identity",
        "enabled",
        "token_secret",
        "previous_token_secrets",
        "token_expiry",
        "max_token_expiry",
        "issuer",
        "username",
        "login_scopes",
        "bind",
        "tls_cert",
        "tls_key",
        "login_attempts_per_minute",
        "service",
        "signing_key",
        "certificate",
        "token_ttl",
        "timout",
    ]);
    // Each of the 12 fixed values as likely as each of the two generated kinds.
    let value = prop_oneof![
        12 => prop::sample::select(vec![
            "\"pass\"",
            "\"unsafe\"",
            "\"10s\"",
            "\"5m\"",
            "\"0\"",
            "\"a/b\"",
            "\"../x\"",
            "[\"a/b\", \"c\"]",
            "true",
            "10",
            "-1",
            "\"\"",
        ])
        .prop_map(str::to_owned),
        1 => "\"[a-z0-9/ ._~-]{0,12}\"",
        1 => "\\PC{0,8}",
    ];
    prop_oneof![
        prop::sample::select(vec![
            "[secrets]",
            "[secrets.pass]",
            "[secrets.sops]",
            "[secrets.unsafe]",
            "[secrets.age]",
            "[auth]",
            "[server]",
            "[registry]",
            "[nope]",
            "[auth",
            "",
            "# comment é",
        ])
        .prop_map(str::to_owned),
        (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        "\\PC{0,30}",
    ]
}

fn config_text() -> impl Strategy<Value = String> {
    prop::collection::vec(config_line(), 0..12).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #[test]
    fn config_loader_never_panics_and_errors_say_where(text in config_text()) {
        let env = Env::from_pairs([("HOME", "/home/prop")]);
        match Config::from_text(Path::new(CONFIG_PATH), &text, &env) {
            Ok(c) => {
                prop_assert!(!c.secrets.timeout.is_zero());
                prop_assert!(!c.auth.issuer.is_empty());
                prop_assert_eq!(c.server.tls_cert.is_some(), c.server.tls_key.is_some());
            }
            Err(e @ ConfigError::Parse { .. }) => {
                let ConfigError::Parse { line, column, .. } = &e else { unreachable!() };
                says_where(CONFIG_PATH, &text, *line, *column, &e.to_string())?;
            }
            // A bad value (valid TOML) names its key, e.g. `auth.token_secret`.
            Err(e @ ConfigError::Value { .. }) => {
                let ConfigError::Value { key, .. } = &e else { unreachable!() };
                let shown = e.to_string();
                let expected = format!("{CONFIG_PATH}: `{key}`: ");
                prop_assert!(shown.starts_with(&expected), "{}", shown);
            }
            Err(e) => prop_assert!(false, "unexpected error from text: {}", e),
        }
    }
}

// ---- the remotes.toml loader -----------------------------------------------------------------

const REMOTES_PATH: &str = "/home/prop/.config/tessera/remotes.toml";

fn remote_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._-]{0,20}".prop_filter("no ..", |s| !s.contains(".."))
}

fn remote() -> impl Strategy<Value = Remote> {
    (
        prop::sample::select(vec![
            "https://tessera.example.com",
            "http://127.0.0.1:7390",
            "https://[::1]:8443/base",
        ]),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec!["pass", "sops", "age"])),
        prop::option::of("\\PC{0,40}|[\\x00-\\x1f\"\\\\']{0,5}"),
    )
        .prop_map(|(url, insecure, backend, token)| Remote {
            url: url.to_owned(),
            insecure,
            token_backend: backend.map(str::to_owned),
            token: token.map(|t| StoredToken(SecretString::from(t))),
        })
}

fn remotes_file() -> impl Strategy<Value = RemotesFile> {
    prop::collection::btree_map(remote_name(), remote(), 0..5).prop_flat_map(|remotes| {
        let names: Vec<String> = remotes.keys().cloned().collect();
        let active = if names.is_empty() {
            Just(None).boxed()
        } else {
            prop::option::of(prop::sample::select(names)).boxed()
        };
        active.prop_map(move |active| RemotesFile {
            active,
            remotes: remotes.clone(),
        })
    })
}

/// Name, URL, insecure, token backend and token of one remote (the first row: `active`).
type RemoteRow = (String, String, bool, Option<String>, Option<String>);

/// What two files contain, compared field by field (tokens included).
fn contents(f: &RemotesFile) -> Vec<RemoteRow> {
    let mut out = vec![(
        String::new(),
        f.active.clone().unwrap_or_default(),
        false,
        None,
        None,
    )];
    for (name, r) in &f.remotes {
        out.push((
            name.clone(),
            r.url.clone(),
            r.insecure,
            r.token_backend.clone(),
            r.token.as_ref().map(|t| t.0.expose_secret().to_owned()),
        ));
    }
    out
}

fn remotes_line() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "active = \"prod\"",
            "active = \"nope\"",
            "[remotes.prod]",
            "[remotes.\"../x\"]",
            "[remotes.-x]",
            "[remotes",
            "url = \"https://a.example\"",
            "insecure = true",
            "insecure = \"yes\"",
            "token_backend = \"pass\"",
            "token = \"eyJ.a.b\"",
            "tokn = \"x\"",
            "",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,30}",
    ]
}

proptest! {
    #[test]
    fn remotes_loader_never_panics_and_errors_name_a_line(
        lines in prop::collection::vec(remotes_line(), 0..10)
    ) {
        let text = lines.join("\n");
        let store = RemotesStore::new(REMOTES_PATH);
        match store.parse(&text) {
            Ok(_) => {}
            Err(e @ RemotesError::Parse { .. }) => {
                let RemotesError::Parse { line, column, .. } = &e else { unreachable!() };
                says_where(REMOTES_PATH, &text, *line, *column, &e.to_string())?;
            }
            Err(e) => prop_assert!(false, "unexpected error from text: {}", e),
        }
    }

    #[test]
    fn remotes_valid_file_round_trips(file in remotes_file()) {
        // Through the real writer (atomic write, header comment) and the real reader.
        let dir = tempfile::tempdir().unwrap();
        let store = RemotesStore::new(dir.path().join("remotes.toml"));
        let wanted = file.clone();
        store
            .update(|f| {
                *f = wanted;
                Ok::<_, RemotesError>(())
            })
            .unwrap();
        let back = store.load().unwrap();
        prop_assert_eq!(contents(&back), contents(&file));
    }

    #[test]
    fn remotes_any_change_to_a_commented_file_reads_back_exactly(
        first in remotes_file(),
        second in remotes_file(),
    ) {
        // The first file as a person would keep it (comments everywhere), then changed by
        // tessera into the second: the values are exactly the second's, and the file's own
        // opening comment survives every change.
        let dir = tempfile::tempdir().unwrap();
        let store = RemotesStore::new(dir.path().join("remotes.toml"));
        let wanted = first.clone();
        store.update(|f| { *f = wanted; Ok::<_, RemotesError>(()) }).unwrap();
        let written = std::fs::read_to_string(store.path()).unwrap();
        // Lines inside a multi-line string (a token with a newline) are not the file's lines.
        prop_assume!(!written.contains("\"\"\"") && !written.contains("\'\'\'"));
        let commented: String = written
            .lines()
            .map(|l| if l.starts_with('[') {
                format!("# about {l}\n{l}")
            } else if l.contains(" = ") {
                format!("{l} # note")
            } else {
                l.to_owned()
            })
            .collect::<Vec<_>>()
            .join("\n");
        let commented = format!("# kept by hand\n{commented}\n");
        std::fs::write(store.path(), &commented).unwrap();
        prop_assert_eq!(contents(&store.load().unwrap()), contents(&first));
        let wanted = second.clone();
        store.update(|f| { *f = wanted; Ok::<_, RemotesError>(()) }).unwrap();
        prop_assert_eq!(contents(&store.load().unwrap()), contents(&second));
        let text = std::fs::read_to_string(store.path()).unwrap();
        prop_assert!(text.contains("# kept by hand"), "{}", text);
    }
}

// ---- HTTP Basic and the registry's scope parameters ------------------------------------------

fn basic_of(value: &[u8]) -> Option<(String, String)> {
    let value = HeaderValue::from_bytes(value).ok()?;
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, value);
    basic(&h)
        .ok()
        .map(|(u, p)| (u, p.expose_secret().to_owned()))
}

fn encoded(user: &str, password: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b64}")
}

fn requested_scope() -> impl Strategy<Value = String> {
    let kind = prop::sample::select(vec!["repository", "registry", "admin", "x"]);
    let name = prop_oneof![
        Just("team/app".to_owned()),
        Just("catalog".to_owned()),
        Just("localhost:5000/team/app".to_owned()),
        "[a-z0-9/._-]{1,20}",
    ];
    let action = prop::sample::select(vec!["pull", "push", "delete", "*", "x"]);
    (kind, name, prop::collection::vec(action, 1..4))
        .prop_map(|(k, n, a)| format!("{k}:{n}:{}", a.join(",")))
}

proptest! {
    #[test]
    fn basic_never_panics(value in "\\PC{0,60}|(Basic|basic|Bearer) [A-Za-z0-9+/=]{0,40}") {
        if let Some((user, password)) = basic_of(value.as_bytes()) {
            prop_assert!(!user.is_empty() && !user.contains(':') && !password.is_empty());
            prop_assert_eq!(
                basic_of(encoded(&user, &password).as_bytes()),
                Some((user, password))
            );
        }
    }

    #[test]
    fn basic_round_trips_credentials(user in "[^:]{1,20}", password in "\\PC{1,40}") {
        prop_assert_eq!(
            basic_of(encoded(&user, &password).as_bytes()),
            Some((user, password))
        );
    }

    #[test]
    fn basic_splits_at_the_first_colon(user in "\\PC{0,20}", password in "\\PC{0,20}") {
        // A user containing `:` cannot be sent: the pair is read split at the first `:`.
        let full = format!("{user}:{password}");
        let expected = full
            .split_once(':')
            .filter(|(u, p)| !u.is_empty() && !p.is_empty())
            .map(|(u, p)| (u.to_owned(), p.to_owned()));
        prop_assert_eq!(basic_of(encoded(&user, &password).as_bytes()), expected);
    }

    #[test]
    fn registry_scope_never_panics(s in "\\PC{0,60}|[a-z:/,*]{0,30}") {
        if let Ok(r) = parse_scope(&s) {
            prop_assert_eq!(format!("{}:{}:{}", r.kind, r.name, r.actions.join(",")), s);
        }
    }

    #[test]
    fn registry_scope_re_serialises(s in requested_scope()) {
        let r = parse_scope(&s).unwrap();
        let again = format!("{}:{}:{}", r.kind, r.name, r.actions.join(","));
        prop_assert_eq!(&again, &s);
        prop_assert_eq!(parse_scope(&again).unwrap(), r);
    }

    #[test]
    fn registry_hundreds_of_scopes(scopes in prop::collection::vec(requested_scope(), 100..400)) {
        let granted = ScopeSet::parse_claim(
            "repository:team/*:pull repository:team/app:push registry:catalog:*",
        )
        .unwrap();
        let requested: Vec<_> = scopes.iter().map(|s| parse_scope(s).unwrap()).collect();
        let accesses = grant(&granted, &requested);
        // One entry per resource, each action asked for and allowed.
        for a in &accesses {
            prop_assert_eq!(
                accesses.iter().filter(|b| b.kind == a.kind && b.name == a.name).count(),
                1
            );
            for action in &a.actions {
                prop_assert!(requested
                    .iter()
                    .any(|r| r.kind == a.kind && r.name == a.name && r.actions.contains(action)));
                let scope = if a.kind == "repository" {
                    Scope::Repository { name: a.name.clone(), action: action.parse().unwrap() }
                } else {
                    Scope::Registry { name: a.name.clone(), action: action.parse().unwrap() }
                };
                prop_assert!(granted.allows(&scope), "{} not allowed", scope);
            }
        }
        // The HTTP layer refuses more than MAX_SCOPES per request; the parser itself copes.
        prop_assert!(scopes.len() > MAX_SCOPES);
    }
}
