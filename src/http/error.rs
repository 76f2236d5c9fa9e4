//! The one place that maps errors to an HTTP status and `{"error", "code"}`: the typed
//! errors of the core ([`AuthError`], the store's, [`RegistryError`]) become an [`ApiError`]
//! here and nowhere else.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::AuthError;
use crate::registry::RegistryError;
use crate::token::MintError;

/// An API error: status, stable code, one readable sentence, and for 403 the scope that was
/// missing. Never carries a secret.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `INVALID_TOKEN`.
    pub code: &'static str,
    /// One sentence for people.
    pub message: String,
    /// For `FORBIDDEN`: the scope the request needed.
    pub required_scope: Option<String>,
    /// For `RATE_LIMITED`: seconds until the next attempt is allowed.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            required_scope: None,
            retry_after: None,
        }
    }

    /// 503 `STORE_UNAVAILABLE` for a token store that cannot answer: tokens cannot be checked, so
    /// none is accepted (fail closed). The cause goes to the log, not to the client.
    fn store_unavailable(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "token store failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "STORE_UNAVAILABLE",
            "the token store cannot answer right now, so tokens cannot be checked; try again later",
        )
    }

    /// 400 `BAD_REQUEST`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    /// 401 `AUTH_REQUIRED`: no credentials were sent.
    pub fn auth_required() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "AUTH_REQUIRED",
            "this endpoint needs a token in an `Authorization: Bearer TOKEN` header",
        )
    }

    /// 401 `INVALID_TOKEN`.
    pub fn invalid_token(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "INVALID_TOKEN", message)
    }

    /// 401 `TOKEN_EXPIRED`.
    pub fn token_expired(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "TOKEN_EXPIRED", message)
    }

    /// 401 `TOKEN_REVOKED`.
    pub fn token_revoked(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "TOKEN_REVOKED", message)
    }

    /// 401 `INVALID_CREDENTIALS`: the same body for an unknown user and a wrong password.
    pub fn invalid_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_CREDENTIALS",
            "the username or password is wrong",
        )
    }

    /// 403 `FORBIDDEN` naming the scope the request needed.
    pub fn forbidden(required_scope: impl Into<String>) -> Self {
        let scope = required_scope.into();
        let mut e = Self::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            format!("this request needs a token with scope `{scope}`"),
        );
        e.required_scope = Some(scope);
        e
    }

    /// 404 `NOT_FOUND` for a thing the request names (e.g. a token id) that does not exist.
    pub fn no_such(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "there is no such endpoint; see docs/server.md for the API",
        )
    }

    /// 405 `METHOD_NOT_ALLOWED`.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "this endpoint does not accept that method",
        )
    }

    /// 413 `PAYLOAD_TOO_LARGE`.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// 429 `RATE_LIMITED` with `Retry-After`.
    pub fn rate_limited(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!("too many failed logins; try again in {retry_after} s"),
        );
        e.retry_after = Some(retry_after);
        e
    }

    /// 421 `WRONG_HOST`: a request to a loopback server whose `Host` names another server
    /// (DNS rebinding).
    pub fn wrong_host(port: u16) -> Self {
        Self::new(
            StatusCode::MISDIRECTED_REQUEST,
            "WRONG_HOST",
            format!(
                "this server listens on loopback and answers only requests addressed to localhost:{port}, 127.0.0.1:{port} or [::1]:{port}; a proxy in front must send one of these as `Host`"
            ),
        )
    }

    /// 403 `CROSS_ORIGIN`: a write from a web page of another origin.
    pub fn cross_origin() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "CROSS_ORIGIN",
            "requests that change something are not accepted from web pages of another origin",
        )
    }

    /// 415 `UNSUPPORTED_MEDIA_TYPE`: a body that is not declared as JSON.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the request body as JSON with `Content-Type: application/json`",
        )
    }

    /// 503 `UNAVAILABLE`: a dependency (the token store) cannot answer; fail closed.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
    }

    /// 500 `INTERNAL`: a bug or an unexpected failure; details go to the log only.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "the server failed to handle the request; the server log has the details",
        )
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let message = e.to_string();
        match e {
            AuthError::Invalid(_) => ApiError::invalid_token(message),
            AuthError::Expired { .. } => ApiError::token_expired(message),
            AuthError::Revoked | AuthError::AlreadyUsed => ApiError::token_revoked(message),
            AuthError::SingleUse => Self::new(StatusCode::FORBIDDEN, "SINGLE_USE", message),
            AuthError::SubjectMismatch { .. } => {
                Self::new(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS", message)
            }
            AuthError::InvalidCredentials => ApiError::invalid_credentials(),
            AuthError::Forbidden { required } => ApiError::forbidden(required),
            AuthError::RateLimited { retry_after } => ApiError::rate_limited(retry_after),
            AuthError::TooMany { .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_TOKENS", message)
            }
            AuthError::ExpiryTooLong { .. } | AuthError::Duration(_) => {
                ApiError::bad_request(message)
            }
            AuthError::Mint(MintError::Sign(msg)) => {
                tracing::error!(error = %msg, "signing failed");
                ApiError::internal()
            }
            AuthError::Mint(_) => ApiError::bad_request(message),
            AuthError::StoreUnavailable(e) => ApiError::store_unavailable(e),
            AuthError::TaskFailed(e) => ApiError::store_unavailable(e),
            AuthError::Unavailable(_) => ApiError::unavailable(message),
            AuthError::Internal(why) => {
                tracing::error!(error = %why, "internal error");
                ApiError::internal()
            }
            // --- API keys (contract section 9) ---
            AuthError::KeyDisabled => Self::new(StatusCode::UNAUTHORIZED, "KEY_DISABLED", message),
            AuthError::KeyRevoked => ApiError::token_revoked(message),
            AuthError::KeyExpired { .. } => ApiError::token_expired(message),
            AuthError::IpNotAllowed => Self::new(StatusCode::FORBIDDEN, "IP_NOT_ALLOWED", message),
            AuthError::KeyRateLimited { retry_after, .. } => ApiError {
                message,
                ..ApiError::rate_limited(retry_after)
            },
        }
    }
}

impl From<crate::auth::keys::KeyError> for ApiError {
    fn from(e: crate::auth::keys::KeyError) -> Self {
        use crate::auth::keys::KeyError;
        let message = e.to_string();
        match e {
            KeyError::Invalid(_) => ApiError::bad_request(message),
            KeyError::NameTaken { .. } => Self::new(StatusCode::CONFLICT, "NAME_TAKEN", message),
            KeyError::TooMany { .. } => Self::new(StatusCode::CONFLICT, "TOO_MANY_KEYS", message),
            KeyError::NotFound(_) => ApiError::no_such(message),
            KeyError::Final(_) => Self::new(StatusCode::CONFLICT, "KEY_REVOKED", message),
            KeyError::Auth(a) => a.into(),
            KeyError::Store(s) => ApiError::store_unavailable(s),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::WrongService { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "WRONG_SERVICE", e.to_string())
            }
            RegistryError::Scope(_) => ApiError::bad_request(e.to_string()),
            other => {
                tracing::error!(error = %other, "cannot make a registry token");
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message, "code": self.code });
        if let Some(scope) = &self.required_scope {
            body["required_scope"] = json!(scope);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED && self.code != "INVALID_CREDENTIALS" {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tessera\""),
            );
        }
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}

/// The error code of a response, kept for the audit line.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);
