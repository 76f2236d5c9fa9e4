//! `GET /token`, `POST /token` and `GET /.well-known/jwks.json`: the distribution token-auth
//! flow.
//!
//! Decisions (documented in docs/docker-registry.md):
//! - Credentials come as HTTP Basic (GET) or form fields (POST). The secret is a tessera token
//!   when it looks like a JWT (its username must then be the token's subject), else the
//!   `[auth]` password of `auth.username`.
//! - A `service` other than `registry.service` is 400 `WRONG_SERVICE`: a token for another
//!   service would only be refused by that registry later, so say so now.
//! - An `account` other than the Basic username is 401 `ACCOUNT_MISMATCH`: the client is
//!   confused about who it logs in as, and a token for the other name is never issued.
//! - A malformed `scope` (not `TYPE:NAME:ACTIONS`) is 400; an unknown type, action or a name
//!   that is not a repository name is just not granted. More than [`MAX_SCOPES`] scopes is 400.
//! - Every 401 carries `WWW-Authenticate: Basic realm="tessera"` and a JSON `{error, code}`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::RegistryState;
use super::token::{self as rtoken, MAX_SCOPES, RegistryClaims, Requested};
use crate::server::{ApiError, AuditSlot, BODY_LIMIT, RequestId, ServerState};
use crate::token::{self, Claims, ScopeSet, VerifyError};

type AppState = State<Arc<ServerState>>;

/// The realm of the Basic challenge on 401.
const BASIC_CHALLENGE: &str = "Basic realm=\"tessera\"";

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        code,
        message: message.into(),
        required_scope: None,
        retry_after: None,
    }
}

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    error(StatusCode::UNAUTHORIZED, code, message)
}

fn invalid_credentials() -> ApiError {
    unauthorized(
        "INVALID_CREDENTIALS",
        "the username and password (or token) are not valid",
    )
}

/// The error response, with a Basic challenge on 401.
fn error_response(e: ApiError) -> Response {
    let mut r = e.into_response();
    if r.status() == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(BASIC_CHALLENGE),
        );
    }
    r
}

fn registry(state: &ServerState) -> Result<&RegistryState, ApiError> {
    state.registry.as_deref().ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "the registry token service is off on this server; run `tessera registry init` and restart it",
        )
    })
}

/// Who asked, with what scopes.
struct Principal {
    subject: String,
    scopes: ScopeSet,
    /// The tessera token presented (as the password, or as the refresh token): the parent of
    /// a refresh token issued for this request. `None` after a password login.
    token: Option<Claims>,
}

/// The query or form parameters of a token request.
#[derive(Default)]
struct Params {
    service: Option<String>,
    account: Option<String>,
    scopes: Vec<String>,
    offline: bool,
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<SecretString>,
    refresh_token: Option<SecretString>,
}

fn parse_params(raw: &[u8]) -> Result<Params, ApiError> {
    let mut p = Params::default();
    let mut count = 0usize;
    for (k, v) in url::form_urlencoded::parse(raw) {
        match k.as_ref() {
            "service" => p.service = Some(v.into_owned()),
            "account" => p.account = Some(v.into_owned()),
            "scope" => {
                // Repeated parameters (GET) and space-separated lists (POST) both work.
                for s in v.split(' ').filter(|s| !s.is_empty()) {
                    count += 1;
                    if count > MAX_SCOPES {
                        return Err(ApiError::bad_request(format!(
                            "too many scopes: at most {MAX_SCOPES} per request"
                        )));
                    }
                    p.scopes.push(s.to_owned());
                }
            }
            // OAuth's `access_type=offline`, and what the Docker CLI sends on `docker login`.
            "access_type" => p.offline |= v == "offline",
            "offline_token" => p.offline |= v == "true",
            "grant_type" => p.grant_type = Some(v.into_owned()),
            "username" => p.username = Some(v.into_owned()),
            "password" => p.password = Some(SecretString::from(v.into_owned())),
            "refresh_token" => p.refresh_token = Some(SecretString::from(v.into_owned())),
            // client_id and anything else: informational only.
            _ => {}
        }
    }
    Ok(p)
}

/// Checks `service` and parses the scopes.
fn check_request(reg: &RegistryState, p: &Params) -> Result<Vec<Requested>, ApiError> {
    if let Some(s) = &p.service
        && s != &reg.service
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "WRONG_SERVICE",
            format!(
                "this server issues tokens for service `{}`, not for the one asked; check the registry's `auth.token.service`",
                reg.service
            ),
        ));
    }
    p.scopes
        .iter()
        .map(|s| rtoken::parse_scope(s).map_err(|e| ApiError::bad_request(e.to_string())))
        .collect()
}

/// Username and password of an `Authorization: Basic` header (split at the first `:`).
/// Public for the fuzz targets and property tests.
#[doc(hidden)]
pub fn basic(headers: &HeaderMap) -> Result<(String, SecretString), ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "AUTH_REQUIRED",
            "send a username and a password or tessera token with HTTP Basic authentication",
        ));
    };
    let malformed = || {
        unauthorized(
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

/// Whether a secret has the shape of a JWT (so it is checked as a token, not a password).
fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.split('.').count() == 3
}

fn map_verify(e: VerifyError) -> ApiError {
    match e {
        VerifyError::Expired(at) => {
            unauthorized("TOKEN_EXPIRED", format!("the token expired at {at}"))
        }
        VerifyError::Revoked => unauthorized("TOKEN_REVOKED", "the token has been revoked"),
        other => unauthorized(
            "INVALID_TOKEN",
            format!("the token is not valid: {}", other.reason()),
        ),
    }
}

/// How a tessera token is being used.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    /// As the password of a login: `aud` absent or the service.
    Credential,
    /// As a refresh token: `aud` must be the service.
    Refresh,
}

/// Verifies a tessera token: signature, claims, audience, subject, revocation and single use.
/// With `offline` (a refresh token derived from it is asked for), a single-use token is
/// refused before it is used up.
async fn verify_token(
    state: &Arc<ServerState>,
    reg: &RegistryState,
    raw: &SecretString,
    username: Option<&str>,
    usage: Use,
    offline: bool,
) -> Result<Principal, ApiError> {
    let opts = token::VerifyOptions {
        issuer: &state.issuer,
        audience: None,
        now: Timestamp::now(),
    };
    let claims: Claims =
        token::verify(&state.keys, raw.expose_secret(), &opts).map_err(map_verify)?;
    let aud_ok = match (usage, claims.aud.as_deref()) {
        (Use::Credential, None) => true,
        (_, Some(aud)) => aud == reg.service,
        (Use::Refresh, None) => false,
    };
    if !aud_ok {
        return Err(unauthorized(
            "INVALID_TOKEN",
            match usage {
                Use::Credential => "the token was minted for another audience",
                Use::Refresh => "the refresh token was not issued for this service",
            },
        ));
    }
    if let Some(user) = username
        && user != claims.sub
    {
        return Err(unauthorized(
            "INVALID_CREDENTIALS",
            format!(
                "the username does not match the token's subject `{}`; log in with that name",
                claims.sub
            ),
        ));
    }
    let refusal = state.refusal(&claims, offline).await?;
    if let Some(msg) = refusal {
        return Err(unauthorized("TOKEN_REVOKED", msg));
    }
    let scopes = ScopeSet::parse_claim(&claims.scope)
        .map_err(|_| unauthorized("INVALID_TOKEN", "the token's scopes cannot be read"))?;
    Ok(Principal {
        subject: claims.sub.clone(),
        scopes,
        token: Some(claims),
    })
}

/// Checks the `[auth]` username and password (bcrypt on a blocking thread, rate-limited per
/// client address; an unknown user costs as much as a wrong password).
async fn password_login(
    state: &Arc<ServerState>,
    peer: IpAddr,
    username: &str,
    password: SecretString,
) -> Result<Principal, ApiError> {
    let Some(login) = &state.login else {
        return Err(invalid_credentials());
    };
    if !state.check_password(peer, username, password).await? {
        return Err(invalid_credentials());
    }
    Ok(Principal {
        subject: login.username.clone(),
        scopes: login.scopes.clone(),
        token: None,
    })
}

/// A password or a token, for `username`.
async fn login(
    state: &Arc<ServerState>,
    reg: &RegistryState,
    peer: IpAddr,
    username: &str,
    secret: SecretString,
    offline: bool,
) -> Result<Principal, ApiError> {
    if looks_like_jwt(secret.expose_secret()) {
        verify_token(
            state,
            reg,
            &secret,
            Some(username),
            Use::Credential,
            offline,
        )
        .await
    } else {
        password_login(state, peer, username, secret).await
    }
}

/// Mints a refresh token: a tessera token of the subject and its scopes, with `aud` = the
/// service, derived from the token presented (if any) and recorded in the token store (so it
/// is listed and revocable, and revoked with its parent); see
/// [`ServerState::issue_on_request`]. `None` when the subject already holds as many tokens as
/// the server issues on request: the refresh token is optional in the token-auth flow, and a
/// client without one (the Docker CLI) keeps its credentials and works as before.
async fn refresh_token(
    state: &Arc<ServerState>,
    reg: &RegistryState,
    who: &Principal,
) -> Result<Option<String>, ApiError> {
    match state
        .issue_on_request(
            &who.subject,
            &who.scopes,
            Some(&reg.service),
            who.token.as_ref(),
        )
        .await
    {
        Ok(minted) => Ok(Some(minted.token.expose_secret().to_owned())),
        Err(e) if e.code == "TOO_MANY_TOKENS" => {
            tracing::warn!(reason = %e.message, "no refresh token issued");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Issues the registry token for `who` and builds the response.
async fn respond(
    state: &Arc<ServerState>,
    reg: &RegistryState,
    who: Principal,
    requested: &[Requested],
    offline: bool,
    audit: Option<&AuditSlot>,
) -> Result<Response, ApiError> {
    let access = rtoken::grant(&who.scopes, requested);
    let now = Timestamp::now().as_second();
    let ttl = i64::try_from(reg.ttl.as_secs()).unwrap_or(300);
    let claims = RegistryClaims {
        iss: reg.issuer.clone(),
        sub: who.subject.clone(),
        aud: reg.service.clone(),
        exp: now.saturating_add(ttl),
        nbf: now,
        iat: now,
        jti: rtoken::new_jti().map_err(|e| {
            tracing::error!(error = %e, "no token id");
            ApiError::internal()
        })?,
        access,
    };
    let signed = rtoken::sign(&reg.key, &claims).map_err(|e| {
        tracing::error!(error = %e, "signing a registry token failed");
        ApiError::internal()
    })?;
    if let Some(a) = audit {
        a.set_principal(&who.subject);
    }
    let granted: Vec<String> = claims
        .access
        .iter()
        .map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(",")))
        .collect();
    tracing::info!(
        target: "tessera::audit",
        principal = ?who.subject,
        jti = %claims.jti,
        granted = ?granted,
        "registry token issued"
    );
    let issued_at = Timestamp::from_second(now)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let mut body = json!({
        "token": signed,
        "access_token": signed,
        "expires_in": ttl,
        "issued_at": issued_at,
    });
    if offline && let Some(refresh) = refresh_token(state, reg, &who).await? {
        body["refresh_token"] = Value::String(refresh);
    }
    let mut r = (StatusCode::OK, Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

fn peer_of(req: &Parts) -> IpAddr {
    req.extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// `GET /token?service=S&scope=repository:NAME:ACTIONS&account=U` with HTTP Basic
/// credentials.
pub async fn token_get(State(state): AppState, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    match get_inner(&state, &parts).await {
        Ok(r) => r,
        Err(e) => refused(&parts, e),
    }
}

/// Logs why a `/token` request was refused (the sentence the client gets, its code, the
/// client address and the request id; never a username, password or token: a password typed
/// into the username field must not land in the log), and builds the answer.
fn refused(parts: &Parts, e: ApiError) -> Response {
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map_or("-", |r| r.0.as_str());
    tracing::warn!(
        target: "tessera::registry",
        request_id = %request_id,
        peer = %peer_of(parts),
        status = e.status.as_u16(),
        result = e.code,
        reason = ?e.message,
        "refused a /token request"
    );
    error_response(e)
}

async fn get_inner(state: &Arc<ServerState>, req: &Parts) -> Result<Response, ApiError> {
    let reg = registry(state)?;
    let audit = req.extensions.get::<AuditSlot>();
    let params = parse_params(req.uri.query().unwrap_or("").as_bytes())?;
    let requested = check_request(reg, &params)?;
    // The principal is recorded once the credentials are good (in `respond`): a refused
    // username may be a password typed into the wrong field.
    let (user, secret) = basic(&req.headers)?;
    if let Some(account) = &params.account
        && !account.is_empty()
        && account != &user
    {
        return Err(unauthorized(
            "ACCOUNT_MISMATCH",
            "the `account` parameter names another user than the credentials",
        ));
    }
    let who = login(state, reg, peer_of(req), &user, secret, params.offline).await?;
    respond(state, reg, who, &requested, params.offline, audit).await
}

/// `POST /token` (form): `grant_type=password` with `username` and `password` (a password or
/// a tessera token), or `grant_type=refresh_token` with `refresh_token`; `access_type=offline`
/// adds a `refresh_token` to the answer.
pub async fn token_post(State(state): AppState, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    match post_inner(&state, &parts, body).await {
        Ok(r) => r,
        Err(e) => refused(&parts, e),
    }
}

async fn post_inner(
    state: &Arc<ServerState>,
    parts: &Parts,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let reg = registry(state)?;
    let peer = peer_of(parts);
    let audit = parts.extensions.get::<AuditSlot>().cloned();
    let body = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| ApiError::too_large(BODY_LIMIT))?;
    let body = zeroize::Zeroizing::new(body.to_vec());
    let params = parse_params(&body)?;
    let requested = check_request(reg, &params)?;
    let who = match params.grant_type.as_deref() {
        Some("password") => {
            let (Some(user), Some(password)) = (&params.username, &params.password) else {
                return Err(ApiError::bad_request(
                    "`grant_type=password` needs `username` and `password`",
                ));
            };
            login(state, reg, peer, user, password.clone(), params.offline).await?
        }
        Some("refresh_token") => {
            let Some(refresh) = &params.refresh_token else {
                return Err(ApiError::bad_request(
                    "`grant_type=refresh_token` needs `refresh_token`",
                ));
            };
            verify_token(
                state,
                reg,
                refresh,
                params.username.as_deref(),
                Use::Refresh,
                params.offline,
            )
            .await?
        }
        _ => {
            return Err(ApiError::bad_request(
                "`grant_type` must be `password` or `refresh_token`",
            ));
        }
    };
    respond(state, reg, who, &requested, params.offline, audit.as_ref()).await
}

/// `GET /.well-known/jwks.json`: the public key that signs registry tokens.
pub async fn jwks(State(state): AppState) -> Response {
    match registry(&state) {
        Ok(reg) => Json(json!({ "keys": [reg.key.jwk()] })).into_response(),
        Err(e) => error_response(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn params_cap_and_split_scopes() {
        let p = parse_params(b"service=s&scope=repository:a:pull&scope=repository:b:pull%20repository:c:push&account=x&access_type=offline").unwrap();
        assert_eq!(p.scopes.len(), 3);
        assert!(p.offline);
        let many: String = (0..=MAX_SCOPES)
            .map(|i| format!("scope=repository:a{i}:pull&"))
            .collect();
        assert!(parse_params(many.as_bytes()).is_err());
    }
}
