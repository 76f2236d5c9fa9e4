//! The `/auth/*` API: password login, token verification, refresh and revocation, and an
//! admin API for tokens. Each handler reads the request, calls the core (`crate::auth`), and
//! writes the answer; errors are mapped in [`super::error`].

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{Caller, ClientAddr, JsonBody, Password, PathParam};
use super::middleware::AuditSlot;
use super::state::ServerState;
use crate::auth::{
    AudienceRule, AuthError, Credential, Expiry, IssueRequest, Origin, Principal, Purpose,
    VerifiedToken, access,
};
use crate::duration::HumanDuration;
use crate::scope::ScopeSet;
use crate::store::TokenState;
use crate::token::{Claims, Minted};

type AppState = State<Arc<ServerState>>;

// ---- helpers -------------------------------------------------------------------------------

fn rfc3339(secs: i64) -> Option<String> {
    Timestamp::from_second(secs).ok().map(|t| t.to_string())
}

fn scopes_of(claims: &Claims) -> Vec<String> {
    claims.scope.to_strings()
}

/// A JSON response that carries a token, or describes one.
fn token_response(status: StatusCode, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// The body that hands out a new token: the token and what it is.
fn minted_body(minted: &Minted) -> Value {
    let c = &minted.claims;
    json!({
        "token": minted.token.expose_secret(),
        "jti": c.jti,
        "subject": c.sub,
        "scopes": scopes_of(c),
        "issued_at": rfc3339(c.iat),
        "expires_at": c.exp.and_then(rfc3339),
    })
}

/// The audience rule of the API: anything but the registry service's.
fn api_audience(state: &ServerState) -> AudienceRule<'_> {
    AudienceRule::Api {
        registry_service: state.registry.as_ref().map(|r| r.service.as_str()),
    }
}

/// Authenticates the caller's credential for the API, the one dispatch of every way in: a
/// token (see `crate::auth::authenticate`; the subject is recorded as the request's
/// principal once the token is identified) or an API key (see `crate::auth::keys`; the key's
/// name and id are recorded, and its rate-limit headers set).
pub(crate) async fn authenticate(
    state: &ServerState,
    caller: &Caller,
    audit: &AuditSlot,
    purpose: Purpose,
) -> Result<Principal, ApiError> {
    // A browser session (accepted, CSRF included, by `super::session::layer`) stands for a
    // credential when none was sent.
    if matches!(caller.credential, Ok(None))
        && let Some(session) = audit.session()
    {
        return Ok(session.principal);
    }
    match caller.required()? {
        Credential::Jwt(raw) => {
            let token = state
                .auth
                .identify(raw.expose_secret(), api_audience(state), None)?;
            audit.set_principal(&token.claims().sub);
            Ok(state.auth.admit(token, purpose).await?)
        }
        Credential::ApiKey(key) => {
            super::keys::key_principal(state, key.expose_secret(), caller, Some(audit)).await
        }
    }
}

/// The token a principal authenticated with: a request that acts on the presented token
/// (refresh, revoke itself) needs one, not a session or an API key.
fn token_of(who: &Principal) -> Result<&Arc<VerifiedToken>, ApiError> {
    who.token.as_ref().ok_or_else(|| {
        if who.key.is_some() {
            return ApiError::bad_request(
                "an API key cannot be refreshed or exchanged: use the key itself, or rotate it with `POST /auth/keys/{id}/rotate`",
            );
        }
        ApiError::bad_request(
            "this request acts on the token presented, so it needs `Authorization: Bearer TOKEN`, not a session; end a session with `DELETE /auth/session`",
        )
    })
}

/// Any authenticated caller of the API (a token or a session); with `auth.enabled = false`
/// (loopback only), a request without credentials is let through with every scope.
pub(crate) async fn authenticate_any(
    state: &ServerState,
    caller: &Caller,
    audit: &AuditSlot,
) -> Result<Principal, ApiError> {
    if matches!(caller.credential, Ok(None))
        && audit.session().is_none()
        && let Some(anonymous) = state.auth.anonymous()
    {
        audit.set_principal(&anonymous.subject);
        return Ok(anonymous);
    }
    authenticate(state, caller, audit, Purpose::Use).await
}

// ---- handlers ------------------------------------------------------------------------------

/// `GET /health`: `{"status":"ok"}`, or, when the token store cannot answer (PostgreSQL
/// lost), still 200 with `{"status":"degraded","store":"why"}`: the process is up and answers
/// 503 `STORE_UNAVAILABLE` for what it cannot decide, and recovers by itself. Asked inline:
/// engines answer it without a round trip.
pub(crate) async fn health(State(state): AppState) -> Json<Value> {
    match state.auth.store().health() {
        Ok(()) => Json(json!({"status": "ok"})),
        Err(e) => Json(json!({"status": "degraded", "store": e.reason()})),
    }
}

#[derive(Deserialize)]
pub(crate) struct LoginBody {
    pub(crate) username: String,
    pub(crate) password: Password,
    /// Scopes asked for (optional): the token carries those the user has.
    #[serde(default)]
    scopes: ScopesField,
}

/// A password login of `/auth/login` and `/auth/session`: the user and its effective scopes,
/// recorded as the request's principal; refused like wrong credentials when password login
/// is off.
pub(crate) async fn password_login(
    state: &ServerState,
    ip: std::net::IpAddr,
    audit: &AuditSlot,
    username: &str,
    password: secrecy::SecretString,
) -> Result<Principal, ApiError> {
    if state.auth.password_login().is_none() {
        return Err(ApiError {
            message: "password login is not enabled on this server (no `auth.username` and no `[[auth.users]]`)"
                .to_owned(),
            ..ApiError::invalid_credentials()
        });
    }
    let who = state.auth.login(ip, username, password).await?;
    audit.set_principal(&who.subject);
    Ok(who)
}

/// `POST /auth/login`.
pub(crate) async fn login(
    State(state): AppState,
    ClientAddr(ip): ClientAddr,
    audit: AuditSlot,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response, ApiError> {
    let who = password_login(&state, ip, &audit, &body.username, body.password.0).await?;
    // Asked-for scopes: the token carries what the user has of them; none is 403.
    let scopes = match scope_list(body.scopes, None)? {
        None => who.scopes.clone(),
        Some(asked) => {
            let granted = who.scopes.intersect(&asked);
            if granted.is_empty()
                && let Some(first) = asked.iter().next()
            {
                return Err(ApiError::forbidden(first.to_string()));
            }
            granted
        }
    };
    let minted = state
        .auth
        .issue(IssueRequest {
            subject: &who.subject,
            scopes: &scopes,
            audience: None,
            origin: Origin::Granted {
                expiry: Expiry::Default,
                single_use: false,
            },
            now: Timestamp::now(),
        })
        .await?;
    Ok(token_response(
        StatusCode::OK,
        json!({
            "token": minted.token.expose_secret(),
            "expires_at": minted.claims.exp.and_then(rfc3339),
            "scopes": scopes_of(&minted.claims),
        }),
    ))
}

/// The body of `GET /auth/verify`, serialized straight from the claims (no intermediate
/// `serde_json::Value` map). Fields in alphabetical order: the bytes `json!` gave.
#[derive(serde::Serialize)]
struct VerifyBody<'a> {
    expires_at: Option<String>,
    issued_at: Option<String>,
    jti: &'a str,
    scopes: Vec<String>,
    subject: &'a str,
    valid: bool,
}

/// `GET /auth/verify`. Takes the [`Caller`] (read from the request's parts) rather than a
/// `HeaderMap`, which axum would clone.
pub(crate) async fn verify(
    State(state): AppState,
    audit: AuditSlot,
    caller: Caller,
) -> Result<Response, ApiError> {
    let who = authenticate(&state, &caller, &audit, Purpose::Use).await?;
    if let Some(presented) = &who.key {
        return Ok(super::keys::verify_body(presented));
    }
    // The body depends on the token's claims alone: made once per token and kept with it.
    let body = token_of(&who)?.rendered(|c| {
        let body = VerifyBody {
            expires_at: c.exp.and_then(rfc3339),
            issued_at: rfc3339(c.iat),
            jti: &c.jti,
            scopes: scopes_of(c),
            subject: &c.sub,
            valid: true,
        };
        // Serialising strings and numbers cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    });
    let body = Bytes::from_owner(body);
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            ),
        ],
        body,
    )
        .into_response())
}

/// `POST /auth/refresh`: a token derived from the presented one, with its subject, scopes and
/// audience, and the configured expiry cut to the parent's (see `crate::auth::issue`).
pub(crate) async fn refresh(
    State(state): AppState,
    audit: AuditSlot,
    caller: Caller,
) -> Result<Response, ApiError> {
    let who = authenticate(&state, &caller, &audit, Purpose::Derive).await?;
    let c = token_of(&who)?.claims();
    let minted = state
        .auth
        .issue(IssueRequest {
            subject: &c.sub,
            scopes: &c.scope,
            audience: c.aud.as_deref(),
            origin: Origin::OnRequest { parent: Some(c) },
            now: Timestamp::now(),
        })
        .await?;
    Ok(token_response(StatusCode::OK, minted_body(&minted)))
}

/// `DELETE /auth/token`: revokes the presented token.
pub(crate) async fn revoke_self(
    State(state): AppState,
    audit: AuditSlot,
    caller: Caller,
) -> Result<Response, ApiError> {
    let who = authenticate(&state, &caller, &audit, Purpose::Use).await?;
    if let Some(presented) = &who.key {
        return super::keys::revoke_presented(&state, presented, &audit).await;
    }
    let jti = token_of(&who)?.claims().jti.clone();
    let id = jti.clone();
    state
        .auth
        .with_store(move |s| s.revoke(&id, Timestamp::now()))
        .await?;
    Ok(token_response(
        StatusCode::OK,
        json!({"revoked": true, "jti": jti}),
    ))
}

/// `GET /auth/tokens`: every token with `admin:tokens:read`, else the caller's own (see
/// `crate::auth::access`).
pub(crate) async fn list_tokens(
    State(state): AppState,
    audit: AuditSlot,
    caller: Caller,
) -> Result<Response, ApiError> {
    let who = authenticate_any(&state, &caller, &audit).await?;
    let mut records = state.auth.with_store(|s| s.list(Timestamp::now())).await?;
    records.retain(|r| access::may_read(&who, &r.subject));
    Ok(token_response(StatusCode::OK, json!({"tokens": records})))
}

/// The scopes of a request body (`None` when none were given), shorthands bound to `repo`.
pub(crate) fn scope_list(
    field: ScopesField,
    repo: Option<&str>,
) -> Result<Option<ScopeSet>, ApiError> {
    let list = match field {
        ScopesField::None => return Ok(None),
        ScopesField::Text(s) => s,
        ScopesField::List(v) => v.join(","),
    };
    if list.trim().is_empty() {
        return Ok(None);
    }
    ScopeSet::parse_list(&list, repo.unwrap_or("*"))
        .map(Some)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Scopes in a request body: the CLI's comma-separated string or an array of strings.
#[derive(Deserialize, Default)]
#[serde(untagged)]
pub(crate) enum ScopesField {
    #[default]
    None,
    Text(String),
    List(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    /// The owner; the caller itself when absent.
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    scopes: ScopesField,
    #[serde(default)]
    repo: Option<String>,
    #[serde(default)]
    expiry: Option<String>,
    #[serde(default)]
    single_use: bool,
    #[serde(default)]
    audience: Option<String>,
}

/// `POST /auth/tokens`: mints a token, with at most the caller's own scopes, for the caller
/// itself (anyone may), or for anyone with `admin:tokens:write` (see `crate::auth::access`).
/// A token minted by a caller without `admin:tokens:write` is recorded as asked for by its
/// holder: under the caller's token when it came with one (it never outlives it and is
/// revoked with it), and within the limit of tokens a subject may hold.
pub(crate) async fn create_token(
    State(state): AppState,
    audit: AuditSlot,
    caller: Caller,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    let caller = authenticate_any(&state, &caller, &audit).await?;
    let subject = body.subject.unwrap_or_else(|| caller.subject.clone());
    access::require_write(&caller, &subject)?;
    let scopes = match scope_list(body.scopes, body.repo.as_deref())? {
        Some(s) => s,
        None => ScopeSet::parse_list("", "*").map_err(|e| ApiError::bad_request(e.to_string()))?,
    };
    access::require_within(&caller, &scopes)?;
    let expiry = match body.expiry.as_deref() {
        Some(e) => Expiry::Asked(
            HumanDuration::parse(e).map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
        None => Expiry::Default,
    };
    let origin = if access::may_write_all(&caller) {
        Origin::Granted {
            expiry,
            single_use: body.single_use,
        }
    } else {
        Origin::SelfService {
            parent: caller.token.as_ref().map(|t| t.claims()),
            expiry,
            single_use: body.single_use,
        }
    };
    let minted = state
        .auth
        .issue(IssueRequest {
            subject: &subject,
            scopes: &scopes,
            audience: body.audience.as_deref(),
            origin,
            now: Timestamp::now(),
        })
        .await?;
    audit.set_target(&format!(
        "minted token {} for `{}` with scopes `{}`",
        minted.claims.jti, minted.claims.sub, minted.claims.scope
    ));
    let mut created = minted_body(&minted);
    created["single_use"] = Value::from(body.single_use);
    Ok(token_response(StatusCode::CREATED, created))
}

/// `DELETE /auth/tokens/{jti}`: any token with `admin:tokens:write`, else one of the
/// caller's own (403 for any other id, known or not, so ids of others are not confirmed).
pub(crate) async fn revoke_token(
    State(state): AppState,
    audit: AuditSlot,
    caller: Caller,
    PathParam(jti): PathParam<String>,
) -> Result<Response, ApiError> {
    let caller = authenticate_any(&state, &caller, &audit).await?;
    let everyone = access::may_write_all(&caller);
    if jti.is_empty()
        || jti.len() > 128
        || !jti
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::bad_request(
            "that is not a token id; take the id from `GET /auth/tokens`",
        ));
    }
    if !everyone {
        let id = jti.clone();
        let owner = state
            .auth
            .with_store(move |s| {
                Ok(s.list(Timestamp::now())?
                    .into_iter()
                    .find(|r| r.jti == id)
                    .map(|r| r.subject))
            })
            .await?;
        // Unknown ids are refused like others' ids: a non-admin learns nothing of them.
        access::require_write(&caller, owner.as_deref().unwrap_or(""))?;
        if owner.is_none() {
            return Err(AuthError::Forbidden {
                required: "admin:tokens:write".to_owned(),
            }
            .into());
        }
    }
    audit.set_target(&format!("revoked token {jti}"));
    let id = jti.clone();
    // An id the store has never heard of (a typo) is refused rather than recorded as revoked.
    let before = state
        .auth
        .with_store(move |s| {
            let before = s.token_state(&id)?;
            if before != TokenState::Unknown {
                s.revoke(&id, Timestamp::now())?;
            }
            Ok(before)
        })
        .await?;
    if before == TokenState::Unknown {
        return Err(ApiError::no_such(format!(
            "no token with id `{jti}` in the token store; `GET /auth/tokens` lists the ids"
        )));
    }
    Ok(token_response(
        StatusCode::OK,
        json!({
            "revoked": true,
            "jti": jti,
            "already_revoked": before == TokenState::Revoked,
        }),
    ))
}

/// Any other path.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// A known path with another method.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
