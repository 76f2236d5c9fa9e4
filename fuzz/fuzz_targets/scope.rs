//! Scope parsing: `ScopeSet::parse_list` (first line = the `--repo` pattern, the rest = the
//! list), `ScopeSet::parse_claim` and `Scope::parse`. Invariants: the canonical claim form
//! parses back to the same set, every scope it holds is allowed by it, the comma form of a
//! claim parses to the same set, and an intersection only holds what both sides allow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::token::{Scope, ScopeSet};

fn check_set(set: &ScopeSet) {
    let claim = set.to_string();
    assert_eq!(ScopeSet::parse_claim(&claim).as_ref(), Ok(set), "{claim}");
    for s in set.iter() {
        assert_eq!(Scope::parse(&s.to_string()).as_ref(), Ok(s));
        assert!(set.allows(s), "{set} does not allow its own {s}");
    }
    if !set.is_empty() {
        // Full scopes are never shorthands, so the comma form means the same set.
        assert_eq!(
            ScopeSet::parse_list(&claim.replace(' ', ","), "*").as_ref(),
            Ok(set)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (repo, list) = s.split_once('\n').unwrap_or(("*", s));
    let listed = ScopeSet::parse_list(list, repo);
    if let Ok(set) = &listed {
        assert!(!set.is_empty(), "an accepted list grants something");
        check_set(set);
    }
    let claimed = ScopeSet::parse_claim(s);
    if let Ok(set) = &claimed {
        check_set(set);
        // The claim form is canonical only when sorted and deduplicated; either way it parses
        // back to the same set.
        if set.to_string() == s {
            assert_eq!(ScopeSet::parse_claim(&set.to_string()).as_ref(), Ok(set));
        }
    }
    if let Ok(one) = Scope::parse(s) {
        assert_eq!(one.to_string(), s, "a full scope is its own canonical form");
    }
    if let (Ok(a), Ok(b)) = (&listed, &claimed) {
        let both = a.intersect(b);
        assert_eq!(both, b.intersect(a), "intersect is symmetric");
        for s in both.iter() {
            assert!(
                a.allows(s) && b.allows(s),
                "{s} is in {a} ∩ {b} but not allowed by both"
            );
        }
    }
});
