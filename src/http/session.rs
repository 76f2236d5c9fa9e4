//! Browser sessions over HTTP (contract section 9): the cookie `tessera_session`, the layer
//! that accepts it wherever a bearer token is accepted, and `/auth/session(s)`.
//!
//! - `POST /auth/session {"username","password"}` → 204 and the cookie (HttpOnly,
//!   SameSite=Strict, Path=/, Secure under TLS, Max-Age = `auth.session_expiry`); refused
//!   and rate-limited exactly as `POST /auth/login`.
//! - `GET /auth/session` → who is signed in, and the CSRF token; `DELETE /auth/session` ends
//!   it; `GET /auth/sessions` lists the caller's live sessions (never a secret);
//!   `DELETE /auth/sessions` ends them all ("sign out everywhere").
//! - A request without `Authorization` that carries the cookie is made by its session. When
//!   it changes something (POST, PUT, PATCH, DELETE) it must also carry `X-CSRF-Token` equal
//!   to the session's and an `Origin` of this server: else 403 `CSRF_REQUIRED` or
//!   `CROSS_ORIGIN`, before any handler runs. The one exception is signing in
//!   (`POST /auth/session`), which carries its own credentials.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use secrecy::ExposeSecret;
use serde_json::json;

use super::api::{LoginBody, authenticate_any};
use super::error::ApiError;
use super::extract::{Caller, ClientAddr, JsonBody};
use super::guard::Bound;
use super::middleware::AuditSlot;
use super::state::ServerState;
use crate::auth::AuthError;
use crate::auth::session::{csrf_matches, csrf_token};

type AppState = State<Arc<ServerState>>;

/// The cookie's name.
pub const COOKIE: &str = "tessera_session";
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The longest cookie value looked at (a session secret is 43 characters).
const MAX_COOKIE_LEN: usize = 128;

/// The session cookie's value in `headers`, if any (the first one, when several are sent).
pub(crate) fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_COOKIE_LEN
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn changes_something(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether the request's `Origin` is this server's own (`SCHEME://HOST`).
fn same_origin(req: &Request) -> bool {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let tls = req.extensions().get::<Bound>().is_some_and(|b| b.tls);
    let scheme = if tls { "https" } else { "http" };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    host.is_some_and(|h| origin.eq_ignore_ascii_case(&format!("{scheme}://{h}")))
}

fn peer(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "-".to_owned(), |c| c.0.ip().to_string())
}

/// The layer: a request with the session cookie and no `Authorization` header is made by the
/// session's user; a write made so needs the CSRF token and this server's `Origin`.
pub(crate) async fn layer(State(state): AppState, req: Request, next: Next) -> Response {
    if req.headers().contains_key(header::AUTHORIZATION) {
        return next.run(req).await;
    }
    let Some(secret) = cookie(req.headers()).map(str::to_owned) else {
        return next.run(req).await;
    };
    let writes = changes_something(req.method());
    if writes && req.method() == Method::POST && req.uri().path() == "/auth/session" {
        return next.run(req).await;
    }
    let session = match state.auth.session(&secret, &peer(&req)).await {
        Ok(s) => s,
        Err(AuthError::StoreUnavailable(e)) => {
            return ApiError::from(AuthError::StoreUnavailable(e)).into_response();
        }
        // An ended or expired session, or a user no longer configured: the request goes on
        // without a caller, and whatever needs one answers 401.
        Err(_) => return next.run(req).await,
    };
    if writes {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !csrf_matches(&secret, sent) {
            return csrf_required().into_response();
        }
        if !same_origin(&req) {
            return ApiError::cross_origin().into_response();
        }
    }
    if let Some(slot) = req.extensions().get::<AuditSlot>() {
        slot.set_session(session);
    }
    next.run(req).await
}

fn csrf_required() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "CSRF_REQUIRED",
        "a request made with a session cookie that changes something needs the `X-CSRF-Token` header (from `GET /auth/session`) and this server's `Origin`",
    )
}

fn not_signed_in() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "AUTH_REQUIRED",
        "not signed in: there is no live session cookie; sign in with `POST /auth/session`",
    )
}

/// `Set-Cookie` for `value` lasting `max_age` seconds (0 clears it).
fn set_cookie(value: &str, max_age: u64, tls: bool) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("tessera_session=; Max-Age=0; Path=/"))
}

fn is_tls(headers_ext: &axum::http::Extensions) -> bool {
    headers_ext.get::<Bound>().is_some_and(|b| b.tls)
}

fn rfc3339(t: Timestamp) -> String {
    t.to_string()
}

/// `POST /auth/session`: signs in with a username and password.
pub(crate) async fn sign_in(
    State(state): AppState,
    ClientAddr(ip): ClientAddr,
    audit: AuditSlot,
    req: Request,
) -> Result<Response, ApiError> {
    let tls = is_tls(req.extensions());
    let JsonBody(body) = JsonBody::<LoginBody>::from_request(req, &()).await?;
    let who =
        super::api::password_login(&state, ip, &audit, &body.username, body.password.0).await?;
    let opened = state.auth.open_session(&who, &ip.to_string()).await?;
    audit.set_target(&format!(
        "session {} opened",
        &opened.record.id[..16.min(opened.record.id.len())]
    ));
    let max_age = state.auth.settings().session_expiry.as_secs();
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(opened.secret.expose_secret(), max_age, tls),
    );
    Ok(r)
}

/// `GET /auth/session`: who is signed in, and the CSRF token.
pub(crate) async fn current(audit: AuditSlot, headers: HeaderMap) -> Result<Response, ApiError> {
    let (Some(session), Some(secret)) = (audit.session(), cookie(&headers)) else {
        return Err(not_signed_in());
    };
    let p = &session.principal;
    Ok(axum::Json(json!({
        "subject": p.subject,
        "scopes": p.scopes.to_strings(),
        "method": "session",
        "created_at": rfc3339(session.record.created_at),
        "expires_at": rfc3339(session.record.expires_at),
        "csrf_token": csrf_token(secret),
    }))
    .into_response())
}

/// `DELETE /auth/session`: ends the session of the cookie and clears the cookie.
pub(crate) async fn sign_out(
    State(state): AppState,
    audit: AuditSlot,
    req: Request,
) -> Result<Response, ApiError> {
    let Some(session) = audit.session() else {
        return Err(not_signed_in());
    };
    state.auth.end_session(&session.record.id).await?;
    audit.set_target("session ended");
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie("", 0, is_tls(req.extensions())),
    );
    Ok(r)
}

/// A session as listed: never its secret nor its full id.
fn listed(s: &crate::store::SessionRecord, current: Option<&str>) -> serde_json::Value {
    json!({
        "id": &s.id[..16.min(s.id.len())],
        "created_at": rfc3339(s.created_at),
        "last_seen_at": rfc3339(s.last_seen_at),
        "expires_at": rfc3339(s.expires_at),
        "address": s.address,
        "current": current == Some(s.id.as_str()),
    })
}

/// `GET /auth/sessions`: the caller's live sessions (with a session or a token).
pub(crate) async fn list(
    State(state): AppState,
    audit: AuditSlot,
    caller: Caller,
) -> Result<Response, ApiError> {
    let who = authenticate_any(&state, &caller, &audit).await?;
    let sessions = state.auth.sessions(&who.subject).await?;
    let current = audit.session().map(|s| s.record.id);
    let items: Vec<_> = sessions
        .iter()
        .map(|s| listed(s, current.as_deref()))
        .collect();
    Ok(axum::Json(json!({"subject": who.subject, "sessions": items})).into_response())
}

/// `DELETE /auth/sessions`: ends every session of the caller ("sign out everywhere").
pub(crate) async fn sign_out_everywhere(
    State(state): AppState,
    audit: AuditSlot,
    caller: Caller,
    parts: axum::http::request::Parts,
) -> Result<Response, ApiError> {
    let tls = is_tls(&parts.extensions);
    let who = authenticate_any(&state, &caller, &audit).await?;
    let ended = state.auth.end_sessions(&who.subject).await?;
    audit.set_target(&format!("{ended} sessions ended (sign out everywhere)"));
    let mut r = axum::Json(json!({"subject": who.subject, "ended": ended})).into_response();
    if audit.session().is_some() {
        r.headers_mut()
            .insert(header::SET_COOKIE, set_cookie("", 0, tls));
    }
    Ok(r)
}

use axum::extract::FromRequest;

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn the_cookie_is_found_among_others_and_junk_is_ignored() {
        assert_eq!(
            cookie(&with_cookie("a=1; tessera_session=abc_-9; b=2")),
            Some("abc_-9")
        );
        assert_eq!(cookie(&with_cookie("tessera_session=")), None);
        assert_eq!(cookie(&with_cookie("tessera_session=a\"b")), None);
        assert_eq!(cookie(&with_cookie("xtessera_session=abc")), None);
        let long = format!("tessera_session={}", "a".repeat(MAX_COOKIE_LEN + 1));
        assert_eq!(cookie(&with_cookie(&long)), None);
    }
}
