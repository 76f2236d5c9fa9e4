//! The one contract every token store engine keeps, run against each of them.
//!
//! Each check is a function taking `make`, which returns a new handle on one store, empty
//! when the check starts (for SQLite, the same file opened again; in memory, the same store
//! shared), so that checks can also show what one handle sees of another's writes. The
//! [`contract!`] macro at the bottom runs every check against every engine: an engine joins by
//! adding its module there. What only one engine has (SQLite's migrations, pending file and
//! reuse of answers) is tested in that engine's module.

use std::sync::Arc;

use jiff::Timestamp;

use super::{
    IssueError, MemoryStore, SqliteStore, Standing, StoreError, TokenRecord, TokenState, TokenStore,
};

pub(super) fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub(super) fn rec(jti: &str, subject: &str, issued: &str, expires: Option<&str>) -> TokenRecord {
    TokenRecord {
        jti: jti.to_owned(),
        subject: subject.to_owned(),
        scopes: "repository:*:pull".to_owned(),
        issued_at: t(issued),
        expires_at: expires.map(t),
        single_use: false,
        revoked: false,
        parent: None,
    }
}

/// Whether `store` says a token of `subject` issued at `issued` (RFC 3339) is revoked.
fn revoked(store: &Arc<dyn TokenStore>, jti: &str, subject: &str, issued: &str) -> bool {
    store.is_revoked(jti, subject, t(issued)).unwrap()
}

pub(super) fn ago(secs: i64) -> Timestamp {
    Timestamp::now() - jiff::SignedDuration::from_secs(secs)
}

/// A record issued at `issued`, expiring an hour after the real clock.
pub(super) fn live(jti: &str, subject: &str, issued: Timestamp) -> TokenRecord {
    TokenRecord {
        jti: jti.to_owned(),
        subject: subject.to_owned(),
        scopes: "repository:*:pull".to_owned(),
        issued_at: issued,
        expires_at: Some(ago(-3600)),
        single_use: false,
        revoked: false,
        parent: None,
    }
}

pub(super) fn record_list_and_revoke_by_id(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let store = make();
    let now = t("2026-06-01T00:00:00Z");
    store
        .record(&rec(
            "old",
            "ci",
            "2026-01-01T00:00:00Z",
            Some("2026-02-01T00:00:00Z"),
        ))
        .unwrap();
    store
        .record(&rec("a", "ci", "2026-05-01T00:00:00Z", None))
        .unwrap();
    store
        .record(&rec(
            "b",
            "bot",
            "2026-05-02T00:00:00Z",
            Some("2027-01-01T00:00:00Z"),
        ))
        .unwrap();
    assert!(
        store
            .record(&rec("a", "ci", "2026-05-01T00:00:00Z", None))
            .is_err()
    );

    let listed: Vec<_> = store
        .list(now)
        .unwrap()
        .into_iter()
        .map(|r| r.jti)
        .collect();
    assert_eq!(listed, ["b", "a"], "unexpired, newest first");

    assert!(!revoked(&store, "a", "ci", "2026-05-01T00:00:00Z"));
    assert!(store.revoke("a", now).unwrap());
    assert!(revoked(&store, "a", "ci", "2026-05-01T00:00:00Z"));
    assert!(!revoked(&store, "b", "bot", "2026-05-02T00:00:00Z"));
    assert!(store.revoke("a", now).unwrap(), "known token");
    assert!(store.revoke("unknown", now).unwrap(), "newly recorded");
    assert!(
        !store.revoke("unknown", now).unwrap(),
        "already revoked, unknown"
    );
    assert!(store.is_revoked("unknown", "x", now).unwrap());
    let a = store
        .list(now)
        .unwrap()
        .into_iter()
        .find(|r| r.jti == "a")
        .unwrap();
    assert!(a.revoked);
}

pub(super) fn cutoffs_revoke_by_subject_and_all(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let store = make();
    store
        .record(&rec("a1", "ci", "2026-05-01T00:00:00Z", None))
        .unwrap();
    store
        .record(&rec("a2", "ci", "2026-05-02T00:00:00Z", None))
        .unwrap();
    store
        .record(&rec("b1", "bot", "2026-05-01T00:00:00Z", None))
        .unwrap();
    let cut = t("2026-05-03T00:00:00.500Z");
    assert_eq!(store.revoke_subject("ci", cut).unwrap(), 2);
    assert_eq!(
        store.revoke_subject("ci", cut).unwrap(),
        0,
        "already revoked"
    );
    assert!(revoked(&store, "a1", "ci", "2026-05-01T00:00:00Z"));
    // Not recorded here (minted elsewhere with the same secret): covered by the cut-off.
    assert!(revoked(&store, "zz", "ci", "2026-05-03T00:00:00Z"));
    assert!(!revoked(&store, "zz", "ci", "2026-05-03T00:00:01Z"));
    assert!(!revoked(&store, "b1", "bot", "2026-05-01T00:00:00Z"));
    // Minted after the cut-off within the same second and recorded: still valid, even
    // when the caller passes the `iat` second.
    store
        .record(&rec("a3", "ci", "2026-05-03T00:00:00.900Z", None))
        .unwrap();
    assert!(!revoked(&store, "a3", "ci", "2026-05-03T00:00:00Z"));
    // An earlier cut-off never moves the existing one back.
    store
        .revoke_subject("ci", t("2026-01-01T00:00:00Z"))
        .unwrap();
    assert!(revoked(&store, "a2", "ci", "2026-05-02T00:00:00Z"));

    assert_eq!(
        store.revoke_all(t("2026-05-04T00:00:00Z")).unwrap(),
        2,
        "b1 and a3"
    );
    assert!(revoked(&store, "b1", "bot", "2026-05-01T00:00:00Z"));
    assert!(revoked(&store, "new", "anyone", "2026-05-04T00:00:00Z"));
    assert!(!revoked(&store, "new", "anyone", "2026-05-04T00:00:01Z"));
    assert!(
        store
            .list(t("2026-05-05T00:00:00Z"))
            .unwrap()
            .iter()
            .all(|r| r.revoked)
    );
}

pub(super) fn single_use_tokens_are_used_once(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let store = make();
    let mut once = rec("once", "ci", "2026-05-01T00:00:00Z", None);
    once.single_use = true;
    store.record(&once).unwrap();
    store
        .record(&rec("many", "ci", "2026-05-01T00:00:00Z", None))
        .unwrap();
    let now = t("2026-05-02T00:00:00Z");
    assert!(store.mark_used("once", now).unwrap());
    assert!(!store.mark_used("once", now).unwrap());
    assert!(store.mark_used("many", now).unwrap());
    assert!(store.mark_used("many", now).unwrap());
    assert!(store.mark_used("unrecorded", now).unwrap());
}

pub(super) fn prune_drops_expired_records_only(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let store = make();
    store
        .record(&rec(
            "gone",
            "ci",
            "2026-01-01T00:00:00Z",
            Some("2026-02-01T00:00:00Z"),
        ))
        .unwrap();
    store
        .record(&rec(
            "live",
            "ci",
            "2026-01-01T00:00:00Z",
            Some("2027-02-01T00:00:00Z"),
        ))
        .unwrap();
    store
        .record(&rec("never", "ci", "2026-01-01T00:00:00Z", None))
        .unwrap();
    let now = t("2026-03-01T00:00:00Z");
    store.revoke("gone", now).unwrap();
    store.revoke("never", now).unwrap();
    store.revoke("elsewhere", now).unwrap();
    assert_eq!(
        store.prune(now).unwrap(),
        2,
        "record and revocation of `gone`"
    );
    assert!(revoked(&store, "never", "ci", "2026-01-01T00:00:00Z"));
    assert!(store.is_revoked("elsewhere", "ci", now).unwrap());
    assert_eq!(store.prune(now).unwrap(), 0);
    assert_eq!(store.list(now).unwrap().len(), 2);
}

pub(super) fn two_handles_see_each_other_at_once(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let one = make();
    let two = make();
    let issued = t("2026-05-01T00:00:00Z");
    one.record(&rec("a", "ci", "2026-05-01T00:00:00Z", None))
        .unwrap();
    assert_eq!(two.list(issued).unwrap().len(), 1);
    assert!(!two.is_revoked("a", "ci", issued).unwrap());
    one.revoke("a", issued).unwrap();
    assert!(two.is_revoked("a", "ci", issued).unwrap());
    two.revoke_all(t("2026-05-02T00:00:00Z")).unwrap();
    assert!(one.is_revoked("b", "bot", issued).unwrap());
    // And from threads sharing one handle.
    let shared = one;
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let s = shared.clone();
            std::thread::spawn(move || {
                s.record(&rec(&format!("t{i}"), "ci", "2026-05-03T00:00:00Z", None))
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    assert_eq!(two.list(issued).unwrap().len(), 5);
}

pub(super) fn token_state_tells_unknown_active_and_revoked_ids_apart(
    make: &dyn Fn() -> Arc<dyn TokenStore>,
) {
    let store = make();
    let now = t("2026-06-01T00:00:00Z");
    store
        .record(&rec("a", "ci", "2026-05-01T00:00:00Z", None))
        .unwrap();
    store
        .record(&rec("b", "bot", "2026-05-01T00:00:00Z", None))
        .unwrap();
    assert_eq!(store.token_state("a").unwrap(), TokenState::Active);
    assert_eq!(store.token_state("typo").unwrap(), TokenState::Unknown);
    store.revoke("a", now).unwrap();
    assert_eq!(store.token_state("a").unwrap(), TokenState::Revoked);
    // Revoked through a cut-off, and revoked without ever being recorded.
    store.revoke_subject("bot", now).unwrap();
    assert_eq!(store.token_state("b").unwrap(), TokenState::Revoked);
    store.revoke("elsewhere", now).unwrap();
    assert_eq!(store.token_state("elsewhere").unwrap(), TokenState::Revoked);
    // Asking records nothing.
    assert_eq!(store.token_state("typo").unwrap(), TokenState::Unknown);
}

pub(super) fn revoking_a_token_revokes_its_descendants_transitively(
    make: &dyn Fn() -> Arc<dyn TokenStore>,
) {
    let store = make();
    let other = make();
    let now = Timestamp::now();
    store.record(&live("root", "ci", ago(10))).unwrap();
    for (jti, parent) in [
        ("child", "root"),
        ("grandchild", "child"),
        ("sibling", "root"),
    ] {
        store
            .record_checked(&live(jti, "ci", now).with_parent(parent), None, 100)
            .unwrap();
    }
    store.record(&live("unrelated", "ci", ago(10))).unwrap();
    // Answers an engine may reuse while nothing changes...
    for _ in 0..3 {
        assert!(!store.is_revoked("grandchild", "ci", now).unwrap());
    }
    // ...until another handle revokes the middle of the line.
    assert!(other.revoke("child", now).unwrap());
    let revoked = |jti: &str| store.is_revoked(jti, "ci", now).unwrap();
    assert!(revoked("child") && revoked("grandchild"));
    assert!(!revoked("root") && !revoked("sibling") && !revoked("unrelated"));
    other.revoke("root", now).unwrap();
    assert!(revoked("root") && revoked("sibling"));
    assert!(!revoked("unrelated"));
    // A record made later without checks still inherits its parent's revocation.
    store
        .record(&live("late", "ci", now).with_parent("sibling"))
        .unwrap();
    assert!(revoked("late"));
    let listed = store.list(now).unwrap();
    let late = listed.iter().find(|r| r.jti == "late").unwrap();
    assert_eq!(late.parent.as_deref(), Some("sibling"));
    assert!(late.revoked);
}

pub(super) fn a_cut_off_covers_the_whole_line_of_a_derived_token(
    make: &dyn Fn() -> Arc<dyn TokenStore>,
) {
    let store = make();
    let cut = ago(5);
    let ms_after = cut + jiff::SignedDuration::from_millis(1);
    let ms_before = cut - jiff::SignedDuration::from_millis(1);
    store.record(&live("before", "ci", ms_before)).unwrap();
    store.record(&live("after", "ci", ms_after)).unwrap();
    store.revoke_subject("ci", cut).unwrap();
    let second = Timestamp::from_second(cut.as_second()).unwrap();
    // Millisecond precision for recorded tokens, whatever second the caller passes.
    assert!(store.is_revoked("before", "ci", second).unwrap());
    assert!(!store.is_revoked("after", "ci", second).unwrap());
    // A token derived after the cut-off from one minted before it (recorded without the
    // checks, as if it had raced the revocation) is covered by the cut-off.
    store
        .record(&live("raced", "ci", Timestamp::now()).with_parent("before"))
        .unwrap();
    assert!(store.is_revoked("raced", "ci", Timestamp::now()).unwrap());
    // A token derived from one minted after it is not.
    store
        .record_checked(
            &live("fine", "ci", Timestamp::now()).with_parent("after"),
            None,
            100,
        )
        .unwrap();
    assert!(!store.is_revoked("fine", "ci", Timestamp::now()).unwrap());
    // The same for `--all`, and the counts of `revoke` include derived tokens.
    assert_eq!(
        store.revoke_all(Timestamp::now()).unwrap(),
        2,
        "after and fine"
    );
}

pub(super) fn record_checked_refuses_what_would_escape_the_parent(
    make: &dyn Fn() -> Arc<dyn TokenStore>,
) {
    let store = make();
    let now = Timestamp::now();
    let child = |jti: &str, parent: &str| live(jti, "ci", now).with_parent(parent);
    let mut once = live("once", "ci", ago(10));
    once.single_use = true;
    store.record(&once).unwrap();
    assert!(matches!(
        store.record_checked(&child("c1", "once"), None, 100),
        Err(IssueError::ParentSingleUse)
    ));
    store.record(&live("revoked", "ci", ago(10))).unwrap();
    store.revoke("revoked", now).unwrap();
    assert!(matches!(
        store.record_checked(&child("c2", "revoked"), None, 100),
        Err(IssueError::ParentRevoked)
    ));
    // A parent that is not recorded is judged by the `iat` given, like `is_revoked` does.
    store.revoke_subject("ci", ago(60)).unwrap();
    assert!(matches!(
        store.record_checked(&child("c3", "elsewhere"), Some(ago(120)), 100),
        Err(IssueError::ParentRevoked)
    ));
    store
        .record_checked(&child("c4", "elsewhere2"), Some(ago(30)), 100)
        .unwrap();
    // ...and its line starts at that `iat`: a cut-off between it and the child covers both.
    store.revoke_subject("ci", ago(20)).unwrap();
    assert!(store.is_revoked("c4", "ci", now).unwrap());
    for jti in ["c1", "c2", "c3"] {
        assert!(
            !store.list(now).unwrap().iter().any(|r| r.jti == jti),
            "{jti}"
        );
    }
}

pub(super) fn record_checked_bounds_the_unexpired_tokens_of_a_subject(
    make: &dyn Fn() -> Arc<dyn TokenStore>,
) {
    let store = make();
    let now = Timestamp::now();
    let mut expired = live("expired", "ci", ago(7200));
    expired.expires_at = Some(ago(3600));
    store.record(&expired).unwrap();
    store.record(&live("p", "ci", ago(10))).unwrap();
    store
        .record_checked(&live("a", "ci", now).with_parent("p"), None, 3)
        .unwrap();
    // Revoked tokens count until they expire: revoking does not make room.
    store.revoke("a", now).unwrap();
    store
        .record_checked(&live("b", "ci", now).with_parent("p"), None, 3)
        .unwrap();
    match store.record_checked(&live("c", "ci", now).with_parent("p"), None, 3) {
        Err(IssueError::TooMany { subject, limit }) => {
            assert_eq!((subject.as_str(), limit), ("ci", 3));
        }
        other => panic!("{other:?}"),
    }
    // Another subject has its own count; a token without a parent is counted too.
    store
        .record_checked(&live("d", "bot", now), None, 3)
        .unwrap();
}

pub(super) fn check_tells_valid_single_use_and_revoked_tokens_apart(
    make: &dyn Fn() -> Arc<dyn TokenStore>,
) {
    let one = make();
    let two = make();
    let iat = t("2026-05-01T00:00:00Z");
    let now = t("2026-05-02T00:00:00Z");
    let mut once = rec("once", "ci", "2026-05-01T00:00:00Z", None);
    once.single_use = true;
    one.record(&once).unwrap();
    one.record(&rec("many", "ci", "2026-05-01T00:00:00Z", None))
        .unwrap();
    let standing = |s: &Arc<dyn TokenStore>, jti: &str| s.check(jti, "ci", iat).unwrap();
    // Another handle (another process, another server) knows a token is single-use from the
    // store alone, and sees its use.
    assert_eq!(standing(&two, "once"), Standing::SingleUse);
    assert_eq!(standing(&two, "many"), Standing::Valid);
    assert_eq!(standing(&two, "unrecorded"), Standing::Valid);
    assert!(two.mark_used("once", now).unwrap());
    assert!(!one.mark_used("once", now).unwrap());
    assert!(!two.is_revoked("once", "ci", iat).unwrap());
    // Revoked wins over single-use.
    one.revoke("once", now).unwrap();
    assert_eq!(standing(&two, "once"), Standing::Revoked);
    assert!(two.is_revoked("once", "ci", iat).unwrap());
    two.revoke_subject("ci", now).unwrap();
    assert_eq!(standing(&one, "many"), Standing::Revoked);
}

pub(super) fn a_single_use_token_is_used_once_across_threads_and_handles(
    make: &dyn Fn() -> Arc<dyn TokenStore>,
) {
    let mut once = rec("once", "ci", "2026-05-01T00:00:00Z", None);
    once.single_use = true;
    make().record(&once).unwrap();
    let now = t("2026-05-02T00:00:00Z");
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let s = make();
            std::thread::spawn(move || s.mark_used("once", now).unwrap())
        })
        .collect();
    let firsts = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|first| *first)
        .count();
    assert_eq!(firsts, 1);
}

pub(super) fn record_minted_is_listed_and_revocable(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let store = make();
    let mut once = rec("once", "ci", "2026-05-01T00:00:00Z", None);
    once.single_use = true;
    store
        .record_minted(&rec("m", "ci", "2026-05-01T00:00:00.250Z", None))
        .unwrap();
    store.record_minted(&once).unwrap();
    let other = make();
    let now = t("2026-06-01T00:00:00Z");
    let listed: Vec<_> = other
        .list(now)
        .unwrap()
        .into_iter()
        .map(|r| r.jti)
        .collect();
    assert_eq!(listed, ["m", "once"]);
    // Single-use records are never deferred: the mark is known at once.
    assert_eq!(
        other
            .check("once", "ci", t("2026-05-01T00:00:00Z"))
            .unwrap(),
        Standing::SingleUse
    );
    // Its exact issue time decides against a cut-off in the same second.
    other
        .revoke_subject("ci", t("2026-05-01T00:00:00.100Z"))
        .unwrap();
    assert!(!revoked(&other, "m", "ci", "2026-05-01T00:00:00Z"));
    assert_eq!(other.token_state("m").unwrap(), TokenState::Active);
}

pub(super) fn recording_an_id_twice_is_a_conflict(make: &dyn Fn() -> Arc<dyn TokenStore>) {
    let store = make();
    store
        .record(&rec("a", "ci", "2026-05-01T00:00:00Z", None))
        .unwrap();
    let err = store
        .record(&rec("a", "bot", "2026-05-02T00:00:00Z", None))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert!(!err.is_unavailable());
    let err = store
        .record_checked(&live("a", "ci", Timestamp::now()), None, 100)
        .unwrap_err();
    assert!(
        matches!(err, IssueError::Store(StoreError::Conflict { .. })),
        "{err:?}"
    );
    // The first record stands.
    let listed = store.list(t("2026-06-01T00:00:00Z")).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].subject, "ci");
}

pub(super) fn prune_keeps_revocations_within_the_verification_leeway(
    make: &dyn Fn() -> Arc<dyn TokenStore>,
) {
    let store = make();
    // Expired 30 s ago: still accepted for another 30 s, so its revocation must stay.
    let mut just = live("just", "ci", ago(600));
    just.expires_at = Some(ago(30));
    store.record(&just).unwrap();
    store.revoke("just", Timestamp::now()).unwrap();
    assert_eq!(store.prune(Timestamp::now()).unwrap(), 0);
    assert!(store.is_revoked("just", "ci", ago(600)).unwrap());
    // Once the leeway is over, record and revocation go.
    let later = Timestamp::now() + jiff::SignedDuration::from_secs(31 + 60);
    assert_eq!(store.prune(later).unwrap(), 2);
    // Writes prune on the way: an expired record goes with the next write.
    let mut old = live("old", "ci", ago(7200));
    old.expires_at = Some(ago(3600));
    store.record(&old).unwrap();
    store.record(&live("new", "ci", Timestamp::now())).unwrap();
    let all = store.list(t("1970-01-01T00:00:00Z")).unwrap();
    assert_eq!(
        all.iter().map(|r| r.jti.as_str()).collect::<Vec<_>>(),
        ["new"]
    );
}

contract!(
    record_list_and_revoke_by_id,
    cutoffs_revoke_by_subject_and_all,
    single_use_tokens_are_used_once,
    prune_drops_expired_records_only,
    two_handles_see_each_other_at_once,
    token_state_tells_unknown_active_and_revoked_ids_apart,
    revoking_a_token_revokes_its_descendants_transitively,
    a_cut_off_covers_the_whole_line_of_a_derived_token,
    record_checked_refuses_what_would_escape_the_parent,
    record_checked_bounds_the_unexpired_tokens_of_a_subject,
    check_tells_valid_single_use_and_revoked_tokens_apart,
    a_single_use_token_is_used_once_across_threads_and_handles,
    record_minted_is_listed_and_revocable,
    recording_an_id_twice_is_a_conflict,
    prune_keeps_revocations_within_the_verification_leeway,
);
