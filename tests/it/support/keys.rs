//! HTTP helpers for the API-key tests (contract section 9): the `/auth/keys` endpoints and a
//! request made with a key, as Bearer or `X-API-Key`.

use reqwest::blocking::Response;
use serde_json::Value;

use super::http::{client, status_and_json};

/// How a key is sent.
#[derive(Clone, Copy, Debug)]
pub enum Via {
    Bearer,
    XApiKey,
}

/// `GET {base}{path}` with `key` sent `via`, and optional extra headers.
pub fn get_with_key(
    base: &str,
    path: &str,
    key: &str,
    via: Via,
    extra: &[(&str, &str)],
) -> Response {
    let mut r = client().get(format!("{base}{path}"));
    r = match via {
        Via::Bearer => r.bearer_auth(key),
        Via::XApiKey => r.header("X-API-Key", key),
    };
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    r.send().unwrap()
}

/// `GET /auth/verify` with `key` as Bearer: (status, body).
pub fn verify_key(base: &str, key: &str) -> (u16, Value) {
    status_and_json(get_with_key(base, "/auth/verify", key, Via::Bearer, &[]))
}

/// A request to the key API with `bearer` (a token or a key): (status, body).
pub fn keys_call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    bearer: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut r = client()
        .request(method, format!("{base}{path}"))
        .bearer_auth(bearer);
    if let Some(b) = body {
        r = r.json(b);
    }
    status_and_json(r.send().unwrap())
}

/// `POST /auth/keys` with `bearer` and `body`; expects 201 and returns (key, id).
#[track_caller]
pub fn create_key(base: &str, bearer: &str, body: &Value) -> (String, String) {
    let (s, v) = keys_call(
        base,
        reqwest::Method::POST,
        "/auth/keys",
        bearer,
        Some(body),
    );
    assert_eq!(s, 201, "{v}");
    (
        v["key"].as_str().unwrap().to_owned(),
        v["id"].as_str().unwrap().to_owned(),
    )
}

/// `GET /auth/keys/{id}` with `bearer`: the key's view.
#[track_caller]
pub fn show_key(base: &str, bearer: &str, id: &str) -> Value {
    let (s, v) = keys_call(
        base,
        reqwest::Method::GET,
        &format!("/auth/keys/{id}"),
        bearer,
        None,
    );
    assert_eq!(s, 200, "{v}");
    v
}

/// `POST /auth/keys/{id}/{action}` (or `DELETE /auth/keys/{id}` for `revoke`): (status, body).
pub fn key_action(
    base: &str,
    bearer: &str,
    id: &str,
    action: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    if action == "revoke" {
        return keys_call(
            base,
            reqwest::Method::DELETE,
            &format!("/auth/keys/{id}"),
            bearer,
            None,
        );
    }
    keys_call(
        base,
        reqwest::Method::POST,
        &format!("/auth/keys/{id}/{action}"),
        bearer,
        body,
    )
}

/// A key with one character of its body changed (the checksum no longer matches).
pub fn one_char_changed(key: &str) -> String {
    let mut b = key.as_bytes().to_vec();
    let i = b.len() - 10;
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}
