//! Request handlers of the HTTP API (CONTRACT section 7).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::ApiError;
use super::state::ServerState;
use super::verified::VerifiedToken;
use super::{AuditSlot, BODY_LIMIT};
use crate::duration::HumanDuration;
use crate::store::{IssueError, MAX_LIVE_TOKENS_PER_SUBJECT, TokenRecord};
use crate::token::{self, Claims, MintError, MintRequest, Scope, ScopeSet, VerifyError};

type AppState = State<Arc<ServerState>>;

// ---- extractors ----------------------------------------------------------------------------

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

/// The socket peer's IP address (never `X-Forwarded-For`); unspecified when unknown.
pub(crate) struct Peer(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip()),
        ))
    }
}

/// A password from a JSON body, a secret from the moment it is parsed.
pub(crate) struct Password(SecretString);

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Password(SecretString::from(s)))
    }
}

// ---- helpers -------------------------------------------------------------------------------

fn rfc3339(secs: i64) -> Option<String> {
    Timestamp::from_second(secs).ok().map(|t| t.to_string())
}

fn scopes_of(claims: &Claims) -> Vec<&str> {
    claims.scope.split_whitespace().collect()
}

/// A JSON response that carries a token, or describes one.
fn token_response(status: StatusCode, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// The bearer token of a request, or why there is none.
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
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

fn map_verify(e: VerifyError) -> ApiError {
    match e {
        VerifyError::Expired(at) => ApiError::token_expired(format!("the token expired at {at}")),
        VerifyError::Revoked => ApiError::token_revoked("the token has been revoked"),
        other => ApiError::invalid_token(format!("the token is not valid: {}", other.reason())),
    }
}

/// Runs a token-store call on a blocking thread; any failure is 503 (fail closed).
async fn with_store<R: Send + 'static>(
    state: &Arc<ServerState>,
    f: impl FnOnce(&dyn crate::store::TokenStore) -> Result<R, crate::store::StoreError>
    + Send
    + 'static,
) -> Result<R, ApiError> {
    let store = Arc::clone(&state.store);
    match tokio::task::spawn_blocking(move || f(store.as_ref())).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(ApiError::store_unavailable(e)),
        Err(e) => Err(ApiError::store_unavailable(e)),
    }
}

/// What an authenticated token is about to be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// A request made with the token (a single-use token is used up).
    Use,
    /// Deriving a token from it (`POST /auth/refresh`): a single-use token is refused before
    /// it is used up.
    Derive,
}

/// Verifies the bearer token: signature, claims, audience (not the registry service),
/// revocation (asking the store every time) and single use. Records the subject as the request's principal.
async fn authenticate(
    state: &Arc<ServerState>,
    headers: &HeaderMap,
    audit: &AuditSlot,
    purpose: Purpose,
) -> Result<Arc<VerifiedToken>, ApiError> {
    let raw = bearer(headers)?;
    let opts = token::VerifyOptions {
        issuer: &state.issuer,
        audience: None,
        now: Timestamp::now(),
    };
    let claims = match state.verified.get(raw) {
        Some(claims) => {
            token::check_times(&claims, opts.now).map_err(map_verify)?;
            claims
        }
        None => {
            let claims = token::verify(&state.keys, raw, &opts).map_err(map_verify)?;
            let verified = Arc::new(VerifiedToken::new(claims));
            state.verified.insert(raw, Arc::clone(&verified));
            verified
        }
    };
    // A token whose audience is the registry service (a refresh token from `/token`, or one
    // minted with `--audience SERVICE`) is for the registry flow only, not for this API.
    if let (Some(reg), Some(aud)) = (&state.registry, claims.aud.as_deref())
        && aud == reg.service
    {
        return Err(ApiError::invalid_token(
            "the token was issued for the registry service, not for this API",
        ));
    }
    audit.set_principal(&claims.sub);
    let refusal = state.refusal(&claims, purpose == Purpose::Derive).await?;
    match refusal {
        Some(msg) => Err(ApiError::token_revoked(msg)),
        None => Ok(claims),
    }
}

/// Who is calling an admin endpoint, with what scopes.
struct Caller {
    scopes: ScopeSet,
}

/// Authenticates and requires `admin:tokens:ACTION`. With `auth.enabled = false` (loopback
/// only), a request without credentials is let through with every scope.
async fn admin(
    state: &Arc<ServerState>,
    headers: &HeaderMap,
    audit: &AuditSlot,
    action: &str,
) -> Result<Caller, ApiError> {
    if !state.auth_enabled && !headers.contains_key(header::AUTHORIZATION) {
        audit.set_principal("anonymous (auth disabled)");
        let mut scopes = ScopeSet::default();
        if let Ok(all) = ScopeSet::parse_claim("admin") {
            scopes = all;
        }
        return Ok(Caller { scopes });
    }
    let claims = authenticate(state, headers, audit, Purpose::Use).await?;
    let scopes = ScopeSet::parse_claim(&claims.scope)
        .map_err(|_| ApiError::invalid_token("the token's scopes cannot be read"))?;
    let needed = Scope::AdminResource {
        resource: "tokens".to_owned(),
        action: action.to_owned(),
    };
    if !scopes.allows(&needed) {
        return Err(ApiError::forbidden(format!("admin:tokens:{action}")));
    }
    Ok(Caller { scopes })
}

/// Refuses an expiry asked for that is longer than `auth.max_token_expiry`.
fn check_cap(state: &ServerState, expiry: HumanDuration, now: Timestamp) -> Result<(), ApiError> {
    let max = state.max_token_expiry;
    if max.is_never() {
        return Ok(());
    }
    let cap = max
        .after(now)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let want = expiry
        .after(now)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if want.is_none() || want > cap {
        return Err(ApiError::bad_request(format!(
            "expiry `{expiry}` is longer than the server's maximum ({max})"
        )));
    }
    Ok(())
}

fn mint_error(e: MintError) -> ApiError {
    match e {
        MintError::Subject(_) | MintError::Duration(_) => ApiError::bad_request(e.to_string()),
        MintError::Sign(msg) => {
            tracing::error!(error = %msg, "signing failed");
            ApiError::internal()
        }
    }
}

/// Mints a token and records it in the store (a failure to record is 503: the server does
/// not hand out tokens it cannot list or mark). `expiry` is what the request asked for, refused
/// when longer than `auth.max_token_expiry`; without one, `auth.token_expiry` applies, cut to
/// that cap.
async fn issue(
    state: &Arc<ServerState>,
    subject: &str,
    scopes: &ScopeSet,
    expiry: Option<HumanDuration>,
    audience: Option<&str>,
    single_use: bool,
) -> Result<token::Minted, ApiError> {
    // The exact instant, recorded as the issue time (`iat` keeps the second): a token issued
    // just after a `revoke --subject` in the same second is told apart from those before.
    let now = Timestamp::now();
    let not_after = match expiry {
        Some(asked) => {
            check_cap(state, asked, now)?;
            None
        }
        None => token::latest_expiry(now, state.max_token_expiry, None)
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
    };
    let minted = token::mint_until(
        &state.keys,
        &MintRequest {
            issuer: &state.issuer,
            subject,
            scopes,
            expiry: expiry.unwrap_or(state.token_expiry),
            audience,
            now,
        },
        not_after,
    )
    .map_err(mint_error)?;
    let c = &minted.claims;
    let record = TokenRecord::minted(c, now, single_use);
    with_store(state, move |s| s.record(&record)).await?;
    Ok(minted)
}

impl ApiError {
    /// 403 `SINGLE_USE`: a single-use token cannot be the parent of a derived token.
    pub(crate) fn single_use() -> Self {
        ApiError {
            status: StatusCode::FORBIDDEN,
            code: "SINGLE_USE",
            message: "a single-use token cannot be refreshed or exchanged for an offline token; use it once as it is, or ask for a token that is not single-use".to_owned(),
            required_scope: None,
            retry_after: None,
        }
    }

    /// 429 `TOO_MANY_TOKENS`: the subject holds as many unexpired tokens as the server issues
    /// on request.
    fn too_many_tokens(subject: &str, limit: usize) -> Self {
        let shown: String = subject
            .chars()
            .take(40)
            .flat_map(char::escape_debug)
            .collect();
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "TOO_MANY_TOKENS",
            message: format!(
                "`{shown}` already holds {limit} unexpired tokens, the most the server issues through refresh and offline tokens; use one of them, or wait until some expire"
            ),
            required_scope: None,
            retry_after: None,
        }
    }
}

impl ServerState {
    /// Mints and records a token that a holder asks for with a credential it already has: a
    /// token derived from `parent` (`POST /auth/refresh`; a registry offline token for a
    /// tessera token, or its renewal), or a registry offline token for a password login
    /// (`parent` is `None`). The one place where derived tokens are made, so that every path
    /// keeps them inside their parent (docs/server.md, "Refresh"):
    /// - the subject is the parent's and the scopes at most the parent's;
    /// - the expiry is `auth.token_expiry`, cut to `auth.max_token_expiry` and to the parent's
    ///   expiry (a parent that never expires leaves the first two);
    /// - a single-use parent is refused (403 `SINGLE_USE`), and so is a parent that has
    ///   expired (within the verification leeway) or been revoked since it was checked;
    /// - the subject may hold at most [`MAX_LIVE_TOKENS_PER_SUBJECT`] unexpired tokens (429
    ///   `TOO_MANY_TOKENS`);
    /// - the record names the parent, so revoking the parent revokes this token too.
    ///
    /// The parent must have been authenticated by the caller (signature, revocation).
    pub(crate) async fn issue_on_request(
        self: &Arc<Self>,
        subject: &str,
        scopes: &ScopeSet,
        audience: Option<&str>,
        parent: Option<&Claims>,
    ) -> Result<token::Minted, ApiError> {
        let now = Timestamp::now();
        if let Some(p) = parent {
            if p.sub != subject {
                tracing::error!("a derived token was asked for another subject than its parent's");
                return Err(ApiError::internal());
            }
            let held = ScopeSet::parse_claim(&p.scope)
                .map_err(|_| ApiError::invalid_token("the token's scopes cannot be read"))?;
            if let Some(missing) = scopes.iter().find(|s| !held.allows(s)) {
                return Err(ApiError::forbidden(missing.to_string()));
            }
            if let Some(exp) = p.exp
                && exp <= now.as_second()
            {
                return Err(ApiError::token_expired(format!(
                    "the token expired at {}, so nothing can be derived from it",
                    Timestamp::from_second(exp).unwrap_or(Timestamp::MIN)
                )));
            }
        }
        let not_after =
            token::latest_expiry(now, self.max_token_expiry, parent.and_then(|p| p.exp))
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let minted = token::mint_until(
            &self.keys,
            &MintRequest {
                issuer: &self.issuer,
                subject,
                scopes,
                expiry: self.token_expiry,
                audience,
                now,
            },
            not_after,
        )
        .map_err(mint_error)?;
        let mut record = TokenRecord::minted(&minted.claims, now, false);
        let mut parent_iat = None;
        if let Some(p) = parent {
            record = record.with_parent(&p.jti);
            parent_iat = Some(Timestamp::from_second(p.iat).unwrap_or(Timestamp::MIN));
        }
        let store = Arc::clone(&self.store);
        let outcome = tokio::task::spawn_blocking(move || {
            store.record_checked(&record, parent_iat, MAX_LIVE_TOKENS_PER_SUBJECT)
        })
        .await
        .map_err(ApiError::store_unavailable)?;
        match outcome {
            Ok(()) => Ok(minted),
            Err(IssueError::Store(e)) => Err(ApiError::store_unavailable(e)),
            Err(IssueError::ParentRevoked) => {
                Err(ApiError::token_revoked("the token has been revoked"))
            }
            Err(IssueError::ParentSingleUse) => Err(ApiError::single_use()),
            Err(IssueError::TooMany { subject, limit }) => {
                Err(ApiError::too_many_tokens(&subject, limit))
            }
        }
    }
}

// ---- handlers ------------------------------------------------------------------------------

/// `GET /health`.
pub(crate) async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

#[derive(Deserialize)]
pub(crate) struct LoginBody {
    username: String,
    password: Password,
}

/// `POST /auth/login`.
pub(crate) async fn login(
    State(state): AppState,
    Peer(ip): Peer,
    audit: AuditSlot,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response, ApiError> {
    let Some(login) = &state.login else {
        return Err(ApiError {
            message: "password login is not enabled on this server (`auth.username` is not set)"
                .to_owned(),
            ..ApiError::invalid_credentials()
        });
    };
    if !state
        .check_password(ip, &body.username, body.password.0)
        .await?
    {
        return Err(ApiError::invalid_credentials());
    }
    audit.set_principal(&login.username);
    let minted = issue(&state, &login.username, &login.scopes, None, None, false).await?;
    Ok(token_response(
        StatusCode::OK,
        json!({
            "token": minted.token.expose_secret(),
            "expires_at": minted.claims.exp.and_then(rfc3339),
        }),
    ))
}

/// The body of `GET /auth/verify`, serialized straight from borrowed fields (no intermediate
/// `serde_json::Value` map). Fields in alphabetical order: the bytes `json!` gave.
#[derive(serde::Serialize)]
struct VerifyBody<'a> {
    expires_at: Option<String>,
    issued_at: Option<String>,
    jti: &'a str,
    scopes: Vec<&'a str>,
    subject: &'a str,
    valid: bool,
}

/// `GET /auth/verify`. Takes the request rather than a `HeaderMap`, which axum would clone.
pub(crate) async fn verify(
    State(state): AppState,
    audit: AuditSlot,
    req: Request,
) -> Result<Response, ApiError> {
    let c = authenticate(&state, req.headers(), &audit, Purpose::Use).await?;
    // The body depends on the token's claims alone: made once per token (see `verified`).
    let body = c.verify_body(|c| {
        let body = VerifyBody {
            expires_at: c.exp.and_then(rfc3339),
            issued_at: rfc3339(c.iat),
            jti: &c.jti,
            scopes: scopes_of(c),
            subject: &c.sub,
            valid: true,
        };
        // Serialising strings and numbers cannot fail.
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    });
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            ),
        ],
        body,
    )
        .into_response())
}

/// `POST /auth/refresh`: a token derived from the presented one, with its subject, scopes and
/// audience, and the configured expiry cut to the parent's (see
/// [`ServerState::issue_on_request`]).
pub(crate) async fn refresh(
    State(state): AppState,
    audit: AuditSlot,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let c = authenticate(&state, &headers, &audit, Purpose::Derive).await?;
    let scopes = ScopeSet::parse_claim(&c.scope)
        .map_err(|_| ApiError::invalid_token("the token's scopes cannot be read"))?;
    let minted = state
        .issue_on_request(&c.sub, &scopes, c.aud.as_deref(), Some(&c))
        .await?;
    let n = &minted.claims;
    Ok(token_response(
        StatusCode::OK,
        json!({
            "token": minted.token.expose_secret(),
            "jti": n.jti,
            "subject": n.sub,
            "scopes": scopes_of(n),
            "issued_at": rfc3339(n.iat),
            "expires_at": n.exp.and_then(rfc3339),
        }),
    ))
}

/// `DELETE /auth/token`: revokes the presented token.
pub(crate) async fn revoke_self(
    State(state): AppState,
    audit: AuditSlot,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let c = authenticate(&state, &headers, &audit, Purpose::Use).await?;
    let jti = c.jti.clone();
    with_store(&state, move |s| s.revoke(&jti, Timestamp::now())).await?;
    Ok(token_response(
        StatusCode::OK,
        json!({"revoked": true, "jti": c.jti}),
    ))
}

/// `GET /auth/tokens` (`admin:tokens:read`).
pub(crate) async fn list_tokens(
    State(state): AppState,
    audit: AuditSlot,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin(&state, &headers, &audit, "read").await?;
    let records = with_store(&state, |s| s.list(Timestamp::now())).await?;
    Ok(token_response(StatusCode::OK, json!({"tokens": records})))
}

/// Scopes in a request body: the CLI's comma-separated string or an array of strings.
#[derive(Deserialize, Default)]
#[serde(untagged)]
pub(crate) enum ScopesField {
    #[default]
    None,
    Text(String),
    List(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    subject: String,
    #[serde(default)]
    scopes: ScopesField,
    #[serde(default)]
    repo: Option<String>,
    #[serde(default)]
    expiry: Option<String>,
    #[serde(default)]
    single_use: bool,
    #[serde(default)]
    audience: Option<String>,
}

/// `POST /auth/tokens` (`admin:tokens:write`): mints a token for anyone, with at most the
/// caller's own scopes.
pub(crate) async fn create_token(
    State(state): AppState,
    audit: AuditSlot,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    let caller = admin(&state, &headers, &audit, "write").await?;
    let list = match body.scopes {
        ScopesField::None => String::new(),
        ScopesField::Text(s) => s,
        ScopesField::List(v) => v.join(","),
    };
    let scopes = ScopeSet::parse_list(&list, body.repo.as_deref().unwrap_or("*"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(missing) = scopes.iter().find(|s| !caller.scopes.allows(s)) {
        return Err(ApiError::forbidden(missing.to_string()));
    }
    let expiry = match body.expiry.as_deref() {
        Some(e) => Some(HumanDuration::parse(e).map_err(|e| ApiError::bad_request(e.to_string()))?),
        None => None,
    };
    let minted = issue(
        &state,
        &body.subject,
        &scopes,
        expiry,
        body.audience.as_deref(),
        body.single_use,
    )
    .await?;
    let c = &minted.claims;
    Ok(token_response(
        StatusCode::CREATED,
        json!({
            "token": minted.token.expose_secret(),
            "jti": c.jti,
            "subject": c.sub,
            "scopes": scopes_of(c),
            "issued_at": rfc3339(c.iat),
            "expires_at": c.exp.and_then(rfc3339),
            "single_use": body.single_use,
        }),
    ))
}

/// `DELETE /auth/tokens/{jti}` (`admin:tokens:write`).
pub(crate) async fn revoke_token(
    State(state): AppState,
    audit: AuditSlot,
    headers: HeaderMap,
    PathParam(jti): PathParam<String>,
) -> Result<Response, ApiError> {
    admin(&state, &headers, &audit, "write").await?;
    if jti.is_empty()
        || jti.len() > 128
        || !jti
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::bad_request(
            "that is not a token id; take the id from `GET /auth/tokens`",
        ));
    }
    audit.set_target(&jti);
    let id = jti.clone();
    // An id the store has never heard of (a typo) is refused rather than recorded as revoked.
    let before = with_store(&state, move |s| {
        let before = s.token_state(&id)?;
        if before != crate::store::TokenState::Unknown {
            s.revoke(&id, Timestamp::now())?;
        }
        Ok(before)
    })
    .await?;
    if before == crate::store::TokenState::Unknown {
        return Err(ApiError::no_such(format!(
            "no token with id `{jti}` in the token store; `GET /auth/tokens` lists the ids"
        )));
    }
    Ok(token_response(
        StatusCode::OK,
        json!({
            "revoked": true,
            "jti": jti,
            "already_revoked": before == crate::store::TokenState::Revoked,
        }),
    ))
}

/// Any other path.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// A known path with another method.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
