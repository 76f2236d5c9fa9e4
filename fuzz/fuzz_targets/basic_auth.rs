//! The registry token endpoint's parsers: the `Authorization: Basic` header and the
//! `scope=TYPE:NAME:ACTIONS` parameters, and what a credential's scopes grant of them.
//!
//! The first byte picks the mode:
//! - 0: the rest is a header value; an accepted one yields a non-empty user without `:` and
//!   a non-empty password, and re-encoding them gives the same credentials;
//! - 1: the rest is `user\0password`; encoding them as Basic must give them back exactly
//!   whenever they are a valid pair, and otherwise the split at the first `:`;
//! - else: the rest is space-separated scopes (hundreds at once); each accepted one
//!   re-serialises to itself, and `grant` only grants what was asked and is allowed.
#![no_main]

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use secrecy::ExposeSecret;
use tessera::http::extract::basic;
use tessera::registry::token::{grant, parse_scope};
use tessera::token::{Scope, ScopeSet};

fn granted() -> &'static ScopeSet {
    static S: OnceLock<ScopeSet> = OnceLock::new();
    S.get_or_init(|| {
        ScopeSet::parse_claim(
            "repository:team/*:pull repository:team/app:push repository:lib:* registry:catalog:* admin:tokens:read",
        )
        .unwrap()
    })
}

fn parse_header(value: &[u8]) -> Option<(String, String)> {
    let value = HeaderValue::from_bytes(value).ok()?;
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, value);
    basic(&h)
        .ok()
        .map(|(u, p)| (u, p.expose_secret().to_owned()))
}

fn encode(user: &str, password: &str) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b64}").into_bytes()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => {
            if let Some((user, password)) = parse_header(rest) {
                assert!(!user.is_empty() && !user.contains(':') && !password.is_empty());
                assert_eq!(
                    parse_header(&encode(&user, &password)),
                    Some((user, password))
                );
            }
        }
        1 => {
            let Ok(s) = std::str::from_utf8(rest) else {
                return;
            };
            let (user, password) = s.split_once('\0').unwrap_or((s, ""));
            let got = parse_header(&encode(user, password));
            // Basic cannot carry a `:` in the user: `user:password` splits at its first `:`,
            // and both halves must be non-empty.
            let full = format!("{user}:{password}");
            let expected = full
                .split_once(':')
                .filter(|(u, p)| !u.is_empty() && !p.is_empty())
                .map(|(u, p)| (u.to_owned(), p.to_owned()));
            assert_eq!(got, expected);
            if !user.is_empty() && !user.contains(':') && !password.is_empty() {
                assert_eq!(got, Some((user.to_owned(), password.to_owned())));
            }
        }
        _ => {
            let Ok(s) = std::str::from_utf8(rest) else {
                return;
            };
            let mut requested = Vec::new();
            for item in s.split(' ') {
                let Ok(r) = parse_scope(item) else {
                    continue;
                };
                assert!(!r.kind.is_empty() && !r.kind.contains(':'));
                assert!(!r.name.is_empty());
                assert!(
                    r.actions
                        .iter()
                        .all(|a| !a.is_empty() && !a.contains([':', ',']))
                );
                let again = format!("{}:{}:{}", r.kind, r.name, r.actions.join(","));
                assert_eq!(again, item, "a parsed scope re-serialises to the request");
                assert_eq!(parse_scope(&again).as_ref(), Ok(&r));
                requested.push(r);
            }
            let set = granted();
            let accesses = grant(set, &requested);
            for a in &accesses {
                assert!(!a.actions.is_empty());
                let asked = requested
                    .iter()
                    .filter(|r| r.kind == a.kind && r.name == a.name);
                let asked: Vec<&String> = asked.flat_map(|r| &r.actions).collect();
                for action in &a.actions {
                    assert!(asked.contains(&action), "{action} on {} not asked", a.name);
                    let scope = match a.kind.as_str() {
                        "repository" => Scope::Repository {
                            name: a.name.clone(),
                            action: action.parse().unwrap(),
                        },
                        "registry" => Scope::Registry {
                            name: a.name.clone(),
                            action: action.parse().unwrap(),
                        },
                        other => panic!("granted an unknown type {other}"),
                    };
                    assert!(
                        set.allows(&scope),
                        "granted {scope} that {set} does not allow"
                    );
                }
                // One entry per resource.
                assert_eq!(
                    accesses
                        .iter()
                        .filter(|b| b.kind == a.kind && b.name == a.name)
                        .count(),
                    1
                );
            }
        }
    }
});
