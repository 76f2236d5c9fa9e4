//! bcrypt password hashes that htpasswd-compatible servers accept.

use secrecy::{ExposeSecret, SecretString};

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
    #[error("the stored password hash is not a bcrypt hash ($2a$, $2b$ or $2y$)")]
    BadHash,
    #[error("hashing failed: {0}")]
    Hash(String),
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
/// Accepts `$2a$`, `$2b$` and `$2y$` hashes (htpasswd writes `$2y$`). An empty password or one
/// longer than [`MAX_PASSWORD_LEN`] bytes never verifies (`Ok(false)`), so two passwords that
/// share their first 72 bytes cannot both be accepted; the hash is still checked for
/// well-formedness first, so a broken configuration is reported whatever the password.
/// The comparison of the computed and stored hash is constant-time (bcrypt uses `subtle`).
pub fn verify(password: &SecretString, hash: &SecretString) -> Result<bool, PasswordError> {
    let hash = hash.expose_secret();
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
