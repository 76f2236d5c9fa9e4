//! The real pieces of the registry end-to-end tests: Debian's `docker-registry` (distribution
//! 2.8) in token mode, started on a free loopback port and stopped with SIGTERM on drop, and
//! the checks that skip locally but fail under `CI=true` when a tool is missing.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{SERVICE, argv};

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

/// True when every tool is present; otherwise `skip_unless_ci`.
pub fn tools_present(tools: &[&str], install: &str) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    missing.is_empty() || skip_unless_ci(&format!("{missing:?} not installed"), install)
}

/// Whether the tests run under `CI=true`, where every real tool must be there.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// A real-tool test cannot run because of `missing` (`fix` says how to get it): false with a
/// message, or a panic under `CI=true` (CI has them all: a skipped real-tool test there is a
/// defect).
pub fn skip_unless_ci(missing: &str, fix: &str) -> bool {
    assert!(
        !in_ci(),
        "CI=true but {missing} ({fix}): run scripts/test, which provides every tool"
    );
    eprintln!("skipping: {missing} ({fix})");
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
        Registry::start_as(dir, realm, cert, None)
            .unwrap_or_else(|log| panic!("the registry exited instead of listening: {log}"))
    }

    /// `start`, as the user `uid:gid` when given (as the Debian service runs it, as user
    /// `docker-registry`); `Err(log)` when the registry exits instead of listening.
    pub fn start_as(
        dir: &Path,
        realm: &str,
        cert: &Path,
        user: Option<(u32, u32)>,
    ) -> Result<Registry, String> {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: e2e-http-secret\nauth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: tessera\n    rootcertbundle: {}\n",
                storage.display(),
                cert.display()
            ),
        )
        .unwrap();
        let log = dir.join("registry.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&storage, Some(uid), Some(gid)).unwrap();
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().unwrap();
        let mut r = Registry { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(_)) = r.child.try_wait() {
                return Err(r.log());
            }
            assert!(
                Instant::now() < deadline,
                "the registry neither started nor exited: {}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(r)
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

/// A registry home, its tessera server in this process, and the real registry trusting it,
/// in a scratch folder.
pub struct Rig {
    pub home: super::Home,
    /// Runs as long as the rig.
    _server: super::api::RunningServer,
    pub work: tempfile::TempDir,
    pub registry: Registry,
    pub host: String,
}

impl Rig {
    pub fn start() -> Rig {
        Rig::start_with(super::Home::new())
    }

    /// A rig around `home` (a home with a registry section and key).
    pub fn start_with(home: super::Home) -> Rig {
        let server = home.serve();
        let work = tempfile::tempdir().unwrap();
        let registry = Registry::start(
            work.path(),
            &format!("http://{}/token", server.addr()),
            &home.certificate(),
        );
        let host = registry.host();
        Rig {
            home,
            _server: server,
            work,
            registry,
            host,
        }
    }
}

/// Runs `cmd` with `stdin` (or none) to the end, its output captured.
pub fn run_tool(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
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

/// A reproducible tar stream of the files in `root`.
fn tar_of(root: &Path) -> Output {
    Command::new("tar")
        .args(argv("--sort=name --mtime=@0 --owner=0 --group=0 -cf - -C"))
        .arg(root)
        .arg(".")
        .output()
        .unwrap()
}

/// A tar stream of one small file, for `docker import` / `podman import`.
pub fn rootfs_tar(dir: &Path, content: &str) -> Vec<u8> {
    let root = dir.join(format!("rootfs-{}", content.len()));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello.txt"), content).unwrap();
    let tar = tar_of(&root);
    assert!(tar.status.success(), "{}", text(&tar));
    tar.stdout
}

/// The sha256 digest of `bytes` as an OCI digest.
pub fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A one-layer OCI image layout at `dir`, tagged `tag`, made without any daemon.
pub fn oci_image(dir: &Path, tag: &str) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let content = dir.with_extension("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("hello.txt"), format!("hello from {tag}\n")).unwrap();
    let tar = tar_of(&content);
    assert!(tar.status.success());
    let mut gz = Command::new("gzip")
        .args(["-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    gz.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
    let layer = gz.wait_with_output().unwrap().stdout;
    let put = |bytes: &[u8]| {
        let d = sha(bytes);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), bytes).unwrap();
        (d, bytes.len())
    };
    let (layer_digest, layer_size) = put(&layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha(&tar.stdout)]},
        "config": {}
    })
    .to_string();
    let (config_digest, config_size) = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size}]
    })
    .to_string();
    let (manifest_digest, manifest_size) = put(manifest.as_bytes());
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest, "size": manifest_size,
                "annotations": {"org.opencontainers.image.ref.name": tag}
            }]
        })
        .to_string(),
    )
    .unwrap();
}

/// skopeo with a scratch HOME (and XDG folders) of its own and an explicit auth file.
pub struct Skopeo {
    pub home: tempfile::TempDir,
    pub path: Option<std::ffi::OsString>,
    pub extra_env: Vec<(String, String)>,
}

impl Skopeo {
    pub fn new() -> Skopeo {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join("run")).unwrap();
        Skopeo {
            home,
            path: None,
            extra_env: Vec::new(),
        }
    }

    pub fn authfile(&self) -> PathBuf {
        self.home.path().join("auth.json")
    }

    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = Command::new("skopeo");
        c.env_clear()
            .env(
                "PATH",
                self.path
                    .clone()
                    .unwrap_or_else(|| std::env::var_os("PATH").unwrap_or_default()),
            )
            .env("HOME", self.home.path())
            .env("XDG_RUNTIME_DIR", self.home.path().join("run"))
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .arg(args[0])
            .arg("--authfile")
            .arg(self.authfile())
            .args(&args[1..]);
        run_tool(c, stdin.map(str::as_bytes))
    }

    pub fn login(&self, host: &str, user: &str, secret: &str) -> Output {
        self.run(
            &[
                "login",
                "--tls-verify=false",
                "-u",
                user,
                "--password-stdin",
                host,
            ],
            Some(&format!("{secret}\n")),
        )
    }

    pub fn push(&self, image: &Path, tag: &str, dest: &str) -> Output {
        let src = format!("oci:{}:{tag}", image.display());
        let dst = format!("docker://{dest}");
        self.run(&["copy", "--dest-tls-verify=false", &src, &dst], None)
    }

    pub fn inspect(&self, reference: &str) -> Output {
        let r = format!("docker://{reference}");
        self.run(&["inspect", "--tls-verify=false", &r], None)
    }
}
