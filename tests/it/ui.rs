//! The web UI (contract section 10) in a real headless Chromium over WebDriver, against the
//! real server, with the real `curl` and the real registry with skopeo; and its headers and
//! assets over plain HTTP.
//!
//! The screenshots in docs/ui/ are written by these tests (desktop and 360 px wide).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::Home;
use crate::support::browser::{Browser, docs_ui_dir, webdriver};
use crate::support::http::client;
use crate::support::real::{ok, run_tool, text};

/// Every page of the UI.
const PAGES: &[&str] = &["/ui/", "/ui/tokens", "/ui/users", "/ui/security"];

#[test]
fn every_ui_response_carries_the_security_headers_and_no_inline_code() {
    let home = Home::with_login("");
    let (_server, base) = home.serve_base();
    let http = client();
    for path in PAGES.iter().chain(&[
        "/ui/app.js",
        "/ui/app.css",
        "/ui/icon.svg",
        "/ui/no-such-page",
    ]) {
        let r = http.get(format!("{base}{path}")).send().unwrap();
        let h = r.headers().clone();
        let header = |n: &str| {
            h.get(n)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_else(|| panic!("{path}: no {n} header"))
        };
        let csp = header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header("cache-control"), "no-store", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        let status = r.status().as_u16();
        assert_eq!(
            status,
            if *path == "/ui/no-such-page" {
                404
            } else {
                200
            }
        );
        let body = r.text().unwrap();
        // Nothing from another origin, ever.
        for external in ["http://", "https://", "//cdn", "@import"] {
            assert!(
                !body.contains(external) || path.ends_with(".svg"),
                "{path} names `{external}`"
            );
        }
        if path.starts_with("/ui/") && !path.contains('.') {
            // No inline script, style or event handler: the policy would block them anyway.
            let lower = body.to_ascii_lowercase();
            assert_eq!(
                lower.matches("<script").count(),
                lower.matches("<script src=\"/ui/app.js\"").count(),
                "{path}: an inline script"
            );
            assert!(!lower.contains("<style"), "{path}: an inline style sheet");
            assert!(!lower.contains(" style="), "{path}: a style attribute");
            assert!(
                !lower.contains(" onclick=") && !lower.contains(" onload="),
                "{path}"
            );
        }
    }
    // The script builds the page with text, never with HTML from the server.
    let js = http
        .get(format!("{base}/ui/app.js"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!js.contains(sink), "app.js uses {sink}");
    }
    for store in ["localStorage", "sessionStorage", "console.log", "pushState"] {
        assert!(!js.contains(store), "app.js uses {store}");
    }
    // `/ui` without the slash goes to `/ui/`.
    let r = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{base}/ui"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 308);
    assert_eq!(r.headers()["location"], "/ui/");
}

#[test]
fn the_security_endpoint_needs_a_caller_and_tells_no_secret() {
    let home = Home::new();
    let (_server, base) = home.serve_base();
    let http = client();
    let r = http.get(format!("{base}/auth/security")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (token, _) = home.mint("viewer-vera", "pull");
    let r = http
        .get(format!("{base}/auth/security"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body = r.text().unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["auth_enabled"], true);
    assert_eq!(v["signing_keys"][0]["use"], "current");
    assert_eq!(v["signing_keys"][0]["algorithm"], "HS256");
    let kid = v["signing_keys"][0]["kid"].as_str().unwrap();
    // The kid is the one in the token's header.
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(kid));
    assert_eq!(v["registry"]["algorithm"], "ES256");
    let after: jiff::Timestamp = v["registry"]["certificate_not_after"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(after > jiff::Timestamp::now());
    assert!(v["registry"]["certificate_days_left"].as_i64().unwrap() > 3000);
    // No secret: neither the token secret nor anything PEM.
    assert!(!body.contains(crate::support::SECRET));
    assert!(!body.contains("PRIVATE") && !body.contains("BEGIN"));
    // A forged token gets 401, not the facts.
    let r = http
        .get(format!("{base}/auth/security"))
        .bearer_auth(format!("{token}x"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

/// A page on another origin (another port of this machine) whose form posts `fields` to
/// `target` when its button is pressed, as a hostile site would; served until dropped.
struct Attacker {
    url: String,
    _stop: std::sync::mpsc::Sender<()>,
}

impl Attacker {
    fn start(target: &str, fields: &[(&str, &str)]) -> Attacker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let inputs: String = fields
            .iter()
            .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{v}\">"))
            .collect();
        // text/plain is what a page can send anywhere without asking first.
        let page = format!(
            "<!doctype html><title>evil</title><form id=\"f\" method=\"post\" enctype=\"text/plain\" action=\"{target}\">{inputs}<button id=\"go\" type=\"submit\">win a prize</button></form>"
        );
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            loop {
                if !matches!(rx.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty)) {
                    return;
                }
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        let mut buf = [0u8; 4096];
                        let _ = s.read(&mut buf);
                        let _ = write!(
                            s,
                            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                            page.len()
                        );
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        });
        // `localhost` and `127.0.0.1` are different origins, and so are two ports.
        Attacker {
            url: format!("http://localhost:{port}/"),
            _stop: tx,
        }
    }
}

#[test]
fn a_cross_origin_form_post_is_refused() {
    let Some(wd) = webdriver() else { return };
    let home = Home::with_login("");
    let (_server, base) = home.serve_base();
    let (admin, _) = home.mint("root", "admin");
    let before = tokens_of(&base, &admin);
    let attacker = Attacker::start(
        &format!("{base}/auth/tokens"),
        &[(r#"{"subject":"mallory","scopes":"admin","x":""#, r#""}"#)],
    );
    let b = Browser::new(&wd);
    b.goto(&attacker.url);
    b.click(&b.find("#go"));
    b.wait_for("document.body && document.body.innerText.includes('CROSS_ORIGIN')");
    assert_eq!(tokens_of(&base, &admin), before, "a token was created");
}

/// The tokens in the store, through the admin API.
fn tokens_of(base: &str, admin: &str) -> Vec<Value> {
    let v: Value = client()
        .get(format!("{base}/auth/tokens"))
        .bearer_auth(admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["tokens"].as_array().unwrap().clone()
}

#[test]
fn the_sign_in_screen_works_with_the_keyboard_and_at_360_px() {
    let Some(wd) = webdriver() else { return };
    let home = Home::with_login("");
    let (_server, base) = home.serve_base();
    let b = Browser::new(&wd);
    b.goto(&format!("{base}/ui/"));
    b.wait_for("document.activeElement && document.activeElement.id === 'username'");
    // Every field has a label that names it.
    for id in ["username", "password"] {
        let label = b.js(
            "const e = document.getElementById(arguments[0]); return e.labels.length ? e.labels[0].innerText : '';",
            vec![json!(id)],
        );
        assert!(!label.as_str().unwrap().is_empty(), "{id} has no label");
    }
    // Tab order: username, password, the button.
    let user = b.find("#username");
    b.keys(&user, "\u{E004}");
    assert_eq!(b.focused_id(), "password");
    b.keys(&b.find("#password"), "\u{E004}");
    assert_eq!(b.focused_id(), "signin");
    b.screenshot(1280, &docs_ui_dir().join("signin-desktop.png"));
    b.viewport(Some(360));
    assert_eq!(b.inner_width(), 360);
    assert!(
        !b.overflows_sideways(),
        "the sign-in page scrolls sideways at 360 px"
    );
    b.viewport(None);
    b.screenshot(360, &docs_ui_dir().join("signin-360.png"));
}

/// `curl` (the real binary) against `/auth/verify` with `token`, the header read from stdin
/// so that the token is in no process's arguments; the HTTP status.
fn curl_verify(base: &str, token: &str) -> u16 {
    let mut c = Command::new("curl");
    c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "@-"])
        .arg(format!("{base}/auth/verify"));
    let out = ok(run_tool(
        c,
        Some(format!("Authorization: Bearer {token}\n").as_bytes()),
    ));
    text(&out);
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
