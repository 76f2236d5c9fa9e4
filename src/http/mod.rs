//! The one HTTP adapter (`tessera serve`): the API of `/auth/*` (`api`) and the Docker
//! registry token endpoints (`registry`) side by side on one router, over the transport-free
//! core in `crate::auth` and `crate::registry`.
//!
//! Everything is a library: [`ServerState::load`] does the start-up work, [`router`] builds
//! the axum application, [`serve`] runs it on a listener (HTTP or HTTPS) until a shutdown
//! future completes, and [`spawn`] runs it on a background thread (for tests and embedding).

mod api;
mod connection;
mod error;
mod exchange;
pub mod extract;
mod guard;
mod keys;
mod middleware;
mod registry;
mod session;
mod state;
mod ui;
mod users;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};

pub use crate::auth::PasswordChecks;
pub use crate::tls::install_crypto_provider;
pub use error::ApiError;
pub use state::{ServerState, StartError};

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

/// The application: the API routes and the registry routes, JSON errors for everything else,
/// and the common middleware.
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/health", get(api::health))
        .route("/auth/login", post(api::login))
        .route("/auth/verify", get(api::verify))
        .route("/auth/refresh", post(api::refresh))
        .route("/auth/token", delete(api::revoke_self))
        .route(
            "/auth/tokens",
            get(api::list_tokens).post(api::create_token),
        )
        .route("/auth/tokens/{jti}", delete(api::revoke_token))
        // --- users and sessions (contract section 9) ---
        .route(
            "/auth/session",
            post(session::sign_in)
                .get(session::current)
                .delete(session::sign_out),
        )
        .route(
            "/auth/sessions",
            get(session::list).delete(session::sign_out_everywhere),
        )
        .route("/auth/users", get(users::list))
        // API keys (contract section 9)
        .route("/auth/keys", get(keys::list).post(keys::create))
        .route("/auth/keys/{id}", get(keys::show).delete(keys::revoke))
        .route("/auth/keys/{id}/disable", post(keys::disable))
        .route("/auth/keys/{id}/enable", post(keys::enable))
        .route("/auth/keys/{id}/rotate", post(keys::rotate))
        .route("/auth/exchange", post(exchange::exchange))
        .route(
            "/token",
            get(registry::token_get).post(registry::token_post),
        )
        .route("/.well-known/jwks.json", get(registry::jwks))
        .merge(ui::routes())
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            session::layer,
        ))
        .layer(axum::middleware::from_fn(keys::rate_headers))
        .layer(axum::middleware::from_fn(guard::guard))
        .layer(axum::middleware::from_fn(middleware::around))
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
) -> Result<Option<String>, StartError> {
    if is_loopback(addr) {
        return Ok(None);
    }
    if !config.auth.enabled {
        return Err(StartError::NoAuthOffLoopback { addr: *addr });
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
) -> Result<(), StartError> {
    let app = router(state);
    let socket_error = StartError::Socket;
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
fn tls_config(files: &TlsFiles) -> Result<rustls::ServerConfig, StartError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    install_crypto_provider();
    let failed = |reason: String| StartError::Tls {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason,
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
    thread: Option<std::thread::JoinHandle<Result<(), StartError>>>,
}

impl RunningServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many password checks may run at once and the most that did (for tests).
    #[doc(hidden)]
    pub fn password_checks(&self) -> PasswordChecks {
        self.state.auth.password_checks()
    }

    /// The server's state (for tests: the JWKS fetch counters and interval).
    #[doc(hidden)]
    pub fn state(&self) -> &ServerState {
        &self.state
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) -> Result<(), StartError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), StartError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(StartError::Panicked),
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
) -> Result<RunningServer, StartError> {
    let addr = listener.local_addr().map_err(StartError::Address)?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
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
