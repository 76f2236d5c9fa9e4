//! HTTP requests the tests make to a tessera server at `base` (`http://ADDR`).

use std::time::Duration;

use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

/// A client that gives up on a starved server instead of hanging the test.
pub fn client() -> Client {
    super::api::install_crypto_provider();
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The status and JSON body of a response.
pub fn status_and_json(r: Response) -> (u16, Value) {
    let s = r.status().as_u16();
    (s, r.json().unwrap())
}

/// The JSON body of an answer that must have `status` and `Cache-Control: no-store` (as
/// every answer carrying a token must).
#[track_caller]
pub fn no_store_json(r: Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status);
    assert_eq!(r.headers()["cache-control"], "no-store");
    r.json().unwrap()
}

/// The status and the `code` of an error document.
pub fn status_and_code(r: Response) -> (u16, String) {
    let (status, v) = status_and_json(r);
    (status, v["code"].as_str().unwrap_or_default().to_owned())
}

/// `GET /auth/verify` with `token` as Bearer: (status, body).
pub fn verify(base: &str, token: &str) -> (u16, Value) {
    status_and_json(
        client()
            .get(format!("{base}/auth/verify"))
            .bearer_auth(token)
            .send()
            .unwrap(),
    )
}

/// `POST /auth/refresh` with `token` as Bearer.
pub fn refresh(base: &str, token: &str) -> Response {
    client()
        .post(format!("{base}/auth/refresh"))
        .bearer_auth(token)
        .send()
        .unwrap()
}

/// `POST /auth/login` with a username and password.
pub fn login(base: &str, user: &str, password: &str) -> Response {
    client()
        .post(format!("{base}/auth/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .unwrap()
}

/// The status of `GET /health`.
pub fn health(base: &str) -> u16 {
    get_status(&format!("{base}/health"))
}

/// The status of a plain `GET url`.
pub fn get_status(url: &str) -> u16 {
    client().get(url).send().unwrap().status().as_u16()
}

/// `POST url` with `pairs` as an `application/x-www-form-urlencoded` body.
pub fn post_form(http: &Client, url: &str, pairs: &[(&str, &str)]) -> Response {
    http.post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(pairs))
        .send()
        .unwrap()
}

/// `POST /auth/tokens` with the `admin` token and `body`; expects 201 and returns the token.
pub fn create_token(base: &str, admin: &str, body: &Value) -> String {
    let r = client()
        .post(format!("{base}/auth/tokens"))
        .bearer_auth(admin)
        .json(body)
        .send()
        .unwrap();
    let (status, v) = status_and_json(r);
    assert_eq!(status, 201, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

/// `Basic base64(user:secret)`, an `Authorization` header value.
pub fn basic(user: &str, secret: &str) -> String {
    use base64::Engine;
    let pair = format!("{user}:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// `pairs` as an `application/x-www-form-urlencoded` body.
pub fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A home and its server in this process, with a client for it.
pub struct Served {
    pub home: super::Home,
    pub server: super::api::RunningServer,
    pub http: Client,
}

impl Served {
    /// Starts the server of `home`.
    pub fn start(home: super::Home) -> Served {
        let server = home.serve();
        Served {
            home,
            server,
            http: client(),
        }
    }

    /// `http://ADDR` followed by `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.server.addr())
    }

    /// `GET /token{query}` with the `Authorization` header `auth`.
    pub fn get_token(&self, query: &str, auth: Option<&str>) -> Response {
        let mut r = self.http.get(self.url(&format!("/token{query}")));
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        r.send().unwrap()
    }

    /// `POST /token` with `pairs` as a form.
    pub fn post_token(&self, pairs: &[(&str, &str)]) -> Response {
        post_form(&self.http, &self.url("/token"), pairs)
    }

    /// The document at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Value {
        self.http
            .get(self.url("/.well-known/jwks.json"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// The first key of `/.well-known/jwks.json`: the JWK and an ES256 key to verify with.
    pub fn jwk(&self) -> (Value, jsonwebtoken::DecodingKey) {
        let jwk = self.jwks()["keys"][0].clone();
        let key = jsonwebtoken::DecodingKey::from_ec_components(
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap(),
        )
        .unwrap();
        (jwk, key)
    }
}
