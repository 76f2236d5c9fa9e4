//! ES256 registry tokens signed per second (one core). `cargo bench --bench registry -- --quick`.
//!
//! `registry_token_sign_es256` is what `GET /token` does; `registry_token_sign_es256_jsonwebtoken`
//! is the same token made by `jsonwebtoken::encode` (the key parsed, and the header built, per
//! token), for comparison in the same run.
//!
//! Criterion reports wall-clock time, which on a loaded machine counts the time other processes
//! had the core. The `tokens/s per core` lines divide by this thread's CPU time instead (from
//! `/proc/thread-self/schedstat`, Linux).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::ExposeSecret;
use tessera::registry::key::{RegistryKey, generate_key, self_signed_certificate};
use tessera::registry::token::{Access, RegistryClaims, sign};

/// This thread's CPU time in nanoseconds, when the kernel reports it.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs `f` `n` times and prints how many it does per second of CPU time.
fn per_core(name: &str, n: u32, mut f: impl FnMut()) {
    let Some(start) = thread_cpu_ns() else {
        return;
    };
    for _ in 0..n {
        f();
    }
    if let Some(end) = thread_cpu_ns() {
        let each = (end - start) as f64 / f64::from(n);
        println!(
            "{name}: {:.0} tokens/s per core ({:.1} µs of CPU each)",
            1e9 / each,
            each / 1e3
        );
    }
}

fn registry_tokens(c: &mut Criterion) {
    let pem = generate_key().expect("a P-256 key");
    let cert = self_signed_certificate(&pem, "bench").expect("a certificate");
    let key = RegistryKey::new(&pem, cert.as_bytes()).expect("key and certificate match");
    let claims = RegistryClaims {
        iss: "tessera".into(),
        sub: "ci".into(),
        aud: "registry.local".into(),
        exp: 2_000_000_000,
        nbf: 1_700_000_000,
        iat: 1_700_000_000,
        jti: "0123456789abcdef0123456789abcdef".into(),
        access: vec![Access {
            kind: "repository".into(),
            name: "team/app".into(),
            actions: vec!["pull".into(), "push".into()],
        }],
    };
    let encoding =
        EncodingKey::from_ec_pem(pem.expose_secret().as_bytes()).expect("a PKCS#8 EC key");
    let old = || {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid().to_owned());
        header.x5c = Some(vec![key.x5c().to_owned()]);
        jsonwebtoken::encode(&header, black_box(&claims), black_box(&encoding)).expect("signs")
    };
    per_core("registry_token_sign_es256", 2000, || {
        black_box(sign(black_box(&key), black_box(&claims)).expect("signs"));
    });
    per_core("registry_token_sign_es256_jsonwebtoken", 200, || {
        black_box(old());
    });
    c.bench_function("registry_token_sign_es256", |b| {
        b.iter(|| sign(black_box(&key), black_box(&claims)).expect("signs"))
    });
    c.bench_function("registry_token_sign_es256_jsonwebtoken", |b| b.iter(old));
}

criterion_group!(benches, registry_tokens);
criterion_main!(benches);
