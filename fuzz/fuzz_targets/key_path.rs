//! `KeyPath`: never panics; an accepted path is returned as written, has no empty, `.`, `..`
//! or `-`-leading segment, only `[A-Za-z0-9._-]`, and can never leave the folder it is joined
//! onto. `join` (first line = base, rest = what is appended) stays under its base.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use tessera_backends::{KeyPath, MAX_KEY_PATH_LEN};

fn check(p: &KeyPath, written: &str) {
    assert_eq!(p.as_str(), written);
    assert_eq!(p.to_string(), written);
    assert_eq!(KeyPath::new(written).as_ref(), Ok(p));
    assert!(!written.is_empty() && written.len() <= MAX_KEY_PATH_LEN);
    assert!(!written.starts_with('/') && !written.ends_with('/'));
    for seg in p.segments() {
        assert!(!seg.is_empty() && seg != "." && seg != ".." && !seg.starts_with('-'));
        assert!(
            seg.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        );
    }
    assert_eq!(p.segments().collect::<Vec<_>>().join("/"), written);
    assert!(p.starts_with(p));
    // Joined onto a folder, it stays inside: only normal components.
    assert!(
        Path::new(written)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = KeyPath::new(s) {
        check(&p, s);
    }
    let (base, rest) = s.split_once('\n').unwrap_or((s, ""));
    if let Ok(base) = KeyPath::new(base)
        && let Ok(joined) = base.join(rest)
    {
        check(&joined, &format!("{base}/{rest}"));
        assert!(joined.starts_with(&base), "{joined:?} escapes {base:?}");
        assert!(!base.starts_with(&joined));
    }
});
