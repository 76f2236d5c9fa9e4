//! The text of an API key: `PREFIX_` + 30 base62 characters of key material + a 6-character
//! base62 CRC-32 of those 30 (contract section 9). The prefix (`auth.key_prefix`, default
//! `tsk`) and the checksum make a leaked key recognisable by secret scanners, and let a
//! server refuse a mistyped or made-up key before it asks the store anything.
//!
//! Key material comes from the operating system's random number generator, by rejection
//! sampling (bytes below 248 = 4 x 62, so no character is more likely than another). A key
//! is a [`secrecy::SecretString`] from the moment it exists; what the store keeps is its
//! SHA-256 ([`KeyText::digest`]), never the key.

use secrecy::{ExposeSecret, SecretString};

/// The default `auth.key_prefix`.
pub const DEFAULT_PREFIX: &str = "tsk";
/// Characters of key material.
pub const BODY_LEN: usize = 30;
/// Characters of the checksum.
pub const CHECK_LEN: usize = 6;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a text is not an API key. Never carries the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// Not `PREFIX_` + 36 base62 characters.
    #[error(
        "the API key is malformed: a key is `{0}_` followed by 36 letters and digits; copy it again from where it was created"
    )]
    Shape(&'static str),
    /// The shape is right, the checksum is not: a typo, or a made-up key.
    #[error(
        "the API key's checksum does not match (a character was changed or lost); copy the key again from where it was created"
    )]
    Checksum,
    /// The random number generator failed (creating a key only).
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

/// A key prefix as configured: 1 to 16 ASCII lower-case letters and digits, starting with a
/// letter. `Err` says what is wrong.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok = (1..=16).contains(&prefix.len())
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a key prefix: use 1 to 16 lower-case letters and digits, starting with a letter, e.g. \"tsk\"",
            crate::term::escaped_head(prefix, 20)
        ))
    }
}

/// CRC-32 (IEEE 802.3, the polynomial of zip and PNG), bit by bit: 36 bytes need no table.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// `value` in base62, exactly [`CHECK_LEN`] characters (62^6 > 2^32), most significant first.
fn base62_6(mut value: u32) -> [u8; CHECK_LEN] {
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    out
}

fn is_base62(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// A syntactically valid API key (prefix, shape and checksum checked), held as a secret.
pub struct KeyText(SecretString);

impl std::fmt::Debug for KeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyText(..)")
    }
}

impl KeyText {
    /// A new key with `prefix`, from the OS random number generator.
    pub fn generate(prefix: &str) -> Result<KeyText, KeyFormatError> {
        let mut body = zeroize::Zeroizing::new([0u8; BODY_LEN]);
        let mut filled = 0;
        let mut pool = zeroize::Zeroizing::new([0u8; 64]);
        while filled < BODY_LEN {
            getrandom::fill(&mut pool[..]).map_err(|e| KeyFormatError::Random(e.to_string()))?;
            for &b in pool.iter() {
                // 248 = 4 * 62: bytes at or above it are dropped, so every character is
                // equally likely.
                if b < 248 && filled < BODY_LEN {
                    body[filled] = ALPHABET[usize::from(b % 62)];
                    filled += 1;
                }
            }
        }
        let check = base62_6(crc32(&body[..]));
        let mut text = String::with_capacity(prefix.len() + 1 + BODY_LEN + CHECK_LEN);
        text.push_str(prefix);
        text.push('_');
        // Both are ASCII from ALPHABET.
        text.extend(body.iter().map(|&b| char::from(b)));
        text.extend(check.iter().map(|&b| char::from(b)));
        Ok(KeyText(SecretString::from(text)))
    }

    /// Checks `text` against the key format with `prefix`, without any lookup: the prefix,
    /// the length, the alphabet and the checksum.
    pub fn parse(text: &str, prefix: &str) -> Result<KeyText, KeyFormatError> {
        check_shape(text, prefix)?;
        Ok(KeyText(SecretString::from(text.to_owned())))
    }

    /// The key, for the one place it is shown or sent.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The SHA-256 of the key: what the store and the caches are keyed by.
    pub fn digest(&self) -> [u8; 32] {
        super::digest(self.0.expose_secret().as_bytes())
    }

    /// The key as a secret string.
    pub fn into_secret(self) -> SecretString {
        self.0
    }
}

/// `Ok` when `text` is `prefix_` + 30 base62 + the 6-character base62 CRC-32 of those 30.
pub fn check_shape(text: &str, prefix: &str) -> Result<(), KeyFormatError> {
    let shape = || KeyFormatError::Shape(shape_prefix(prefix));
    let rest = text
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .ok_or_else(shape)?;
    let bytes = rest.as_bytes();
    if bytes.len() != BODY_LEN + CHECK_LEN || !bytes.iter().all(|&b| is_base62(b)) {
        return Err(shape());
    }
    let (body, check) = bytes.split_at(BODY_LEN);
    if base62_6(crc32(body)) != check {
        return Err(KeyFormatError::Checksum);
    }
    Ok(())
}

/// Whether a credential looks like an API key rather than a JWT: no `.` (a JWT has two) and
/// a `_` after a prefix of letters and digits. Only chooses how the credential is checked.
pub fn looks_like_key(text: &str) -> bool {
    !text.contains('.')
        && text
            .split_once('_')
            .is_some_and(|(p, _)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The prefix for a message (`'static`: the error type carries no text of the caller).
fn shape_prefix(prefix: &str) -> &'static str {
    if prefix == DEFAULT_PREFIX {
        DEFAULT_PREFIX
    } else {
        "PREFIX"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_ieee_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn generated_keys_have_the_shape_and_pass_the_check() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let k = KeyText::generate("tsk").unwrap();
            let t = k.expose();
            assert!(t.starts_with("tsk_"));
            assert_eq!(t.len(), 4 + 36);
            assert!(check_shape(t, "tsk").is_ok());
            assert!(looks_like_key(t));
            assert!(seen.insert(t.to_owned()));
        }
    }

    #[test]
    fn every_single_character_change_is_caught() {
        let k = KeyText::generate("tsk").unwrap();
        let t = k.expose().as_bytes().to_vec();
        let mut caught = 0;
        for i in 4..t.len() {
            for &c in ALPHABET.iter() {
                if c == t[i] {
                    continue;
                }
                let mut m = t.clone();
                m[i] = c;
                let m = String::from_utf8(m).unwrap();
                assert_eq!(check_shape(&m, "tsk"), Err(KeyFormatError::Checksum), "{i}");
                caught += 1;
            }
        }
        assert_eq!(caught, 36 * 61);
    }

    #[test]
    fn wrong_shapes_are_refused() {
        let k = KeyText::generate("tsk").unwrap();
        let t = k.expose();
        for bad in [
            "",
            "tsk_",
            &t[..t.len() - 1],
            &format!("{t}0"),
            &t.replacen("tsk_", "tsk-", 1),
            &t.replacen("tsk_", "abc_", 1),
            &format!("{}!", &t[..t.len() - 1]),
        ] {
            assert!(
                matches!(check_shape(bad, "tsk"), Err(KeyFormatError::Shape(_))),
                "{bad}"
            );
        }
        let other = KeyText::generate("acme").unwrap();
        assert!(check_shape(other.expose(), "acme").is_ok());
        assert!(check_shape(other.expose(), "tsk").is_err());
    }

    #[test]
    fn jwts_do_not_look_like_keys() {
        assert!(!looks_like_key("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.abc"));
        assert!(!looks_like_key("plainpassword"));
        assert!(looks_like_key("tsk_abc"));
        assert!(check_prefix("tsk").is_ok());
        assert!(check_prefix("Tsk").is_err());
        assert!(check_prefix("").is_err());
        assert!(check_prefix("1a").is_err());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_text_is_checked_without_panicking(s in "\\PC{0,60}") {
            let _ = check_shape(&s, "tsk");
            let _ = looks_like_key(&s);
        }

        #[test]
        fn any_base62_text_of_the_right_length_passes_only_with_its_checksum(
            body in "[0-9A-Za-z]{30}", check in "[0-9A-Za-z]{6}"
        ) {
            let text = format!("tsk_{body}{check}");
            let right = base62_6(crc32(body.as_bytes()));
            prop_assert_eq!(check_shape(&text, "tsk").is_ok(), check.as_bytes() == right);
        }
    }
}
