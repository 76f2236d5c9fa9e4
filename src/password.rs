//! bcrypt password hashes that htpasswd-compatible servers accept.

use secrecy::SecretString;

/// Default bcrypt cost.
pub const DEFAULT_COST: u32 = 12;
/// Lowest cost bcrypt accepts (use 10 or more for real passwords).
pub const MIN_COST: u32 = 4;
/// Highest cost accepted.
pub const MAX_COST: u32 = 31;
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
    #[error("bcrypt cost {0} is out of range; use {MIN_COST} to {MAX_COST}")]
    Cost(u32),
    #[error("the stored password hash is not a bcrypt hash ($2a$, $2b$ or $2y$)")]
    BadHash,
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// Hashes `password` with bcrypt (`$2y$` prefix, as htpasswd writes).
pub fn hash(password: &SecretString, cost: u32) -> Result<SecretString, PasswordError> {
    let _ = (password, cost);
    todo!()
}

/// Checks `password` against a stored hash; malformed hashes fail closed (`Err`), a wrong
/// password is `Ok(false)`.
pub fn verify(password: &SecretString, hash: &SecretString) -> Result<bool, PasswordError> {
    let _ = (password, hash);
    todo!()
}
