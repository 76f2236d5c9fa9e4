//! The API-key part of the store contract (contract section 9), run against every engine
//! like `contract.rs`: each check takes `make`, a new handle on one empty store.

use std::sync::Arc;

use jiff::Timestamp;

use super::{
    ApiKeyRecord, KeyChange, KeyCreated, KeyState, KeyUse, MemoryStore, SqliteStore, StoreError,
    StoredKeyState, TokenStore,
};

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub(super) fn key(id: &str, owner: &str, name: &str, created: &str) -> ApiKeyRecord {
    let mut digest = [0u8; 32];
    digest[..id.len().min(32)].copy_from_slice(&id.as_bytes()[..id.len().min(32)]);
    ApiKeyRecord {
        id: id.to_owned(),
        digest,
        name: name.to_owned(),
        owner: owner.to_owned(),
        scopes: "repository:*:pull".to_owned(),
        created_at: t(created),
        expires_at: None,
        state: StoredKeyState::Active,
        last_used_at: None,
        last_addresses: vec![],
        allow_ip: vec!["10.0.0.0/8".to_owned(), "::1/128".to_owned()],
        rate_limit: Some("100/1m".to_owned()),
        successor: None,
        grace_until: None,
        parent: Some("key:zz".to_owned()),
    }
}

fn create_find_and_list(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let store = make();
    let a = key("a1", "alice", "ci", "2026-06-01T00:00:00Z");
    let mut b = key("b1", "bob", "ci", "2026-06-02T00:00:00Z");
    b.expires_at = Some(t("2026-07-01T00:00:00Z"));
    assert_eq!(store.create_key(&a, 10).unwrap(), KeyCreated::Created);
    assert_eq!(store.create_key(&b, 10).unwrap(), KeyCreated::Created);
    // Another handle sees both, with every field as stored.
    let other = make();
    assert_eq!(other.key_by_digest(&a.digest).unwrap(), Some(a.clone()));
    assert_eq!(other.key_by_id("b1").unwrap(), Some(b.clone()));
    assert_eq!(other.key_by_id("nope").unwrap(), None);
    assert_eq!(other.key_by_digest(&[9u8; 32]).unwrap(), None);
    let all: Vec<String> = other
        .list_keys(None)
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(all, ["b1", "a1"], "newest first");
    let bobs = other.list_keys(Some("bob")).unwrap();
    assert_eq!(bobs, vec![b.clone()]);
    assert_eq!(
        b.state_at(t("2026-07-01T00:00:00Z")),
        KeyState::Expired,
        "expired at its expiry"
    );
    // Expired keys stay listed.
    assert_eq!(other.list_keys(Some("bob")).unwrap().len(), 1);
}

fn names_are_unique_per_owner_among_live_keys(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let store = make();
    store
        .create_key(&key("a1", "alice", "ci", "2026-06-01T00:00:00Z"), 10)
        .unwrap();
    assert_eq!(
        store
            .create_key(&key("a2", "alice", "ci", "2026-06-01T00:00:01Z"), 10)
            .unwrap(),
        KeyCreated::NameTaken
    );
    // Another owner may use the name.
    assert_eq!(
        store
            .create_key(&key("b1", "bob", "ci", "2026-06-01T00:00:01Z"), 10)
            .unwrap(),
        KeyCreated::Created
    );
    // A disabled key keeps its name; a revoked one gives it up.
    store.set_key_state("a1", StoredKeyState::Disabled).unwrap();
    assert_eq!(
        store
            .create_key(&key("a2", "alice", "ci", "2026-06-01T00:00:02Z"), 10)
            .unwrap(),
        KeyCreated::NameTaken
    );
    store.set_key_state("a1", StoredKeyState::Revoked).unwrap();
    assert_eq!(
        store
            .create_key(&key("a2", "alice", "ci", "2026-06-01T00:00:02Z"), 10)
            .unwrap(),
        KeyCreated::Created
    );
    // The same id or digest twice is a conflict.
    let e = store
        .create_key(&key("a2", "carol", "x", "2026-06-01T00:00:03Z"), 10)
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
}

fn the_number_of_live_keys_per_owner_is_bounded(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let store = make();
    for i in 0..3 {
        let k = key(
            &format!("k{i}"),
            "alice",
            &format!("n{i}"),
            "2026-06-01T00:00:00Z",
        );
        assert_eq!(store.create_key(&k, 3).unwrap(), KeyCreated::Created);
    }
    let k = key("k3", "alice", "n3", "2026-06-01T00:00:00Z");
    assert_eq!(
        store.create_key(&k, 3).unwrap(),
        KeyCreated::TooMany { limit: 3 }
    );
    // Revoked keys do not count.
    store.set_key_state("k0", StoredKeyState::Revoked).unwrap();
    assert_eq!(store.create_key(&k, 3).unwrap(), KeyCreated::Created);
}

fn states_change_until_revoked(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let store = make();
    store
        .create_key(&key("a1", "alice", "ci", "2026-06-01T00:00:00Z"), 10)
        .unwrap();
    let now = t("2026-06-02T00:00:00Z");
    let KeyChange::Done(k) = store.set_key_state("a1", StoredKeyState::Disabled).unwrap() else {
        panic!("not changed")
    };
    assert_eq!(k.state_at(now), KeyState::Disabled);
    assert_eq!(
        make().key_by_id("a1").unwrap().unwrap().state,
        StoredKeyState::Disabled
    );
    let KeyChange::Done(k) = store.set_key_state("a1", StoredKeyState::Active).unwrap() else {
        panic!("not changed")
    };
    assert_eq!(k.state_at(now), KeyState::Active);
    store.set_key_state("a1", StoredKeyState::Revoked).unwrap();
    // Revoked is final.
    let again = store.set_key_state("a1", StoredKeyState::Active).unwrap();
    assert!(matches!(again, KeyChange::Final(ref k) if k.state == StoredKeyState::Revoked));
    assert_eq!(
        make().key_by_id("a1").unwrap().unwrap().state_at(now),
        KeyState::Revoked
    );
    assert_eq!(
        store.set_key_state("zz", StoredKeyState::Active).unwrap(),
        KeyChange::NotFound
    );
}

fn rotation_links_the_successor_and_keeps_a_grace(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let store = make();
    store
        .create_key(&key("a1", "alice", "ci", "2026-06-01T00:00:00Z"), 10)
        .unwrap();
    let new = key("a2", "alice", "ci", "2026-06-02T00:00:00Z");
    let grace = t("2026-06-02T01:00:00Z");
    let KeyChange::Done(old) = store.rotate_key("a1", &new, Some(grace)).unwrap() else {
        panic!("not rotated")
    };
    assert_eq!(old.successor.as_deref(), Some("a2"));
    assert_eq!(old.grace_until, Some(grace));
    let other = make();
    let old = other.key_by_id("a1").unwrap().unwrap();
    assert_eq!(old.state_at(t("2026-06-02T00:30:00Z")), KeyState::Active);
    assert_eq!(old.state_at(grace), KeyState::Revoked);
    assert_eq!(other.key_by_id("a2").unwrap().unwrap(), new);
    // A replaced key cannot be rotated again; the new one can, without grace.
    let third = key("a3", "alice", "ci", "2026-06-03T00:00:00Z");
    assert!(matches!(
        store.rotate_key("a1", &third, None).unwrap(),
        KeyChange::Final(_)
    ));
    let KeyChange::Done(second) = store.rotate_key("a2", &third, None).unwrap() else {
        panic!("not rotated")
    };
    assert_eq!(second.state, StoredKeyState::Revoked);
    assert_eq!(
        second.state_at(t("2026-06-03T00:00:00Z")),
        KeyState::Revoked
    );
    assert_eq!(
        store
            .rotate_key("zz", &key("a4", "alice", "x", "2026-06-03T00:00:00Z"), None)
            .unwrap(),
        KeyChange::NotFound
    );
    assert!(other.key_by_id("a4").unwrap().is_none(), "nothing stored");
}

fn touches_keep_the_latest_time_and_five_addresses(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let store = make();
    store
        .create_key(&key("a1", "alice", "ci", "2026-06-01T00:00:00Z"), 10)
        .unwrap();
    let use_ = |at: &str, addrs: &[&str]| KeyUse {
        id: "a1".to_owned(),
        at: t(at),
        addresses: addrs.iter().map(|s| s.to_string()).collect(),
    };
    store
        .touch_keys(&[use_("2026-06-01T00:00:05Z", &["10.0.0.1", "10.0.0.2"])])
        .unwrap();
    store
        .touch_keys(&[
            use_("2026-06-01T00:00:03Z", &["10.0.0.3", "10.0.0.1"]),
            KeyUse {
                id: "unknown".to_owned(),
                at: t("2026-06-01T00:00:03Z"),
                addresses: vec![],
            },
        ])
        .unwrap();
    let k = make().key_by_id("a1").unwrap().unwrap();
    assert_eq!(
        k.last_used_at,
        Some(t("2026-06-01T00:00:05Z")),
        "never moves back"
    );
    assert_eq!(k.last_addresses, ["10.0.0.3", "10.0.0.1", "10.0.0.2"]);
    store
        .touch_keys(&[use_(
            "2026-06-01T00:00:09Z",
            &["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7"],
        )])
        .unwrap();
    let k = make().key_by_id("a1").unwrap().unwrap();
    assert_eq!(k.last_used_at, Some(t("2026-06-01T00:00:09Z")));
    assert_eq!(
        k.last_addresses,
        ["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.3"]
    );
}

fn concurrent_creations_of_one_name_store_one_key(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let store = make();
            std::thread::spawn(move || {
                let k = key(&format!("r{i}"), "alice", "ci", "2026-06-01T00:00:00Z");
                store.create_key(&k, 100).unwrap()
            })
        })
        .collect();
    let created = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|c| *c == KeyCreated::Created)
        .count();
    assert_eq!(created, 1);
    assert_eq!(make().list_keys(Some("alice")).unwrap().len(), 1);
}

fn concurrent_rotations_of_one_key_replace_it_once(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let old = key("a1", "alice", "ci", "2026-06-01T00:00:00Z");
    assert_eq!(make().create_key(&old, 10).unwrap(), KeyCreated::Created);
    let go = Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (store, go) = (make(), Arc::clone(&go));
            std::thread::spawn(move || {
                go.wait();
                let new = key(&format!("n{i}"), "alice", "ci", "2026-06-02T00:00:00Z");
                store.rotate_key("a1", &new, None).unwrap()
            })
        })
        .collect();
    let results: Vec<KeyChange> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let done = results
        .iter()
        .filter(|c| matches!(c, KeyChange::Done(_)))
        .count();
    assert_eq!(done, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|c| matches!(c, KeyChange::Done(_) | KeyChange::Final(_)))
    );
    // The old key and exactly one successor, which holds the name.
    let keys = make().list_keys(Some("alice")).unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let old = keys.iter().find(|k| k.id == "a1").unwrap();
    let successor = old.successor.clone().unwrap();
    assert!(keys.iter().any(|k| k.id == successor && k.holds_name()));
}

fn concurrent_creations_keep_the_limit_of_live_keys(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let go = Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (store, go) = (make(), Arc::clone(&go));
            std::thread::spawn(move || {
                go.wait();
                let k = key(
                    &format!("m{i}"),
                    "erin",
                    &format!("k{i}"),
                    "2026-06-01T00:00:00Z",
                );
                store.create_key(&k, 3).unwrap()
            })
        })
        .collect();
    let created = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|c| *c == KeyCreated::Created)
        .count();
    assert_eq!(created, 3);
    assert_eq!(make().list_keys(Some("erin")).unwrap().len(), 3);
}

contract!(
    create_find_and_list,
    names_are_unique_per_owner_among_live_keys,
    the_number_of_live_keys_per_owner_is_bounded,
    states_change_until_revoked,
    rotation_links_the_successor_and_keeps_a_grace,
    touches_keep_the_latest_time_and_five_addresses,
    concurrent_creations_of_one_name_store_one_key,
    concurrent_rotations_of_one_key_replace_it_once,
    concurrent_creations_keep_the_limit_of_live_keys,
);
