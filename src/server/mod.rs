//! The HTTP server (`tessera serve`, CONTRACT section 7): password login, token verification,
//! refresh and revocation, and an admin API for tokens.
//!
//! Everything is a library: [`ServerState::load`] does the start-up work, [`router`] builds
//! the axum application, [`serve`] runs it on a listener (HTTP or HTTPS) until a shutdown
//! future completes, and [`spawn`] runs it on a background thread (for tests and embedding).

mod error;
mod ratelimit;
mod routes;
mod state;
mod verified;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

pub use error::ApiError;
pub use ratelimit::RateLimiter;
pub use state::ServerState;

use crate::config::Config;
use crate::error::CliError;

/// Largest request body accepted (413 beyond).
pub const BODY_LIMIT: usize = 64 * 1024;
/// Longest a request may take before the server answers 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client gets to send a request's headers; a connection still sending them after
/// that is closed (slow clients that dribble headers, "slowloris", cannot hold connections
/// and file descriptors for ever).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

const REQUEST_ID: &str = "x-request-id";

/// Installs the `ring` rustls provider for this process (once; later calls do nothing).
pub fn install_crypto_provider() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // Err means another provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Per-request audit information that handlers fill in (who, and on what).
#[derive(Clone, Default)]
pub(crate) struct AuditSlot(Arc<Mutex<AuditInfo>>);

#[derive(Default, Clone)]
struct AuditInfo {
    principal: Option<String>,
    target: Option<String>,
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
async fn around(mut req: Request, next: Next) -> Response {
    let id = request_id(&req);
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(no such route)".to_owned(), |p| p.as_str().to_owned());
    let slot = AuditSlot::default();
    req.extensions_mut().insert(slot.clone());
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
        .get::<error::ErrorCode>()
        .map_or("OK", |c| c.0);
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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

/// The application: every route of section 7, JSON errors for everything else, and the
/// common middleware.
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/health", get(routes::health))
        .route("/auth/login", post(routes::login))
        .route("/auth/verify", get(routes::verify))
        .route("/auth/refresh", post(routes::refresh))
        .route("/auth/token", delete(routes::revoke_self))
        .route(
            "/auth/tokens",
            get(routes::list_tokens).post(routes::create_token),
        )
        .route("/auth/tokens/{jti}", delete(routes::revoke_token))
        .route(
            "/token",
            get(crate::registry::endpoint::token_get).post(crate::registry::endpoint::token_post),
        )
        .route(
            "/.well-known/jwks.json",
            get(crate::registry::endpoint::jwks),
        )
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(around))
        .with_state(state)
}

/// PEM files for HTTPS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The `[server]` TLS settings, when both are set.
    pub fn from_config(config: &Config) -> Option<TlsFiles> {
        match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    }
}

/// Whether an address is loopback-only.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Checks the bind address against the configuration: an error for a non-loopback address
/// with `auth.enabled = false`; a warning (returned) for a non-loopback address without TLS.
pub fn check_bind(
    config: &Config,
    addr: &SocketAddr,
    tls: bool,
) -> Result<Option<String>, CliError> {
    if is_loopback(addr) {
        return Ok(None);
    }
    if !config.auth.enabled {
        return Err(CliError::new(format!(
            "refusing to listen on {addr}: `auth.enabled = false` is only allowed on a loopback address"
        ))
        .with_hint("bind to 127.0.0.1 or ::1, or set `auth.enabled = true`"));
    }
    if !tls {
        return Ok(Some(format!(
            "listening on {addr} without TLS: tokens and passwords cross the network in clear text; set `server.tls_cert` and `server.tls_key`, or put a TLS proxy in front"
        )));
    }
    Ok(None)
}

/// Runs the server on `listener` until `shutdown` completes, then lets open requests finish
/// (up to [`SHUTDOWN_GRACE`]). HTTPS when `tls` is given.
pub async fn serve(
    state: Arc<ServerState>,
    listener: TcpListener,
    tls: Option<TlsFiles>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CliError> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    listener
        .set_nonblocking(true)
        .map_err(|e| CliError::new(format!("cannot use the listening socket: {e}")))?;
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });
    let socket_error =
        |e: std::io::Error| CliError::new(format!("cannot use the listening socket: {e}"));
    let failed = |e: std::io::Error| CliError::new(format!("the server failed: {e}"));
    match tls {
        None => {
            let mut server = axum_server::from_tcp(listener).map_err(socket_error)?;
            limit_header_time(server.http_builder());
            server.handle(handle).serve(app).await.map_err(failed)
        }
        Some(files) => {
            install_crypto_provider();
            let config =
                axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key)
                    .await
                    .map_err(|e| {
                        CliError::new(format!(
                            "cannot load the TLS certificate {} and key {}: {e}",
                            files.cert.display(),
                            files.key.display()
                        ))
                        .with_hint("both must be PEM files; the key PKCS#8, PKCS#1 or SEC1")
                    })?;
            let mut server =
                axum_server::from_tcp_rustls(listener, config).map_err(socket_error)?;
            limit_header_time(server.http_builder());
            server.handle(handle).serve(app).await.map_err(failed)
        }
    }
}

/// Closes HTTP/1 connections whose request headers take longer than [`HEADER_READ_TIMEOUT`]
/// (hyper only enforces its header timeout when it is given a timer).
fn limit_header_time(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
) {
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
}

/// A server running on a background thread; dropping it (or [`RunningServer::stop`]) shuts
/// it down.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), CliError>>>,
}

impl RunningServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) -> Result<(), CliError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), CliError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(CliError::new("the server thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Starts the server on a background thread with its own runtime, on an already bound
/// listener (bind `127.0.0.1:0` for tests).
pub fn spawn(
    state: ServerState,
    listener: TcpListener,
    tls: Option<TlsFiles>,
) -> Result<RunningServer, CliError> {
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::new(format!("cannot read the listening address: {e}")))?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the async runtime: {e}")))?;
    let state = Arc::new(state);
    let thread = std::thread::spawn(move || {
        runtime.block_on(serve(state, listener, tls, async move {
            let _ = rx.await;
        }))
    });
    Ok(RunningServer {
        addr,
        stop: Some(tx),
        thread: Some(thread),
    })
}
