//! The OpenID providers of the workload identity tests (contract section 11):
//! - [`Provider`]: the real `oidc-provider` from npm (tests/it/oidc/provider.mjs), run with
//!   node on a free loopback port; its client_credentials grant gives signed JWT access
//!   tokens with a CI job's claims, from its own discovery document and JWKS.
//! - [`GithubIssuer`]: an issuer in this process that signs ID tokens shaped exactly like
//!   GitHub Actions' (the claims GitHub documents) with the RSA keys of `fixtures/oidc/`,
//!   serving discovery, its JWKS (with rotation) and the Actions ID-token request endpoint.
//!
//! Also the server helpers the tests need beyond `api.rs`: a server whose JWKS refetch
//! interval is shortened, and its fetch counter.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::real::{free_port, have, skip_unless_ci};

/// The folder of the node provider (with `node_modules` after `npm ci`).
pub fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/oidc")
}

/// The fixtures of the GitHub-shaped issuer.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/oidc")
        .join(name)
}

/// The client secret of every job of the node provider.
pub const PROVIDER_SECRET: &str = "provider-test-client-secret-0123456789";
/// The audience the provider's tokens get unless another resource is asked for.
pub const PROVIDER_AUDIENCE: &str = "https://tessera.test";

/// The real `oidc-provider`, stopped on drop.
pub struct Provider {
    child: Child,
    pub issuer: String,
}

impl Provider {
    /// Starts it; `None` (skipped, a failure under CI) when node or its packages are missing.
    pub fn start() -> Option<Provider> {
        let dir = provider_dir();
        if !have("node") {
            skip_unless_ci("node is not installed", "apt-get install nodejs");
            return None;
        }
        if !dir.join("node_modules/oidc-provider").is_dir() {
            skip_unless_ci(
                "oidc-provider is not installed",
                "run `npm ci` in tests/it/oidc (scripts/test does)",
            );
            return None;
        }
        let port = free_port();
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("listening "),
            "oidc-provider did not start: {line:?}"
        );
        Some(Provider {
            child,
            issuer: format!("http://127.0.0.1:{port}"),
        })
    }

    /// A signed JWT access token for the job `client` with audience `resource`.
    pub fn token(&self, client: &str, resource: &str) -> String {
        let r = super::http::client()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(PROVIDER_SECRET))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(super::http::form(&[
                ("grant_type", "client_credentials"),
                ("scope", "push"),
                ("resource", resource),
            ]))
            .send()
            .unwrap();
        let status = r.status();
        let v: Value = r.json().unwrap();
        assert!(status.is_success(), "oidc-provider refused: {v}");
        v["access_token"].as_str().unwrap().to_owned()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One RSA key of the GitHub-shaped issuer.
#[derive(Clone)]
pub struct RsaKey {
    pub kid: String,
    pub jwk: Value,
    pub private_pem: Vec<u8>,
    pub public_pem: Vec<u8>,
}

impl RsaKey {
    /// The fixture key `a` or `b`.
    pub fn fixture(name: &str) -> RsaKey {
        let jwk: Value = serde_json::from_slice(
            &std::fs::read(fixture(&format!("github-{name}.jwk.json"))).unwrap(),
        )
        .unwrap();
        RsaKey {
            kid: jwk["kid"].as_str().unwrap().to_owned(),
            jwk,
            private_pem: std::fs::read(fixture(&format!("github-{name}.key.pem"))).unwrap(),
            public_pem: std::fs::read(fixture(&format!("github-{name}.pub.pem"))).unwrap(),
        }
    }
}

struct IssuerState {
    jwks: Value,
    /// The ID token the Actions request endpoint hands out, with the bearer it wants.
    actions: Option<(String, String)>,
}

/// An issuer shaped like GitHub Actions' (`token.actions.githubusercontent.com`), on
/// 127.0.0.1: `/.well-known/openid-configuration`, `/.well-known/jwks` (the keys published
/// now), and `/_apis/id-token` (the ID-token request endpoint of a job).
pub struct GithubIssuer {
    pub issuer: String,
    state: Arc<Mutex<IssuerState>>,
    pub jwks_fetches: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    addr: SocketAddr,
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl GithubIssuer {
    /// Starts it, publishing `keys`.
    pub fn start(keys: &[&RsaKey]) -> GithubIssuer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let state = Arc::new(Mutex::new(IssuerState {
            jwks: json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }),
            actions: None,
        }));
        let jwks_fetches = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (st, fetches, stopped, iss) = (
            Arc::clone(&state),
            Arc::clone(&jwks_fetches),
            Arc::clone(&stop),
            issuer.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(c) = conn {
                    let _ = serve_one(c, &st, &fetches, &iss);
                }
            }
        });
        GithubIssuer {
            issuer,
            state,
            jwks_fetches,
            stop,
            addr,
        }
    }

    /// Publishes `keys` instead of the current ones (a rotation).
    pub fn publish(&self, keys: &[&RsaKey]) {
        self.state.lock().unwrap().jwks =
            json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
    }

    /// Publishes `doc` as the JWKS, whatever it holds.
    pub fn publish_raw(&self, doc: Value) {
        self.state.lock().unwrap().jwks = doc;
    }

    /// The JWKS published now.
    pub fn jwks(&self) -> Value {
        self.state.lock().unwrap().jwks.clone()
    }

    /// Makes the Actions request endpoint hand out `id_token` to callers with `bearer`;
    /// returns the URL to put in `ACTIONS_ID_TOKEN_REQUEST_URL`.
    pub fn serve_actions_token(&self, id_token: &str, bearer: &str) -> String {
        self.state.lock().unwrap().actions = Some((id_token.to_owned(), bearer.to_owned()));
        format!("{}/_apis/id-token?api-version=2.0", self.issuer)
    }

    /// The claims of a GitHub Actions ID token of a job of `acme/app` on `main` in the
    /// `production` environment, issued now, with audience `aud` (as GitHub documents them).
    pub fn claims(&self, aud: &str) -> Value {
        let iat = now();
        json!({
            "jti": format!("gh-{}", uuid_like()),
            "sub": "repo:acme/app:environment:production",
            "environment": "production",
            "aud": aud,
            "ref": "refs/heads/main",
            "ref_protected": "true",
            "sha": "d6e0f5a0c8b4e3f2a1b0c9d8e7f6a5b4c3d2e1f0",
            "repository": "acme/app",
            "repository_owner": "acme",
            "repository_owner_id": "123456",
            "repository_id": "654321",
            "repository_visibility": "private",
            "actor_id": "12",
            "actor": "octocat",
            "run_id": "1000000001",
            "run_number": "10",
            "run_attempt": "1",
            "runner_environment": "github-hosted",
            "workflow": "release",
            "workflow_ref": "acme/app/.github/workflows/release.yml@refs/heads/main",
            "workflow_sha": "d6e0f5a0c8b4e3f2a1b0c9d8e7f6a5b4c3d2e1f0",
            "job_workflow_ref": "acme/app/.github/workflows/release.yml@refs/heads/main",
            "job_workflow_sha": "d6e0f5a0c8b4e3f2a1b0c9d8e7f6a5b4c3d2e1f0",
            "head_ref": "",
            "base_ref": "",
            "event_name": "push",
            "ref_type": "branch",
            "iss": self.issuer,
            "nbf": iat - 600,
            "iat": iat,
            "exp": iat + 300,
        })
    }

    /// `claims` signed RS256 with `key` (header `typ`, `alg`, `kid` as GitHub sends them).
    pub fn sign(&self, key: &RsaKey, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(key.kid.clone());
        h.typ = Some("JWT".to_owned());
        jsonwebtoken::encode(
            &h,
            claims,
            &EncodingKey::from_rsa_pem(&key.private_pem).unwrap(),
        )
        .unwrap()
    }

    /// A fresh ID token of the default job, signed with `key`, for `aud`.
    pub fn token(&self, key: &RsaKey, aud: &str) -> String {
        self.sign(key, &self.claims(aud))
    }
}

impl Drop for GithubIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

/// 128 random bits as hex.
pub fn uuid_like() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap();
    hex::encode(b)
}

fn serve_one(
    mut c: TcpStream,
    state: &Mutex<IssuerState>,
    fetches: &AtomicU64,
    issuer: &str,
) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(c.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut auth = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            auth = Some(v.trim().to_owned());
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (status, body) = if path == "/.well-known/openid-configuration" {
        (
            200,
            json!({
                "issuer": issuer,
                "jwks_uri": format!("{issuer}/.well-known/jwks"),
                "subject_types_supported": ["public", "pairwise"],
                "response_types_supported": ["id_token"],
                "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "repository", "repository_id", "repository_owner", "repository_owner_id", "environment"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid"],
            }),
        )
    } else if path == "/.well-known/jwks" {
        fetches.fetch_add(1, Ordering::SeqCst);
        (200, state.lock().unwrap().jwks.clone())
    } else if path.starts_with("/_apis/id-token?") {
        let actions = state.lock().unwrap().actions.clone();
        match actions {
            Some((token, bearer))
                if auth.as_deref().is_some_and(|a| {
                    a.len() > 7 && a[..7].eq_ignore_ascii_case("bearer ") && a[7..] == bearer
                }) && path.contains("audience=") =>
            {
                // GitHub mints the token for the audience asked for; the tests hand one out.
                (200, json!({ "count": 1, "value": token }))
            }
            _ => (401, json!({ "message": "bad bearer" })),
        }
    } else {
        (404, json!({}))
    };
    let body = body.to_string();
    let reason = if status == 200 { "OK" } else { "Error" };
    write!(
        c,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let _ = c.read(&mut [0u8; 1]);
    Ok(())
}

/// `[[auth.trust]]` text for the tests.
pub fn policy(name: &str, issuer: &str, audience: &str, extra: &str, claims: &str) -> String {
    format!(
        "\n[[auth.trust]]\nname = \"{name}\"\nissuer = \"{issuer}\"\naudience = \"{audience}\"\nsubject = \"ci-{name}\"\nscopes = [\"push\", \"pull\"]\nrepo = \"acme/*\"\nexpiry = \"15m\"\n{extra}\n[auth.trust.claims]\n{claims}\n"
    )
}

/// The in-process server of `home` with the least time between two fetches of an issuer's
/// keys set to `refetch`.
pub fn serve_with_refetch(home: &super::Home, refetch: Duration) -> super::api::RunningServer {
    let (config, env) = home.config();
    let state = tessera::http::ServerState::load(&config, &env).unwrap();
    state.set_jwks_min_refetch(refetch);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    tessera::http::spawn(state, listener, None).unwrap()
}

/// How many times the server fetched issuers' keys.
pub fn jwks_fetches(server: &super::api::RunningServer) -> u64 {
    server.state().jwks_fetches()
}

/// `POST {base}/auth/exchange` of `id_token` as a form: (status, body).
pub fn exchange(base: &str, id_token: &str) -> (u16, Value) {
    let r = super::http::client()
        .post(format!("{base}/auth/exchange"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(super::http::form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", id_token),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:id_token",
            ),
        ]))
        .send()
        .unwrap();
    super::http::status_and_json(r)
}
