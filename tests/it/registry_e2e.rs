//! End to end with the real `docker-registry` (distribution) in token mode and the real
//! `skopeo`: login, push, inspect, pull, denials, revocation, password login and the
//! credential helper. Skipped locally when a tool is missing; a failure under `CI=true`.
//! Each test starts its own tessera server and registry (`Setup`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::real::{Registry, Rig, Skopeo, fails, oci_image, ok, text, tools_present};
use crate::support::{Home, PASSWORD, Run};

/// False (with a message) when a tool is missing; panics under CI.
fn registry_tools() -> bool {
    tools_present(
        &["docker-registry", "skopeo", "tar", "gzip"],
        "apt-get install docker-registry skopeo",
    )
}

/// A tessera server with a registry home, the real registry trusting it, and a one-layer
/// image `v1` to push.
struct Setup {
    rig: Rig,
    image: PathBuf,
}

impl Setup {
    /// `None` (skipped) when a tool is missing outside CI.
    fn new() -> Option<Setup> {
        if !registry_tools() {
            return None;
        }
        let rig = Rig::start();
        let image = rig.work.path().join("image");
        oci_image(&image, "v1");
        Some(Setup { rig, image })
    }

    /// `HOST/repo`.
    fn at(&self, repo: &str) -> String {
        format!("{}/{repo}", self.rig.host)
    }

    /// A client logged in with a fresh token of `subject` with `args` (after `--subject`).
    fn client(&self, subject: &str, args: &[&str]) -> (Skopeo, String) {
        let mut all = vec!["--subject", subject];
        all.extend_from_slice(args);
        let token = self.rig.home.token(&all);
        let client = Skopeo::new();
        ok(client.login(&self.rig.host, subject, &token));
        (client, token)
    }

    /// `ci` with a push-and-pull token pushes `team/app:v1`; returns its client and token.
    fn push_app(&self) -> (Skopeo, String) {
        let (ci, token) = self.client("ci", &["--scopes", "push,pull"]);
        ok(ci.push(&self.image, "v1", &self.at("team/app:v1")));
        (ci, token)
    }

    /// Stops the registry and fails when it distrusted or could not read a token.
    fn finish(mut self) -> String {
        self.rig.registry.assert_no_token_trouble();
        self.rig.registry.log()
    }
}

#[test]
fn a_push_and_pull_token_logs_in_pushes_and_inspects() {
    let Some(s) = Setup::new() else { return };
    let (ci, _) = s.push_app();
    let inspected = ok(ci.inspect(&s.at("team/app:v1")));
    let v: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert!(v["Digest"].as_str().unwrap().starts_with("sha256:"));
    let log = s.finish();
    assert!(
        log.contains("team/app"),
        "the registry log shows no push:\n{log}"
    );
}

#[test]
fn a_pull_only_token_pulls_but_cannot_push() {
    let Some(s) = Setup::new() else { return };
    let (ci, _) = s.push_app();
    let (reader, _) = s.client("reader", &["--scopes", "pull"]);
    let pulled = s.rig.work.path().join("pulled");
    ok(reader.run(
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}", s.at("team/app:v1")),
            &format!("oci:{}:v1", pulled.display()),
        ],
        None,
    ));
    let denied = fails(reader.push(&s.image, "v1", &s.at("team/app:v2")));
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("denied"),
        "{}",
        text(&denied)
    );
    // No tag appears.
    fails(ci.inspect(&s.at("team/app:v2")));
    s.finish();
}

#[test]
fn a_token_limited_to_a_prefix_pushes_inside_it_only() {
    let Some(s) = Setup::new() else { return };
    let (ci, _) = s.push_app();
    let (team, _) = s.client("team-ci", &["--scopes", "push,pull", "--repo", "team/*"]);
    ok(team.push(&s.image, "v1", &s.at("team/lib:v1")));
    fails(team.push(&s.image, "v1", &s.at("other/app:v1")));
    fails(ci.inspect(&s.at("other/app:v1")));
    s.finish();
}

#[test]
fn a_revoked_token_or_another_user_name_cannot_log_in() {
    let Some(s) = Setup::new() else { return };
    let (_, ci) = s.push_app();
    let (revoked, jti) = s
        .rig
        .home
        .token_with_jti(&["--subject", "gone", "--scopes", "push,pull"]);
    s.rig.home.ok(&["auth", "token", "revoke", &jti]);
    fails(Skopeo::new().login(&s.rig.host, "gone", &revoked));
    // The right token under another user name cannot either.
    fails(Skopeo::new().login(&s.rig.host, "someone", &ci));
    s.finish();
}

#[test]
fn password_login_of_auth_pulls_and_a_wrong_password_is_refused() {
    let Some(s) = Setup::new() else { return };
    s.push_app();
    let by_password = Skopeo::new();
    ok(by_password.login(&s.rig.host, "deploy", PASSWORD));
    ok(by_password.inspect(&s.at("team/app:v1")));
    fails(Skopeo::new().login(&s.rig.host, "deploy", "wrong password"));
    s.finish();
}

#[test]
fn the_credential_helper_stores_the_token_outside_the_auth_file() {
    let Some(s) = Setup::new() else { return };
    let (_, ci) = s.push_app();
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
        s.rig.home.config_file().display().to_string(),
    )];
    std::fs::write(
        helped.authfile(),
        serde_json::json!({"credHelpers": {s.rig.host.clone(): "tessera"}}).to_string(),
    )
    .unwrap();
    // Nothing stored yet: the helper misses and the registry refuses.
    fails(helped.inspect(&s.at("team/app:v1")));
    // `skopeo login` stores through the helper, not in the auth file.
    ok(helped.login(&s.rig.host, "ci", &ci));
    let auth = std::fs::read_to_string(helped.authfile()).unwrap();
    assert!(!auth.contains(&ci), "the token leaked into the auth file");
    ok(helped.inspect(&s.at("team/app:v1")));
    ok(helped.push(&s.image, "v1", &s.at("team/helper:v1")));
    s.finish();
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

/// docs/docker-registry.md, "Debian's registry service": the service runs as the user
/// `docker-registry`, which cannot read a certificate in the 0700 ~/.config/tessera; the
/// documented `[registry] certificate` in a folder it can read works. Needs root (to run the
/// registry as that user) and the user the Debian package creates.
#[test]
fn the_debian_service_user_reads_the_certificate_where_the_docs_put_it() {
    if !registry_tools() {
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
    let refused = Registry::start_as(before.path(), unused_realm, &home.certificate(), Some(user));
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
    home.set_certificate(&cert);
    let (block, stderr) = home.ok(&["registry", "init"]);
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(
        block.contains(&format!("rootcertbundle: \"{}\"", cert.display())),
        "{block}"
    );
    // `tessera serve` (re)started after init puts the new certificate in its tokens' x5c.
    let server = home.serve();
    let realm = format!("http://{}/token", server.addr());
    let work = tempfile::tempdir().unwrap();
    open(work.path());
    let registry = Registry::start_as(work.path(), &realm, &cert, Some(user))
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
