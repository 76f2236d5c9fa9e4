//! The `/auth/*` API: password login, token verification, refresh and revocation, and an
//! admin API for tokens. Each handler reads the request, calls the core (`crate::auth`), and
//! writes the answer; errors are mapped in [`super::error`].

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{JsonBody, Password, PathParam, Peer, bearer};
use super::middleware::AuditSlot;
use super::state::ServerState;
use crate::auth::{AudienceRule, Expiry, IssueRequest, Origin, Principal, Purpose, VerifiedToken};
use crate::duration::HumanDuration;
use crate::scope::{Action, Scope, ScopeSet};
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

/// Authenticates the bearer token for the API (see `crate::auth::authenticate`), recording
/// the subject as the request's principal once the token is identified.
async fn authenticate(
    state: &ServerState,
    headers: &HeaderMap,
    audit: &AuditSlot,
    purpose: Purpose,
) -> Result<Principal, ApiError> {
    let raw = bearer(headers)?;
    let token = state.auth.identify(raw, api_audience(state), None)?;
    audit.set_principal(&token.claims().sub);
    Ok(state.auth.admit(token, purpose).await?)
}

/// The token a principal authenticated with (every principal from [`authenticate`] has one).
fn token_of(who: &Principal) -> Result<&Arc<VerifiedToken>, ApiError> {
    who.token.as_ref().ok_or_else(|| {
        tracing::error!("an authenticated principal without its token");
        ApiError::internal()
    })
}

/// Authenticates and requires `admin:tokens:ACTION`. With `auth.enabled = false` (loopback
/// only), a request without credentials is let through with every scope.
async fn admin(
    state: &ServerState,
    headers: &HeaderMap,
    audit: &AuditSlot,
    action: Action,
) -> Result<Principal, ApiError> {
    if !headers.contains_key(header::AUTHORIZATION)
        && let Some(anonymous) = state.auth.anonymous()
    {
        audit.set_principal(&anonymous.subject);
        return Ok(anonymous);
    }
    let who = authenticate(state, headers, audit, Purpose::Use).await?;
    who.require(&Scope::AdminResource {
        resource: "tokens".to_owned(),
        action,
    })?;
    Ok(who)
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
    username: String,
    password: Password,
}

/// `POST /auth/login`.
pub(crate) async fn login(
    State(state): AppState,
    Peer(ip): Peer,
    audit: AuditSlot,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response, ApiError> {
    if state.auth.password_login().is_none() {
        return Err(ApiError {
            message: "password login is not enabled on this server (`auth.username` is not set)"
                .to_owned(),
            ..ApiError::invalid_credentials()
        });
    }
    let who = state
        .auth
        .login(ip, &body.username, body.password.0)
        .await?;
    audit.set_principal(&who.subject);
    let minted = state
        .auth
        .issue(IssueRequest {
            subject: &who.subject,
            scopes: &who.scopes,
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

/// `GET /auth/verify`. Takes the request rather than a `HeaderMap`, which axum would clone.
pub(crate) async fn verify(
    State(state): AppState,
    audit: AuditSlot,
    req: Request,
) -> Result<Response, ApiError> {
    let who = authenticate(&state, req.headers(), &audit, Purpose::Use).await?;
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
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let who = authenticate(&state, &headers, &audit, Purpose::Derive).await?;
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
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let who = authenticate(&state, &headers, &audit, Purpose::Use).await?;
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

/// `GET /auth/tokens` (`admin:tokens:read`).
pub(crate) async fn list_tokens(
    State(state): AppState,
    audit: AuditSlot,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin(&state, &headers, &audit, Action::Read).await?;
    let records = state.auth.with_store(|s| s.list(Timestamp::now())).await?;
    Ok(token_response(StatusCode::OK, json!({"tokens": records})))
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
    subject: String,
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

/// `POST /auth/tokens` (`admin:tokens:write`): mints a token for anyone, with at most the
/// caller's own scopes.
pub(crate) async fn create_token(
    State(state): AppState,
    audit: AuditSlot,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    let caller = admin(&state, &headers, &audit, Action::Write).await?;
    let list = match body.scopes {
        ScopesField::None => String::new(),
        ScopesField::Text(s) => s,
        ScopesField::List(v) => v.join(","),
    };
    let scopes = ScopeSet::parse_list(&list, body.repo.as_deref().unwrap_or("*"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    for wanted in scopes.iter() {
        caller.require(wanted)?;
    }
    let expiry = match body.expiry.as_deref() {
        Some(e) => Expiry::Asked(
            HumanDuration::parse(e).map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
        None => Expiry::Default,
    };
    let minted = state
        .auth
        .issue(IssueRequest {
            subject: &body.subject,
            scopes: &scopes,
            audience: body.audience.as_deref(),
            origin: Origin::Granted {
                expiry,
                single_use: body.single_use,
            },
            now: Timestamp::now(),
        })
        .await?;
    let mut created = minted_body(&minted);
    created["single_use"] = Value::from(body.single_use);
    Ok(token_response(StatusCode::CREATED, created))
}

/// `DELETE /auth/tokens/{jti}` (`admin:tokens:write`).
pub(crate) async fn revoke_token(
    State(state): AppState,
    audit: AuditSlot,
    headers: HeaderMap,
    PathParam(jti): PathParam<String>,
) -> Result<Response, ApiError> {
    admin(&state, &headers, &audit, Action::Write).await?;
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
    audit.set_target(&jti);
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
