//! The HTTP client the CLI uses to talk to a remote tessera server.
//!
//! `reqwest` (blocking) over rustls with the `ring` provider; server certificates are checked
//! against the system's roots through the platform verifier, unless the remote was added with
//! `--insecure`. Connect timeout 5 s, whole request 15 s, no redirects (a token is never sent
//! anywhere but the remote's own URL).

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client as Http, Response};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::term::safe;

/// Connection timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout for a whole request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Why talking to a remote failed. Messages name the URL and the fix, never a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing answered.
    #[error(
        "cannot reach {}: {}; check the URL (`tessera remotes list`) and that the server is running",
        safe(url),
        safe(reason)
    )]
    Unreachable { url: String, reason: String },
    /// The TLS handshake failed (usually the certificate).
    #[error(
        "TLS with {} failed: {}; if the server uses a private CA, add it to the system's trust store (or SSL_CERT_FILE), or add the remote with --insecure to skip certificate checks",
        safe(url),
        safe(reason)
    )]
    Tls { url: String, reason: String },
    /// No answer in time.
    #[error("{} did not answer within {} s; check that the server is running and reachable", safe(url), REQUEST_TIMEOUT.as_secs())]
    Timeout { url: String },
    /// Something answered, but not like a tessera server.
    #[error(
        "{} answered with HTTP {status} and no tessera JSON; check that the URL points at a tessera server (`tessera serve`)",
        safe(url)
    )]
    NotTessera { url: String, status: u16 },
    /// The server refused the request.
    /// (`message` and `code` are the server's words: shown with control characters escaped.)
    #[error("{}: {} ({})", safe(url), safe(message), safe(code))]
    Api {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The client could not be built.
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
}

impl ClientError {
    /// The server's error code, for refusals.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A freshly issued token.
pub struct IssuedToken {
    /// The token.
    pub token: SecretString,
    /// RFC 3339 expiry, or `None` for never.
    pub expires_at: Option<String>,
}

/// A client for one remote.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: Http,
}

/// All error messages of a chain, joined.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

impl Client {
    /// A client for the remote at `base` (normalised, no trailing `/`); `insecure` accepts
    /// invalid certificates.
    pub fn new(base: &str, insecure: bool) -> Result<Client, ClientError> {
        crate::tls::install_crypto_provider();
        let http = Http::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tessera/", env!("CARGO_PKG_VERSION")))
            .tls_danger_accept_invalid_certs(insecure)
            .build()
            .map_err(|e| ClientError::Setup(chain(&e)))?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// The remote's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        let url = self.base.clone();
        if e.is_timeout() {
            return ClientError::Timeout { url };
        }
        // reqwest's own text repeats the URL; the causes say what happened.
        let reason = {
            let full = chain(&e);
            match full.split_once(": ") {
                Some((_, rest)) if e.is_connect() || e.is_request() => rest.to_owned(),
                _ => full,
            }
        };
        let lower = reason.to_ascii_lowercase();
        if lower.contains("certificate")
            || lower.contains("tls")
            || lower.contains("handshake")
            || lower.contains("unknownissuer")
        {
            return ClientError::Tls { url, reason };
        }
        ClientError::Unreachable { url, reason }
    }

    /// Reads a JSON answer; a non-JSON answer is [`ClientError::NotTessera`], a JSON error
    /// body is [`ClientError::Api`].
    fn json(&self, response: Response) -> Result<Value, ClientError> {
        let status = response.status();
        let body: Option<Value> = response.json().ok();
        match body {
            Some(v) if status.is_success() && v.is_object() => Ok(v),
            Some(v) if v.get("code").and_then(Value::as_str).is_some() => Err(ClientError::Api {
                url: self.base.clone(),
                status: status.as_u16(),
                code: v["code"].as_str().unwrap_or_default().to_owned(),
                message: v
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("refused")
                    .to_owned(),
            }),
            _ => Err(ClientError::NotTessera {
                url: self.base.clone(),
                status: status.as_u16(),
            }),
        }
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /health`: checks that a tessera server answers.
    pub fn health(&self) -> Result<(), ClientError> {
        let r = self
            .http
            .get(self.endpoint("/health"))
            .send()
            .map_err(|e| self.transport(e))?;
        let status = r.status();
        match self.json(r) {
            Ok(v) if v.get("status").and_then(Value::as_str) == Some("ok") => Ok(()),
            Ok(_) | Err(ClientError::Api { .. }) => Err(ClientError::NotTessera {
                url: self.base.clone(),
                status: status.as_u16(),
            }),
            Err(e) => Err(e),
        }
    }

    /// `POST /auth/login`: exchanges a username and password for a token.
    pub fn login(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<IssuedToken, ClientError> {
        let body = json!({"username": username, "password": password.expose_secret()});
        let r = self
            .http
            .post(self.endpoint("/auth/login"))
            .json(&body)
            .send()
            .map_err(|e| self.transport(e))?;
        let v = self.json(r)?;
        let token =
            v.get("token")
                .and_then(Value::as_str)
                .ok_or_else(|| ClientError::NotTessera {
                    url: self.base.clone(),
                    status: StatusCode::OK.as_u16(),
                })?;
        Ok(IssuedToken {
            token: SecretString::from(token.to_owned()),
            expires_at: v
                .get("expires_at")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    /// `GET /auth/verify`: what the server knows of a token (subject, scopes, jti,
    /// issued_at, expires_at).
    pub fn verify(&self, token: &SecretString) -> Result<Value, ClientError> {
        self.api_call(reqwest::Method::GET, "/auth/verify", token, None)
    }

    /// `DELETE /auth/token`: revokes the token.
    pub fn revoke(&self, token: &SecretString) -> Result<(), ClientError> {
        self.api_call(reqwest::Method::DELETE, "/auth/token", token, None)
            .map(|_| ())
    }

    /// A `method` request to `path` (e.g. `/auth/keys`) with `token` as its bearer and
    /// `body` as JSON when given, and the JSON of the answer: every authenticated call of the
    /// CLI to the `/auth/*` API (`--remote`), the API-key commands (contract section 9) among them.
    pub fn api_call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &SecretString,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let mut req = self
            .http
            .request(method, self.endpoint(path))
            .bearer_auth(token.expose_secret());
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().map_err(|e| self.transport(e))?;
        self.json(r)
    }

    /// `POST /auth/exchange` (RFC 8693, a form): exchanges an OIDC ID token for a token.
    /// Returns the token and its lifetime in seconds.
    pub fn exchange(&self, id_token: &SecretString) -> Result<(SecretString, u64), ClientError> {
        let body = zeroize::Zeroizing::new(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair(
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                )
                .append_pair("subject_token", id_token.expose_secret())
                .append_pair(
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:id_token",
                )
                .finish(),
        );
        let r = self
            .http
            .post(self.endpoint("/auth/exchange"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
            .map_err(|e| self.transport(e))?;
        let v = self.json(r)?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| ClientError::NotTessera {
                url: self.base.clone(),
                status: StatusCode::OK.as_u16(),
            })?;
        Ok((
            SecretString::from(token.to_owned()),
            v.get("expires_in").and_then(Value::as_u64).unwrap_or(0),
        ))
    }

    // --- the tokens API with a remote's token (contract section 9: the CLI's admin
    // commands against a remote) ---

    /// `GET /auth/tokens`: the tokens the token's holder may see (its own; everyone's with
    /// `admin:tokens:read`).
    pub fn list_tokens(&self, token: &SecretString) -> Result<Value, ClientError> {
        self.api_call(reqwest::Method::GET, "/auth/tokens", token, None)
    }

    /// `POST /auth/tokens` with `body` (`subject`, `scopes`, `repo`, `expiry`, `audience`).
    pub fn create_token(&self, token: &SecretString, body: &Value) -> Result<Value, ClientError> {
        self.api_call(reqwest::Method::POST, "/auth/tokens", token, Some(body))
    }

    /// `DELETE /auth/tokens/{jti}`.
    pub fn revoke_token(&self, token: &SecretString, jti: &str) -> Result<Value, ClientError> {
        let path = format!(
            "/auth/tokens/{}",
            url::form_urlencoded::byte_serialize(jti.as_bytes()).collect::<String>()
        );
        self.api_call(reqwest::Method::DELETE, &path, token, None)
    }
}
