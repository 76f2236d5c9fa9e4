//! The web UI (contract section 10) in a real headless Chromium over WebDriver, against the
//! real server, with the real `curl` and the real registry with skopeo; and its headers and
//! assets over plain HTTP.
//!
//! The screenshots in docs/ui/ are written by these tests (desktop and 360 px wide) when
//! `TESSERA_UPDATE_SCREENSHOTS=1`; otherwise they go to target/ui-screenshots/.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::browser::{Browser, docs_ui_dir, webdriver};
use crate::support::http::client;
use crate::support::real::{Registry, Skopeo, fails, oci_image, ok, run_tool, tools_present};
use crate::support::serve::BinServer;
use crate::support::{Home, Run, SERVICE};

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
        let cache = header("cache-control");
        if path.ends_with(".js") || path.ends_with(".css") {
            // Versioned URLs (below): kept by the browser for good. They hold no secret.
            assert_eq!(cache, "public, max-age=31536000, immutable", "{path}");
        } else if path.ends_with(".svg") {
            assert_eq!(cache, "public, max-age=86400", "{path}");
        } else {
            assert_eq!(cache, "no-store", "{path}");
        }
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
                lower.matches("<script src=\"/ui/app.js?v=").count(),
                "{path}: an inline script"
            );
            // The assets are linked with the digest of this build's assets.
            let js = http
                .get(format!("{base}/ui/app.js"))
                .send()
                .unwrap()
                .text()
                .unwrap();
            let css = http
                .get(format!("{base}/ui/app.css"))
                .send()
                .unwrap()
                .text()
                .unwrap();
            use sha2::Digest;
            let v = hex::encode(
                &sha2::Sha256::new()
                    .chain_update(&js)
                    .chain_update(&css)
                    .finalize()[..6],
            );
            assert!(body.contains(&format!("/ui/app.js?v={v}\"")), "{path}");
            assert!(body.contains(&format!("/ui/app.css?v={v}\"")), "{path}");
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
    let Some(ui) = Ui::start() else { return };
    let (admin, _) = ui.home.mint("root", "admin");
    let before = tokens_of(&ui.base, &admin);
    // alice (an admin) is signed in in this browser, and then visits a hostile page.
    let b = ui.signed_in("alice");
    let attacker = Attacker::start(
        &format!("{}/auth/tokens", ui.base),
        &[(r#"{"subject":"mallory","scopes":"admin","x":""#, r#""}"#)],
    );
    b.goto(&attacker.url);
    b.click(&b.find("#go"));
    b.wait_for("document.body && document.body.innerText.includes('CROSS_ORIGIN')");
    // The same page's scripts: a JSON request needs a CORS preflight the server never
    // grants, and a "simple" one is refused like the form.
    b.goto(&attacker.url);
    let outcomes = b.js_async(
        r#"const done = arguments[arguments.length - 1]; const url = arguments[0];
        const body = JSON.stringify({subject: 'mallory', scopes: 'admin'});
        Promise.allSettled([
          fetch(url, {method: 'POST', credentials: 'include', headers: {'Content-Type': 'application/json'}, body}),
          fetch(url, {method: 'POST', credentials: 'include', mode: 'no-cors', headers: {'Content-Type': 'text/plain'}, body}),
          fetch(url.replace('/auth/tokens', '/auth/sessions'), {method: 'DELETE', credentials: 'include'}),
        ]).then(r => done(r.map(x => x.status)));"#,
        vec![json!(format!("{}/auth/tokens", ui.base))],
    );
    assert_eq!(outcomes[0], "rejected", "{outcomes}");
    assert_eq!(tokens_of(&ui.base, &admin), before, "a token was created");
    // alice's session is still there: nothing signed her out.
    ui.page(&b, "/ui/tokens");
    assert_eq!(b.url(), format!("{}/ui/tokens", ui.base));
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
    // The policy is in force: an inline script added to the page does not run, and the
    // browser reports the violation (so the tests that expect none would see one).
    assert_eq!(b.csp_violations(), Vec::<Value>::new());
    let ran = b.js(
        "const s = document.createElement('script'); s.textContent = 'window.__ran = true'; document.head.append(s); return window.__ran === true;",
        vec![],
    );
    assert_eq!(ran, json!(false), "an inline script ran");
    b.wait_for("window.__csp.length === 1");
    b.goto(&format!("{base}/ui/"));
    b.wait_for("document.activeElement && document.activeElement.id === 'username'");
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
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

// ---- signed-in screens ---------------------------------------------------------------------

/// Passwords of the users of [`Ui`] (each its name and a fixed suffix).
fn password_of(user: &str) -> String {
    format!("{user}-correct horse battery")
}

/// A home with three users (`alice` admin, `dave` developer, `vera` viewer), the registry key,
/// and `tessera serve` running as a real process with debug logging.
struct Ui {
    home: Home,
    server: BinServer,
    base: String,
    wd: String,
}

impl Ui {
    fn start() -> Option<Ui> {
        let wd = webdriver()?;
        let home = Home::with_config(&format!(
            "[secrets.unsafe]\ndir = \"secrets\"\n\n[auth]\ntoken_expiry = \"1h\"\n\n[[auth.users]]\nname = \"alice\"\nroles = [\"admin\"]\n\n[[auth.users]]\nname = \"dave\"\nroles = [\"developer\"]\n\n[[auth.users]]\nname = \"vera\"\nroles = [\"viewer\"]\n\n[registry]\nservice = \"{SERVICE}\"\nissuer = \"tessera\"\ncertificate = \"registry-token.crt\"\ntoken_ttl = \"5m\"\n"
        ));
        for user in ["alice", "dave", "vera"] {
            let (hash, _) = home.ok_with_stdin(
                &["auth", "password", "hash", "--stdin"],
                format!("{}\n", password_of(user)),
            );
            home.ok_with_stdin(
                &[
                    "secrets",
                    "set",
                    &format!("tessera/users/{user}/password_hash"),
                ],
                hash,
            );
        }
        home.cmd().args(["registry", "init"]).assert().success();
        let server = home.serve_process(Some("debug"));
        let base = server.url();
        Some(Ui {
            home,
            server,
            base,
            wd,
        })
    }

    /// A new browser (fresh profile) signed in as `user` through the Sign in screen.
    fn signed_in(&self, user: &str) -> Browser {
        let b = Browser::new(&self.wd);
        b.goto(&format!("{}/ui/", self.base));
        b.wait_for("document.body.dataset.ready === 'true'");
        b.type_into(&b.find("#username"), user);
        b.type_into(&b.find("#password"), &password_of(user));
        b.click(&b.find("#signin"));
        b.wait_for("location.pathname === '/ui/tokens' && document.body.dataset.ready === 'true'");
        assert_eq!(b.csp_violations(), Vec::<Value>::new());
        b
    }

    fn page(&self, b: &Browser, path: &str) {
        b.goto(&format!("{}{path}", self.base));
        b.wait_for("document.body.dataset.ready === 'true'");
        assert_eq!(b.csp_violations(), Vec::<Value>::new(), "{path}");
    }

    /// The server's log so far: it must never hold a secret.
    fn assert_log_free_of(&self, secrets: &[&str]) {
        let log = self.server.log();
        assert!(!log.is_empty(), "no server log");
        for s in secrets {
            assert!(!log.contains(s), "the server log holds a secret");
        }
    }
}

/// Creates a token or a key (`kind` `token` or `key`) on the Tokens screen with `scopes`
/// ticked (every other box cleared) and returns the secret shown once.
fn create(b: &Browser, kind: &str, name: &str, scopes: &[&str], expiry: &str) -> String {
    b.click(&b.find(&format!("input[name=kind][value={kind}]")));
    if kind == "key" {
        b.type_into(&b.find("#c-name"), name);
    }
    b.js(
        "document.querySelectorAll('input[name=scope]').forEach(c => { c.checked = arguments[0].includes(c.value); });",
        vec![json!(scopes)],
    );
    b.type_into(&b.find("#c-expiry"), expiry);
    b.click(&b.find("#create"));
    b.wait_for("!document.getElementById('secret-panel').hidden");
    // The heading of the panel gets the focus, for screen readers and the keyboard.
    assert_eq!(b.focused_id(), "secret-h");
    let secret = b.property(&b.find("#secret"), "value");
    let secret = secret.as_str().unwrap().to_owned();
    assert!(!secret.is_empty());
    // Never in the URL.
    assert!(!b.url().contains(&secret[..20]));
    secret
}

/// Dismisses the secret panel and checks that the secret left the page.
fn dismiss(b: &Browser, secret: &str) {
    b.click(&b.find("#secret-done"));
    b.wait_for("document.getElementById('secret-panel').hidden");
    let still = b.js(
        "return document.documentElement.outerHTML.includes(arguments[0]) || document.getElementById('secret').value.includes(arguments[0]);",
        vec![json!(secret)],
    );
    assert_eq!(still, json!(false), "the secret stayed in the page");
}

/// Clicks the button labelled `label` in the table row that mentions `text`, then the
/// dialog's confirm button when `confirm` (cancel otherwise).
fn row_action(b: &Browser, text: &str, label: &str, confirm: Option<bool>) {
    let clicked = b.js(
        "for (const tr of document.querySelectorAll('tbody tr')) { if (!tr.innerText.includes(arguments[0])) continue; for (const btn of tr.querySelectorAll('button')) { if (btn.innerText.trim() === arguments[1]) { btn.click(); return true; } } } return false;",
        vec![json!(text), json!(label)],
    );
    assert_eq!(
        clicked,
        json!(true),
        "no `{label}` button in the row of {text}:\n{}",
        b.body_text()
    );
    if let Some(yes) = confirm {
        b.wait_for("document.getElementById('confirm').open");
        // The dialog opens on Cancel (the safe choice).
        assert_eq!(b.focused_id(), "confirm-cancel");
        b.click(&b.find(if yes {
            "#confirm-ok"
        } else {
            "#confirm-cancel"
        }));
        b.wait_for("!document.getElementById('confirm').open");
    }
}

fn row_text(b: &Browser, text: &str) -> String {
    b.js(
        "for (const tr of document.querySelectorAll('tbody tr')) { if (tr.innerText.includes(arguments[0])) return tr.innerText; } return '';",
        vec![json!(text)],
    )
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

fn jti_of(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: Value = serde_json::from_slice(&bytes).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

#[test]
fn sign_in_create_a_token_use_it_with_curl_revoke_it_and_see_401() {
    let Some(ui) = Ui::start() else { return };
    // A wrong password and an unknown user read the same.
    let b = Browser::new(&ui.wd);
    b.goto(&format!("{}/ui/", ui.base));
    b.wait_for("document.body.dataset.ready === 'true'");
    let mut shown = Vec::new();
    for (user, pw) in [
        ("dave", "wrong password"),
        ("nobody-here", "wrong password"),
    ] {
        b.type_into(&b.find("#username"), user);
        b.type_into(&b.find("#password"), pw);
        b.click(&b.find("#signin"));
        b.wait_for("!document.getElementById('signin-error').hidden");
        shown.push(b.text(&b.find("#signin-error")));
        // The password field is emptied and focused again; nothing went into the URL.
        assert_eq!(b.property(&b.find("#password"), "value"), json!(""));
        assert_eq!(b.focused_id(), "password");
        assert!(!b.url().contains("wrong") && !b.url().contains('?'));
        b.js(
            "document.getElementById('signin-error').hidden = true;",
            vec![],
        );
    }
    assert_eq!(shown[0], shown[1]);
    assert_eq!(shown[0], "The username or password is wrong.");
    drop(b);

    let b = ui.signed_in("dave");
    assert_eq!(b.text(&b.find("#who")), "dave");
    // The session cookie is HttpOnly and SameSite=Strict: the page's script cannot read it,
    // and no other site's page sends it.
    let cookies = b.cookies();
    let session = cookies
        .iter()
        .find(|c| c["name"] == "tessera_session")
        .expect("no session cookie");
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["sameSite"], "Strict");
    assert_eq!(b.js("return document.cookie;", vec![]), json!(""));
    // A developer is not an admin: no Users link.
    assert_eq!(
        b.js(
            "return document.getElementById('nav-users').hidden;",
            vec![]
        ),
        json!(true)
    );
    // The create form in keyboard order: the kind, the scopes, more scopes, expiry, Create.
    b.js(
        "document.querySelector('input[name=kind][value=token]').focus();",
        vec![],
    );
    let order = b.js(
        "return [...document.querySelectorAll('#create-form input, #create-form button')].filter(e => e.offsetParent !== null && !(e.type === 'radio' && !e.checked)).map(e => e.id || e.name);",
        vec![],
    );
    let order: Vec<String> = serde_json::from_value(order).unwrap();
    for pair in order.windows(2) {
        let e = b.js("return document.activeElement;", vec![]);
        b.keys(
            &crate::support::browser::Element::from_value(&e),
            "\u{E004}",
        );
        let now = b.js(
            "const e = document.activeElement; return e.id || e.name;",
            vec![],
        );
        assert_eq!(
            now,
            json!(pair[1]),
            "Tab after {} (order {order:?})",
            pair[0]
        );
    }
    assert_eq!(order.last().map(String::as_str), Some("create"));
    let token = create(&b, "token", "", &["repository:*:pull"], "2h");
    assert_eq!(curl_verify(&ui.base, &token), 200);
    // The Copy button puts exactly the secret on the clipboard.
    b.grant_clipboard(&ui.base);
    b.click(&b.find("#copy"));
    b.wait_for("document.getElementById('copy-status').innerText.includes('Copied')");
    let copied = b.js_async(
        "const done = arguments[arguments.length - 1]; navigator.clipboard.readText().then(done, e => done('error: ' + e));",
        vec![],
    );
    assert_eq!(
        copied.as_str(),
        Some(token.as_str()),
        "the clipboard holds something else"
    );
    let jti = jti_of(&token);
    b.screenshot(1280, &docs_ui_dir().join("secret-once-desktop.png"));
    dismiss(&b, &token);
    b.wait_for(&format!("document.body.innerText.includes('{jti}')"));
    let row = row_text(&b, &jti);
    assert!(
        row.contains("active") && row.contains("repository:*:pull"),
        "{row}"
    );
    assert!(row.contains("left"), "no time left shown: {row}");
    // Revoke: Cancel first keeps it, then confirm.
    row_action(&b, &jti, "Revoke", Some(false));
    assert_eq!(curl_verify(&ui.base, &token), 200);
    row_action(&b, &jti, "Revoke", Some(true));
    b.wait_for(&format!(
        "[...document.querySelectorAll('tbody tr')].some(tr => tr.innerText.includes('{jti}') && tr.innerText.includes('revoked'))"
    ));
    assert_eq!(curl_verify(&ui.base, &token), 401);
    b.screenshot(1280, &docs_ui_dir().join("tokens-desktop.png"));
    b.screenshot(360, &docs_ui_dir().join("tokens-360.png"));
    b.viewport(Some(360));
    assert!(
        !b.overflows_sideways(),
        "the Tokens screen scrolls sideways at 360 px"
    );
    b.viewport(None);
    // Leaving the page takes the secret with it: back and forward do not bring it back.
    let token2 = create(&b, "token", "", &["repository:*:pull"], "1h");
    ui.page(&b, "/ui/security");
    b.back();
    b.wait_for("document.body.dataset.ready === 'true'");
    assert_eq!(
        b.js("return document.documentElement.outerHTML.includes(arguments[0]) || document.getElementById('secret').value !== '';", vec![json!(token2)]),
        json!(false)
    );
    ui.assert_log_free_of(&[&token, &token2, &password_of("dave")]);
}

#[test]
fn a_pull_only_key_from_the_ui_pulls_with_skopeo_and_cannot_push() {
    if !tools_present(
        &["docker-registry", "skopeo"],
        "apt-get install docker-registry skopeo",
    ) {
        return;
    }
    let Some(ui) = Ui::start() else { return };
    let work = tempfile::tempdir().unwrap();
    let mut registry = Registry::start(
        work.path(),
        &format!("{}/token", ui.base),
        &ui.home.certificate(),
    );
    let host = registry.host();
    let image = work.path().join("image");
    oci_image(&image, "v1");
    // dave (developer) pushes an image with a token minted on the Tokens screen.
    let b = ui.signed_in("dave");
    let push = create(
        &b,
        "token",
        "",
        &["repository:*:push", "repository:*:pull"],
        "1h",
    );
    dismiss(&b, &push);
    let pusher = Skopeo::new();
    ok(pusher.login(&host, "dave", &push));
    ok(pusher.push(&image, "v1", &format!("{host}/team/app:v1")));

    // A pull-only API key, with a name, a rate limit and an allow-list for loopback.
    b.click(&b.find("input[name=kind][value=key]"));
    b.type_into(&b.find("#c-allow-ip"), "127.0.0.0/8");
    b.type_into(&b.find("#c-rate"), "1000/1m");
    let key = create(&b, "key", "ci-pull", &["repository:*:pull"], "7d");
    assert!(key.starts_with("tsk_"), "not an API key");
    b.screenshot(1280, &docs_ui_dir().join("key-once-desktop.png"));
    dismiss(&b, &key);
    b.wait_for("document.body.innerText.includes('ci-pull')");
    let puller = Skopeo::new();
    ok(puller.login(&host, "key", &key));
    ok(puller.inspect(&format!("{host}/team/app:v1")));
    fails(puller.push(&image, "v1", &format!("{host}/team/other:v1")));
    // The Tokens screen shows when and from where it was last used.
    ui.page(&b, "/ui/tokens");
    let row = row_text(&b, "ci-pull");
    assert!(row.contains("127.0.0.1"), "last use not shown: {row}");
    assert!(
        row.contains("1000/1m") && row.contains("127.0.0.0/8"),
        "limits not shown: {row}"
    );

    // Disable: refused; enable: works again.
    row_action(&b, "ci-pull", "Disable", None);
    b.wait_for("[...document.querySelectorAll('tbody tr')].some(tr => tr.innerText.includes('ci-pull') && tr.innerText.includes('disabled'))");
    fails(Skopeo::new().login(&host, "key", &key));
    row_action(&b, "ci-pull", "Enable", None);
    b.wait_for("[...document.querySelectorAll('tbody tr')].some(tr => tr.innerText.includes('ci-pull') && tr.innerText.includes('active'))");
    ok(Skopeo::new().login(&host, "key", &key));
    // Rotate: a new key shown once; the old one stops working.
    row_action(&b, "ci-pull", "Rotate", Some(true));
    b.wait_for("!document.getElementById('secret-panel').hidden");
    let rotated = b
        .property(&b.find("#secret"), "value")
        .as_str()
        .unwrap()
        .to_owned();
    assert!(rotated.starts_with("tsk_") && rotated != key);
    dismiss(&b, &rotated);
    fails(Skopeo::new().login(&host, "key", &key));
    let again = Skopeo::new();
    ok(again.login(&host, "key", &rotated));
    ok(again.inspect(&format!("{host}/team/app:v1")));
    // Revoke it from the screen.
    ui.page(&b, "/ui/tokens");
    b.screenshot(1280, &docs_ui_dir().join("keys-desktop.png"));
    let id = b.js(
        "for (const tr of document.querySelectorAll('tbody tr')) { if (tr.innerText.includes('ci-pull') && tr.innerText.includes('active')) return tr.querySelector('code').innerText; } return '';",
        vec![],
    );
    row_action(&b, id.as_str().unwrap(), "Revoke", Some(true));
    b.wait_for("![...document.querySelectorAll('tbody tr')].some(tr => tr.innerText.includes('ci-pull') && tr.innerText.includes('active'))");
    fails(Skopeo::new().login(&host, "key", &rotated));
    registry.assert_no_token_trouble();
    ui.assert_log_free_of(&[&key, &rotated, &push, &password_of("dave")]);
}

#[test]
fn a_viewer_never_sees_another_users_tokens_or_the_users_screen() {
    let Some(ui) = Ui::start() else { return };
    // alice (admin) and dave have tokens of their own.
    let (_, alice_jti) = ui.home.mint("alice", "pull");
    let a = ui.signed_in("alice");
    let dave_token = {
        let d = ui.signed_in("dave");
        let t = create(&d, "token", "", &["repository:*:pull"], "1h");
        dismiss(&d, &t);
        t
    };
    let dave_jti = jti_of(&dave_token);

    let v = ui.signed_in("vera");
    ui.page(&v, "/ui/tokens");
    let text = v.body_text();
    assert!(
        !text.contains(&alice_jti) && !text.contains(&dave_jti),
        "{text}"
    );
    assert_eq!(
        v.js(
            "return document.getElementById('nav-users').hidden;",
            vec![]
        ),
        json!(true)
    );
    // A viewer may grant only what it has: pull.
    let offered = v.js(
        "return [...document.querySelectorAll('input[name=scope]')].map(c => c.value);",
        vec![],
    );
    assert_eq!(offered, json!(["repository:*:pull"]));
    // The Users screen, typed in by hand, shows nobody.
    ui.page(&v, "/ui/users");
    let text = v.body_text();
    assert!(text.contains("Only administrators"), "{text}");
    for name in ["alice", "dave"] {
        assert!(!text.contains(name), "the viewer sees {name}");
    }
    // The API underneath refuses the same, with the session's cookie.
    let listed = v.js_async(
        "const done = arguments[arguments.length - 1]; fetch('/auth/users').then(r => done(r.status));",
        vec![],
    );
    assert_eq!(listed, json!(403));
    let tokens = v.js_async(
        "const done = arguments[arguments.length - 1]; fetch('/auth/tokens').then(r => r.text()).then(done);",
        vec![],
    );
    let tokens = tokens.as_str().unwrap();
    assert!(
        !tokens.contains(&alice_jti) && !tokens.contains(&dave_jti),
        "{tokens}"
    );
    // Revoking dave's token from vera's session is refused.
    let status = v.js_async(
        "const done = arguments[arguments.length - 1]; fetch('/auth/session').then(r => r.json()).then(s => fetch('/auth/tokens/' + arguments[0], {method: 'DELETE', headers: {'X-CSRF-Token': s.csrf_token}})).then(r => done(r.status));",
        vec![json!(dave_jti)],
    );
    assert!(matches!(status.as_u64(), Some(403 | 404)), "{status}");
    assert_eq!(curl_verify(&ui.base, &dave_token), 200);
    v.screenshot(1280, &docs_ui_dir().join("users-refused-desktop.png"));

    // The admin sees the Users screen with everyone.
    ui.page(&a, "/ui/users");
    assert_eq!(
        a.js(
            "return document.getElementById('nav-users').hidden;",
            vec![]
        ),
        json!(false)
    );
    let text = a.body_text();
    for name in ["alice", "dave", "vera"] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert!(
        text.contains("viewer") && text.contains("developer"),
        "{text}"
    );
    a.screenshot(1280, &docs_ui_dir().join("users-desktop.png"));
    a.screenshot(360, &docs_ui_dir().join("users-360.png"));
}

#[test]
fn sign_out_everywhere_ends_a_second_browser_session() {
    let Some(ui) = Ui::start() else { return };
    let first = ui.signed_in("dave");
    let second = ui.signed_in("dave");
    let other_user = ui.signed_in("vera");
    ui.page(&first, "/ui/security");
    let text = first.body_text();
    assert!(text.contains("this browser"), "{text}");
    // The server facts: auth on, the signing key's kid, the registry certificate's expiry.
    let facts: Value = client()
        .get(format!("{}/auth/security", ui.base))
        .bearer_auth(ui.home.mint("dave", "pull").0)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let kid = facts["signing_keys"][0]["kid"].as_str().unwrap();
    assert!(text.contains(kid), "no kid {kid}:\n{text}");
    assert!(
        text.contains(facts["registry"]["kid"].as_str().unwrap()),
        "{text}"
    );
    assert!(text.contains("Certificate expires"), "{text}");
    // Two sessions of dave listed.
    let rows = first.js(
        "return document.querySelectorAll('#sessions-list tbody tr').length;",
        vec![],
    );
    assert_eq!(rows, json!(2));
    first.screenshot(1280, &docs_ui_dir().join("security-desktop.png"));
    first.screenshot(360, &docs_ui_dir().join("security-360.png"));
    first.viewport(Some(360));
    assert!(
        !first.overflows_sideways(),
        "the Security screen scrolls sideways at 360 px"
    );
    first.viewport(None);

    first.click(&first.find("#signout-all"));
    first.wait_for("document.getElementById('confirm').open");
    first.click(&first.find("#confirm-ok"));
    first.wait_for("location.pathname === '/ui/'");
    // The second browser's session has ended too: its next page goes to Sign in.
    second.goto(&format!("{}/ui/tokens", ui.base));
    second.wait_for("location.pathname === '/ui/' && document.body.dataset.ready === 'true'");
    // Another user's session is untouched.
    ui.page(&other_user, "/ui/tokens");
    assert_eq!(other_user.url(), format!("{}/ui/tokens", ui.base));
    // And the ended cookie no longer works even if replayed: the browser dropped it, the
    // server forgot it.
    let status = second.js_async(
        "const done = arguments[arguments.length - 1]; fetch('/auth/session').then(r => done(r.status));",
        vec![],
    );
    assert_eq!(status, json!(401));
}
