//! The config loader (`Config::load` without the file read): never panics; a syntax error
//! names a line and column inside the text and the file's path; a bad value names its key;
//! an accepted file yields values that satisfy the loader's own rules.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tessera::config::{Config, ConfigError, Env};

const PATH: &str = "/etc/tessera/tessera.toml";

fn env() -> &'static Env {
    static E: OnceLock<Env> = OnceLock::new();
    E.get_or_init(|| Env::from_pairs([("HOME", "/home/fuzz")]))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_text(Path::new(PATH), text, env()) {
        Ok(c) => {
            assert!(!c.secrets.timeout.is_zero());
            assert!(c.registry.token_ttl.as_fixed().unwrap() >= Duration::from_secs(60));
            assert!(!c.auth.issuer.is_empty());
            assert_eq!(c.server.tls_cert.is_some(), c.server.tls_key.is_some());
            for p in [
                &c.secrets.sops_file,
                &c.secrets.age_file,
                &c.registry.certificate,
            ] {
                assert!(p.is_absolute(), "{}", p.display());
            }
        }
        Err(ConfigError::Parse { line, column, .. }) => {
            let lines = text.split('\n').count();
            assert!((1..=lines).contains(&line), "line {line} of {lines}");
            assert!(column >= 1);
        }
        Err(e @ ConfigError::Value { .. }) => {
            assert!(e.to_string().starts_with(&format!("{PATH}: `")), "{e}");
        }
        Err(e) => panic!("unexpected error kind from text: {e}"),
    }
});
