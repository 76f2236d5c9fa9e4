//! `token::verify` against a fixed key ring. The first byte picks the mode:
//! - even: the rest is the token, as is (lossy UTF-8);
//! - odd: the rest is a list of 3-byte edits (replace / insert / delete) applied to a valid
//!   token minted at start-up.
//!
//! Invariants: never panics; only the untouched valid token verifies (no other spelling of a
//! signature, header or payload is accepted), and then with exactly the minted claims; every
//! error has one of the contract's reasons.
#![no_main]

use std::sync::OnceLock;

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use secrecy::{ExposeSecret, SecretString};
use tessera::duration::HumanDuration;
use tessera::token::{
    Claims, KeyRing, MintRequest, ScopeSet, SigningKey, VerifyOptions, mint, verify,
};

const SECRET: &str = "fuzz-current-secret-0123456789abcdef";
const OLD: &str = "fuzz-previous-secret-0123456789abcdef";

struct Fixture {
    keys: KeyRing,
    token: String,
    claims: Claims,
}

fn now() -> Timestamp {
    Timestamp::from_second(1_772_366_400).unwrap()
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = |s: &str| SigningKey::new(&SecretString::from(s.to_owned()), "").unwrap();
        let keys = KeyRing {
            current: key(SECRET),
            previous: vec![key(OLD)],
        };
        let scopes = ScopeSet::parse_list("push,pull", "team/*").unwrap();
        let minted = mint(
            &keys,
            &MintRequest {
                issuer: "tessera",
                subject: "ci",
                scopes: &scopes,
                expiry: HumanDuration::parse("1h").unwrap(),
                audience: Some("fuzz"),
                now: now(),
            },
        )
        .unwrap();
        Fixture {
            keys,
            token: minted.token.expose_secret().to_owned(),
            claims: minted.claims,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let mut t = f.token.clone().into_bytes();
        for e in rest.chunks_exact(3) {
            let at = usize::from(e[1]) * 4 % (t.len() + 1);
            match e[0] % 3 {
                0 if at < t.len() => t[at] = e[2],
                1 => t.insert(at, e[2]),
                _ if at < t.len() => {
                    t.remove(at);
                }
                _ => {}
            }
        }
        String::from_utf8_lossy(&t).into_owned()
    };
    let opts = VerifyOptions {
        issuer: "tessera",
        audience: Some("fuzz"),
        now: now(),
    };
    match verify(&f.keys, &token, &opts) {
        Ok(claims) => {
            assert_eq!(token, f.token, "a token other than the minted one verified");
            assert_eq!(claims, f.claims);
        }
        Err(e) => {
            assert!(token != f.token, "the minted token was refused: {e}");
            assert!(matches!(
                e.reason(),
                "malformed"
                    | "bad signature"
                    | "not yet valid"
                    | "expired"
                    | "wrong issuer"
                    | "wrong audience"
            ));
            let _ = e.to_string();
        }
    }
});
