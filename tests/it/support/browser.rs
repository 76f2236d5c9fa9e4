//! A real headless Chromium driven over WebDriver (W3C protocol, spoken directly over HTTP with
//! the blocking reqwest client: a dozen endpoints, no async runtime in the tests).
//!
//! chromedriver: the one named by `TESSERA_WEBDRIVER_URL` (scripts/test starts one for the
//! whole run), else one started here for this test process on a free loopback port (killed
//! when the process ends). Each [`Browser`] is a new Chromium with a fresh profile folder, so
//! two browsers share no cookies (two people, or one person on two machines).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use super::real::{free_port, have, skip_unless_ci};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The Chromium flags for this machine (root, no GPU, small /dev/shm, no network of its own).
pub const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--password-store=basic",
];

/// The WebDriver endpoint, or `None` (with a skip message; a panic under `CI=true`) when
/// chromium or chromedriver is missing.
pub fn webdriver() -> Option<String> {
    super::api::install_crypto_provider();
    if let Ok(url) = std::env::var("TESSERA_WEBDRIVER_URL") {
        return Some(url.trim_end_matches('/').to_owned());
    }
    if !(have("chromedriver") && (have("chromium") || have("chromium-browser"))) {
        skip_unless_ci(
            "chromium and chromedriver are not installed",
            "apt-get install chromium chromium-driver, or run scripts/test",
        );
        return None;
    }
    static URL: OnceLock<String> = OnceLock::new();
    Some(URL.get_or_init(start_chromedriver).clone())
}

/// Starts chromedriver from a thread that lives as long as the test process, with
/// `PR_SET_PDEATHSIG`, so that it ends with the process.
fn start_chromedriver() -> String {
    let port = free_port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("chromedriver");
        cmd.arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd.spawn();
        let _ = tx.send(child.map(|c| c.id()).map_err(|e| e.to_string()));
        loop {
            std::thread::park();
        }
    });
    rx.recv().unwrap().expect("cannot start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = reqwest::blocking::get(format!("{url}/status"))
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .is_some_and(|v| v["value"]["ready"] == true);
        if ready {
            return url;
        }
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One headless Chromium (a WebDriver session) with its own profile; closed on drop.
pub struct Browser {
    http: reqwest::blocking::Client,
    session: String,
    _profile: tempfile::TempDir,
}

/// An element reference.
#[derive(Clone)]
pub struct Element(String);

impl Element {
    /// The element a script returned.
    pub fn from_value(v: &Value) -> Element {
        Element(
            v[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("not an element: {v}"))
                .to_owned(),
        )
    }
}

impl Browser {
    /// A new browser with a fresh profile (no cookies), 1280x900.
    pub fn new(webdriver: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push("--window-size=1280,900".to_owned());
        let mut options = json!({ "args": args });
        for binary in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
            if Path::new(binary).exists() {
                options["binary"] = json!(binary);
                break;
            }
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "unhandledPromptBehavior": "ignore",
        }}});
        let r: Value = http
            .post(format!("{webdriver}/session"))
            .json(&caps)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver did not start Chromium: {r}"))
            .to_owned();
        let b = Browser {
            http,
            session: format!("{webdriver}/session/{session}"),
            _profile: profile,
        };
        // Counts the Content-Security-Policy violations of every page from its first moment
        // (a DevTools script, which the policy does not govern).
        b.post(
            "/goog/cdp/execute",
            json!({"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source":
                "window.__csp = []; document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
            }}),
        );
        b
    }

    /// Lets pages of `origin` read and write the clipboard (as a user's click on "Allow").
    pub fn grant_clipboard(&self, origin: &str) {
        self.post(
            "/goog/cdp/execute",
            json!({"cmd": "Browser.grantPermissions", "params": {
                "origin": origin,
                "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"],
            }}),
        );
    }

    /// The Content-Security-Policy violations of the current page so far.
    pub fn csp_violations(&self) -> Vec<Value> {
        self.js("return window.__csp || [];", vec![])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.session);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        let status = r.status();
        let v: Value = r.json().unwrap_or(Value::Null);
        assert!(status.is_success(), "WebDriver {path}: {status} {v}");
        v["value"].clone()
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body))
    }

    fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None)
    }

    /// Navigates to `url` and waits for the page to load.
    pub fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url }));
    }

    /// The browser's Back button.
    pub fn back(&self) {
        self.post("/back", json!({}));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.get("/url").as_str().unwrap_or_default().to_owned()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
    }

    /// Runs an async `script`: it gets a callback as its last argument.
    pub fn js_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.post("/execute/async", json!({ "script": script, "args": args }))
    }

    /// The element matching `css`, if one does now.
    pub fn try_find(&self, css: &str) -> Option<Element> {
        let url = format!("{}/element", self.session);
        let r = self
            .http
            .post(url)
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .ok()?;
        let ok = r.status().is_success();
        let v: Value = r.json().ok()?;
        if !ok {
            eprintln!("find {css}: {v}");
            return None;
        }
        v["value"][ELEMENT].as_str().map(|s| Element(s.to_owned()))
    }

    /// The element matching `css`, waiting up to 10 s for it.
    #[track_caller]
    pub fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.try_find(css) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no element `{css}` on {}:\n{}",
                self.url(),
                self.body_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to 10 s for `cond` (a JavaScript expression) to be true.
    #[track_caller]
    pub fn wait_for(&self, cond: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.js(&format!("return !!({cond});"), vec![]) == json!(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "`{cond}` never became true on {}:\n{}",
                self.url(),
                self.body_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the element.
    pub fn click(&self, e: &Element) {
        self.post(&format!("/element/{}/click", e.0), json!({}));
    }

    /// Clears the field and types `text` into it.
    pub fn type_into(&self, e: &Element, text: &str) {
        self.post(&format!("/element/{}/clear", e.0), json!({}));
        self.post(&format!("/element/{}/value", e.0), json!({ "text": text }));
    }

    /// Sends keys (WebDriver key codes such as `\u{E004}` for Tab) to the focused element.
    pub fn keys(&self, e: &Element, text: &str) {
        self.post(&format!("/element/{}/value", e.0), json!({ "text": text }));
    }

    /// The element's visible text.
    pub fn text(&self, e: &Element) -> String {
        self.get(&format!("/element/{}/text", e.0))
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A property of the element (e.g. `value`).
    pub fn property(&self, e: &Element, name: &str) -> Value {
        self.get(&format!("/element/{}/property/{name}", e.0))
    }

    /// The whole page's visible text.
    pub fn body_text(&self) -> String {
        self.js(
            "return document.body ? document.body.innerText : '';",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// The id of the focused element.
    pub fn focused_id(&self) -> String {
        self.js(
            "return document.activeElement ? document.activeElement.id : '';",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// All cookies of the current page, as WebDriver gives them.
    pub fn cookies(&self) -> Vec<Value> {
        self.get("/cookie").as_array().cloned().unwrap_or_default()
    }

    /// Emulates a viewport `width` CSS pixels wide (and as tall as the page, for a whole-page
    /// screenshot) through the DevTools protocol; `None` goes back to the window's size.
    pub fn viewport(&self, width: Option<u32>) {
        match width {
            None => {
                self.post(
                    "/goog/cdp/execute",
                    json!({"cmd": "Emulation.clearDeviceMetricsOverride", "params": {}}),
                );
            }
            Some(w) => {
                let metrics = |h: u64| {
                    json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
                        "width": w, "height": h, "deviceScaleFactor": 1, "mobile": w < 600
                    }})
                };
                self.post("/goog/cdp/execute", metrics(800));
                let h = self
                    .js(
                        "return Math.ceil(document.documentElement.scrollHeight);",
                        vec![],
                    )
                    .as_u64()
                    .unwrap_or(800)
                    .clamp(400, 6000);
                self.post("/goog/cdp/execute", metrics(h));
            }
        }
    }

    /// The viewport's width in CSS pixels, as the page sees it.
    pub fn inner_width(&self) -> u64 {
        self.js("return window.innerWidth;", vec![])
            .as_u64()
            .unwrap_or(0)
    }

    /// Whether the page is wider than its viewport (something would need sideways scrolling).
    pub fn overflows_sideways(&self) -> bool {
        self.js(
            "return document.documentElement.scrollWidth > window.innerWidth + 1;",
            vec![],
        ) == json!(true)
    }

    /// Saves a PNG of the page at `width` CSS pixels (whole page height) to `path`.
    pub fn screenshot(&self, width: u32, path: &Path) {
        self.viewport(Some(width));
        let png = self.get("/screenshot");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        self.viewport(None);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.session).send();
    }
}

/// Where the screenshots go: `docs/ui/` of the source tree when `TESSERA_UPDATE_SCREENSHOTS=1`
/// (how the docs' pictures are made anew), else `target/ui-screenshots/`, so that an ordinary
/// test run takes every screenshot (and fails if it cannot) without changing tracked files.
pub fn docs_ui_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("TESSERA_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        root.join("docs/ui")
    } else {
        root.join("target/ui-screenshots")
    }
}
