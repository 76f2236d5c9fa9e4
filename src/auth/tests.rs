//! The core against a real token store (SQLite in a temporary folder).

use std::sync::Arc;

use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::store::MemoryStore;
use crate::token::{Claims, Minted, SigningKey};

const SECRET: &str = "auth-core-test-secret-0123456789-abcdef";
const SERVICE: &str = "registry.test";

struct Fixture {
    auth: Auth,
}

fn settings(max: &str) -> Settings {
    Settings {
        issuer: "tessera".to_owned(),
        enabled: true,
        token_expiry: HumanDuration::parse("1h").unwrap(),
        max_token_expiry: HumanDuration::parse(max).unwrap(),
        session_expiry: std::time::Duration::from_secs(3600),
    }
}

fn fixture(max: &str) -> Fixture {
    let key = SigningKey::new(&SecretString::from(SECRET), "").unwrap();
    let auth = Auth::new(
        settings(max),
        KeyRing::single(key),
        Arc::new(MemoryStore::new()),
        None,
        10,
    );
    Fixture { auth }
}

fn scopes(list: &str) -> ScopeSet {
    ScopeSet::parse_list(list, "team/*").unwrap()
}

fn granted<'a>(subject: &'a str, scopes: &'a ScopeSet, single_use: bool) -> IssueRequest<'a> {
    IssueRequest {
        subject,
        scopes,
        audience: None,
        origin: Origin::Granted {
            expiry: Expiry::Default,
            single_use,
        },
        now: Timestamp::now(),
    }
}

const API: AudienceRule<'static> = AudienceRule::Api {
    registry_service: Some(SERVICE),
};

async fn use_token(auth: &Auth, minted: &Minted) -> Result<Principal, AuthError> {
    auth.authenticate(minted.token.expose_secret(), API, None, Purpose::Use)
        .await
}

#[tokio::test]
async fn an_issued_token_authenticates_until_it_is_revoked() {
    let f = fixture("0");
    let s = scopes("pull");
    let minted = f.auth.issue(granted("ci", &s, false)).await.unwrap();
    let who = use_token(&f.auth, &minted).await.unwrap();
    assert_eq!(who.subject, "ci");
    assert_eq!(who.scopes, s);
    assert_eq!(who.method, Method::Token);
    assert_eq!(who.token_id(), Some(minted.claims.jti.as_str()));
    // Presented again (now from the table of verified tokens): still accepted.
    assert!(use_token(&f.auth, &minted).await.is_ok());
    f.auth
        .store()
        .revoke(&minted.claims.jti, Timestamp::now())
        .unwrap();
    // The table of verified tokens never skips the revocation check.
    assert!(matches!(
        use_token(&f.auth, &minted).await,
        Err(AuthError::Revoked)
    ));
    assert!(matches!(
        f.auth
            .authenticate(
                minted.token.expose_secret(),
                AudienceRule::RegistryCredential { service: SERVICE },
                Some("ci"),
                Purpose::Use,
            )
            .await,
        Err(AuthError::Revoked)
    ));
}

#[tokio::test]
async fn garbage_and_foreign_tokens_are_invalid() {
    let f = fixture("0");
    let err = f
        .auth
        .authenticate("not a token", API, None, Purpose::Use)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AuthError::Invalid(m) if m == "the token is not valid: malformed"),
        "{err:?}"
    );
}

#[tokio::test]
async fn each_entry_point_has_its_audience_rule() {
    let f = fixture("0");
    let s = scopes("pull");
    let for_registry = IssueRequest {
        audience: Some(SERVICE),
        ..granted("ci", &s, false)
    };
    let registry_token = f.auth.issue(for_registry).await.unwrap();
    let plain = f.auth.issue(granted("ci", &s, false)).await.unwrap();
    let raw = |m: &Minted| m.token.expose_secret().to_owned();
    // The API refuses the registry's tokens, and takes the others.
    assert!(matches!(
        f.auth.identify(&raw(&registry_token), API, None),
        Err(AuthError::Invalid(_))
    ));
    assert!(f.auth.identify(&raw(&plain), API, None).is_ok());
    // A registry refresh token must carry the service's audience.
    let refresh = AudienceRule::RegistryRefresh { service: SERVICE };
    assert!(
        f.auth
            .identify(&raw(&registry_token), refresh, None)
            .is_ok()
    );
    assert!(matches!(
        f.auth.identify(&raw(&plain), refresh, None),
        Err(AuthError::Invalid(_))
    ));
    let other = AudienceRule::RegistryCredential { service: "other" };
    assert!(matches!(
        f.auth.identify(&raw(&registry_token), other, None),
        Err(AuthError::Invalid(_))
    ));
    // A username that is not the subject.
    let credential = AudienceRule::RegistryCredential { service: SERVICE };
    assert!(matches!(
        f.auth.identify(&raw(&plain), credential, Some("someone")),
        Err(AuthError::SubjectMismatch { subject }) if subject == "ci"
    ));
}

#[tokio::test]
async fn a_single_use_token_works_once_and_is_never_a_parent() {
    let f = fixture("0");
    let s = scopes("pull");
    let minted = f.auth.issue(granted("job", &s, true)).await.unwrap();
    let raw = minted.token.expose_secret();
    // Deriving from it is refused before it is used up...
    assert!(matches!(
        f.auth.authenticate(raw, API, None, Purpose::Derive).await,
        Err(AuthError::SingleUse)
    ));
    // ...so its one use is still there.
    assert!(use_token(&f.auth, &minted).await.is_ok());
    assert!(matches!(
        use_token(&f.auth, &minted).await,
        Err(AuthError::AlreadyUsed)
    ));
}

#[tokio::test]
async fn granted_expiries_are_capped() {
    let f = fixture("2h");
    let s = scopes("pull");
    let asked = |d: &str| IssueRequest {
        origin: Origin::Granted {
            expiry: Expiry::Asked(HumanDuration::parse(d).unwrap()),
            single_use: false,
        },
        ..granted("ci", &s, false)
    };
    assert!(matches!(
        f.auth.issue(asked("3h")).await,
        Err(AuthError::ExpiryTooLong { .. })
    ));
    // Never expiring is longer than any cap.
    assert!(matches!(
        f.auth.issue(asked("0")).await,
        Err(AuthError::ExpiryTooLong { .. })
    ));
    let ok = f.auth.issue(asked("2h")).await.unwrap();
    assert_eq!(ok.claims.exp, Some(ok.claims.iat + 7200));
    // The default (1h) is under the cap; with a cap of 30m it is cut to it.
    let f = fixture("30m");
    let cut = f.auth.issue(granted("ci", &s, false)).await.unwrap();
    assert_eq!(cut.claims.exp, Some(cut.claims.iat + 1800));
    // Recorded, so that it is listed.
    let listed = f.auth.store().list(Timestamp::now()).unwrap();
    assert!(listed.iter().any(|r| r.jti == cut.claims.jti));
}

#[tokio::test]
async fn a_derived_token_stays_inside_its_parent() {
    let f = fixture("0");
    let s = scopes("pull,push");
    let parent = f
        .auth
        .issue(IssueRequest {
            origin: Origin::Granted {
                expiry: Expiry::Asked(HumanDuration::parse("10m").unwrap()),
                single_use: false,
            },
            ..granted("ci", &s, false)
        })
        .await
        .unwrap();
    let derive = |scopes| IssueRequest {
        subject: "ci",
        scopes,
        audience: None,
        origin: Origin::OnRequest {
            parent: Some(&parent.claims),
        },
        now: Timestamp::now(),
    };
    // More than the parent holds.
    let admin = ScopeSet::parse_list("admin", "*").unwrap();
    assert!(matches!(
        f.auth.issue(derive(&admin)).await,
        Err(AuthError::Forbidden { required }) if required == "admin"
    ));
    // The configured 1h is cut to the parent's 10 minutes.
    let child = f.auth.issue(derive(&s)).await.unwrap();
    assert_eq!(child.claims.exp, parent.claims.exp);
    let record = f
        .auth
        .store()
        .list(Timestamp::now())
        .unwrap()
        .into_iter()
        .find(|r| r.jti == child.claims.jti)
        .unwrap();
    assert_eq!(record.parent.as_deref(), Some(parent.claims.jti.as_str()));
    // Revoking the parent revokes the child, and nothing more is derived from it.
    assert!(use_token(&f.auth, &child).await.is_ok());
    f.auth
        .store()
        .revoke(&parent.claims.jti, Timestamp::now())
        .unwrap();
    assert!(matches!(
        use_token(&f.auth, &child).await,
        Err(AuthError::Revoked)
    ));
    assert!(matches!(
        f.auth.issue(derive(&s)).await,
        Err(AuthError::Revoked)
    ));
}

#[tokio::test]
async fn nothing_is_derived_from_a_single_use_or_expired_parent() {
    let f = fixture("0");
    let s = scopes("pull");
    let once = f.auth.issue(granted("job", &s, true)).await.unwrap();
    fn derive<'a>(parent: &'a Claims, scopes: &'a ScopeSet) -> IssueRequest<'a> {
        IssueRequest {
            origin: Origin::OnRequest {
                parent: Some(parent),
            },
            ..granted("job", scopes, false)
        }
    }
    let from_once = derive(&once.claims, &s);
    assert!(matches!(
        f.auth.issue(from_once).await,
        Err(AuthError::SingleUse)
    ));
    let mut expired = f
        .auth
        .issue(granted("job", &s, false))
        .await
        .unwrap()
        .claims;
    expired.exp = Some(expired.iat - 1);
    assert!(matches!(
        f.auth.issue(derive(&expired, &s)).await,
        Err(AuthError::Expired { deriving: true, .. })
    ));
}

#[tokio::test]
async fn anonymous_only_when_auth_is_off() {
    let f = fixture("0");
    assert!(f.auth.anonymous().is_none());
    let mut off = settings("0");
    off.enabled = false;
    let store = MemoryStore::new();
    let key = SigningKey::new(&SecretString::from(SECRET), "").unwrap();
    let auth = Auth::new(off, KeyRing::single(key), Arc::new(store), None, 10);
    let who = auth.anonymous().unwrap();
    assert_eq!(who.method, Method::Anonymous);
    assert!(
        who.require(&Scope::parse("admin:tokens:write").unwrap())
            .is_ok()
    );
    // Without password login, every login is refused alike.
    assert!(matches!(
        auth.login(
            std::net::IpAddr::from([127, 0, 0, 1]),
            "admin",
            SecretString::from("pw")
        )
        .await,
        Err(AuthError::InvalidCredentials)
    ));
}

#[tokio::test]
async fn the_offline_check_asks_the_store_only_for_good_tokens() {
    let f = fixture("0");
    let s = scopes("pull");
    let minted = f.auth.issue(granted("ci", &s, true)).await.unwrap();
    let key = SigningKey::new(&SecretString::from(SECRET), "").unwrap();
    let keys = KeyRing::single(key);
    let opts = crate::token::VerifyOptions {
        issuer: "tessera",
        audience: None,
        now: Timestamp::now(),
    };
    let raw = minted.token.expose_secret();
    let store = Arc::clone(f.auth.store());
    let with_store = || Ok(Some(Arc::clone(&store)));
    assert_eq!(
        check_offline(&keys, raw, &opts, with_store).unwrap().jti,
        minted.claims.jti
    );
    // Not used up: the single-use token still works once on the server.
    assert!(use_token(&f.auth, &minted).await.is_ok());
    // A bad token never opens the store.
    let never = || -> Result<Option<Arc<dyn TokenStore>>, StoreError> {
        panic!("the store was opened for a bad token")
    };
    assert!(matches!(
        check_offline(&keys, "garbage", &opts, never),
        Err(OfflineError::Refused(VerifyError::Malformed(_)))
    ));
    store.revoke(&minted.claims.jti, Timestamp::now()).unwrap();
    assert!(matches!(
        check_offline(&keys, raw, &opts, with_store),
        Err(OfflineError::Refused(VerifyError::Revoked))
    ));
    assert!(check_offline(&keys, raw, &opts, || Ok(None)).is_ok());
}
