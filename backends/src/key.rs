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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyPathError {
    /// The input is empty.
    #[error("key path is empty; use names like `app/db` or `tessera/auth/token_secret`")]
    Empty,
    /// Longer than [`MAX_KEY_PATH_LEN`] (the input, shortened).
    #[error("key path `{0}` is longer than {MAX_KEY_PATH_LEN} bytes")]
    TooLong(String),
    /// A leading or trailing `/`, or `//`.
    #[error("key path `{0}` starts or ends with `/` or has an empty segment; write it as `a/b/c`")]
    EmptySegment(String),
    /// A `.` or `..` segment.
    #[error("key path `{0}` contains a `.` or `..` segment; write the full path without them")]
    DotSegment(String),
    /// A segment starting with `-` (it would read as an option to a tool).
    #[error("key path `{0}` has a segment starting with `-`; rename the segment")]
    LeadingDash(String),
    /// A character outside `[A-Za-z0-9._-]`.
    #[error(
        "key path `{path}` contains the character {ch:?}; segments may only use letters, digits, `.`, `_` and `-`"
    )]
    BadChar {
        /// The input (shortened).
        path: String,
        /// The first character not allowed.
        ch: char,
    },
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

fn quote(s: &str) -> String {
    // Keep error messages one line and bounded, whatever the input.
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
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
            if let Some(ch) = seg
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            {
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
    fn prefix_is_segment_wise() {
        let p = KeyPath::new("app").unwrap();
        assert!(KeyPath::new("app/db").unwrap().starts_with(&p));
        assert!(KeyPath::new("app").unwrap().starts_with(&p));
        assert!(!KeyPath::new("apple").unwrap().starts_with(&p));
    }
}
