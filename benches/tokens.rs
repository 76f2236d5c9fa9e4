//! Mint and verify throughput. `cargo bench --bench tokens -- --quick`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use tessera::duration::HumanDuration;
use tessera::store::{SqliteStore, TokenStore};
use tessera::token::{KeyRing, MintRequest, ScopeSet, SigningKey, VerifyOptions, mint, verify};

fn keys() -> KeyRing {
    let secret = SecretString::from("bench-secret-bench-secret-bench-secret".to_owned());
    let previous = SecretString::from("older-secret-older-secret-older-secret".to_owned());
    KeyRing {
        current: SigningKey::new(&secret, "").expect("long enough"),
        previous: vec![SigningKey::new(&previous, "").expect("long enough")],
    }
}

fn tokens(c: &mut Criterion) {
    let keys = keys();
    let scopes = ScopeSet::parse_list("push,pull", "team/*").expect("valid scopes");
    let now = Timestamp::now();
    let req = MintRequest {
        issuer: "tessera",
        subject: "ci",
        scopes: &scopes,
        expiry: HumanDuration::parse("30d").expect("valid duration"),
        audience: None,
        now,
    };
    c.bench_function("mint", |b| {
        b.iter(|| mint(black_box(&keys), black_box(&req)))
    });

    let minted = mint(&keys, &req).expect("mint");
    let token = minted.token.expose_secret().to_owned();
    let opts = VerifyOptions {
        issuer: "tessera",
        audience: None,
        now,
    };
    c.bench_function("verify", |b| {
        b.iter(|| verify(black_box(&keys), black_box(&token), black_box(&opts)))
    });
    let mut tampered = token.clone().into_bytes();
    let i = tampered.len() - 5;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    c.bench_function("verify_bad_signature", |b| {
        b.iter(|| verify(black_box(&keys), black_box(&tampered), black_box(&opts)))
    });
}

fn store(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokens.db");
    drop(SqliteStore::open(&path).expect("open"));
    c.bench_function("store_open", |b| {
        b.iter(|| SqliteStore::open(black_box(&path)).expect("open"))
    });
    let store = SqliteStore::open(&path).expect("open");
    let now = Timestamp::now();
    c.bench_function("store_is_revoked", |b| {
        b.iter(|| store.is_revoked(black_box("0123456789abcdef"), "ci", now))
    });
}

criterion_group!(benches, tokens, store);
criterion_main!(benches);
