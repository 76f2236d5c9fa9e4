//! Authenticating a bearer token, once for every entry point (the HTTP API and the registry
//! token flow): the signature and claims (or the table of tokens already verified, with the
//! time checked again), the audience rule of the entry point, the subject when a username
//! came with the token, then revocation and single use, asked of the store every time.
//! [`check_offline`] is the same check where no server runs (the CLI).

use std::sync::Arc;

use jiff::Timestamp;

use super::verified::VerifiedToken;
use super::{Auth, AuthError, Method, Principal};
use crate::store::{Standing, StoreError, TokenStore};
use crate::token::{self, Claims, KeyRing, VerifyError, VerifyOptions};

/// Which audiences an entry point accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudienceRule<'a> {
    /// The HTTP API: any audience except the registry service's (`registry_service` when the
    /// registry token service is on): a token for the registry (a refresh token from
    /// `/token`, or one minted with `--audience SERVICE`) is for the registry flow only.
    Api { registry_service: Option<&'a str> },
    /// A token used as the password of a registry login: no audience, or the service.
    RegistryCredential { service: &'a str },
    /// A registry refresh token: the audience must be the service.
    RegistryRefresh { service: &'a str },
}

impl AudienceRule<'_> {
    /// `Ok` when a token with audience `aud` is accepted, else why not.
    fn check(&self, aud: Option<&str>) -> Result<(), AuthError> {
        let refused = |why: &str| Err(AuthError::Invalid(why.to_owned()));
        match (*self, aud) {
            (
                AudienceRule::Api {
                    registry_service: Some(service),
                },
                Some(aud),
            ) if aud == service => {
                refused("the token was issued for the registry service, not for this API")
            }
            (AudienceRule::Api { .. }, _) => Ok(()),
            (AudienceRule::RegistryCredential { .. }, None) => Ok(()),
            (AudienceRule::RegistryCredential { service }, Some(aud)) if aud == service => Ok(()),
            (AudienceRule::RegistryCredential { .. }, Some(_)) => {
                refused("the token was minted for another audience")
            }
            (AudienceRule::RegistryRefresh { service }, Some(aud)) if aud == service => Ok(()),
            (AudienceRule::RegistryRefresh { .. }, _) => {
                refused("the refresh token was not issued for this service")
            }
        }
    }
}

/// What an authenticated token is about to be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A request made with the token (a single-use token is used up).
    Use,
    /// Deriving a token from it (a refresh, a registry offline token): a single-use token is
    /// refused before it is used up.
    Derive,
}

impl Auth {
    /// Authenticates a bearer token: [`Auth::identify`], then [`Auth::admit`].
    pub async fn authenticate(
        &self,
        raw: &str,
        rule: AudienceRule<'_>,
        username: Option<&str>,
        purpose: Purpose,
    ) -> Result<Principal, AuthError> {
        let token = self.identify(raw, rule, username)?;
        self.admit(token, purpose).await
    }

    /// The first half of authentication, which depends on the token alone: signature and
    /// claims (a token verified before is found in the table and only its times are checked
    /// again), the audience `rule`, and, when a `username` came with the token, that it is the
    /// token's subject. The store is not asked.
    pub fn identify(
        &self,
        raw: &str,
        rule: AudienceRule<'_>,
        username: Option<&str>,
    ) -> Result<Arc<VerifiedToken>, AuthError> {
        let opts = VerifyOptions {
            issuer: &self.settings.issuer,
            audience: None,
            now: Timestamp::now(),
        };
        let verified = match self.verified.get(raw) {
            Some(known) => {
                token::check_times(known.claims(), opts.now)?;
                known
            }
            None => {
                let claims = token::verify(&self.keys, raw, &opts)?;
                let verified = Arc::new(VerifiedToken::new(claims));
                self.verified.insert(raw, Arc::clone(&verified));
                verified
            }
        };
        let claims = verified.claims();
        rule.check(claims.aud.as_deref())?;
        if let Some(user) = username
            && user != claims.sub
        {
            return Err(AuthError::SubjectMismatch {
                subject: claims.sub.clone(),
            });
        }
        Ok(verified)
    }

    /// The second half: whether the identified token may be used now. A single-use token is
    /// refused for [`Purpose::Derive`]; then the store is asked whether the token (or one it
    /// was derived from) is revoked, and a single-use token is marked used (refused when it
    /// was used before). A store that cannot answer is an error (fail closed).
    pub async fn admit(
        &self,
        token: Arc<VerifiedToken>,
        purpose: Purpose,
    ) -> Result<Principal, AuthError> {
        let claims = token.claims();
        let iat = Timestamp::from_second(claims.iat).unwrap_or(Timestamp::MIN);
        // A read on the store's own read connections, which never wait for a writer, and it
        // takes microseconds: inline, since a hop to the blocking pool costs more.
        let standing = self
            .store
            .check(&claims.jti, &claims.sub, iat)
            .map_err(AuthError::StoreUnavailable)?;
        match standing {
            Standing::Valid => {}
            Standing::Revoked => return Err(AuthError::Revoked),
            // Refused before it is used up, so the token still works once afterwards.
            Standing::SingleUse if purpose == Purpose::Derive => return Err(AuthError::SingleUse),
            Standing::SingleUse => {
                let jti = claims.jti.clone();
                let first = self
                    .with_store(move |store| store.mark_used(&jti, Timestamp::now()))
                    .await?;
                if !first {
                    return Err(AuthError::AlreadyUsed);
                }
            }
        }
        Ok(Principal {
            subject: claims.sub.clone(),
            scopes: claims.scope.clone(),
            method: Method::Token,
            token: Some(token),
            key: None,
        })
    }
}

/// Why [`check_offline`] did not accept a token.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The token was refused (the reason is the token's).
    #[error(transparent)]
    Refused(#[from] VerifyError),
    /// The token store cannot say whether it was revoked (not a property of the token).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a token where no server runs (the CLI's `auth token verify`): signature and claims
/// under `opts` (with the audience asked for, if any), then, when `open_store` gives a store
/// (it is called only for a token that verified), whether the token or one it was derived
/// from has been revoked. Nothing is recorded: a single-use token is not used up.
pub fn check_offline(
    keys: &KeyRing,
    raw: &str,
    opts: &VerifyOptions<'_>,
    open_store: impl FnOnce() -> Result<Option<Arc<dyn TokenStore>>, StoreError>,
) -> Result<Claims, OfflineError> {
    let claims = token::verify(keys, raw, opts)?;
    if let Some(store) = open_store()? {
        let iat = Timestamp::from_second(claims.iat).unwrap_or(Timestamp::MIN);
        if store.is_revoked(&claims.jti, &claims.sub, iat)? {
            return Err(VerifyError::Revoked.into());
        }
    }
    Ok(claims)
}
