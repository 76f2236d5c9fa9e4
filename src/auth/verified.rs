//! Tokens this server has already verified, by their exact text.
//!
//! A client presents the same token on request after request. Verifying it again means three
//! base64 decodings, two JSON parses and an HMAC; the outcome cannot differ, because the
//! signing keys are fixed for the life of the server and the claims are the token's own
//! bytes. So a token that passed [`crate::token::verify`] is kept here with its claims, and
//! the next time the same text arrives only what depends on the time (`exp`, `nbf`, `iat`) is
//! checked again; the revocation check is never skipped. A rendering of the claims that
//! depends on them alone (the HTTP adapter keeps the body of `GET /auth/verify` there) is
//! kept with them once made.
//!
//! Invariant: what is kept depends on the token's text alone. Revocation, of the token or of
//! a token it was derived from, is not (the claims do not name a parent; the store links it
//! and answers for the whole line), and neither is whether it is single-use: both are asked
//! every time. So a derived token found here is refused as soon as its parent is revoked.
//!
//! The table is keyed by the SHA-256 digest of the token's text, so it never holds a token
//! (a bearer secret) itself. Only tokens that verified are kept (whoever fills the table must
//! hold a valid token), and at most [`MAX_TOKENS`] of them: past that the table is emptied
//! and refilled.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use crate::token::Claims;

/// Most tokens kept.
const MAX_TOKENS: usize = 1024;

/// The claims of a token that verified, and what was derived from them alone.
#[derive(Debug)]
pub struct VerifiedToken {
    claims: Claims,
    rendered: OnceLock<Arc<[u8]>>,
}

impl VerifiedToken {
    pub(crate) fn new(claims: Claims) -> Self {
        VerifiedToken {
            claims,
            rendered: OnceLock::new(),
        }
    }

    /// The claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// A rendering of the claims (bytes that depend on them alone), made by `make` the first
    /// time and kept.
    pub fn rendered(&self, make: impl FnOnce(&Claims) -> Vec<u8>) -> Arc<[u8]> {
        Arc::clone(self.rendered.get_or_init(|| make(&self.claims).into()))
    }
}

impl std::ops::Deref for VerifiedToken {
    type Target = Claims;
    fn deref(&self) -> &Claims {
        &self.claims
    }
}

#[derive(Debug, Default)]
pub(crate) struct Verified {
    tokens: RwLock<HashMap<[u8; 32], Arc<VerifiedToken>>>,
}

impl Verified {
    /// The verified token whose text is exactly `token`, if it verified before.
    pub(crate) fn get(&self, token: &str) -> Option<Arc<VerifiedToken>> {
        let key = super::digest(token.as_bytes());
        let tokens = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        tokens.get(&key).cloned()
    }

    /// Keeps `verified`, which [`crate::token::verify`] returned for `token`.
    pub(crate) fn insert(&self, token: &str, verified: Arc<VerifiedToken>) {
        let key = super::digest(token.as_bytes());
        let mut tokens = self.tokens.write().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= MAX_TOKENS {
            tokens.clear();
        }
        tokens.insert(key, verified);
    }
}
