//! ES256 registry tokens signed per second (one core). `cargo bench --bench registry -- --quick`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tessera::registry::key::{RegistryKey, generate_key, self_signed_certificate};
use tessera::registry::token::{Access, RegistryClaims, sign};

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
    c.bench_function("registry_token_sign_es256", |b| {
        b.iter(|| sign(black_box(&key), black_box(&claims)).expect("signs"))
    });
}

criterion_group!(benches, registry_tokens);
criterion_main!(benches);
