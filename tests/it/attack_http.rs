//! HTTP-level attacks on a real server on 127.0.0.1:0: malformed Basic credentials at
//! `/token`, spoofed forwarding headers against the login rate limit, slow clients, oversized
//! bodies and floods of `scope` parameters. Every answer must be a 4xx with a JSON error (or
//! hyper's own 4xx where the request never reaches tessera), never a 5xx.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::http::{client, health, post_form};
use crate::support::{Home, PASSWORD, SERVICE};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::blocking::{Client, Response};
use reqwest::header::HeaderValue;
use serde_json::{Value, json};

/// A home with the given `[server]` section, and its server.
fn serve(server_section: &str) -> (Home, crate::support::api::RunningServer) {
    let home = Home::new();
    home.append_config(&format!("\n[server]\n{server_section}\n"));
    let server = home.serve();
    crate::support::api::install_crypto_provider();
    (home, server)
}

/// `GET /token?service=SERVICE` followed by `query`, as `deploy` with `password`.
fn deploy_at_token(http: &Client, base: &str, query: &str, password: &str) -> Response {
    http.get(format!("{base}/token?service={SERVICE}{query}"))
        .basic_auth("deploy", Some(password))
        .send()
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
        "GET /token?service={SERVICE} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic ab\0cd\r\nConnection: close\r\n\r\n",
        server.addr()
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
    let r = deploy_at_token(
        &http,
        &format!("http://{addr}"),
        "&scope=repository:team/app:pull",
        PASSWORD,
    );
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
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            server.addr()
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
    let r = deploy_at_token(&http, &base, &repeated, PASSWORD);
    assert_eq!(json_4xx("2000 scope parameters", r).0, 400);
    let spaced: String = (0..2000)
        .map(|i| format!("repository:r{i}:pull "))
        .collect();
    let r = post_form(
        &http,
        &format!("{base}/token"),
        &[
            ("grant_type", "password"),
            ("username", "deploy"),
            ("password", PASSWORD),
            ("service", SERVICE),
            ("scope", spaced.as_str()),
        ],
    );
    assert_eq!(json_4xx("thousands of space-separated scopes", r).0, 400);
    // 64 scopes are still fine.
    let ok: String = (0..64)
        .map(|i| format!("&scope=repository:r{i}:pull"))
        .collect();
    let r = deploy_at_token(&http, &base, &ok, PASSWORD);
    assert_eq!(r.status(), 200);
}

#[test]
fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let (_home, server) = serve("login_attempts_per_minute = 0");
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ";
    let bound = crate::support::api::HEADER_READ_TIMEOUT * 3;
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
    assert_eq!(health(&format!("http://{}", server.addr())), 200);
}

/// A connection the test holds open, plain or TLS.
enum Held {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Held {
    /// Whether the server has closed the connection (EOF or reset); waits at most `wait`.
    fn closed(&mut self, wait: Duration) -> bool {
        let mut buf = [0u8; 4096];
        let result = match self {
            Held::Plain(s) => {
                s.set_read_timeout(Some(wait)).unwrap();
                s.read(&mut buf)
            }
            Held::Tls(s) => {
                s.sock.set_read_timeout(Some(wait)).unwrap();
                s.read(&mut buf)
            }
        };
        match result {
            Ok(0) => true,
            Ok(_) => false, // an answer; the next read tells whether it closed
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

/// A self-signed certificate for `localhost` in `home`, and a TLS server using it.
fn tls_server(
    home: &Home,
) -> (
    crate::support::api::RunningServer,
    rcgen::CertifiedKey<rcgen::KeyPair>,
) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = home.home().join("tls.crt");
    let key_path = home.home().join("tls.key");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let (config, env) = home.config();
    let server = crate::support::api::serve(&config, &env, Some((cert_path, key_path)));
    (server, cert)
}

fn tls_client_config(cert: &rcgen::CertifiedKey<rcgen::KeyPair>) -> Arc<rustls::ClientConfig> {
    crate::support::api::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Connections that send nothing, half a request, half an HTTP/2 preface, a whole HTTP/2
/// preface and SETTINGS (h2c), nothing after a TLS handshake, half a TLS handshake, or nothing
/// after a first answer: the server closes every one of them (within a generous bound) and
/// answers `/health` on both HTTP and HTTPS all the while.
#[test]
fn idle_and_half_open_connections_are_closed_and_health_still_answers() {
    let (home, plain) = serve("login_attempts_per_minute = 0");
    let (tls, cert) = tls_server(&home);
    let tls_config = tls_client_config(&cert);
    let server_name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let h2_preface: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let h2_settings: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
    const EACH: usize = 25;
    let mut held: Vec<(&str, Held)> = Vec::new();
    for _ in 0..EACH {
        held.push((
            "plain, silent",
            Held::Plain(TcpStream::connect(plain.addr()).unwrap()),
        ));
        let mut s = TcpStream::connect(plain.addr()).unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .unwrap();
        held.push(("plain, half a request", Held::Plain(s)));
        let mut s = TcpStream::connect(plain.addr()).unwrap();
        s.write_all(&h2_preface[..10]).unwrap();
        held.push(("h2c, half the preface", Held::Plain(s)));
        let mut s = TcpStream::connect(plain.addr()).unwrap();
        s.write_all(h2_preface).unwrap();
        s.write_all(h2_settings).unwrap();
        held.push(("h2c, preface and SETTINGS", Held::Plain(s)));
        // Keep-alive: one answer, then nothing.
        let mut s = TcpStream::connect(plain.addr()).unwrap();
        s.write_all(format!("GET /health HTTP/1.1\r\nHost: {}\r\n\r\n", plain.addr()).as_bytes())
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut first = [0u8; 12];
        s.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        held.push(("plain, idle after an answer", Held::Plain(s)));
        held.push((
            "TLS, silent",
            Held::Plain(TcpStream::connect(tls.addr()).unwrap()),
        ));
        // Half a ClientHello.
        let mut conn =
            rustls::ClientConnection::new(Arc::clone(&tls_config), server_name.clone()).unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        let mut s = TcpStream::connect(tls.addr()).unwrap();
        s.write_all(&hello[..hello.len() / 2]).unwrap();
        held.push(("TLS, half a handshake", Held::Plain(s)));
        // A whole handshake, then nothing.
        let mut conn =
            rustls::ClientConnection::new(Arc::clone(&tls_config), server_name.clone()).unwrap();
        let mut s = TcpStream::connect(tls.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut s).unwrap();
        }
        assert_eq!(
            conn.alpn_protocol(),
            Some(&b"http/1.1"[..]),
            "HTTP/1.1 only"
        );
        held.push((
            "TLS, idle after the handshake",
            Held::Tls(Box::new(rustls::StreamOwned::new(conn, s))),
        ));
    }
    assert_eq!(held.len(), 8 * EACH);

    // Both servers answer while all of them are held.
    let https = Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap()])
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let health = || {
        assert_eq!(
            client()
                .get(format!("http://{}/health", plain.addr()))
                .send()
                .unwrap()
                .status(),
            200
        );
        assert_eq!(
            https
                .get(format!("https://localhost:{}/health", tls.addr().port()))
                .send()
                .unwrap()
                .status(),
            200
        );
    };
    health();

    // Every held connection is closed by the server: a generous bound, not a timing claim.
    let bound =
        (crate::support::api::FIRST_REQUEST_TIMEOUT + crate::support::api::HEADER_READ_TIMEOUT) * 4;
    let start = Instant::now();
    let mut last_health = Instant::now();
    while !held.is_empty() && start.elapsed() < bound {
        held.retain_mut(|(_, h)| !h.closed(Duration::from_millis(5)));
        if last_health.elapsed() > Duration::from_secs(2) {
            health();
            last_health = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let open: Vec<&str> = held.iter().map(|(what, _)| *what).collect();
    assert!(
        open.is_empty(),
        "{} connections still open after {} s: {open:?}",
        open.len(),
        bound.as_secs()
    );
    health();
}

/// A client that sends requests and never reads the answers cannot hold the connection: once
/// the socket buffers are full, the server's write waits, and after `WRITE_TIMEOUT` the
/// connection is closed.
#[test]
fn a_client_that_never_reads_its_answers_is_disconnected() {
    let (_home, server) = serve("login_attempts_per_minute = 0");
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let batch = format!("GET /health HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr())
        .repeat(200)
        .into_bytes();
    let bound = crate::support::api::WRITE_TIMEOUT * 6 + Duration::from_secs(60);
    let start = Instant::now();
    let mut closed = false;
    while start.elapsed() < bound {
        match s.write(&batch) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed,
        "the server kept a connection whose client reads nothing"
    );
    assert_eq!(health(&format!("http://{}", server.addr())), 200);
}

/// Clients that send a login and hang up at once: the hashes their requests started still
/// count against the limit on concurrent password checks until they finish, so no more than
/// the limit ever run together, and `/auth/verify` answers all the while.
#[test]
fn logins_that_hang_up_never_run_more_hashes_than_the_limit() {
    let (home, server) = serve("login_attempts_per_minute = 0");
    let addr = server.addr();
    let token = home.token(&["--subject", "ci", "--scopes", "pull"]);
    let body = json!({"username": "deploy", "password": "a wrong password"}).to_string();
    let request = format!(
        "POST /auth/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let hang_ups: Vec<_> = (0..3)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.write_all(request.as_bytes()).unwrap();
                    // Long enough for the request to reach the handler, then hang up.
                    std::thread::sleep(Duration::from_millis(20));
                    drop(s);
                }
            })
        })
        .collect();
    let http = client();
    for _ in 0..10 {
        let r = http
            .get(format!("http://{addr}/auth/verify"))
            .bearer_auth(&token)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "/auth/verify during the hang-ups");
        std::thread::sleep(Duration::from_millis(100));
    }
    for t in hang_ups {
        t.join().unwrap();
    }
    // Let the last hashes finish, then a real login still works.
    let r = http
        .post(format!("http://{addr}/auth/login"))
        .json(&json!({"username": "deploy", "password": PASSWORD}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let checks = server.password_checks();
    assert!(checks.peak >= 1, "{checks:?}");
    assert!(
        checks.peak <= checks.limit,
        "{} password checks ran at once; the limit is {}",
        checks.peak,
        checks.limit
    );
}

/// A client bound to the loopback address `source` (127.0.0.0/8 is all loopback on Linux),
/// so that one test can speak from several client addresses.
fn client_from(source: &str) -> Client {
    Client::builder()
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The Docker CLI sends the password on every push: only failed checks count, so 50 good
/// logins in a row from one address (at `/token` and `/auth/login`) are never limited.
#[test]
fn fifty_good_logins_in_a_row_are_never_rate_limited() {
    let (_home, server) = serve("login_attempts_per_minute = 3");
    let http = client();
    let base = format!("http://{}", server.addr());
    for i in 0..50 {
        let r = deploy_at_token(&http, &base, "&scope=repository:team/app:pull", PASSWORD);
        assert_eq!(r.status(), 200, "/token login {i}");
    }
    for i in 0..10 {
        let r = http
            .post(format!("{base}/auth/login"))
            .json(&json!({"username": "deploy", "password": PASSWORD}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "/auth/login {i}");
    }
    // Failures still count: three, then 429 with Retry-After, even for the right password.
    for _ in 0..3 {
        let r = deploy_at_token(&http, &base, "", "wrong");
        assert_eq!(r.status(), 401);
    }
    let r = deploy_at_token(&http, &base, "", PASSWORD);
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(json_4xx("429", r).1, "RATE_LIMITED");
}

/// An attacker guessing the password of `deploy` from one address is limited there, and
/// once the account is under attack every other address that fails against it backs off
/// (60/N s after its first failure, doubling); the real user, from an address that has not
/// failed, still logs in at once, again and again.
#[test]
fn guessing_against_an_account_never_locks_the_real_user_out() {
    let (_home, server) = serve("login_attempts_per_minute = 3");
    let base = format!("http://{}", server.addr());
    let login = |http: &Client, password: &str| {
        http.post(format!("{base}/auth/login"))
            .json(&json!({"username": "deploy", "password": password}))
            .send()
            .unwrap()
    };
    let attacker = client_from("127.0.0.2");
    for _ in 0..3 {
        assert_eq!(login(&attacker, "guess").status(), 401);
    }
    let r = login(&attacker, PASSWORD);
    assert_eq!(r.status(), 429, "the attacker's address is limited");
    assert!(r.headers().contains_key("retry-after"));
    // A second attacker address: its first failure is checked, then it backs off.
    let second = client_from("127.0.0.3");
    assert_eq!(login(&second, "guess").status(), 401);
    let r = login(&second, "guess");
    assert_eq!(
        r.status(),
        429,
        "a failing pair backs off while the account is under attack"
    );
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    // The real user, from another address, is not locked out.
    let user = client_from("127.0.0.4");
    for i in 0..5 {
        assert_eq!(login(&user, PASSWORD).status(), 200, "real user, login {i}");
    }
    let r = deploy_at_token(&user, &base, "&scope=repository:team/app:pull", PASSWORD);
    assert_eq!(r.status(), 200, "real user at /token");
}
