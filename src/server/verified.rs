//! Tokens this server has already verified, by their exact text.
//!
//! A client presents the same token on request after request. Verifying it again means three
//! base64 decodings, two JSON parses and an HMAC; the outcome cannot differ, because the
//! signing keys are fixed for the life of the server and the claims are the token's own
//! bytes. So a token that passed [`crate::token::verify`] is kept here with its claims, and
//! the next time the same text arrives only what depends on the time (`exp`, `nbf`, `iat`) is
//! checked again; the revocation check is never skipped.
//!
//! Only tokens that verified are kept (whoever fills the table must hold a valid token), and
//! at most [`MAX_TOKENS`] of them: past that the table is emptied and refilled.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::token::Claims;

/// Most tokens kept (their text is at most 8 KiB; a real one is a few hundred bytes).
const MAX_TOKENS: usize = 1024;

#[derive(Debug, Default)]
pub(crate) struct Verified {
    tokens: RwLock<HashMap<Box<str>, Arc<Claims>>>,
}

impl Verified {
    /// The claims of `token` if this exact text verified before.
    pub(crate) fn get(&self, token: &str) -> Option<Arc<Claims>> {
        let tokens = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        tokens.get(token).cloned()
    }

    /// Keeps `claims`, which [`crate::token::verify`] returned for `token`.
    pub(crate) fn insert(&self, token: &str, claims: Arc<Claims>) {
        let mut tokens = self.tokens.write().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= MAX_TOKENS {
            tokens.clear();
        }
        tokens.insert(token.into(), claims);
    }
}
