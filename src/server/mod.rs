//! The HTTP server (`tessera serve`, CONTRACT section 7): password login, token verification,
//! refresh and revocation, and an admin API for tokens.
//!
//! Everything is a library: [`ServerState::load`] does the start-up work, [`router`] builds
//! the axum application, [`serve`] runs it on a listener (HTTP or HTTPS) until a shutdown
//! future completes, and [`spawn`] runs it on a background thread (for tests and embedding).

mod connection;
mod error;
mod guard;
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
pub use state::{PasswordChecks, ServerState};

use crate::cli::error::CliError;
use crate::config::Config;

/// Largest request body accepted (413 beyond).
pub const BODY_LIMIT: usize = 64 * 1024;
/// Longest a request may take before the server answers 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client gets to send a request's headers, counted from when the server starts
/// waiting for them: after the previous response on a keep-alive connection, so this is also
/// how long an idle keep-alive connection stays open. A connection still sending headers after
/// that is closed (slow clients that dribble headers, "slowloris", cannot hold connections
/// and file descriptors for ever).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new connection gets, from the moment it is accepted, to finish the TLS handshake
/// (HTTPS) and send the headers of its first request; a connection that sends nothing, or only
/// part of a handshake or a request, is closed then.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write to a client may wait for the client to read; a client that stops reading
/// its answers (to hold the connection open) is disconnected then.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (usually: out of file descriptors) before the next one.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
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
async fn around(mut req: Request, next: Next) -> Response {
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
        .layer(middleware::from_fn(guard::guard))
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
///
/// HTTP/1.1 only (see docs/server.md for why not HTTP/2). Every connection is bounded in
/// time whatever its peer does: the TLS handshake and the first request's headers must
/// arrive within [`FIRST_REQUEST_TIMEOUT`] of the connection being accepted; between
/// requests a keep-alive connection waits at most [`HEADER_READ_TIMEOUT`] for the next
/// request's headers; a response the peer does not read for [`WRITE_TIMEOUT`] closes the
/// connection; a request is answered within [`REQUEST_TIMEOUT`].
pub async fn serve(
    state: Arc<ServerState>,
    listener: TcpListener,
    tls: Option<TlsFiles>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CliError> {
    let app = router(state);
    let socket_error =
        |e: std::io::Error| CliError::new(format!("cannot use the listening socket: {e}"));
    listener.set_nonblocking(true).map_err(socket_error)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(socket_error)?;
    let bound = guard::Bound {
        addr: listener.local_addr().map_err(socket_error)?,
        tls: tls.is_some(),
    };
    let acceptor = match tls {
        None => None,
        Some(files) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(
            &files,
        )?))),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    connections.spawn(connection::run(
                        tcp,
                        peer,
                        bound,
                        app.clone(),
                        acceptor.clone(),
                        stop_rx.clone(),
                    ));
                }
                Err(e) => {
                    // Out of file descriptors, mostly: wait for connections to close rather
                    // than spin on the error.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(());
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "closing connections still open {} s after the shutdown signal",
            SHUTDOWN_GRACE.as_secs()
        );
        connections.abort_all();
    }
    Ok(())
}

/// The rustls server configuration for `files`: the certificate chain, the private key, and
/// HTTP/1.1 as the only protocol offered by ALPN.
fn tls_config(files: &TlsFiles) -> Result<rustls::ServerConfig, CliError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    install_crypto_provider();
    let failed = |reason: String| {
        CliError::new(format!(
            "cannot load the TLS certificate {} and key {}: {reason}",
            files.cert.display(),
            files.key.display()
        ))
        .with_hint("both must be PEM files; the key PKCS#8, PKCS#1 or SEC1")
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| failed(e.to_string()))?;
    if certs.is_empty() {
        return Err(failed(format!(
            "{} holds no certificate",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| failed(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| failed(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A server running on a background thread; dropping it (or [`RunningServer::stop`]) shuts
/// it down.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), CliError>>>,
}

impl RunningServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many password checks may run at once and the most that did (for tests).
    #[doc(hidden)]
    pub fn password_checks(&self) -> PasswordChecks {
        self.state.hashing.stats()
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
    let served = Arc::clone(&state);
    let thread = std::thread::spawn(move || {
        runtime.block_on(serve(served, listener, tls, async move {
            let _ = rx.await;
        }))
    });
    Ok(RunningServer {
        addr,
        state,
        stop: Some(tx),
        thread: Some(thread),
    })
}
