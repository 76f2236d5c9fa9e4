//! Tessera tokens: HS256 JWTs with a pinned algorithm, `kid` naming the secret, and scopes.
//!
//! [`keys`] holds the signing secrets, [`claims`] what a token says, [`mint`] makes tokens and
//! [`verify`] checks them (the rules it applies are listed there).

pub mod claims;
pub mod keys;
pub mod mint;
pub mod verify;

pub use claims::Claims;
pub use keys::{KeyError, KeyRing, MIN_SECRET_LEN, SigningKey};
pub use mint::{MAX_SUBJECT_LEN, MintError, MintRequest, Minted, latest_expiry, mint, mint_until};
pub use verify::{LEEWAY_SECS, MAX_TOKEN_LEN, VerifyError, VerifyOptions, check_times, verify};

pub use crate::scope::{Action, Scope, ScopeError, ScopeSet};

#[cfg(test)]
mod tests;
