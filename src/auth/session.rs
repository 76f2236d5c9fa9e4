//! Browser sessions (contract section 9): a user signs in with its password once
//! ([`Auth::login`]) and gets a session secret (the cookie's value), accepted wherever a token
//! is, with the user's **current** scopes.
//!
//! - The secret is 256 random bits; the store keeps only its SHA-256 ([`session_id`]), so a
//!   copy of the store signs nobody in.
//! - The CSRF token is derived from the secret ([`csrf_token`]): it is nothing without the
//!   cookie, and needs no column.
//! - A session lives in the store, so it survives a restart and "sign out everywhere"
//!   ([`Auth::end_sessions`]) ends it on every server sharing the store.
//! - On every use the user must still be configured, and gets its scopes of now: a session
//!   never outlives the user's removal from the configuration, nor carries scopes the user
//!   lost.
//! - At most [`MAX_SESSIONS_PER_SUBJECT`] live sessions per user: signing in again past that
//!   ends the oldest (the store does it with the insert).

use std::time::Duration;

use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};

use super::{Auth, AuthError, Method, Principal, digest};
use crate::store::SessionRecord;

/// Most live sessions one user holds; a new one past that ends the oldest.
pub const MAX_SESSIONS_PER_SUBJECT: usize = 20;
/// A session's last-seen time and address are written at most this often.
pub const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// Bytes of randomness in a session secret.
const SECRET_BYTES: usize = 32;

/// The store id of a session secret: lowercase hex SHA-256.
pub fn session_id(secret: &str) -> String {
    hex::encode(digest(secret.as_bytes()))
}

/// The CSRF token of a session secret: base64url of SHA-256 over a label and the secret. It
/// reveals nothing of the secret, and anyone holding the cookie can ask for it
/// (`GET /auth/session`), which a page of another origin cannot.
pub fn csrf_token(secret: &str) -> String {
    use base64::Engine;
    let mut input = b"tessera csrf token\0".to_vec();
    input.extend_from_slice(secret.as_bytes());
    let out = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest(&input));
    zeroize::Zeroize::zeroize(&mut input);
    out
}

/// Whether `sent` is the CSRF token of `secret` (constant time).
pub fn csrf_matches(secret: &str, sent: &str) -> bool {
    let want = digest(csrf_token(secret).as_bytes());
    subtle::ConstantTimeEq::ct_eq(&want[..], &digest(sent.as_bytes())[..]).into()
}

/// A session just opened: the secret (for the cookie, once) and its record.
pub struct NewSession {
    pub secret: SecretString,
    pub record: SessionRecord,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("subject", &self.record.subject)
            .finish_non_exhaustive()
    }
}

/// A session presented and accepted: the principal (the user with its current scopes) and
/// the record.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub record: SessionRecord,
}

impl Auth {
    /// Opens a session for `who` (a user that just logged in with its password), used from
    /// `address`, lasting `auth.session_expiry`.
    pub async fn open_session(
        &self,
        who: &Principal,
        address: &str,
    ) -> Result<NewSession, AuthError> {
        if who.method != Method::Password {
            return Err(AuthError::Internal(
                "a session is opened only by a password login".to_owned(),
            ));
        }
        let secret = crate::keyring::random_secret(SECRET_BYTES)
            .map_err(|e| AuthError::Unavailable(format!("cannot open a session: {e}")))?;
        let now = Timestamp::now();
        let lasts = jiff::SignedDuration::try_from(self.settings.session_expiry)
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        let expires_at = now
            .checked_add(lasts)
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        let record = SessionRecord {
            id: session_id(secret.expose_secret()),
            subject: who.subject.clone(),
            created_at: now,
            expires_at,
            last_seen_at: now,
            address: address.to_owned(),
        };
        let stored = record.clone();
        self.with_store(move |s| s.session_create(&stored, MAX_SESSIONS_PER_SUBJECT))
            .await?;
        Ok(NewSession { secret, record })
    }

    /// The session of `secret` (a cookie's value) used from `address`: recorded, not
    /// expired, and its user still configured; the principal has the user's scopes of now.
    /// Its last-seen time and address are written at most every [`TOUCH_EVERY`].
    pub async fn session(&self, secret: &str, address: &str) -> Result<Session, AuthError> {
        let ended = || {
            AuthError::Invalid(
                "the session has ended or expired; sign in again (POST /auth/session)".to_owned(),
            )
        };
        let id = session_id(secret);
        let now = Timestamp::now();
        // A read on the store's read connections, as the revocation check of a token.
        let record = self
            .store
            .session_get(&id, now)
            .map_err(AuthError::StoreUnavailable)?
            .ok_or_else(ended)?;
        let Some(scopes) = self.user_scopes(&record.subject) else {
            tracing::info!(
                target: "tessera::audit",
                principal = ?record.subject,
                "session refused: its user is no longer configured"
            );
            return Err(ended());
        };
        let stale = now.duration_since(record.last_seen_at).unsigned_abs() >= TOUCH_EVERY;
        if stale || record.address != address {
            let (id, address) = (id.clone(), address.to_owned());
            if let Err(e) = self
                .with_store(move |s| s.session_touch(&id, now, &address))
                .await
            {
                tracing::warn!(error = %e, "cannot record when a session was last used");
            }
        }
        Ok(Session {
            principal: Principal {
                subject: record.subject.clone(),
                scopes,
                method: Method::Session,
                token: None,
                key: None,
            },
            record,
        })
    }

    /// Ends the session with store id `id`; true when it was recorded.
    pub async fn end_session(&self, id: &str) -> Result<bool, AuthError> {
        let id = id.to_owned();
        self.with_store(move |s| s.session_delete(&id)).await
    }

    /// Ends every session of `subject` ("sign out everywhere"); how many there were.
    pub async fn end_sessions(&self, subject: &str) -> Result<usize, AuthError> {
        let subject = subject.to_owned();
        self.with_store(move |s| s.session_delete_subject(&subject))
            .await
    }

    /// The live sessions of `subject`, newest first.
    pub async fn sessions(&self, subject: &str) -> Result<Vec<SessionRecord>, AuthError> {
        let subject = subject.to_owned();
        self.with_store(move |s| s.session_list(&subject, Timestamp::now()))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_csrf_tokens_are_derived_and_distinct() {
        let a = session_id("secret-a");
        assert_eq!(a.len(), 64);
        assert_ne!(a, session_id("secret-b"));
        let t = csrf_token("secret-a");
        assert!(csrf_matches("secret-a", &t));
        assert!(!csrf_matches("secret-b", &t));
        assert!(!csrf_matches("secret-a", ""));
        assert!(!t.contains("secret"));
    }
}
