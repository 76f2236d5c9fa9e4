//! `POST /auth/exchange`: OAuth 2.0 token exchange (RFC 8693) of a CI job's OIDC ID token for
//! a tessera token, over `crate::auth::exchange` (contract section 11).
//!
//! The body is a form (`application/x-www-form-urlencoded`, as RFC 8693 has it) or the same
//! fields as JSON: `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`,
//! `subject_token=JWT`, `subject_token_type=urn:ietf:params:oauth:token-type:id_token` (or
//! `...:jwt`); `requested_token_type`, when given, must be the access-token type. A refusal
//! of the ID token is 401 `INVALID_TOKEN` whose `error` and `error_description` name the
//! first claim that did not match; the token is never echoed.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::BODY_LIMIT;
use super::error::ApiError;
use super::middleware::AuditSlot;
use super::state::ServerState;
use crate::auth::AuthError;

/// The grant type of RFC 8693.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The token types accepted as `subject_token_type`.
const SUBJECT_TYPES: [&str; 2] = [
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:jwt",
];
/// The token type issued.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

#[derive(Default)]
struct Params {
    grant_type: Option<String>,
    subject_token: Option<SecretString>,
    subject_token_type: Option<String>,
    requested_token_type: Option<String>,
}

fn set(p: &mut Params, k: &str, v: String) {
    match k {
        "grant_type" => p.grant_type = Some(v),
        "subject_token" => p.subject_token = Some(SecretString::from(v)),
        "subject_token_type" => p.subject_token_type = Some(v),
        "requested_token_type" => p.requested_token_type = Some(v),
        // audience, scope, resource, actor_token...: what is issued is the policy's.
        _ => {}
    }
}

fn parse(content_type: &str, body: &[u8]) -> Result<Params, ApiError> {
    let mut p = Params::default();
    if content_type.eq_ignore_ascii_case("application/json") {
        let v: Value = serde_json::from_slice(body)
            .map_err(|_| ApiError::bad_request("the request body is not valid JSON"))?;
        let Value::Object(map) = v else {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        };
        for (k, v) in map {
            if let Value::String(s) = v {
                set(&mut p, &k, s);
            }
        }
    } else {
        for (k, v) in url::form_urlencoded::parse(body) {
            set(&mut p, &k, v.into_owned());
        }
    }
    Ok(p)
}

/// The refusal of an ID token: 401 `INVALID_TOKEN` with `error_description` (RFC 6749's
/// field) beside tessera's `error` and `code`.
fn refused(message: String) -> Response {
    let body = json!({
        "error": message,
        "error_description": message,
        "code": "INVALID_TOKEN",
    });
    let mut r = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.extensions_mut()
        .insert(super::error::ErrorCode("INVALID_TOKEN"));
    r
}

/// `POST /auth/exchange`.
pub(crate) async fn exchange(State(state): State<Arc<ServerState>>, req: Request) -> Response {
    match inner(&state, req).await {
        Ok(r) => r,
        Err(Refusal::Token(message)) => refused(message),
        Err(Refusal::Api(e)) => e.into_response(),
    }
}

enum Refusal {
    Token(String),
    Api(ApiError),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Api(e)
    }
}

async fn inner(state: &ServerState, req: Request) -> Result<Response, Refusal> {
    let Some(workloads) = &state.workloads else {
        return Err(ApiError::no_such(
            "workload identity is off on this server: it has no [[auth.trust]] policy (see docs/workload-identity.md)",
        )
        .into());
    };
    let (parts, body) = req.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_owned();
    let body = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| ApiError::too_large(BODY_LIMIT))?;
    let body = zeroize::Zeroizing::new(body.to_vec());
    let p = parse(&content_type, &body)?;
    if p.grant_type.as_deref() != Some(GRANT_TYPE) {
        return Err(ApiError::bad_request(format!(
            "`grant_type` must be `{GRANT_TYPE}` (RFC 8693 token exchange)"
        ))
        .into());
    }
    let Some(subject_token) = p.subject_token.filter(|t| !t.expose_secret().is_empty()) else {
        return Err(ApiError::bad_request(
            "`subject_token` is missing: send the CI job's OIDC ID token",
        )
        .into());
    };
    if !p
        .subject_token_type
        .as_deref()
        .is_some_and(|t| SUBJECT_TYPES.contains(&t))
    {
        return Err(ApiError::bad_request(format!(
            "`subject_token_type` must be `{}` or `{}`",
            SUBJECT_TYPES[0], SUBJECT_TYPES[1]
        ))
        .into());
    }
    if p.requested_token_type
        .as_deref()
        .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
    {
        return Err(ApiError::bad_request(format!(
            "`requested_token_type` can only be `{ACCESS_TOKEN_TYPE}`"
        ))
        .into());
    }
    let done = match state
        .auth
        .exchange(workloads, subject_token.expose_secret())
        .await
    {
        Ok(done) => done,
        Err(AuthError::Invalid(message)) => return Err(Refusal::Token(message)),
        Err(e) => return Err(ApiError::from(e).into()),
    };
    if let Some(a) = parts.extensions.get::<AuditSlot>() {
        a.set_principal(&done.minted.claims.sub);
    }
    let body = json!({
        "access_token": done.minted.token.expose_secret(),
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": done.expires_in,
        "scope": done.minted.claims.scope.to_string(),
    });
    let mut r = (StatusCode::OK, Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_and_json_bodies_give_the_same_fields() {
        let form = parse(
            "application/x-www-form-urlencoded",
            b"grant_type=g&subject_token=t&subject_token_type=s&scope=x",
        )
        .unwrap();
        let json = parse(
            "application/json",
            br#"{"grant_type":"g","subject_token":"t","subject_token_type":"s","n":1}"#,
        )
        .unwrap();
        for p in [form, json] {
            assert_eq!(p.grant_type.as_deref(), Some("g"));
            assert_eq!(p.subject_token.unwrap().expose_secret(), "t");
            assert_eq!(p.subject_token_type.as_deref(), Some("s"));
        }
        assert!(parse("application/json", b"[1]").is_err());
    }
}
