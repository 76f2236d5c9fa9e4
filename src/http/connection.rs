//! One client connection: optional TLS, then HTTP/1.1 with every wait bounded in time.
//!
//! - From `accept`, the TLS handshake and the first request's headers must be done within
//!   [`FIRST_REQUEST_TIMEOUT`] (a connection that sends nothing, or half a handshake, or half a
//!   request, is closed then).
//! - hyper's header-read timer ([`HEADER_READ_TIMEOUT`]) starts whenever hyper waits for a
//!   request head: after each response too, so an idle keep-alive connection is closed then.
//! - A write the client does not read for [`WRITE_TIMEOUT`] fails, which closes the connection.
//! - On shutdown, an idle connection closes at once and a busy one after its response.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::guard::Bound;
use super::{FIRST_REQUEST_TIMEOUT, HEADER_READ_TIMEOUT, WRITE_TIMEOUT};

/// Serves one accepted connection until it ends, times out, or the server stops.
pub(super) async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    bound: Bound,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: tokio::sync::watch::Receiver<()>,
) {
    let deadline = Instant::now() + FIRST_REQUEST_TIMEOUT;
    let _ = tcp.set_nodelay(true);
    let io = WriteDeadline::new(tcp);
    match tls {
        None => http(io, peer, bound, app, deadline, stop).await,
        Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(io)).await {
            Ok(Ok(stream)) => http(stream, peer, bound, app, deadline, stop).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(
                %peer,
                "closing a connection that did not finish the TLS handshake within {} s",
                FIRST_REQUEST_TIMEOUT.as_secs()
            ),
        },
    }
}

/// HTTP/1.1 on `io` until the connection ends; closed at `first_deadline` when no request has
/// arrived by then.
async fn http<I>(
    io: I,
    peer: SocketAddr,
    bound: Bound,
    app: Router,
    first_deadline: Instant,
    mut stop: tokio::sync::watch::Receiver<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = Arc::new(AtomicBool::new(false));
    let service = TowerToHyperService::new(PerConnection {
        app,
        peer: ConnectInfo(peer),
        bound,
        started: Arc::clone(&started),
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let first = tokio::time::sleep_until(first_deadline);
    let mut first = std::pin::pin!(first);
    let mut waiting_for_first = true;
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut first, if waiting_for_first => {
                if !started.load(Ordering::Acquire) {
                    tracing::debug!(
                        %peer,
                        "closing a connection that sent no request within {} s",
                        FIRST_REQUEST_TIMEOUT.as_secs()
                    );
                    return;
                }
                waiting_for_first = false;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The application for one connection: adds the peer address to every request (for
/// `ConnectInfo`) and where the server listens (for the `Host` check), and notes that a request has arrived.
#[derive(Clone)]
struct PerConnection {
    app: Router,
    peer: ConnectInfo<SocketAddr>,
    bound: Bound,
    started: Arc<AtomicBool>,
}

impl tower_service::Service<hyper::Request<Incoming>> for PerConnection {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = <Router as tower_service::Service<hyper::Request<Incoming>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::<hyper::Request<Incoming>>::poll_ready(&mut self.app, cx)
    }

    fn call(&mut self, mut req: hyper::Request<Incoming>) -> Self::Future {
        self.started.store(true, Ordering::Release);
        req.extensions_mut().insert(self.peer);
        req.extensions_mut().insert(self.bound);
        tower_service::Service::call(&mut self.app, req)
    }
}

/// A stream whose writes fail with `TimedOut` when the peer has not taken the bytes for
/// [`WRITE_TIMEOUT`] (a client that stops reading cannot hold the connection).
struct WriteDeadline<T> {
    inner: T,
    timer: Pin<Box<Sleep>>,
    waiting: bool,
}

impl<T> WriteDeadline<T> {
    fn new(inner: T) -> Self {
        WriteDeadline {
            inner,
            timer: Box::pin(tokio::time::sleep(WRITE_TIMEOUT)),
            waiting: false,
        }
    }

    /// Passes a ready result through; on `Pending`, starts (or checks) the write deadline.
    fn bound<R>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        match poll {
            Poll::Ready(r) => {
                self.waiting = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if !self.waiting {
                    self.waiting = true;
                    self.timer.as_mut().reset(Instant::now() + WRITE_TIMEOUT);
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "the client has not read the answer for {} s",
                            WRITE_TIMEOUT.as_secs()
                        ),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.bound(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.bound(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.bound(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.bound(cx, poll)
    }
}
