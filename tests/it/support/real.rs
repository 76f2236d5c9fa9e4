//! The real pieces of the registry end-to-end tests: Debian's `docker-registry` (distribution
//! 2.8) in token mode, started on a free loopback port and stopped with SIGTERM on drop, and
//! the checks that skip locally but fail under `CI=true` when a tool is missing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::SERVICE;

/// Whether `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(tool)).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
    })
}

/// True when every tool is present; otherwise false with a message, or a panic under
/// `CI=true` (CI installs them all: a skipped real-tool test there is a defect).
pub fn tools_present(tools: &[&str], install: &str) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but {missing:?} is missing: run scripts/test, which installs them");
    }
    eprintln!("skipping: {missing:?} not installed ({install})");
    false
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real registry, stopped with SIGTERM on drop.
pub struct Registry {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Registry {
    /// Starts `docker-registry serve` with token auth against `realm`, trusting `cert`.
    pub fn start(dir: &Path, realm: &str, cert: &Path) -> Registry {
        let port = free_port();
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: e2e-http-secret\nauth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: tessera\n    rootcertbundle: {}\n",
                dir.join("storage").display(),
                cert.display()
            ),
        )
        .unwrap();
        let log = dir.join("registry.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let r = Registry { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not start: {}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails the test when the registry logged that it distrusted or could not read a token.
    pub fn assert_no_token_trouble(&mut self) {
        self.stop();
        let log = self.log();
        for bad in ["untrusted", "malformed token", "invalid signature"] {
            assert!(
                !log.contains(bad),
                "the registry log contains `{bad}`:\n{log}"
            );
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A process's exit status and output, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[track_caller]
pub fn ok(o: Output) -> Output {
    assert!(o.status.success(), "expected success: {}", text(&o));
    o
}

#[track_caller]
pub fn fails(o: Output) -> Output {
    assert!(!o.status.success(), "expected a failure: {}", text(&o));
    o
}

/// A tar stream of one small file, for `docker import` / `podman import`.
pub fn rootfs_tar(dir: &Path, content: &str) -> Vec<u8> {
    let root = dir.join(format!("rootfs-{}", content.len()));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello.txt"), content).unwrap();
    let tar = Command::new("tar")
        .args([
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "-cf",
            "-",
            "-C",
        ])
        .arg(&root)
        .arg(".")
        .output()
        .unwrap();
    assert!(tar.status.success(), "{}", text(&tar));
    tar.stdout
}
