//! `GET /token`, `POST /token` and `GET /.well-known/jwks.json`: the distribution token-auth
//! flow over the registry domain (`crate::registry`) and the authentication core.
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

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::BODY_LIMIT;
use super::error::ApiError;
use super::extract::{BASIC_CHALLENGE, Caller, RateSlot, basic, client_addr, peer_of};
use super::middleware::{AuditSlot, RequestId};
use super::state::ServerState;
use crate::auth::exchange::Workloads;
use crate::auth::{AudienceRule, AuthError, IssueRequest, Method, Origin, Principal, Purpose};
use crate::registry::RegistryService;
use crate::registry::token::{MAX_SCOPES, Requested};

type AppState = State<Arc<ServerState>>;

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
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

fn registry(state: &ServerState) -> Result<&RegistryService, ApiError> {
    state.registry.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "the registry token service is off on this server; run `tessera registry init` and restart it",
        )
    })
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

/// Whether a secret has the shape of a JWT (so it is checked as a token, not a password).
fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.split('.').count() == 3
}

/// A tessera token presented to the registry flow, authenticated by the core: as the password
/// of a login (`refresh` false: no audience, or the service) or as a refresh token (the
/// service's audience). With `offline` (a refresh token derived from it is asked for), a
/// single-use token is refused before it is used up.
async fn token_login(
    state: &ServerState,
    reg: &RegistryService,
    raw: &SecretString,
    username: Option<&str>,
    refresh: bool,
    offline: bool,
) -> Result<Principal, ApiError> {
    let rule = if refresh {
        AudienceRule::RegistryRefresh {
            service: &reg.service,
        }
    } else {
        AudienceRule::RegistryCredential {
            service: &reg.service,
        }
    };
    let purpose = if offline {
        Purpose::Derive
    } else {
        Purpose::Use
    };
    Ok(state
        .auth
        .authenticate(raw.expose_secret(), rule, username, purpose)
        .await?)
}

/// A password, a token or an API key, for `username`. An API key's username is its owner
/// (subject) or `key`.
async fn login(
    state: &ServerState,
    reg: &RegistryService,
    parts: &Parts,
    username: &str,
    secret: SecretString,
    offline: bool,
) -> Result<Principal, ApiError> {
    let peer = client_addr(parts, &state.trusted_proxies);
    if crate::auth::apikey::looks_like_key(secret.expose_secret()) {
        let caller = Caller {
            credential: Ok(None),
            client: peer,
            rate: parts
                .extensions
                .get::<RateSlot>()
                .cloned()
                .unwrap_or_default(),
        };
        let audit = parts.extensions.get::<AuditSlot>();
        let who = super::keys::key_principal(state, secret.expose_secret(), &caller, audit).await?;
        if username != "key" && username != who.subject {
            return Err(ApiError::from(AuthError::SubjectMismatch {
                subject: who.subject,
            }));
        }
        return Ok(who);
    }
    if let Some(w) = &state.workloads
        && looks_like_jwt(secret.expose_secret())
        && Workloads::is_foreign_token(secret.expose_secret(), &state.auth.settings().issuer)
    {
        // An OIDC ID token (any username): usable until it expires.
        Ok(state.auth.workload_login(w, secret.expose_secret()).await?)
    } else if looks_like_jwt(secret.expose_secret()) {
        token_login(state, reg, &secret, Some(username), false, offline).await
    } else {
        match state.auth.login(peer, username, secret).await {
            Ok(who) => Ok(who),
            Err(AuthError::InvalidCredentials) => Err(invalid_credentials()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Issues a refresh token: a tessera token of the subject and its scopes, with `aud` = the
/// service, derived from the token presented (if any) and recorded in the token store (so it
/// is listed and revocable, and revoked with its parent); see `crate::auth::issue`. `None`
/// when the subject already holds as many tokens as the server issues on request: the refresh
/// token is optional in the token-auth flow, and a client without one (the Docker CLI) keeps
/// its credentials and works as before.
async fn refresh_token(
    state: &ServerState,
    reg: &RegistryService,
    who: &Principal,
) -> Result<Option<String>, ApiError> {
    // No refresh token for an API key: it would outlive a revocation of the key. The client
    // keeps the key and sends it again (one cached check, no hashing).
    if who.key.is_some() {
        return Ok(None);
    }
    let parent = who.token.as_ref().map(|t| t.claims());
    match state
        .auth
        .issue(IssueRequest {
            subject: &who.subject,
            scopes: &who.scopes,
            audience: Some(&reg.service),
            origin: Origin::OnRequest { parent },
            now: Timestamp::now(),
        })
        .await
    {
        Ok(minted) => Ok(Some(minted.token.expose_secret().to_owned())),
        Err(e @ AuthError::TooMany { .. }) => {
            tracing::warn!(reason = %e, "no refresh token issued");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Issues the registry token for `who` and builds the response.
async fn respond(
    state: &ServerState,
    reg: &RegistryService,
    who: Principal,
    requested: &[Requested],
    offline: bool,
    audit: Option<&AuditSlot>,
) -> Result<Response, ApiError> {
    let now = Timestamp::now();
    let (signed, claims) = reg.issue(&who.subject, &who.scopes, requested, now)?;
    if let Some(a) = audit {
        match &who.key {
            Some(p) => a.set_principal(&format!("{} of {}", p.key.audit_name(), who.subject)),
            None => a.set_principal(&who.subject),
        }
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
    let issued_at = Timestamp::from_second(claims.iat)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let mut body = json!({
        "token": signed,
        "access_token": signed,
        "expires_in": reg.ttl_secs(),
        "issued_at": issued_at,
    });
    // A workload's ID token is its only credential: nothing that outlives it is derived.
    if offline
        && who.method != Method::Workload
        && let Some(refresh) = refresh_token(state, reg, &who).await?
    {
        body["refresh_token"] = Value::String(refresh);
    }
    let mut r = (StatusCode::OK, Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// `GET /token?service=S&scope=repository:NAME:ACTIONS&account=U` with HTTP Basic
/// credentials.
pub(crate) async fn token_get(State(state): AppState, req: Request) -> Response {
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

async fn get_inner(state: &ServerState, req: &Parts) -> Result<Response, ApiError> {
    let reg = registry(state)?;
    let audit = req.extensions.get::<AuditSlot>();
    let params = parse_params(req.uri.query().unwrap_or("").as_bytes())?;
    let requested = reg.check_request(params.service.as_deref(), &params.scopes)?;
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
    let who = login(state, reg, req, &user, secret, params.offline).await?;
    respond(state, reg, who, &requested, params.offline, audit).await
}

/// `POST /token` (form): `grant_type=password` with `username` and `password` (a password or
/// a tessera token), or `grant_type=refresh_token` with `refresh_token`; `access_type=offline`
/// adds a `refresh_token` to the answer.
pub(crate) async fn token_post(State(state): AppState, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    match post_inner(&state, &parts, body).await {
        Ok(r) => r,
        Err(e) => refused(&parts, e),
    }
}

async fn post_inner(
    state: &ServerState,
    parts: &Parts,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let reg = registry(state)?;
    let audit = parts.extensions.get::<AuditSlot>().cloned();
    let body = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| ApiError::too_large(BODY_LIMIT))?;
    let body = zeroize::Zeroizing::new(body.to_vec());
    let params = parse_params(&body)?;
    let requested = reg.check_request(params.service.as_deref(), &params.scopes)?;
    let who = match params.grant_type.as_deref() {
        Some("password") => {
            let (Some(user), Some(password)) = (&params.username, &params.password) else {
                return Err(ApiError::bad_request(
                    "`grant_type=password` needs `username` and `password`",
                ));
            };
            login(state, reg, parts, user, password.clone(), params.offline).await?
        }
        Some("refresh_token") => {
            let Some(refresh) = &params.refresh_token else {
                return Err(ApiError::bad_request(
                    "`grant_type=refresh_token` needs `refresh_token`",
                ));
            };
            token_login(
                state,
                reg,
                refresh,
                params.username.as_deref(),
                true,
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
pub(crate) async fn jwks(State(state): AppState) -> Response {
    match registry(&state) {
        Ok(reg) => Json(json!({ "keys": [reg.key.jwk()] })).into_response(),
        Err(e) => error_response(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
