//! The contract of browser sessions (contract section 9), run against every engine like
//! `contract.rs`: each check takes `make`, a new handle on one store (for SQLite, the same
//! file opened again, so a second handle sees what the first wrote, as a restarted server
//! does).

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use super::{MemoryStore, SessionRecord, SqliteStore, StoreError, TokenStore};

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn session(id: &str, subject: &str, created: i64, lasts: i64) -> SessionRecord {
    SessionRecord {
        id: id.to_owned(),
        subject: subject.to_owned(),
        created_at: at(created),
        expires_at: at(created) + SignedDuration::from_secs(lasts),
        last_seen_at: at(created),
        address: "127.0.0.1".to_owned(),
    }
}

fn create_get_touch_and_delete(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let store = make();
    let s = session("a1", "alice", 0, 3600);
    store.session_create(&s, 10).unwrap();
    assert_eq!(store.session_get("a1", at(1)).unwrap(), Some(s.clone()));
    assert_eq!(store.session_get("zz", at(1)).unwrap(), None);
    // Expired: not returned.
    assert_eq!(store.session_get("a1", at(3600)).unwrap(), None);
    // Touch, seen by another handle.
    store.session_touch("a1", at(100), "10.0.0.7").unwrap();
    let other = make();
    let seen = other.session_get("a1", at(101)).unwrap().unwrap();
    assert_eq!(
        (seen.last_seen_at, seen.address.as_str()),
        (at(100), "10.0.0.7")
    );
    store.session_touch("nope", at(100), "x").unwrap();
    assert!(matches!(
        store.session_create(&s, 10),
        Err(StoreError::Conflict { .. })
    ));
    // A session found (and possibly kept by an engine's cache) is gone for every handle as
    // soon as another one ends it.
    assert!(store.session_get("a1", at(2)).unwrap().is_some());
    assert!(store.session_get("a1", at(3)).unwrap().is_some());
    assert!(other.session_delete("a1").unwrap());
    assert_eq!(store.session_get("a1", at(4)).unwrap(), None);
    assert!(!store.session_delete("a1").unwrap());
    assert_eq!(store.session_get("a1", at(1)).unwrap(), None);
}

fn sign_out_everywhere_ends_only_that_subject(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let store = make();
    for (id, who, created) in [("a1", "alice", 0), ("a2", "alice", 5), ("b1", "bob", 1)] {
        store
            .session_create(&session(id, who, created, 3600), 10)
            .unwrap();
    }
    let listed: Vec<String> = store
        .session_list("alice", at(10))
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, ["a2", "a1"], "newest first");
    for _ in 0..2 {
        assert!(store.session_get("a2", at(10)).unwrap().is_some());
    }
    assert_eq!(make().session_delete_subject("alice").unwrap(), 2);
    assert_eq!(store.session_get("a2", at(10)).unwrap(), None);
    assert_eq!(store.session_get("a1", at(10)).unwrap(), None);
    assert!(store.session_list("alice", at(10)).unwrap().is_empty());
    assert_eq!(store.session_list("bob", at(10)).unwrap().len(), 1);
}

fn sessions_per_subject_are_bounded_and_expired_ones_pruned(
    make: &dyn Fn() -> Arc<dyn TokenStore>,
) {
    let store = make();
    store
        .session_create(&session("old", "carol", 0, 10), 3)
        .unwrap();
    for i in 0..5 {
        store
            .session_create(&session(&format!("c{i}"), "carol", 100 + i, 3600), 3)
            .unwrap();
    }
    let ids: Vec<String> = store
        .session_list("carol", at(200))
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        ids,
        ["c4", "c3", "c2"],
        "the oldest beyond the limit are ended"
    );
    // The expired one was pruned by a later create: deleting it finds nothing.
    assert!(!store.session_delete("old").unwrap());
}

fn concurrent_sign_ins_keep_the_bound_per_subject(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let go = Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (store, go) = (make(), Arc::clone(&go));
            std::thread::spawn(move || {
                go.wait();
                store
                    .session_create(&session(&format!("d{i}"), "dave", 100 + i, 3600), 3)
                    .unwrap()
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(make().session_list("dave", at(200)).unwrap().len(), 3);
}

contract!(
    create_get_touch_and_delete,
    sign_out_everywhere_ends_only_that_subject,
    sessions_per_subject_are_bounded_and_expired_ones_pruned,
    concurrent_sign_ins_keep_the_bound_per_subject,
);
