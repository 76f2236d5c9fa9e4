//! Password hashes: argon2id (what tessera makes by default) and bcrypt (what
//! htpasswd-compatible servers accept). Verification picks the algorithm from the stored
//! hash's prefix, so hashes of either kind keep working.

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use secrecy::{ExposeSecret, SecretString};

/// The least argon2id memory cost tessera makes or accepts, in KiB (OWASP's minimum).
pub const ARGON2_MIN_M_KIB: u32 = 19_456;
/// The least argon2id number of passes.
pub const ARGON2_MIN_T: u32 = 2;
/// The least argon2id parallelism.
pub const ARGON2_MIN_P: u32 = 1;

/// What a stored hash is, with the parameters that set its cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    /// `$argon2id$v=19$m=..,t=..,p=..$`: memory in KiB, passes, lanes.
    Argon2id { m_kib: u32, t: u32, p: u32 },
    /// `$2a$`, `$2b$` or `$2y$` with this cost.
    Bcrypt { cost: u32 },
}

/// Default bcrypt cost.
pub const DEFAULT_COST: u32 = 12;
/// Lowest cost bcrypt itself accepts, for reading hashes made elsewhere; tessera makes and
/// accepts nothing below [`MIN_STORED_COST`].
pub const MIN_COST: u32 = 4;
/// Highest cost accepted.
pub const MAX_COST: u32 = 31;
/// Lowest cost tessera accepts: `auth password hash` refuses to make a cheaper hash, and the
/// server refuses to start with one as `[auth] password_hash`.
pub const MIN_STORED_COST: u32 = 10;
/// bcrypt's input limit; longer passwords are refused, never truncated.
pub const MAX_PASSWORD_LEN: usize = 72;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error(
        "the password is {0} bytes; bcrypt uses at most {MAX_PASSWORD_LEN}, so choose a shorter one"
    )]
    TooLong(usize),
    #[error("the password is empty")]
    Empty,
    #[error(
        "bcrypt cost {0} is out of range; use {MIN_STORED_COST} to {MAX_COST} (each step doubles the work; a hash below cost {MIN_STORED_COST} is too cheap, i.e. too easy to brute-force, and the server refuses it)"
    )]
    Cost(u32),
    #[error(
        "the stored password hash is not an argon2id hash ($argon2id$v=19$...) or a bcrypt hash ($2a$, $2b$ or $2y$)"
    )]
    BadHash,
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// Hashes `password` with argon2id at tessera's parameters (m=19456 KiB, t=2, p=1) and a
/// random salt, as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
pub fn hash_argon2id(password: &SecretString) -> Result<SecretString, PasswordError> {
    hash_argon2id_with(password, ARGON2_MIN_M_KIB, ARGON2_MIN_T, ARGON2_MIN_P)
}

/// Hashes `password` with argon2id at the given parameters (for the dummy hash of the
/// server, which must cost what the stored hash costs).
fn hash_argon2id_with(
    password: &SecretString,
    m_kib: u32,
    t: u32,
    p: u32,
) -> Result<SecretString, PasswordError> {
    let bytes = password.expose_secret().as_bytes();
    if bytes.is_empty() {
        return Err(PasswordError::Empty);
    }
    let params = Params::new(m_kib, t, p, None).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(bytes)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(SecretString::from(hash.to_string()))
}

/// A new hash of `password` of the same kind and cost as `kind` (argon2id with the same
/// parameters, or bcrypt with the same cost).
pub fn hash_like(password: &SecretString, kind: HashKind) -> Result<SecretString, PasswordError> {
    match kind {
        HashKind::Argon2id { m_kib, t, p } => hash_argon2id_with(password, m_kib, t, p),
        HashKind::Bcrypt { cost } => hash(password, cost),
    }
}

/// Hashes `password` with bcrypt (`$2y$` prefix, as htpasswd writes).
///
/// The length is checked here (1 to [`MAX_PASSWORD_LEN`] bytes) before bcrypt sees the
/// password, so nothing is ever truncated. (bcrypt's own `non_truncating_*` functions refuse
/// exactly 72 bytes too, because of the terminating NUL; all 72 bytes of such a password are
/// still used, so 72 is accepted here.)
pub fn hash(password: &SecretString, cost: u32) -> Result<SecretString, PasswordError> {
    let bytes = password.expose_secret().as_bytes();
    check_length(bytes)?;
    if !(MIN_COST..=MAX_COST).contains(&cost) {
        return Err(PasswordError::Cost(cost));
    }
    let parts =
        bcrypt::hash_with_result(bytes, cost).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(SecretString::from(
        parts.format_for_version(bcrypt::Version::TwoY),
    ))
}

/// Checks a cost asked for by a user: [`MIN_STORED_COST`]..=[`MAX_COST`], what the server
/// accepts. ([`hash`] itself also takes bcrypt's cheaper costs, for tests and for reading
/// hashes made elsewhere.)
pub fn check_cost(cost: u32) -> Result<(), PasswordError> {
    if (MIN_STORED_COST..=MAX_COST).contains(&cost) {
        Ok(())
    } else {
        Err(PasswordError::Cost(cost))
    }
}

/// The server's verdict on the cost of the stored hash: `Err` with the sentence to show when
/// it is below [`MIN_STORED_COST`].
pub fn check_stored_cost(cost: u32) -> Result<(), String> {
    if cost >= MIN_STORED_COST {
        return Ok(());
    }
    Err(format!(
        "has bcrypt cost {cost}; the server refuses a cost below {MIN_STORED_COST}, because such a hash is too cheap, i.e. too easy to brute-force"
    ))
}

/// What the stored `hash` is: argon2id (with its parameters) or bcrypt (with its cost); a
/// malformed hash, or another algorithm, is [`PasswordError::BadHash`]. Never quotes the hash.
pub fn hash_kind(hash: &SecretString) -> Result<HashKind, PasswordError> {
    if hash.expose_secret().starts_with("$argon2id$") {
        let parsed = parse_argon2id(hash.expose_secret())?;
        let params = Params::try_from(&parsed).map_err(|_| PasswordError::BadHash)?;
        return Ok(HashKind::Argon2id {
            m_kib: params.m_cost(),
            t: params.t_cost(),
            p: params.p_cost(),
        });
    }
    hash_cost(hash).map(|cost| HashKind::Bcrypt { cost })
}

/// The server's verdict on the cost of the stored hash: `Err` with the sentence to show when
/// it is below tessera's floor (bcrypt cost [`MIN_STORED_COST`]; argon2id m=19456 KiB, t=2,
/// p=1).
pub fn check_stored(kind: HashKind) -> Result<(), String> {
    match kind {
        HashKind::Bcrypt { cost } => check_stored_cost(cost),
        HashKind::Argon2id { m_kib, t, p } => {
            if m_kib >= ARGON2_MIN_M_KIB && t >= ARGON2_MIN_T && p >= ARGON2_MIN_P {
                return Ok(());
            }
            Err(format!(
                "has argon2id parameters m={m_kib}, t={t}, p={p}; the server refuses less than m={ARGON2_MIN_M_KIB}, t={ARGON2_MIN_T}, p={ARGON2_MIN_P}, because such a hash is too cheap, i.e. too easy to brute-force"
            ))
        }
    }
}

/// A `$argon2id$` PHC string of version 19 with a salt and an output, or `BadHash`.
fn parse_argon2id(hash: &str) -> Result<PasswordHash, PasswordError> {
    let parsed = PasswordHash::new(hash).map_err(|_| PasswordError::BadHash)?;
    let argon2id_v19 = parsed.algorithm.as_str() == "argon2id"
        && parsed.version == Some(u32::from(Version::V0x13));
    if !argon2id_v19 || parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(PasswordError::BadHash);
    }
    Params::try_from(&parsed).map_err(|_| PasswordError::BadHash)?;
    Ok(parsed)
}

fn check_length(bytes: &[u8]) -> Result<(), PasswordError> {
    match bytes.len() {
        0 => Err(PasswordError::Empty),
        n if n > MAX_PASSWORD_LEN => Err(PasswordError::TooLong(n)),
        _ => Ok(()),
    }
}

/// The cost of a well-formed bcrypt hash (`$2a$`, `$2b$` or `$2y$`, two cost digits in
/// [`MIN_COST`]..=[`MAX_COST`], 53 characters of bcrypt's base64); anything else is
/// [`PasswordError::BadHash`]. Never quotes the hash.
pub fn hash_cost(hash: &SecretString) -> Result<u32, PasswordError> {
    let hash = hash.expose_secret().as_bytes();
    if hash.len() != 60 || !matches!(&hash[..4], b"$2a$" | b"$2b$" | b"$2y$") || hash[6] != b'$' {
        return Err(PasswordError::BadHash);
    }
    let cost = match (hash[4], hash[5]) {
        (a @ b'0'..=b'9', b @ b'0'..=b'9') => u32::from(a - b'0') * 10 + u32::from(b - b'0'),
        _ => return Err(PasswordError::BadHash),
    };
    let body_ok = hash[7..]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'/'));
    if !body_ok || !(MIN_COST..=MAX_COST).contains(&cost) {
        return Err(PasswordError::BadHash);
    }
    Ok(cost)
}

/// Checks `password` against a stored hash; malformed hashes fail closed (`Err`), a wrong
/// password is `Ok(false)`.
///
/// The stored hash's prefix picks the algorithm: `$argon2id$` is checked with argon2id at the
/// parameters the hash names (an empty password never verifies, after the same work), and
/// everything else must be bcrypt.
///
/// For bcrypt: accepts `$2a$`, `$2b$` and `$2y$` hashes (htpasswd writes `$2y$`). An empty password or one
/// longer than [`MAX_PASSWORD_LEN`] bytes never verifies (`Ok(false)`), so two passwords that
/// share their first 72 bytes cannot both be accepted; the hash is still checked for
/// well-formedness first, so a broken configuration is reported whatever the password.
/// The comparison of the computed and stored hash is constant-time (bcrypt uses `subtle`).
pub fn verify(password: &SecretString, hash: &SecretString) -> Result<bool, PasswordError> {
    let hash = hash.expose_secret();
    if hash.starts_with("$argon2id$") {
        return verify_argon2id(password, hash);
    }
    let prefix_ok = ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p));
    if !prefix_ok || hash.len() != 60 {
        return Err(PasswordError::BadHash);
    }
    let bytes = password.expose_secret().as_bytes();
    if check_length(bytes).is_err() {
        // Still spend the time of a real check, so length does not show in the timing.
        let _ = bcrypt::verify(b"x", hash);
        return Ok(false);
    }
    bcrypt::verify(bytes, hash).map_err(|_| PasswordError::BadHash)
}

fn verify_argon2id(password: &SecretString, hash: &str) -> Result<bool, PasswordError> {
    let parsed = parse_argon2id(hash)?;
    let bytes = password.expose_secret().as_bytes();
    // An empty password never verifies; "x" spends the same time.
    let tried: &[u8] = if bytes.is_empty() { b"x" } else { bytes };
    // The algorithm, version and parameters are taken from the stored hash.
    match Argon2::default().verify_password(tried, &parsed) {
        Ok(()) => Ok(!bytes.is_empty()),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(_) => Err(PasswordError::BadHash),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn hashes_are_2y_and_verify() {
        let h = hash(&secret("correct horse"), 4).unwrap();
        assert!(
            h.expose_secret().starts_with("$2y$04$"),
            "{}",
            h.expose_secret()
        );
        assert_eq!(h.expose_secret().len(), 60);
        assert!(verify(&secret("correct horse"), &h).unwrap());
        assert!(!verify(&secret("correct horsf"), &h).unwrap());
        assert!(!verify(&secret(""), &h).unwrap());
    }

    #[test]
    fn argon2id_hashes_verify_and_carry_the_floor_parameters() {
        let h = hash_argon2id(&secret("correct horse")).unwrap();
        let text = h.expose_secret();
        assert!(
            text.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{text}"
        );
        assert_eq!(
            hash_kind(&h).unwrap(),
            HashKind::Argon2id {
                m_kib: 19456,
                t: 2,
                p: 1
            }
        );
        assert!(check_stored(hash_kind(&h).unwrap()).is_ok());
        assert!(verify(&secret("correct horse"), &h).unwrap());
        assert!(!verify(&secret("correct horsf"), &h).unwrap());
        assert!(!verify(&secret(""), &h).unwrap());
        // No 72-byte limit: the whole password counts.
        let long = "a".repeat(200);
        let h = hash_argon2id(&secret(&long)).unwrap();
        assert!(verify(&secret(&long), &h).unwrap());
        assert!(!verify(&secret(&long[..72]), &h).unwrap());
        assert!(matches!(
            hash_argon2id(&secret("")),
            Err(PasswordError::Empty)
        ));
    }

    #[test]
    fn the_dummy_hash_has_the_kind_and_parameters_of_the_stored_one() {
        let pw = secret("pw");
        for kind in [
            HashKind::Bcrypt { cost: 5 },
            HashKind::Argon2id {
                m_kib: 19456,
                t: 3,
                p: 2,
            },
        ] {
            let h = hash_like(&pw, kind).unwrap();
            assert_eq!(hash_kind(&h).unwrap(), kind);
            assert!(verify(&pw, &h).unwrap());
        }
    }

    #[test]
    fn argon2id_below_the_floor_is_refused_by_the_server_check() {
        for (m_kib, t, p) in [(19455, 2, 1), (19456, 1, 1), (4096, 3, 1)] {
            let kind = HashKind::Argon2id { m_kib, t, p };
            let e = check_stored(kind).unwrap_err();
            assert!(
                e.contains(&format!("m={m_kib}, t={t}, p={p}"))
                    && e.contains("less than m=19456, t=2, p=1"),
                "{e}"
            );
            assert!(e.contains("too easy to brute-force"), "{e}");
        }
        for (m_kib, t, p) in [(19456, 2, 1), (65536, 3, 4)] {
            assert!(check_stored(HashKind::Argon2id { m_kib, t, p }).is_ok());
        }
        assert!(check_stored(HashKind::Bcrypt { cost: 9 }).is_err());
        assert!(check_stored(HashKind::Bcrypt { cost: 10 }).is_ok());
    }

    #[test]
    fn other_argon2_variants_and_broken_phc_strings_fail_closed() {
        let good = hash_argon2id(&secret("pw")).unwrap();
        let g = good.expose_secret();
        let argon2i = g.replacen("$argon2id$", "$argon2i$", 1);
        let argon2d = g.replacen("$argon2id$", "$argon2d$", 1);
        let v16 = g.replacen("v=19", "v=16", 1);
        // Without `v=` a PHC string means version 16 (0x10), which tessera does not read.
        let no_version = g.replacen("v=19$", "", 1);
        let no_output = g[..g.rfind('$').unwrap()].to_owned();
        let bad_b64 = format!("{}!", &g[..g.len() - 1]);
        for bad in [
            argon2i.as_str(),
            argon2d.as_str(),
            v16.as_str(),
            no_version.as_str(),
            no_output.as_str(),
            bad_b64.as_str(),
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
        ] {
            assert!(
                matches!(
                    verify(&secret("pw"), &secret(bad)),
                    Err(PasswordError::BadHash)
                ),
                "{bad}"
            );
            assert!(hash_kind(&secret(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn all_htpasswd_prefixes_verify() {
        let h = hash(&secret("pw"), 4).unwrap();
        let body = &h.expose_secret()[3..];
        for prefix in ["$2a", "$2b", "$2y"] {
            assert!(
                verify(&secret("pw"), &secret(&format!("{prefix}{body}"))).unwrap(),
                "{prefix}"
            );
        }
        // `$2x$` is the buggy-implementation marker: refused.
        assert!(matches!(
            verify(&secret("pw"), &secret(&format!("$2x{body}"))),
            Err(PasswordError::BadHash)
        ));
    }

    #[test]
    fn malformed_hashes_fail_closed() {
        let good = hash(&secret("pw"), 4).unwrap();
        let g = good.expose_secret();
        let too_costly = format!("$2y$99{}", &g[6..]);
        let bad_b64 = format!("{}!{}", &g[..30], &g[31..]);
        for bad in [
            "",
            "pw",
            "{SHA}abc",
            "$apr1$abc$def",
            &g[..59],
            &format!("{g}x"),
            &too_costly,
            &bad_b64,
            "$2y$04$ééééééééééééééééééééééééééééééééééééééééééééééééééééé",
        ] {
            assert!(
                matches!(
                    verify(&secret("pw"), &secret(bad)),
                    Err(PasswordError::BadHash)
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn hash_cost_reads_only_well_formed_hashes() {
        let good = hash(&secret("pw"), 5).unwrap();
        assert_eq!(hash_cost(&good).unwrap(), 5);
        let g = good.expose_secret();
        for bad in [
            String::new(),
            "{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=".to_owned(),
            format!("$2x{}", &g[3..]),
            format!("$2y$4${}", &g[7..]),
            format!("$2y$1a{}", &g[6..]),
            format!("$2y$03{}", &g[6..]),
            g[..59].to_owned(),
            format!("{}!", &g[..59]),
        ] {
            assert!(hash_cost(&secret(&bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_costs_are_what_the_server_accepts() {
        for ok in [MIN_STORED_COST, DEFAULT_COST, MAX_COST] {
            assert!(check_cost(ok).is_ok(), "{ok}");
            assert!(check_stored_cost(ok).is_ok(), "{ok}");
        }
        for bad in [0, MIN_COST, MIN_STORED_COST - 1, MAX_COST + 1] {
            let e = check_cost(bad).unwrap_err().to_string();
            assert!(e.contains("use 10 to 31"), "{e}");
            assert!(e.contains("too cheap, i.e. too easy to brute-force"), "{e}");
        }
        let e = check_stored_cost(4).unwrap_err();
        assert!(e.contains("cost 4") && e.contains("below 10"), "{e}");
        assert!(e.contains("too easy to brute-force"), "{e}");
    }

    #[test]
    fn lengths_and_costs() {
        assert!(matches!(hash(&secret(""), 4), Err(PasswordError::Empty)));
        let max = "a".repeat(MAX_PASSWORD_LEN);
        let h = hash(&secret(&max), 4).unwrap();
        assert!(verify(&secret(&max), &h).unwrap());
        // A longer password sharing the first 72 bytes must not verify.
        let longer = format!("{max}b");
        assert!(matches!(
            hash(&secret(&longer), 4),
            Err(PasswordError::TooLong(73))
        ));
        assert!(!verify(&secret(&longer), &h).unwrap());
        // The 72nd byte counts.
        let other = format!("{}b", "a".repeat(MAX_PASSWORD_LEN - 1));
        assert!(!verify(&secret(&other), &h).unwrap());
        assert!(matches!(
            hash(&secret("pw"), 3),
            Err(PasswordError::Cost(3))
        ));
        assert!(matches!(
            hash(&secret("pw"), 32),
            Err(PasswordError::Cost(32))
        ));
        let err = hash(&secret(&longer), 4).unwrap_err().to_string();
        assert!(!err.contains("aaaa"), "no password in errors: {err}");
    }
}
