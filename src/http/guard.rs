//! Requests a browser could be tricked into sending are refused before any handler runs.
//!
//! - **DNS rebinding.** On a server bound to a loopback address, the `Host` of every request
//!   must name that server: `localhost`, `127.0.0.1`, `[::1]` or the bound address itself,
//!   with the bound port (no port only when it is the scheme's default). A web page whose name
//!   an attacker re-points at 127.0.0.1 sends its own name as `Host` and gets 421
//!   `WRONG_HOST`.
//! - **Cross-origin writes.** `POST`, `PUT`, `PATCH` and `DELETE` under `/auth/` with an
//!   `Origin` header that is not the server's own origin (`SCHEME://HOST`) get 403
//!   `CROSS_ORIGIN`. Programs (the CLI, curl, registry clients) send no `Origin`.
//! - **Form posts.** Those requests, when they carry a body, must say
//!   `Content-Type: application/json` (415 `UNSUPPORTED_MEDIA_TYPE` otherwise): a web page can
//!   send `text/plain` or a form to any address without asking first, but not JSON. `POST
//!   /token` is form-encoded by the registry protocol and is not under `/auth/`.

use std::net::SocketAddr;

use axum::extract::Request;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// Where the server listens, added to every request by the connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound {
    /// The listening address.
    pub addr: SocketAddr,
    /// HTTPS.
    pub tls: bool,
}

impl Bound {
    fn scheme(self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    fn default_port(self) -> u16 {
        if self.tls { 443 } else { 80 }
    }
}

/// The middleware.
pub(crate) async fn guard(req: Request, next: Next) -> Response {
    match check(&req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn check(req: &Request) -> Result<(), ApiError> {
    let Some(bound) = req.extensions().get::<Bound>().copied() else {
        return Ok(());
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    if bound.addr.ip().is_loopback() {
        let named = |h: &str| names_loopback_server(h, bound);
        let uri_ok = req.uri().authority().is_none_or(|a| named(a.as_str()));
        if !(host.as_deref().is_some_and(named) && uri_ok) {
            return Err(ApiError::wrong_host(bound.addr.port()));
        }
    }
    let writes = !matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if !(writes && req.uri().path().starts_with("/auth/")) {
        return Ok(());
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let own = host.map(|h| format!("{}://{h}", bound.scheme()));
        let same = match (origin.to_str(), own) {
            (Ok(o), Some(own)) => o.eq_ignore_ascii_case(&own),
            _ => false,
        };
        if !same {
            return Err(ApiError::cross_origin());
        }
    }
    // RFC 8693 token exchange is a form post by its protocol; it carries its credential in
    // the body (never a cookie), so a page of another origin gains nothing by sending one.
    if has_body(req) && !is_json(req) && !(req.uri().path() == "/auth/exchange" && is_form(req)) {
        return Err(ApiError::unsupported_media_type());
    }
    Ok(())
}

/// Whether `host` (`NAME[:PORT]` from a `Host` header) names the server bound at `bound` on
/// loopback.
fn names_loopback_server(host: &str, bound: Bound) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return false,
            },
        };
        (inside, port)
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    let port_ok = match port {
        None => bound.addr.port() == bound.default_port(),
        Some(p) => p.parse::<u16>().ok() == Some(bound.addr.port()) && !p.starts_with('+'),
    };
    let name = name.to_ascii_lowercase();
    let name_ok = name == "localhost"
        || name == "127.0.0.1"
        || name == "::1"
        || name.parse::<std::net::IpAddr>().ok() == Some(bound.addr.ip());
    port_ok && name_ok
}

fn has_body(req: &Request) -> bool {
    let headers = req.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

fn is_form(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(addr: &str) -> Bound {
        Bound {
            addr: addr.parse().unwrap(),
            tls: false,
        }
    }

    #[test]
    fn loopback_names_with_the_bound_port_only() {
        let b = bound("127.0.0.1:7390");
        for ok in [
            "127.0.0.1:7390",
            "localhost:7390",
            "LocalHost:7390",
            "[::1]:7390",
        ] {
            assert!(names_loopback_server(ok, b), "{ok}");
        }
        for bad in [
            "evil.example:7390",
            "127.0.0.1:7391",
            "127.0.0.1",
            "localhost",
            "127.0.0.1.nip.io:7390",
            "[::1]",
            "[::1]x:7390",
            "[::1:7390",
            "localhost:+7390",
            "",
            "0.0.0.0:7390",
            "127.0.0.2:7390",
        ] {
            assert!(!names_loopback_server(bad, b), "{bad}");
        }
        assert!(names_loopback_server("127.0.0.2:80", bound("127.0.0.2:80")));
        assert!(names_loopback_server("localhost", bound("[::1]:80")));
    }
}
