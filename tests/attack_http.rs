//! HTTP-level attacks on a real server on 127.0.0.1:0: malformed Basic credentials at
//! `/token`, spoofed forwarding headers against the login rate limit, slow clients, oversized
//! bodies and floods of `scope` parameters. Every answer must be a 4xx with a JSON error (or
//! hyper's own 4xx where the request never reaches tessera), never a 5xx.

mod registry_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use registry_common::{Home, PASSWORD, SERVICE};
use reqwest::blocking::{Client, Response};
use reqwest::header::HeaderValue;
use serde_json::{Value, json};

/// A home with the given `[server]` section, and its server.
fn serve(server_section: &str) -> (Home, tessera::server::RunningServer) {
    let home = Home::new();
    let mut config = std::fs::read_to_string(home.config_file()).unwrap();
    config.push_str(&format!("\n[server]\n{server_section}\n"));
    std::fs::write(home.config_file(), config).unwrap();
    let server = home.serve();
    tessera::server::install_crypto_provider();
    (home, server)
}

/// A client that gives up on a starved server instead of hanging the test.
fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Asserts a 4xx with a JSON `{error, code}` body and returns (status, code).
fn json_4xx(case: &str, r: Response) -> (u16, String) {
    let status = r.status().as_u16();
    assert!((400..500).contains(&status), "{case}: status {status}");
    let body: Value = r
        .json()
        .unwrap_or_else(|e| panic!("{case}: body is not JSON: {e}"));
    assert!(body["error"].is_string(), "{case}: {body}");
    (status, body["code"].as_str().unwrap().to_owned())
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    STANDARD.encode(bytes)
}

/// Sends raw bytes and returns the status code of the answer (0 when the server closed the
/// connection without one).
fn raw_status(addr: SocketAddr, request: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn basic_header_fuzz_at_token_is_400_or_401_never_500() {
    let (_home, server) = serve("login_attempts_per_minute = 0");
    let http = client();
    let url = format!(
        "http://{}/token?service={SERVICE}&scope=repository:team/app:pull",
        server.addr()
    );
    let send = |value: Vec<u8>| {
        http.get(&url)
            .header("Authorization", HeaderValue::from_bytes(&value).unwrap())
            .send()
            .unwrap()
    };
    // Control: the right password, which contains a `:`, works.
    let ok = send(format!("Basic {}", b64(format!("deploy:{PASSWORD}"))).into_bytes());
    assert_eq!(ok.status(), 200, "control");

    let huge_b64 = "A".repeat(60 * 1024);
    let huge_password = format!("deploy:{}", "x".repeat(40 * 1024));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no scheme", b64(format!("deploy:{PASSWORD}")).into_bytes()),
        (
            "Bearer scheme",
            format!("Bearer {}", b64(format!("deploy:{PASSWORD}"))).into_bytes(),
        ),
        (
            "Digest scheme",
            b"Digest username=\"deploy\", realm=\"tessera\"".to_vec(),
        ),
        ("Basic with nothing", b"Basic".to_vec()),
        ("Basic and a space", b"Basic ".to_vec()),
        ("empty value", Vec::new()),
        ("not base64", b"Basic !!!not*base64!!!".to_vec()),
        (
            "base64 with a bad padding",
            b"Basic ZGVwbG95OnB3===".to_vec(),
        ),
        (
            "base64 without `:`",
            format!("Basic {}", b64("deploy")).into_bytes(),
        ),
        ("only `:`", format!("Basic {}", b64(":")).into_bytes()),
        ("empty user", format!("Basic {}", b64(":pw")).into_bytes()),
        (
            "empty password",
            format!("Basic {}", b64("deploy:")).into_bytes(),
        ),
        (
            "wrong password with `:`",
            format!("Basic {}", b64("deploy:pass:word")).into_bytes(),
        ),
        (
            "the password split at the wrong `:`",
            format!("Basic {}", b64(format!("deploy:pass:{PASSWORD}"))).into_bytes(),
        ),
        (
            "NUL in the user",
            format!("Basic {}", b64("dep\0loy:pw")).into_bytes(),
        ),
        (
            "NUL in the password",
            format!("Basic {}", b64(format!("deploy:{PASSWORD}\0"))).into_bytes(),
        ),
        (
            "non-UTF-8 credentials",
            format!("Basic {}", b64(b"\xff\xfe:\xc3\x28")).into_bytes(),
        ),
        ("non-UTF-8 header bytes", b"Basic \xff\xfe\xfd".to_vec()),
        (
            "unknown user",
            format!("Basic {}", b64(format!("root:{PASSWORD}"))).into_bytes(),
        ),
        (
            "huge base64 garbage",
            format!("Basic {huge_b64}").into_bytes(),
        ),
        (
            "huge password",
            format!("Basic {}", b64(&huge_password)).into_bytes(),
        ),
        (
            "a JWT-shaped password",
            format!("Basic {}", b64("deploy:eyJhbGciOiJub25lIn0.e30.")).into_bytes(),
        ),
    ];
    for (case, value) in cases {
        let (status, code) = json_4xx(case, send(value));
        assert!(
            [400, 401].contains(&status),
            "{case}: {status} {code} (expected 400 or 401)"
        );
    }
    // No Authorization header at all.
    let (status, code) = json_4xx("no header", http.get(&url).send().unwrap());
    assert_eq!((status, code.as_str()), (401, "AUTH_REQUIRED"));
    // A NUL byte in the raw header never reaches tessera: hyper answers 400.
    let raw = format!(
        "GET /token?service={SERVICE} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ab\0cd\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw_status(server.addr(), raw.as_bytes()), 400, "raw NUL");
    // The POST form with broken fields.
    for (case, form) in [
        ("no grant_type", "username=deploy&password=x".to_owned()),
        (
            "unknown grant_type",
            "grant_type=client_credentials".to_owned(),
        ),
        (
            "password grant without password",
            "grant_type=password&username=deploy".to_owned(),
        ),
        (
            "refresh grant without token",
            "grant_type=refresh_token".to_owned(),
        ),
        (
            "invalid percent-encoding",
            "grant_type=password&username=%ff%fe&password=%zz".to_owned(),
        ),
    ] {
        let r = http
            .post(format!("http://{}/token", server.addr()))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .unwrap();
        let (status, _) = json_4xx(case, r);
        assert!([400, 401].contains(&status), "{case}: {status}");
    }
}

#[test]
fn forwarded_headers_never_change_rate_limiting_or_access() {
    let (_home, server) = serve("login_attempts_per_minute = 3");
    let http = client();
    let login = format!("http://{}/auth/login", server.addr());
    let spoof = |i: usize| {
        [
            ("X-Forwarded-For", format!("203.0.113.{i}")),
            ("X-Real-IP", format!("198.51.100.{i}")),
            ("Forwarded", format!("for=192.0.2.{i}")),
            ("True-Client-IP", format!("192.0.2.{i}")),
        ]
    };
    let attempt = |i: usize, password: &str| {
        let mut r = http
            .post(&login)
            .json(&json!({"username": "deploy", "password": password}));
        for (k, v) in spoof(i) {
            r = r.header(k, v);
        }
        r.send().unwrap()
    };
    for i in 0..3 {
        let (status, code) = json_4xx("wrong password", attempt(i, "wrong password"));
        assert_eq!(
            (status, code.as_str()),
            (401, "INVALID_CREDENTIALS"),
            "attempt {i}"
        );
    }
    // A fresh forwarded address every time: still the same socket peer, still limited, even
    // with the right password.
    for i in 3..8 {
        let (status, code) = json_4xx("spoofed", attempt(i, "wrong password"));
        assert_eq!(
            (status, code.as_str()),
            (429, "RATE_LIMITED"),
            "attempt {i}"
        );
    }
    let (status, _) = json_4xx("right password, spoofed", attempt(99, PASSWORD));
    assert_eq!(status, 429);
    // The same limiter guards passwords at /token.
    let r = http
        .get(format!("http://{}/token?service={SERVICE}", server.addr()))
        .header("X-Forwarded-For", "10.9.8.7")
        .basic_auth("deploy", Some(PASSWORD))
        .send()
        .unwrap();
    assert_eq!(json_4xx("/token", r).0, 429);
    // A forwarded loopback or private address grants nothing on the admin API.
    for xff in ["127.0.0.1", "::1", "10.0.0.1", "localhost"] {
        let r = http
            .get(format!("http://{}/auth/tokens", server.addr()))
            .header("X-Forwarded-For", xff)
            .header("X-Real-IP", xff)
            .send()
            .unwrap();
        assert_eq!(
            json_4xx(xff, r),
            (401, "AUTH_REQUIRED".to_owned()),
            "XFF {xff}"
        );
    }
}

#[test]
fn slow_clients_do_not_starve_a_normal_request() {
    let (_home, server) = serve("login_attempts_per_minute = 0");
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let mut slow = Vec::new();
    for _ in 0..50 {
        let stop = Arc::clone(&stop);
        slow.push(std::thread::spawn(move || {
            let Ok(mut s) = TcpStream::connect(addr) else {
                return;
            };
            let request = b"POST /auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Padding: ";
            let start = Instant::now();
            // One byte at a time for at most a few seconds, never finishing the headers.
            for b in request.iter().chain(std::iter::repeat(&b'a')) {
                if stop.load(Ordering::Relaxed) || start.elapsed() > Duration::from_secs(4) {
                    break;
                }
                if s.write_all(&[*b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    let http = client();
    let r = http.get(format!("http://{addr}/health")).send().unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("http://{addr}/auth/login"))
        .json(&json!({"username": "deploy", "password": PASSWORD}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "login while 50 clients dribble headers");
    let r = http
        .get(format!(
            "http://{addr}/token?service={SERVICE}&scope=repository:team/app:pull"
        ))
        .basic_auth("deploy", Some(PASSWORD))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "/token while 50 clients dribble headers");
    stop.store(true, Ordering::Relaxed);
    for t in slow {
        t.join().unwrap();
    }
}

#[test]
fn bodies_over_the_limit_are_413() {
    let (home, server) = serve("login_attempts_per_minute = 0");
    let http = client();
    let base = format!("http://{}", server.addr());
    let big_json = json!({"username": "deploy", "password": "x".repeat(100 * 1024)}).to_string();
    let big_form = format!(
        "grant_type=password&username=deploy&password={}",
        "x".repeat(100 * 1024)
    );
    let admin = home.token(&["--subject", "root", "--scopes", "admin"]);
    let cases = [
        (
            "login, JSON",
            http.post(format!("{base}/auth/login"))
                .header("Content-Type", "application/json")
                .body(big_json.clone()),
        ),
        (
            "token form",
            http.post(format!("{base}/token"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(big_form.clone()),
        ),
        (
            "admin create",
            http.post(format!("{base}/auth/tokens"))
                .bearer_auth(&admin)
                .header("Content-Type", "application/json")
                .body(big_json.clone()),
        ),
    ];
    for (case, request) in cases {
        let (status, code) = json_4xx(case, request.send().unwrap());
        assert_eq!(status, 413, "{case}: {code}");
    }
    // Chunked, without a Content-Length to refuse early: 413 once the limit is crossed.
    for (path, content_type) in [
        ("/auth/login", "application/json"),
        ("/token", "application/x-www-form-urlencoded"),
    ] {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        let chunk = "x".repeat(8 * 1024);
        for _ in 0..9 {
            request.extend(format!("{:x}\r\n{chunk}\r\n", chunk.len()).into_bytes());
        }
        request.extend(b"0\r\n\r\n");
        assert_eq!(raw_status(server.addr(), &request), 413, "{path}, chunked");
    }
    // Just under the limit is read (and then judged on its content).
    let r = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"username": "deploy", "password": "x".repeat(60 * 1024)}))
        .send()
        .unwrap();
    assert_eq!(json_4xx("under the limit", r).0, 401);
}

#[test]
fn thousands_of_scopes_are_400() {
    let (_home, server) = serve("login_attempts_per_minute = 0");
    let http = client();
    let base = format!("http://{}", server.addr());
    let repeated: String = (0..2000)
        .map(|i| format!("&scope=repository:r{i}:pull"))
        .collect();
    let r = http
        .get(format!("{base}/token?service={SERVICE}{repeated}"))
        .basic_auth("deploy", Some(PASSWORD))
        .send()
        .unwrap();
    assert_eq!(json_4xx("2000 scope parameters", r).0, 400);
    let spaced: String = (0..2000)
        .map(|i| format!("repository:r{i}:pull "))
        .collect();
    let r = http
        .post(format!("{base}/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("grant_type", "password"),
                    ("username", "deploy"),
                    ("password", PASSWORD),
                    ("service", SERVICE),
                    ("scope", spaced.as_str()),
                ])
                .finish(),
        )
        .send()
        .unwrap();
    assert_eq!(json_4xx("thousands of space-separated scopes", r).0, 400);
    // 64 scopes are still fine.
    let ok: String = (0..64)
        .map(|i| format!("&scope=repository:r{i}:pull"))
        .collect();
    let r = http
        .get(format!("{base}/token?service={SERVICE}{ok}"))
        .basic_auth("deploy", Some(PASSWORD))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let (_home, server) = serve("login_attempts_per_minute = 0");
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ";
    let bound = tessera::server::HEADER_READ_TIMEOUT * 3;
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut closed = false;
    for b in request.iter().chain(std::iter::repeat(&b'a')) {
        if start.elapsed() > bound {
            break;
        }
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed,
        "the server kept a connection open that never finished its headers ({:?})",
        String::from_utf8_lossy(&answer)
    );
    // It still serves others.
    let r = client()
        .get(format!("http://{}/health", server.addr()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}
