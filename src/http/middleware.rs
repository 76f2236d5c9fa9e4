//! Around every request: a request id, the request timeout, `Cache-Control: no-store`, and the
//! audit line of requests that change something (who, on what, with which outcome).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::REQUEST_TIMEOUT;
use super::error::{ApiError, ErrorCode};

const REQUEST_ID: &str = "x-request-id";

/// Per-request audit information that handlers fill in (who, and on what).
#[derive(Clone, Default)]
pub(crate) struct AuditSlot(Arc<Mutex<AuditInfo>>);

#[derive(Default, Clone)]
struct AuditInfo {
    principal: Option<String>,
    target: Option<String>,
    /// The browser session the request came with, once `super::session::layer` accepted it
    /// (contract section 9): handlers take the caller from here when no `Authorization`
    /// header was sent.
    session: Option<crate::auth::session::Session>,
}

impl AuditSlot {
    fn with<R>(&self, f: impl FnOnce(&mut AuditInfo) -> R) -> R {
        match self.0.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }
    pub(crate) fn set_principal(&self, who: &str) {
        self.with(|i| i.principal = Some(who.to_owned()));
    }
    pub(crate) fn set_target(&self, what: &str) {
        self.with(|i| i.target = Some(what.to_owned()));
    }
    pub(crate) fn set_session(&self, session: crate::auth::session::Session) {
        self.with(|i| {
            i.principal = Some(session.principal.subject.clone());
            i.session = Some(session);
        });
    }
    pub(crate) fn session(&self) -> Option<crate::auth::session::Session> {
        self.with(|i| i.session.clone())
    }
    fn get(&self) -> AuditInfo {
        self.with(|i| i.clone())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuditSlot {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<AuditSlot>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The request id of a request (a request extension set by the middleware), for log lines
/// written by handlers.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub String);

/// A request id: the client's `x-request-id` when it is short and plain, else a new one.
fn request_id(req: &Request) -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    if let Some(given) = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok())
        && !given.is_empty()
        && given.len() <= 64
        && given
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return given.to_owned();
    }
    let prefix = PREFIX.get_or_init(|| {
        let mut b = [0u8; 4];
        let _ = getrandom::fill(&mut b);
        hex::encode(b)
    });
    format!("{prefix}-{:06}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Around every request: request id, timeout, `Cache-Control: no-store`, and the audit line
/// for mutating requests. Logs method, route and outcome, never headers or bodies.
pub(crate) async fn around(mut req: Request, next: Next) -> Response {
    let id = request_id(&req);
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(no such route)".to_owned(), |p| p.as_str().to_owned());
    let slot = AuditSlot::default();
    req.extensions_mut().insert(slot.clone());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::unavailable(format!(
            "the request took longer than {} s",
            REQUEST_TIMEOUT.as_secs()
        ))
        .into_response(),
    };
    let status = response.status().as_u16();
    let code = response
        .extensions()
        .get::<ErrorCode>()
        .map_or("OK", |c| c.0);
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, v);
    }
    // `no-store` unless the handler chose otherwise (only the web UI's versioned static
    // assets, which hold no secret, do).
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let info = slot.get();
    let principal = info.principal.as_deref().unwrap_or("-");
    let target = info.target.as_deref().unwrap_or("-");
    if matches!(
        method,
        Method::POST | Method::DELETE | Method::PUT | Method::PATCH
    ) {
        tracing::info!(
            target: "tessera::audit",
            request_id = %id,
            principal = ?principal,
            method = %method,
            path = ?route,
            target = ?target,
            status,
            result = code,
            "audit"
        );
    } else {
        tracing::debug!(request_id = %id, principal = ?principal, method = %method, path = ?route, status, result = code, "request");
    }
    response
}
