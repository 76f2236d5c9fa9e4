//! Who may see and manage whose credentials (contract section 9), written once for tokens
//! (`/auth/tokens`), API keys (`/auth/keys`) and sessions:
//!
//! - every authenticated principal may list, mint and revoke **its own** credentials (those
//!   whose owner is its subject);
//! - `admin:tokens:read` covers reading everyone's, `admin:tokens:write` minting for and
//!   revoking anyone's (a bare `admin` covers both);
//! - nothing minted may carry a scope its minter does not hold ([`require_within`]).

use super::{AuthError, Principal};
use crate::scope::{Action, Scope, ScopeSet};

/// `admin:tokens:ACTION`.
fn tokens_scope(action: Action) -> Scope {
    Scope::AdminResource {
        resource: "tokens".to_owned(),
        action,
    }
}

/// Whether `who` may read everyone's credentials (`admin:tokens:read`).
pub fn may_read_all(who: &Principal) -> bool {
    who.scopes.allows(&tokens_scope(Action::Read))
}

/// Whether `who` may mint for and revoke anyone's credentials (`admin:tokens:write`).
pub fn may_write_all(who: &Principal) -> bool {
    who.scopes.allows(&tokens_scope(Action::Write))
}

/// Whether `who` may see a credential owned by `owner`: its own, or anyone's with
/// `admin:tokens:read`.
pub fn may_read(who: &Principal, owner: &str) -> bool {
    who.subject == owner || may_read_all(who)
}

/// Whether `who` may mint a credential for `owner`, or revoke, disable, enable or rotate one
/// that `owner` holds: its own, or anyone's with `admin:tokens:write`.
pub fn may_write(who: &Principal, owner: &str) -> bool {
    who.subject == owner || may_write_all(who)
}

/// [`may_read`], or [`AuthError::Forbidden`] naming `admin:tokens:read`.
pub fn require_read(who: &Principal, owner: &str) -> Result<(), AuthError> {
    if may_read(who, owner) {
        Ok(())
    } else {
        Err(AuthError::Forbidden {
            required: tokens_scope(Action::Read).to_string(),
        })
    }
}

/// [`may_write`], or [`AuthError::Forbidden`] naming `admin:tokens:write`.
pub fn require_write(who: &Principal, owner: &str) -> Result<(), AuthError> {
    if may_write(who, owner) {
        Ok(())
    } else {
        Err(AuthError::Forbidden {
            required: tokens_scope(Action::Write).to_string(),
        })
    }
}

/// `Ok` when `who` holds every scope of `wanted` (what it mints can never carry more than
/// it has), else [`AuthError::Forbidden`] naming the first one missing.
pub fn require_within(who: &Principal, wanted: &ScopeSet) -> Result<(), AuthError> {
    wanted.iter().try_for_each(|s| who.require(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Method;

    fn who(subject: &str, scopes: &str) -> Principal {
        Principal {
            subject: subject.to_owned(),
            scopes: ScopeSet::parse_list(scopes, "*").unwrap(),
            method: Method::Token,
            key: None,
            token: None,
        }
    }

    #[test]
    fn own_credentials_and_admins() {
        let alice = who("alice", "pull");
        assert!(may_read(&alice, "alice") && may_write(&alice, "alice"));
        assert!(!may_read(&alice, "bob") && !may_write(&alice, "bob"));
        let reader = who("dev", "pull,admin:tokens:read");
        assert!(may_read(&reader, "bob") && !may_write(&reader, "bob"));
        let admin = who("root", "admin");
        assert!(may_read(&admin, "bob") && may_write(&admin, "bob"));
        let e = require_write(&reader, "bob").unwrap_err().to_string();
        assert!(e.contains("admin:tokens:write"), "{e}");
        assert!(require_within(&alice, &ScopeSet::parse_list("pull", "a/*").unwrap()).is_ok());
        assert!(require_within(&alice, &ScopeSet::parse_list("push", "*").unwrap()).is_err());
    }
}
