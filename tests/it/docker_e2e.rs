//! End to end with the real Docker CLI and daemon, and with podman, against the real
//! `docker-registry` (distribution 2.8) in token mode with tessera as its token server:
//! login, push, pull, denials, and Docker's own refresh-token flow (`offline_token=true`).
//!
//! The Docker daemon is the one `scripts/test` starts (it exports `DOCKER_HOST`); locally the
//! Docker tests are skipped when no daemon answers, under `CI=true` that is a failure.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::support::Run;
use crate::support::argv;
use crate::support::real::{
    Rig, fails, ok, rootfs_tar, run_tool, skip_unless_ci, text, tools_present,
};
use base64::Engine;

/// The Docker daemon's address, when one answers.
fn docker_daemon() -> Option<String> {
    if !tools_present(
        &["docker", "docker-registry", "tar"],
        "apt-get install docker.io docker-registry",
    ) {
        return None;
    }
    let host = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
    let answers = host.as_deref().is_some_and(|h| {
        Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .env("DOCKER_HOST", h)
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if answers {
        return host;
    }
    skip_unless_ci(
        &format!("no Docker daemon answers at DOCKER_HOST={host:?}"),
        "scripts/test starts one",
    );
    None
}

/// The Docker CLI with a scratch HOME and config folder of its own, on the shared daemon.
struct Docker {
    home: tempfile::TempDir,
    daemon: String,
}

impl Docker {
    fn new(daemon: &str) -> Docker {
        Docker {
            home: tempfile::tempdir().unwrap(),
            daemon: daemon.to_owned(),
        }
    }

    fn config_json(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.home.path().join(".docker/config.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut c = Command::new("docker");
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("DOCKER_CONFIG", self.home.path().join(".docker"))
            .env("DOCKER_HOST", &self.daemon)
            .args(args);
        run_tool(c, stdin)
    }

    fn login(&self, host: &str, user: &str, secret: &str) -> Output {
        self.run(
            &["login", "-u", user, "--password-stdin", host],
            Some(format!("{secret}\n").as_bytes()),
        )
    }

    /// A Docker CLI of its own, logged in at `host` as `user` with `secret`.
    fn logged_in(daemon: &str, host: &str, user: &str, secret: &str) -> Docker {
        let docker = Docker::new(daemon);
        ok(docker.login(host, user, secret));
        docker
    }

    /// Tags `image` as `target` and expects the push of `target` to be denied.
    fn push_is_denied(&self, image: &str, target: &str) {
        ok(self.run(&["tag", image, target], None));
        let denied = fails(self.run(&["push", target], None));
        let stderr = String::from_utf8_lossy(&denied.stderr);
        assert!(stderr.contains("denied"), "{}", text(&denied));
    }

    /// A new local image `reference` made from a one-file root file system.
    fn import(&self, work: &Path, reference: &str) {
        let tar = rootfs_tar(work, &format!("hello from {reference}\n"));
        ok(self.run(&["import", "-", reference], Some(&tar)));
    }
}

#[test]
fn docker_cli_logs_in_pushes_pulls_and_is_refused_outside_its_scopes() {
    let Some(daemon) = docker_daemon() else {
        return;
    };
    let mut rig = Rig::start();
    let (home, host) = (&rig.home, rig.host.clone());

    // A push-and-pull token limited to team/*.
    let token = home.token(&argv("--subject ci --scopes push,pull --repo team/*"));
    let ci = Docker::logged_in(&daemon, &host, "ci", &token);
    let app = format!("{host}/team/app:1");
    ci.import(rig.work.path(), &app);
    ok(ci.run(&["push", &app], None));
    // Outside team/*: refused, and nothing is created.
    let other = format!("{host}/other/app:1");
    ci.push_is_denied(&app, &other);
    // Pull back what was pushed.
    ok(ci.run(&["rmi", &app], None));
    ok(ci.run(&["pull", &app], None));

    // A pull-only token pulls and cannot push; no tag appears.
    let pull = home.token(&["--subject", "reader", "--scopes", "pull"]);
    let reader = Docker::logged_in(&daemon, &host, "reader", &pull);
    ok(reader.run(&["pull", &app], None));
    let second = format!("{host}/team/app:2");
    reader.push_is_denied(&app, &second);
    ok(ci.run(&["rmi", &second], None));
    fails(ci.run(&["pull", &second], None));

    // The token under a name that is not its subject is refused at login.
    fails(Docker::new(&daemon).login(&host, "someone-else", &token));

    for image in [&app, &other] {
        let _ = ci.run(&["rmi", image], None);
    }
    rig.registry.assert_no_token_trouble();
}

#[test]
fn docker_login_keeps_a_refresh_token_that_dies_with_its_parent() {
    let Some(daemon) = docker_daemon() else {
        return;
    };
    let mut rig = Rig::start();
    let (home, host) = (&rig.home, rig.host.clone());
    let (token, jti) = home.token_with_jti(&["--subject", "ci", "--scopes", "push,pull"]);

    // `docker login` asks for `offline_token=true` and stores the refresh token it gets as an
    // identity token, instead of the password (the minted token).
    let docker = Docker::logged_in(&daemon, &host, "ci", &token);
    let config = docker.config_json();
    let entry = &config["auths"][&host];
    let identity = entry["identitytoken"].as_str().unwrap_or_default();
    assert!(
        !identity.is_empty(),
        "docker stored no refresh token: {config}"
    );
    assert_ne!(identity, token);
    let stored = entry["auth"].as_str().unwrap_or_default();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(stored)
        .unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&decoded).contains(&token),
        "docker kept the minted token itself: {config}"
    );

    // The refresh token works for a push...
    let first = format!("{host}/team/refresh:1");
    docker.import(rig.work.path(), &first);
    ok(docker.run(&["push", &first], None));

    // ...until its parent is revoked: then the derived refresh token is refused too.
    home.ok(&["auth", "token", "revoke", &jti]);
    let second = format!("{host}/team/refresh2:1");
    ok(docker.run(&["tag", &first, &second], None));
    fails(docker.run(&["push", &second], None));

    for image in [&first, &second] {
        let _ = docker.run(&["rmi", image], None);
    }
    rig.registry.assert_no_token_trouble();
}

/// podman with its own storage, run root and auth file in a scratch folder.
pub(crate) struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    pub(crate) fn new() -> Podman {
        Podman {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let d = self.dir.path();
        let mut c = Command::new("podman");
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", d)
            .env("XDG_RUNTIME_DIR", d.join("run"))
            .arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args);
        run_tool(c, stdin)
    }

    /// A registry command (`login`, `push`, `pull`) with the scratch auth file and plain HTTP.
    pub(crate) fn remote(&self, verb: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let auth = self.dir.path().join("auth.json").display().to_string();
        let mut all = vec![verb, "--tls-verify=false", "--authfile", &auth];
        all.extend_from_slice(args);
        self.run(&all, stdin)
    }
}

#[test]
fn podman_logs_in_pushes_pulls_and_a_pull_only_token_cannot_push() {
    if !tools_present(
        &["podman", "docker-registry", "tar"],
        "apt-get install podman docker-registry",
    ) {
        return;
    }
    let mut rig = Rig::start();
    let (home, host) = (&rig.home, rig.host.clone());

    let token = home.token(&["--subject", "ci", "--scopes", "push,pull"]);
    let ci = Podman::new();
    let secret = format!("{token}\n");
    ok(ci.remote(
        "login",
        &["-u", "ci", "--password-stdin", &host],
        Some(secret.as_bytes()),
    ));
    let app = format!("{host}/team/podman:1");
    let tar = rootfs_tar(rig.work.path(), "hello from podman\n");
    ok(ci.run(&["import", "-", &app], Some(&tar)));
    ok(ci.remote("push", &[&app], None));

    let pull = home.token(&["--subject", "reader", "--scopes", "pull"]);
    let reader = Podman::new();
    let secret = format!("{pull}\n");
    ok(reader.remote(
        "login",
        &["-u", "reader", "--password-stdin", &host],
        Some(secret.as_bytes()),
    ));
    ok(reader.remote("pull", &[&app], None));
    let second = format!("{host}/team/podman:2");
    ok(reader.run(&["tag", &app, &second], None));
    fails(reader.remote("push", &[&second], None));
    fails(ci.remote("pull", &[&second], None));

    rig.registry.assert_no_token_trouble();
}
