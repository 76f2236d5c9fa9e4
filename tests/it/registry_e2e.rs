//! End to end with the real `docker-registry` (distribution) in token mode and the real
//! `skopeo`: login, push, inspect, pull, denials, revocation, password login and the
//! credential helper. Skipped locally when a tool is missing; a failure under `CI=true`.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Home, PASSWORD, SERVICE};
use sha2::{Digest, Sha256};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// False (with a message) when a tool is missing; panics under CI.
fn tools_present() -> bool {
    let missing: Vec<&str> = ["docker-registry", "skopeo", "tar", "gzip"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but {missing:?} is missing: run scripts/test, which installs them");
    }
    eprintln!(
        "skipping the real-registry tests: {missing:?} not installed (apt-get install docker-registry skopeo)"
    );
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A one-layer OCI image layout at `dir`, tagged `tag`, made without any daemon.
fn oci_image(dir: &Path, tag: &str) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let content = dir.with_extension("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("hello.txt"), format!("hello from {tag}\n")).unwrap();
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
        .arg(&content)
        .arg(".")
        .output()
        .unwrap();
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

/// The real registry, stopped with SIGTERM on drop.
struct Registry {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Registry {
    fn start(dir: &Path, realm: &str, cert: &Path) -> Registry {
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

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
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
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// skopeo with a scratch HOME (and XDG folders) of its own and an explicit auth file.
struct Skopeo {
    home: tempfile::TempDir,
    path: Option<std::ffi::OsString>,
    extra_env: Vec<(String, String)>,
}

impl Skopeo {
    fn new() -> Skopeo {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join("run")).unwrap();
        Skopeo {
            home,
            path: None,
            extra_env: Vec::new(),
        }
    }

    fn authfile(&self) -> PathBuf {
        self.home.path().join("auth.json")
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
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
            .args(&args[1..])
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    fn login(&self, host: &str, user: &str, secret: &str) -> Output {
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

    fn push(&self, image: &Path, tag: &str, dest: &str) -> Output {
        let src = format!("oci:{}:{tag}", image.display());
        let dst = format!("docker://{dest}");
        self.run(&["copy", "--dest-tls-verify=false", &src, &dst], None)
    }

    fn inspect(&self, reference: &str) -> Output {
        let r = format!("docker://{reference}");
        self.run(&["inspect", "--tls-verify=false", &r], None)
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[track_caller]
fn ok(o: Output) -> Output {
    assert!(o.status.success(), "expected success: {}", text(&o));
    o
}

#[track_caller]
fn fails(o: Output) -> Output {
    assert!(!o.status.success(), "expected a failure: {}", text(&o));
    o
}

#[test]
fn real_registry_and_skopeo() {
    if !tools_present() {
        return;
    }
    let home = Home::new();
    let server = home.serve();
    let work = tempfile::tempdir().unwrap();
    let mut registry = Registry::start(
        work.path(),
        &format!("http://{}/token", server.addr()),
        &home.certificate(),
    );
    let host = registry.host();
    let image = work.path().join("image");
    oci_image(&image, "v1");

    // A push-and-pull token: login, push, inspect.
    let ci = home.token(&["--subject", "ci", "--scopes", "push,pull"]);
    let full = Skopeo::new();
    ok(full.login(&host, "ci", &ci));
    ok(full.push(&image, "v1", &format!("{host}/team/app:v1")));
    let inspected = ok(full.inspect(&format!("{host}/team/app:v1")));
    let v: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert!(v["Digest"].as_str().unwrap().starts_with("sha256:"));

    // A pull-only token pulls but cannot push; no tag appears.
    let pull = home.token(&["--subject", "reader", "--scopes", "pull"]);
    let reader = Skopeo::new();
    ok(reader.login(&host, "reader", &pull));
    let pulled = work.path().join("pulled");
    ok(reader.run(
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{host}/team/app:v1"),
            &format!("oci:{}:v1", pulled.display()),
        ],
        None,
    ));
    let denied = fails(reader.push(&image, "v1", &format!("{host}/team/app:v2")));
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("denied"),
        "{}",
        text(&denied)
    );
    fails(full.inspect(&format!("{host}/team/app:v2")));

    // A token limited to team/*: pushes inside the prefix, not outside.
    let team = home.token(&[
        "--subject",
        "team-ci",
        "--scopes",
        "push,pull",
        "--repo",
        "team/*",
    ]);
    let team_client = Skopeo::new();
    ok(team_client.login(&host, "team-ci", &team));
    ok(team_client.push(&image, "v1", &format!("{host}/team/lib:v1")));
    fails(team_client.push(&image, "v1", &format!("{host}/other/app:v1")));
    fails(full.inspect(&format!("{host}/other/app:v1")));

    // A revoked token cannot log in.
    let (revoked, jti) = home.token_with_jti(&["--subject", "gone", "--scopes", "push,pull"]);
    home.cmd()
        .args(["auth", "token", "revoke", &jti])
        .assert()
        .success();
    fails(Skopeo::new().login(&host, "gone", &revoked));
    // The right token under another user name cannot either.
    fails(Skopeo::new().login(&host, "someone", &ci));

    // Password login of [auth].
    let by_password = Skopeo::new();
    ok(by_password.login(&host, "deploy", PASSWORD));
    ok(by_password.inspect(&format!("{host}/team/app:v1")));
    fails(Skopeo::new().login(&host, "deploy", "wrong password"));

    // The credential helper, through credHelpers in the auth file.
    let mut helped = Skopeo::new();
    let bin = helped.home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(
        assert_cmd::cargo::cargo_bin("tessera"),
        bin.join("docker-credential-tessera"),
    )
    .unwrap();
    let mut path = std::ffi::OsString::from(&bin);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    helped.path = Some(path);
    helped.extra_env = vec![(
        "TESSERA_CONFIG".to_owned(),
        home.config_file().display().to_string(),
    )];
    std::fs::write(
        helped.authfile(),
        serde_json::json!({"credHelpers": {host.clone(): "tessera"}}).to_string(),
    )
    .unwrap();
    // Nothing stored yet: the helper misses and the registry refuses.
    fails(helped.inspect(&format!("{host}/team/app:v1")));
    // `skopeo login` stores through the helper, not in the auth file.
    ok(helped.login(&host, "ci", &ci));
    let auth = std::fs::read_to_string(helped.authfile()).unwrap();
    assert!(!auth.contains(&ci), "the token leaked into the auth file");
    ok(helped.inspect(&format!("{host}/team/app:v1")));
    ok(helped.push(&image, "v1", &format!("{host}/team/helper:v1")));

    registry.stop();
    let log = registry.log();
    for bad in ["untrusted", "malformed token", "invalid signature"] {
        assert!(
            !log.contains(bad),
            "the registry log contains `{bad}`:\n{log}"
        );
    }
    assert!(
        log.contains("team/app"),
        "the registry log shows no push:\n{log}"
    );
}

/// The user id and group id of a system user, if it exists.
fn system_user(name: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, name]).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().parse().ok())?
    };
    Some((id("-u")?, id("-g")?))
}

/// Starts the registry as the user `uid:gid` (as the Debian service does, as user
/// `docker-registry`) with its certificate at `cert`; `Err(log)` when it exits instead of
/// listening.
fn start_registry_as(
    dir: &Path,
    realm: &str,
    cert: &Path,
    (uid, gid): (u32, u32),
) -> Result<Registry, String> {
    use std::os::unix::process::CommandExt;
    let port = free_port();
    let storage = dir.join("storage");
    std::fs::create_dir_all(&storage).unwrap();
    std::os::unix::fs::chown(&storage, Some(uid), Some(gid)).unwrap();
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: e2e-http-secret\nauth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: tessera\n    rootcertbundle: {}\n",
            storage.display(),
            cert.display()
        ),
    )
    .unwrap();
    let log = dir.join("registry.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .uid(uid)
        .gid(gid)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let mut r = Registry { child, port, log };
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(_)) = r.child.try_wait() {
            let log = r.log();
            // Already reaped: nothing for Drop to stop.
            std::mem::forget(r);
            return Err(log);
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

/// docs/docker-registry.md, "Debian's registry service": the service runs as the user
/// `docker-registry`, which cannot read a certificate in the 0700 ~/.config/tessera; the
/// documented `[registry] certificate` in a folder it can read works. Needs root (to run the
/// registry as that user) and the user the Debian package creates.
#[test]
fn the_debian_service_user_reads_the_certificate_where_the_docs_put_it() {
    if !tools_present() {
        return;
    }
    // SAFETY: geteuid takes no arguments and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let Some(user) = system_user("docker-registry").filter(|_| root) else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but this test needs root and the `docker-registry` user");
        }
        eprintln!("skipping: needs root and the `docker-registry` user of Debian's package");
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    let open = |p: &Path| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let home = Home::new();
    // HOME as a real one: others may pass through it, but ~/.config/tessera is 0700.
    open(home.home());
    open(&home.home().join("config"));
    std::fs::set_permissions(home.config_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();

    // The old layout: the certificate in the config folder. The registry cannot start.
    let before = tempfile::tempdir().unwrap();
    open(before.path());
    let unused_realm = "http://127.0.0.1:9/token";
    let refused = start_registry_as(before.path(), unused_realm, &home.certificate(), user);
    let log = refused
        .err()
        .expect("the registry started with an unreadable certificate");
    assert!(log.contains("permission denied"), "{log}");

    // The documented layout: `sudo install -d -m 0755 -o "$USER" /etc/docker/registry/tessera`
    // (here a folder of the same modes), `[registry] certificate` there, `registry init`.
    let etc = tempfile::tempdir().unwrap();
    open(etc.path());
    let folder = etc.path().join("docker/registry/tessera");
    std::fs::create_dir_all(&folder).unwrap();
    let cert = folder.join("token.crt");
    let config = std::fs::read_to_string(home.config_file()).unwrap();
    let config = config.replace(
        "certificate = \"registry-token.crt\"",
        &format!("certificate = \"{}\"", cert.display()),
    );
    std::fs::write(home.config_file(), config).unwrap();
    let init = home.cmd().args(["registry", "init"]).output().unwrap();
    assert!(init.status.success(), "{}", text(&init));
    assert!(!String::from_utf8_lossy(&init.stderr).contains("warning"));
    let block = String::from_utf8_lossy(&init.stdout).into_owned();
    assert!(
        block.contains(&format!("rootcertbundle: \"{}\"", cert.display())),
        "{block}"
    );
    // `tessera serve` (re)started after init puts the new certificate in its tokens' x5c.
    let server = home.serve();
    let realm = format!("http://{}/token", server.addr());
    let work = tempfile::tempdir().unwrap();
    open(work.path());
    let registry = start_registry_as(work.path(), &realm, &cert, user)
        .unwrap_or_else(|log| panic!("the registry did not start as docker-registry: {log}"));
    let host = registry.host();
    let image = work.path().join("image");
    oci_image(&image, "v1");
    let ci = home.token(&["--subject", "ci", "--scopes", "push,pull"]);
    let client = Skopeo::new();
    ok(client.login(&host, "ci", &ci));
    ok(client.push(&image, "v1", &format!("{host}/team/app:v1")));
    ok(client.inspect(&format!("{host}/team/app:v1")));
}
