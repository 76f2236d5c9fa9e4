//! Issuing tokens, once for every path: the CLI's `auth token generate`, password login, an
//! admin's `POST /auth/tokens`, `POST /auth/refresh`, and registry offline tokens.
//!
//! [`prepare`] applies the rules and mints (no store); [`record`] records the result in the
//! store; [`Auth::issue`] does both for the server.
//!
//! The rules:
//! - A token granted with an expiry asked for ([`Expiry::Asked`]) is refused when that is
//!   longer than `auth.max_token_expiry`; without one ([`Expiry::Default`]),
//!   `auth.token_expiry` applies, cut to that cap.
//! - A token asked for by its holder ([`Origin::OnRequest`]: a refresh, a registry offline
//!   token) stays inside the credential it comes from: the parent's subject, at most its
//!   scopes, `auth.token_expiry` cut to the cap and to the parent's expiry; a single-use or
//!   expired parent is refused; it is recorded with its parent (so revoking the parent revokes
//!   it) and only if the parent is not revoked and the subject holds fewer than
//!   [`MAX_LIVE_TOKENS_PER_SUBJECT`] unexpired tokens.

use std::sync::Arc;

use jiff::Timestamp;

use super::{Auth, AuthError, Settings};
use crate::duration::HumanDuration;
use crate::scope::ScopeSet;
use crate::store::{IssueError, MAX_LIVE_TOKENS_PER_SUBJECT, TokenRecord, TokenStore};
use crate::token::{self, Claims, KeyRing, MintRequest, Minted};

/// The expiry of a granted token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// `auth.token_expiry`, cut to `auth.max_token_expiry`.
    Default,
    /// This expiry; refused when longer than `auth.max_token_expiry`.
    Asked(HumanDuration),
}

/// Where the request for a token comes from.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// Granted by someone entitled to (a password login, an admin, the CLI holding the
    /// signing key).
    Granted { expiry: Expiry, single_use: bool },
    /// Asked for by its holder with a credential it already has: derived from `parent` (a
    /// token that was authenticated), or from a password login (`None`).
    OnRequest { parent: Option<&'a Claims> },
    /// Minted by a principal for itself without `admin:tokens:write` (self-service, contract
    /// section 9): the expiry and single use asked for, but, like a token on request, within
    /// `parent` (the caller's token, when it came with one: its subject, at most its scopes,
    /// never after its expiry, revoked with it) and within the limit of tokens a subject holds.
    SelfService {
        parent: Option<&'a Claims>,
        expiry: Expiry,
        single_use: bool,
    },
}

/// What to issue.
#[derive(Debug, Clone, Copy)]
pub struct IssueRequest<'a> {
    pub subject: &'a str,
    pub scopes: &'a ScopeSet,
    pub audience: Option<&'a str>,
    pub origin: Origin<'a>,
    /// The exact instant, recorded as the issue time (`iat` keeps the second): a token issued
    /// just after a `revoke --subject` in the same second is told apart from those before.
    pub now: Timestamp,
}

/// A minted token and the record to keep of it.
pub struct Issued {
    pub minted: Minted,
    pub record: TokenRecord,
    /// For a token issued on request: `Some(parent's iat)` (or `Some(None)` without a
    /// parent); it is recorded with the checks of [`TokenStore::record_checked`].
    checked: Option<Option<Timestamp>>,
}

/// Refuses `asked` when it is longer than `max` (never = no cap) from `now`.
pub fn check_cap(
    max: HumanDuration,
    asked: HumanDuration,
    now: Timestamp,
) -> Result<(), AuthError> {
    if max.is_never() {
        return Ok(());
    }
    let cap = max.after(now)?;
    let want = asked.after(now)?;
    if want.is_none() || want > cap {
        return Err(AuthError::ExpiryTooLong { asked, max });
    }
    Ok(())
}

/// Applies the rules to `req` and mints the token; nothing is recorded. A single-use parent
/// is refused by [`Auth::admit`] (for [`crate::auth::Purpose::Derive`]) and again, inside the
/// store's write transaction, by [`record`].
pub fn prepare(
    keys: &KeyRing,
    settings: &Settings,
    req: &IssueRequest<'_>,
) -> Result<Issued, AuthError> {
    let now = req.now;
    let (expiry, not_after, single_use, checked) = match req.origin {
        Origin::Granted {
            expiry: Expiry::Asked(asked),
            single_use,
        } => {
            check_cap(settings.max_token_expiry, asked, now)?;
            (asked, None, single_use, None)
        }
        Origin::Granted {
            expiry: Expiry::Default,
            single_use,
        } => {
            let not_after = token::latest_expiry(now, settings.max_token_expiry, None)?;
            (settings.token_expiry, not_after, single_use, None)
        }
        Origin::OnRequest { parent } => {
            if let Some(p) = parent {
                check_parent(p, req)?;
            }
            let not_after =
                token::latest_expiry(now, settings.max_token_expiry, parent.and_then(|p| p.exp))?;
            let parent_iat =
                parent.map(|p| Timestamp::from_second(p.iat).unwrap_or(Timestamp::MIN));
            (settings.token_expiry, not_after, false, Some(parent_iat))
        }
        Origin::SelfService {
            parent,
            expiry,
            single_use,
        } => {
            if let Some(p) = parent {
                check_parent(p, req)?;
            }
            let asked = match expiry {
                Expiry::Asked(asked) => {
                    check_cap(settings.max_token_expiry, asked, now)?;
                    asked
                }
                Expiry::Default => settings.token_expiry,
            };
            let not_after =
                token::latest_expiry(now, settings.max_token_expiry, parent.and_then(|p| p.exp))?;
            let parent_iat =
                parent.map(|p| Timestamp::from_second(p.iat).unwrap_or(Timestamp::MIN));
            (asked, not_after, single_use, Some(parent_iat))
        }
    };
    let minted = token::mint_until(
        keys,
        &MintRequest {
            issuer: &settings.issuer,
            subject: req.subject,
            scopes: req.scopes,
            expiry,
            audience: req.audience,
            now,
        },
        not_after,
    )?;
    let mut record = TokenRecord::minted(&minted.claims, now, single_use);
    if let Origin::OnRequest { parent: Some(p) }
    | Origin::SelfService {
        parent: Some(p), ..
    } = req.origin
    {
        record = record.with_parent(&p.jti);
    }
    Ok(Issued {
        minted,
        record,
        checked,
    })
}

/// A derived token keeps its parent's subject, at most its scopes, and needs a parent that has
/// not expired (single-use parents are refused by the store; see [`prepare`]).
fn check_parent(parent: &Claims, req: &IssueRequest<'_>) -> Result<(), AuthError> {
    if parent.sub != req.subject {
        return Err(AuthError::Internal(
            "a derived token was asked for another subject than its parent's".to_owned(),
        ));
    }
    if let Some(missing) = req.scopes.iter().find(|s| !parent.scope.allows(s)) {
        return Err(AuthError::Forbidden {
            required: missing.to_string(),
        });
    }
    if let Some(exp) = parent.exp
        && exp <= req.now.as_second()
    {
        return Err(AuthError::Expired {
            at: Timestamp::from_second(exp).unwrap_or(Timestamp::MIN),
            deriving: true,
        });
    }
    Ok(())
}

/// Records an issued token in `store`: as it is, or, for a token issued on request, with the
/// checks of [`TokenStore::record_checked`].
pub fn record(store: &dyn TokenStore, issued: &Issued) -> Result<(), AuthError> {
    match issued.checked {
        None => store
            .record(&issued.record)
            .map_err(AuthError::StoreUnavailable),
        Some(parent_iat) => store
            .record_checked(&issued.record, parent_iat, MAX_LIVE_TOKENS_PER_SUBJECT)
            .map_err(|e| match e {
                IssueError::Store(e) => AuthError::StoreUnavailable(e),
                IssueError::ParentRevoked => AuthError::Revoked,
                IssueError::ParentSingleUse => AuthError::SingleUse,
                IssueError::TooMany { subject, limit } => AuthError::TooMany { subject, limit },
            }),
    }
}

impl Auth {
    /// Issues a token under the rules of this module and records it in the store (a failure
    /// to record is an error: the server does not hand out tokens it cannot list or mark).
    pub async fn issue(&self, req: IssueRequest<'_>) -> Result<Minted, AuthError> {
        let issued = prepare(&self.keys, &self.settings, &req)?;
        let store = Arc::clone(&self.store);
        let issued = match tokio::task::spawn_blocking(move || {
            record(store.as_ref(), &issued).map(|()| issued)
        })
        .await
        {
            Ok(r) => r?,
            Err(e) => return Err(AuthError::TaskFailed(e.to_string())),
        };
        Ok(issued.minted)
    }
}
