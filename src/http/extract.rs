//! Reading requests: bearer and Basic credentials, path parameters, JSON bodies and the
//! peer address, each refusing with a JSON [`ApiError`] (never axum's plain-text rejections).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::BODY_LIMIT;
use super::error::ApiError;
use crate::auth::Credential;

/// A JSON body whose every rejection is a JSON error: 413 over the size limit, 400 otherwise
/// (never axum's plain-text rejections). Error messages never quote values from the body.
pub(crate) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(BODY_LIMIT)
            } else {
                ApiError::bad_request("cannot read the request body")
            }
        })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Syntax | Category::Eof | Category::Io => ApiError::bad_request(format!(
                    "the request body is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                )),
                Category::Data => {
                    // "missing field `x`" and "unknown field `x`" name fields only; other
                    // messages can quote a value (a password), so they are not repeated.
                    let msg = e.to_string();
                    let detail =
                        if msg.starts_with("missing field") || msg.starts_with("unknown field") {
                            msg.split(" at line").next().unwrap_or_default().to_owned()
                        } else {
                            "a field is missing or has the wrong type".to_owned()
                        };
                    ApiError::bad_request(format!(
                        "the request body does not have the expected fields: {detail}"
                    ))
                }
            }
        })
    }
}

/// A path parameter whose rejection is a JSON 400 like every other error (axum's own `Path`
/// answers in plain text, e.g. for `%FF`, which is not UTF-8).
pub(crate) struct PathParam<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| PathParam(v))
            .map_err(|_| {
                ApiError::bad_request(
                    "the URL path cannot be read (it must be percent-encoded UTF-8); check the URL",
                )
            })
    }
}

/// The socket peer's IP address of a request's parts; unspecified when unknown.
pub(crate) fn peer_of(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// A password from a JSON body, a secret from the moment it is parsed.
pub(crate) struct Password(pub SecretString);

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Password(SecretString::from(s)))
    }
}

/// The bearer token of a request, or why there is none.
pub(crate) fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::auth_required());
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::invalid_token("the Authorization header is not printable ASCII"))?;
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::invalid_token(
            "the Authorization header must be `Bearer TOKEN`",
        ));
    }
    let tok = rest.trim();
    if tok.is_empty() {
        return Err(ApiError::invalid_token(
            "the Authorization header has no token after `Bearer`",
        ));
    }
    Ok(tok)
}

/// The realm of the Basic challenge on 401.
pub(crate) const BASIC_CHALLENGE: &str = "Basic realm=\"tessera\"";

/// Username and password of an `Authorization: Basic` header (split at the first `:`).
/// Public for the fuzz targets and property tests.
#[doc(hidden)]
pub fn basic(headers: &HeaderMap) -> Result<(String, SecretString), ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "AUTH_REQUIRED",
            "send a username and a password or tessera token with HTTP Basic authentication",
        ));
    };
    let malformed = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_CREDENTIALS",
            "the Authorization header is not valid HTTP Basic credentials",
        )
    };
    let text = value.to_str().map_err(|_| malformed())?;
    let (scheme, rest) = text.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed());
    }
    let decoded = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .map_err(|_| malformed())?,
    );
    let text = std::str::from_utf8(&decoded).map_err(|_| malformed())?;
    let (user, password) = text.split_once(':').ok_or_else(malformed)?;
    if user.is_empty() || password.is_empty() {
        return Err(malformed());
    }
    Ok((user.to_owned(), SecretString::from(password.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use secrecy::ExposeSecret;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn basic_splits_at_the_first_colon() {
        let (u, p) = basic(&headers(&format!("Basic {}", b64("ci:pa:ss:")))).unwrap();
        assert_eq!(u, "ci");
        assert_eq!(p.expose_secret(), "pa:ss:");
        let (u, _) = basic(&headers(&format!("basic {}", b64("a:b")))).unwrap();
        assert_eq!(u, "a");
    }

    #[test]
    fn basic_refuses_malformed_headers() {
        for bad in [
            "Basic".to_owned(),
            "Basic !!!notbase64".to_owned(),
            format!("Basic {}", b64("nocolon")),
            format!("Basic {}", b64(":password")),
            format!("Basic {}", b64("user:")),
            format!("Bearer {}", b64("a:b")),
        ] {
            let e = basic(&headers(&bad)).err().unwrap();
            assert_eq!(e.status, StatusCode::UNAUTHORIZED, "{bad}");
        }
        assert_eq!(
            basic(&HeaderMap::new()).err().unwrap().code,
            "AUTH_REQUIRED"
        );
    }
}

// ---- the credential and the client address (contract section 9) ----------------------------

/// The client's address: the TCP peer, unless the peer is one of `server.trusted_proxies`;
/// then `X-Forwarded-For` is read from the right, skipping trusted proxies, and the first
/// address that is not one is the client (the rightmost untrusted hop). Every header of that
/// name counts, in order. A hop that is not an address stops the walk at the last good one.
pub(crate) fn client_addr(parts: &Parts, trusted: &[ipnet::IpNet]) -> IpAddr {
    let peer = peer_of(parts);
    if trusted.is_empty() || !crate::auth::keys::ip_in(trusted, peer) {
        return peer;
    }
    let hops: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !crate::auth::keys::ip_in(trusted, ip) {
            break;
        }
    }
    client
}

/// The client's address ([`client_addr`]): what the login rate limiter counts and an API
/// key's allow-list is checked against.
pub(crate) struct ClientAddr(pub IpAddr);

impl FromRequestParts<std::sync::Arc<super::ServerState>> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &std::sync::Arc<super::ServerState>,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_addr(parts, &state.trusted_proxies)))
    }
}

/// Where the rate limit of the API key of a request stands, for the `X-RateLimit-*` headers
/// that `keys::rate_headers` adds to the response.
#[derive(Clone, Default)]
pub(crate) struct RateSlot(
    pub std::sync::Arc<std::sync::Mutex<Option<crate::auth::keys::RateStatus>>>,
);

impl RateSlot {
    pub(crate) fn set(&self, status: crate::auth::keys::RateStatus) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
    }

    pub(crate) fn get(&self) -> Option<crate::auth::keys::RateStatus> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The credential of a request, read once: `Authorization: Bearer X` (an API key or a
/// token, by its shape) or `X-API-Key: KEY`. `Ok(None)` when there is none; both headers at
/// once is refused, as is an `Authorization` header of another scheme.
pub(crate) fn credential(headers: &HeaderMap) -> Result<Option<Credential>, ApiError> {
    let api_key = match headers.get("x-api-key") {
        None => None,
        Some(v) => {
            let text = v
                .to_str()
                .map_err(|_| {
                    ApiError::invalid_token("the X-API-Key header is not printable ASCII")
                })?
                .trim();
            if text.is_empty() {
                return Err(ApiError::invalid_token("the X-API-Key header is empty"));
            }
            Some(Credential::ApiKey(SecretString::from(text.to_owned())))
        }
    };
    match (headers.contains_key(header::AUTHORIZATION), api_key) {
        (true, Some(_)) => Err(ApiError::bad_request(
            "send one credential: either `Authorization` or `X-API-Key`, not both",
        )),
        (false, key) => Ok(key),
        (true, None) => bearer(headers).map(|t| Some(Credential::bearer(t))),
    }
}

/// What a request presents: its credential (read once, see [`credential`]), the client's
/// address ([`client_addr`]) and the slot for its key's rate-limit headers. Every handler that
/// authenticates takes this.
pub(crate) struct Caller {
    pub credential: Result<Option<Credential>, ApiError>,
    pub client: IpAddr,
    pub rate: RateSlot,
}

impl Caller {
    /// The credential, or 401 `AUTH_REQUIRED` when none was sent.
    pub(crate) fn required(&self) -> Result<&Credential, ApiError> {
        match &self.credential {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(ApiError::auth_required()),
            Err(e) => Err(e.clone()),
        }
    }
}

impl FromRequestParts<std::sync::Arc<super::ServerState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &std::sync::Arc<super::ServerState>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Caller {
            credential: credential(&parts.headers),
            client: client_addr(parts, &state.trusted_proxies),
            rate: parts
                .extensions
                .get::<RateSlot>()
                .cloned()
                .unwrap_or_default(),
        })
    }
}
