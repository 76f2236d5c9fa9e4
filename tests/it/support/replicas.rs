//! Several `tessera serve` replicas on one real PostgreSQL, behind the real haproxy running
//! the repository's `deploy/haproxy/tessera.cfg`.
//!
//! The server comes from `TESSERA_TEST_PG_URL` (scripts/test starts a scratch cluster with
//! `scripts/pg-scratch` and sets it, with `TESSERA_REQUIRE_PG`, so these tests never skip
//! there); each test gets a database of its own. Tests that stop PostgreSQL start a cluster
//! of their own ([`OwnCluster`]).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Home;
use super::serve::BinServer;

/// The PostgreSQL server to test against; `None` (the test passes with a note) when none is
/// configured and `TESSERA_REQUIRE_PG` is not set.
pub fn server_url() -> Option<String> {
    match std::env::var("TESSERA_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var_os("TESSERA_REQUIRE_PG").is_some() => {
            panic!("TESSERA_REQUIRE_PG is set but TESSERA_TEST_PG_URL is not: run scripts/test")
        }
        _ => {
            eprintln!("skipped: no PostgreSQL (set TESSERA_TEST_PG_URL, see scripts/pg-scratch)");
            None
        }
    }
}

/// `url` with its database replaced by `db`.
fn with_db(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_path(&format!("/{db}"));
    u.to_string()
}

/// Runs `sql` with psql on `url`; panics with psql's error.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql (Debian package postgresql-client)");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A new empty database on the server at `server`; its URL.
pub fn fresh_database(server: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let db = format!(
        "tessera_it{}_{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    psql(server, &format!("CREATE DATABASE {db}"));
    with_db(server, &db)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A PostgreSQL cluster of this test's own (`scripts/pg-scratch`), for faults that stop it.
pub struct OwnCluster {
    dir: String,
    pub url: String,
}

impl OwnCluster {
    pub fn start() -> OwnCluster {
        let out = Command::new(repo().join("scripts/pg-scratch"))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg-scratch: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let var = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}='")))
                .and_then(|v| v.strip_suffix('\''))
                .unwrap()
                .to_owned()
        };
        OwnCluster {
            dir: var("TESSERA_PG_DIR"),
            url: var("TESSERA_TEST_PG_URL"),
        }
    }

    fn script(&self, action: &str) {
        let st = Command::new(repo().join("scripts/pg-scratch"))
            .args([action, &self.dir])
            .status()
            .unwrap();
        assert!(st.success(), "pg-scratch {action}");
    }

    /// Stops the server (fast shutdown: connections are closed), keeping its data.
    pub fn halt(&self) {
        self.script("halt");
    }

    /// Starts it again on the same port.
    pub fn resume(&self) {
        self.script("resume");
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/pg-scratch"))
            .args(["stop", &self.dir])
            .status();
    }
}

/// The address replicas listen on: this host's first non-loopback IPv4 address, as replicas
/// behind a load balancer do (a server bound to a loopback address accepts only requests
/// whose `Host` names it, which a load balancer's requests and health checks do not).
pub fn replica_address() -> String {
    let out = Command::new("hostname").arg("-I").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .expect("the replica tests need a non-loopback IPv4 address on this host")
        .to_owned()
}

/// `count` replicas of `tessera serve` sharing the PostgreSQL database at `db_url`, with
/// password login for `deploy` and `extra` config (after `[auth]`).
pub struct Replicas {
    pub home: Home,
    pub servers: Vec<BinServer>,
}

impl Replicas {
    pub fn start(db_url: &str, count: usize, extra: &str) -> Replicas {
        let home = Home::with_login(&format!(
            "{extra}\n[store]\nengine = \"postgres\"\nurl = \"{db_url}\"\n"
        ));
        let bind = format!("{}:0", replica_address());
        let servers = (0..count)
            .map(|i| {
                BinServer::start_on(
                    home.std_cmd(),
                    &home.home().join(format!("replica-{i}.log")),
                    "http",
                    &bind,
                )
            })
            .collect();
        Replicas { home, servers }
    }

    /// `http://ADDR` of replica `i`.
    pub fn base(&self, i: usize) -> String {
        self.servers[i].url()
    }
}

/// The real haproxy running `deploy/haproxy/tessera.cfg` in front of three replicas.
pub struct Haproxy {
    child: Child,
    pub addr: String,
}

impl Haproxy {
    pub fn start(replicas: &Replicas, log: &Path) -> Haproxy {
        assert_eq!(replicas.servers.len(), 3, "the config names three replicas");
        let port = TcpListener::bind("0.0.0.0:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(repo().join("deploy/haproxy/tessera.cfg"))
            .env("TESSERA_LB_BIND", &addr)
            .env("TESSERA_REPLICA_A", replicas.servers[0].addr.to_string())
            .env("TESSERA_REPLICA_B", replicas.servers[1].addr.to_string())
            .env("TESSERA_REPLICA_C", replicas.servers[2].addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("haproxy (Debian package haproxy)");
        let lb = Haproxy { child, addr };
        // Up when every replica has passed its health checks: a few rounds of 200s.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut ok = 0;
        while ok < 6 {
            assert!(Instant::now() < deadline, "haproxy did not come up");
            match super::http::client()
                .get(format!("{}/health", lb.url()))
                .send()
            {
                Ok(r) if r.status() == 200 => ok += 1,
                _ => ok = 0,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(600));
        lb
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every few milliseconds until it is true; the time it took, or `None` after
/// `limit`.
pub fn time_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}
