//! The contract of exchanged OIDC ID tokens (contract section 11), run against every engine
//! like `contract.rs`.

use std::sync::Arc;

use super::contract::{ago, t};
use super::{MemoryStore, SqliteStore, TokenStore};

fn an_id_token_is_exchanged_once(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let store = make();
    let now = t("2026-06-01T00:00:00Z");
    let until = t("2026-06-01T00:10:00Z");
    assert!(store.mark_id_token_exchanged("a", until, now).unwrap());
    assert!(!store.mark_id_token_exchanged("a", until, now).unwrap());
    // Another handle sees it at once.
    assert!(!make().mark_id_token_exchanged("a", until, now).unwrap());
    assert!(make().mark_id_token_exchanged("b", until, now).unwrap());
    // Still kept one second before it expires.
    let later = t("2026-06-01T00:09:59Z");
    assert!(!store.mark_id_token_exchanged("a", until, later).unwrap());
}

fn expired_ids_are_pruned_on_the_way(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let store = make();
    let now = t("2026-06-01T00:00:00Z");
    for i in 0..10 {
        assert!(
            store
                .mark_id_token_exchanged(&format!("old{i}"), now, now)
                .unwrap()
        );
    }
    // An hour later every old row has expired: a call deletes them, so the same id can be
    // recorded again (its token would be refused as expired anyway).
    let later = t("2026-06-01T01:00:00Z");
    assert!(store.mark_id_token_exchanged("new", later, later).unwrap());
    assert!(store.mark_id_token_exchanged("old3", later, later).unwrap());
}

fn concurrent_exchanges_of_one_id_succeed_once(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let until = ago(-600);
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let store = make();
            std::thread::spawn(move || {
                store
                    .mark_id_token_exchanged("same", until, ago(0))
                    .unwrap()
            })
        })
        .collect();
    let wins = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|w| *w)
        .count();
    assert_eq!(wins, 1);
}

contract!(
    an_id_token_is_exchanged_once,
    expired_ids_are_pruned_on_the_way,
    concurrent_exchanges_of_one_id_succeed_once,
);
