//! Validated key paths: `/`-separated names shared by every backend.

use std::fmt;
use std::str::FromStr;

/// Longest key path accepted, in bytes.
pub const MAX_KEY_PATH_LEN: usize = 512;

/// A validated, `/`-separated key path such as `tessera/auth/token_secret`.
///
/// Each segment is one or more of `[A-Za-z0-9._-]`, does not start with `-`, and is not `.` or
/// `..`. There is no leading or trailing `/` and no empty segment. Every backend maps the same
/// key path to its own storage (a pass entry, nested maps in a sops or age document, a file).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyPath(String);

/// Why a string is not a valid [`KeyPath`].
///
/// The string in each variant is how the messages name the input: the input itself, quoted,
/// when it is short and looks like a mistyped key path (`` key path `a b` ``); otherwise only a
/// description such as `a 44-character value with '+' and '='`, because a value pasted where a
/// key path belongs is often the secret itself, and an error message must never repeat it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyPathError {
    /// The input is empty.
    #[error("key path is empty; use names like `app/db` or `tessera/auth/token_secret`")]
    Empty,
    /// Longer than [`MAX_KEY_PATH_LEN`] (the input, described).
    #[error("{0} is longer than {MAX_KEY_PATH_LEN} bytes; {RULE}")]
    TooLong(String),
    /// A leading or trailing `/`, or `//`.
    #[error("{0} starts or ends with `/` or has an empty segment; write it as `a/b/c`")]
    EmptySegment(String),
    /// A `.` or `..` segment.
    #[error("{0} contains a `.` or `..` segment; write the full path without them")]
    DotSegment(String),
    /// A segment starting with `-` (it would read as an option to a tool).
    #[error("{0} has a segment starting with `-`; rename the segment")]
    LeadingDash(String),
    /// A character outside `[A-Za-z0-9._-]`.
    #[error("{}", bad_char_message(path, *ch))]
    BadChar {
        /// The input, quoted or described (see the type's documentation).
        path: String,
        /// The first character not allowed.
        ch: char,
    },
}

/// What every key path must look like, for messages.
const RULE: &str = "key paths are `/`-separated names of `[A-Za-z0-9._-]`";

/// Longest input quoted in an error, in characters; longer ones are only described.
const MAX_QUOTED: usize = 64;

/// Prefix of a described (not quoted) input.
const DESCRIBED: &str = "a ";

fn bad_char_message(path: &str, ch: char) -> String {
    if path.starts_with(DESCRIBED) {
        format!("{path} is not a key path; {RULE}")
    } else {
        format!(
            "{path} contains the character {ch:?}; segments may only use letters, digits, `.`, \
             `_` and `-`"
        )
    }
}

/// Adds to `keys` the key paths of the secrets in a tree of nested JSON maps (the age and sops
/// documents): `entries` are those of the map at `rel` ("" at the top), a nested map is a
/// folder, and `is_leaf` says which other values are secrets. A name that does not make a key
/// path is skipped, a map with all it holds.
pub(crate) fn json_leaves<'a>(
    entries: impl IntoIterator<Item = (&'a String, &'a serde_json::Value)>,
    rel: &str,
    is_leaf: fn(&serde_json::Value) -> bool,
    keys: &mut Vec<KeyPath>,
) {
    for (name, child) in entries {
        let path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let Ok(key) = KeyPath::new(&path) else {
            continue;
        };
        match child {
            serde_json::Value::Object(inner) => json_leaves(inner, &path, is_leaf, keys),
            leaf if is_leaf(leaf) => keys.push(key),
            _ => {}
        }
    }
}

impl KeyPath {
    /// Parses and validates a key path.
    pub fn new(s: &str) -> Result<Self, KeyPathError> {
        s.parse()
    }

    /// The path as written, e.g. `tessera/auth/token_secret`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path's segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Whether `self` equals `prefix` or lies below it (segment-wise, so `app` is a prefix of
    /// `app/db` but not of `apple`).
    pub fn starts_with(&self, prefix: &KeyPath) -> bool {
        self.0 == prefix.0
            || (self.0.len() > prefix.0.len()
                && self.0.starts_with(&prefix.0)
                && self.0.as_bytes()[prefix.0.len()] == b'/')
    }

    /// A new path with `segment` (itself validated as a path) appended.
    pub fn join(&self, rest: &str) -> Result<Self, KeyPathError> {
        format!("{}/{}", self.0, rest).parse()
    }
}

/// Whether a character may appear in a key path (`/` included).
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')
}

/// How an invalid input is named in an error: quoted when it is short and looks like a key
/// path with a typo (a space, a backslash, a `:`, an accented letter, a stray `/` or `.`);
/// otherwise described by its length and the characters that are not allowed, so that a
/// pasted secret is never echoed (nor written to a log or a terminal's scroll-back).
fn quote(s: &str) -> String {
    let typo =
        |c: char| matches!(c, ' ' | '\\' | ':' | ',' | '~') || (!c.is_ascii() && c.is_alphabetic());
    let len = s.chars().count();
    if len <= MAX_QUOTED && s.chars().all(|c| allowed(c) || typo(c)) {
        return format!("key path `{s}`");
    }
    let mut odd: Vec<char> = Vec::new();
    for c in s.chars().filter(|c| !allowed(*c)) {
        if !odd.contains(&c) {
            odd.push(c);
        }
    }
    let mut out = format!("{DESCRIBED}{len}-character value");
    if !odd.is_empty() {
        let shown: Vec<String> = odd.iter().take(4).map(|c| format!("{c:?}")).collect();
        out.push_str(" with ");
        match shown.as_slice() {
            [one] => out.push_str(one),
            [init @ .., last] => {
                out.push_str(&init.join(", "));
                out.push_str(" and ");
                out.push_str(last);
            }
            [] => {}
        }
        if odd.len() > 4 {
            out.push_str(" (and more)");
        }
    }
    out.push_str(" (not shown: it may be a secret)");
    out
}

impl FromStr for KeyPath {
    type Err = KeyPathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(KeyPathError::Empty);
        }
        if s.len() > MAX_KEY_PATH_LEN {
            return Err(KeyPathError::TooLong(quote(s)));
        }
        for seg in s.split('/') {
            if seg.is_empty() {
                return Err(KeyPathError::EmptySegment(quote(s)));
            }
            if seg == "." || seg == ".." {
                return Err(KeyPathError::DotSegment(quote(s)));
            }
            if seg.starts_with('-') {
                return Err(KeyPathError::LeadingDash(quote(s)));
            }
            if let Some(ch) = seg.chars().find(|c| !allowed(*c)) {
                return Err(KeyPathError::BadChar { path: quote(s), ch });
            }
        }
        Ok(KeyPath(s.to_owned()))
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPath({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for ok in [
            "a",
            "tessera/auth/token_secret",
            "app/db.prod",
            "x-1/_y/z.z",
        ] {
            assert_eq!(KeyPath::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_bad_paths() {
        assert_eq!(KeyPath::new(""), Err(KeyPathError::Empty));
        assert!(matches!(
            KeyPath::new("/a"),
            Err(KeyPathError::EmptySegment(_))
        ));
        assert!(matches!(
            KeyPath::new("a/"),
            Err(KeyPathError::EmptySegment(_))
        ));
        assert!(matches!(
            KeyPath::new("a//b"),
            Err(KeyPathError::EmptySegment(_))
        ));
        assert!(matches!(
            KeyPath::new("a/../b"),
            Err(KeyPathError::DotSegment(_))
        ));
        assert!(matches!(
            KeyPath::new("."),
            Err(KeyPathError::DotSegment(_))
        ));
        assert!(matches!(
            KeyPath::new("-rf"),
            Err(KeyPathError::LeadingDash(_))
        ));
        assert!(matches!(
            KeyPath::new("a/-b"),
            Err(KeyPathError::LeadingDash(_))
        ));
        assert!(matches!(
            KeyPath::new("a b"),
            Err(KeyPathError::BadChar { ch: ' ', .. })
        ));
        assert!(matches!(
            KeyPath::new("a\\b"),
            Err(KeyPathError::BadChar { .. })
        ));
        assert!(matches!(
            KeyPath::new("é"),
            Err(KeyPathError::BadChar { .. })
        ));
        assert!(matches!(
            KeyPath::new(&"a".repeat(MAX_KEY_PATH_LEN + 1)),
            Err(KeyPathError::TooLong(_))
        ));
    }

    #[test]
    fn a_secret_pasted_as_a_key_path_is_never_echoed() {
        // A 44-character base64 value, as `openssl rand -base64 32` prints.
        let secret = "q3Zx+8kP0vT2yLr9mN4bW7cJ1hF6sD5aE0gU2iO8=ABC";
        let secret = &secret[..44];
        for input in [
            secret.to_owned(),
            format!("app/{secret}"),
            format!("{secret} "),
            "hunter2!".repeat(100),
            format!("-{secret}"),
            format!("/{}", "x".repeat(100)),
        ] {
            let err = KeyPath::new(&input).unwrap_err();
            let msg = err.to_string();
            assert!(!msg.contains(&input[1..input.len().min(20)]), "{msg}");
            assert!(msg.contains("-character value"), "{msg}");
            assert!(msg.contains("not shown"), "{msg}");
        }
        assert_eq!(
            KeyPath::new(secret).unwrap_err().to_string(),
            "a 44-character value with '+' and '=' (not shown: it may be a secret) is not a key \
             path; key paths are `/`-separated names of `[A-Za-z0-9._-]`"
        );
    }

    #[test]
    fn a_short_key_path_with_a_typo_is_quoted() {
        assert_eq!(
            KeyPath::new("app/my key").unwrap_err().to_string(),
            "key path `app/my key` contains the character ' '; segments may only use letters, \
             digits, `.`, `_` and `-`"
        );
        assert_eq!(
            KeyPath::new("/app/db").unwrap_err().to_string(),
            "key path `/app/db` starts or ends with `/` or has an empty segment; write it as `a/b/c`"
        );
        assert!(
            KeyPath::new("app\\db")
                .unwrap_err()
                .to_string()
                .contains("`app\\db`")
        );
        assert!(
            KeyPath::new("a/../b")
                .unwrap_err()
                .to_string()
                .contains("`a/../b`")
        );
    }

    #[test]
    fn prefix_is_segment_wise() {
        let p = KeyPath::new("app").unwrap();
        assert!(KeyPath::new("app/db").unwrap().starts_with(&p));
        assert!(KeyPath::new("app").unwrap().starts_with(&p));
        assert!(!KeyPath::new("apple").unwrap().starts_with(&p));
    }
}
