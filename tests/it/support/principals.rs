//! Users, roles and browser sessions (contract section 9): homes with `[[auth.users]]`,
//! passwords stored for them, and the session cookie and CSRF token of a signed-in browser.

use reqwest::blocking::Response;
use serde_json::{Value, json};

use super::http::client;
use super::{Home, Run, argv};

/// The password every user of a users home gets (unless a test sets another).
pub const USER_PASSWORD: &str = "correct horse battery staple";

/// A home whose config holds `users` (TOML: `[[auth.users]]` entries and `[auth.roles.*]`
/// tables) under `[auth]` with a 1 h token expiry, plus the registry section when
/// `registry` is set; every user named in `names` gets [`USER_PASSWORD`] with
/// `tessera users passwd NAME --stdin --bcrypt` (bcrypt cost 10: quick in tests).
pub fn users_home(users: &str, names: &[&str], registry: bool) -> Home {
    let reg = if registry {
        format!(
            "\n[registry]\nservice = \"{}\"\nissuer = \"tessera\"\ncertificate = \"registry-token.crt\"\ntoken_ttl = \"5m\"\n",
            super::SERVICE
        )
    } else {
        String::new()
    };
    let h = Home::with_config(&format!(
        "[secrets.unsafe]\ndir = \"secrets\"\n\n[auth]\ntoken_expiry = \"1h\"\n\n{users}\n{reg}"
    ));
    for name in names {
        set_password(&h, name, USER_PASSWORD);
    }
    if registry {
        h.cmd().args(["registry", "init"]).assert().success();
    }
    h
}

/// Stores `password` for user `name` through the CLI.
pub fn set_password(h: &Home, name: &str, password: &str) {
    h.ok_with_stdin(
        &argv(&format!("users passwd {name} --stdin --bcrypt --cost 10")),
        format!("{password}\n"),
    );
}

/// A browser signed in at `base`: its session cookie's value.
pub struct Browser {
    pub base: String,
    pub cookie: String,
}

/// `POST /auth/session` with a username and password.
pub fn sign_in_response(base: &str, user: &str, password: &str) -> Response {
    client()
        .post(format!("{base}/auth/session"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .unwrap()
}

impl Browser {
    /// Signs in (expects 204) and keeps the cookie.
    #[track_caller]
    pub fn sign_in(base: &str, user: &str, password: &str) -> Browser {
        let r = sign_in_response(base, user, password);
        assert_eq!(r.status().as_u16(), 204, "{:?}", r.text());
        let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        let value = set
            .split(';')
            .next()
            .unwrap()
            .strip_prefix("tessera_session=")
            .unwrap()
            .to_owned();
        Browser {
            base: base.to_owned(),
            cookie: value,
        }
    }

    fn cookie_header(&self) -> String {
        format!("tessera_session={}", self.cookie)
    }

    /// A request with the cookie (nothing else a browser would add).
    pub fn request(&self, method: &str, path: &str) -> reqwest::blocking::RequestBuilder {
        client()
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
    }

    /// `GET /auth/session`: (status, body).
    pub fn whoami(&self) -> (u16, Value) {
        super::http::status_and_json(self.request("GET", "/auth/session").send().unwrap())
    }

    /// The session's CSRF token.
    pub fn csrf(&self) -> String {
        let (s, v) = self.whoami();
        assert_eq!(s, 200, "{v}");
        v["csrf_token"].as_str().unwrap().to_owned()
    }

    /// A write as the web UI sends it: the cookie, the CSRF token and this server's Origin.
    pub fn write(&self, method: &str, path: &str) -> reqwest::blocking::RequestBuilder {
        self.request(method, path)
            .header("x-csrf-token", self.csrf())
            .header("origin", &self.base)
    }
}
