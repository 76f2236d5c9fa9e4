//! pass: interop with the real `pass`, and the ways a tool call goes wrong.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use tessera_backends::pass::PassBackend;
use tessera_backends::{BackendError, ExposeSecret, PassConfig, SecretString, SecretsBackend};

use std::process::Command;

use crate::support::{PassHome, TOOL_TIMEOUT, key, os, run_tool};

#[test]
fn values_interoperate_with_pass_both_ways() {
    let Some(home) = PassHome::new() else { return };
    let b = home.backend();

    // Written by tessera, read by `pass show`: the value plus one newline.
    b.set(
        &key("tessera/auth/token_secret"),
        &SecretString::from("from tessera".to_owned()),
    )
    .unwrap();
    let out = run_tool(
        "pass",
        &[os("show"), os("tessera/auth/token_secret")],
        &home.env(),
        None,
    );
    assert_eq!(out.stdout, b"from tessera\n");

    // Written by `pass insert -m` (as `echo x | pass insert -m` does), read by tessera with the
    // one trailing newline removed.
    run_tool(
        "pass",
        &[os("insert"), os("-m"), os("ext/one")],
        &home.env(),
        Some(b"from pass\n"),
    );
    assert_eq!(b.get(&key("ext/one")).unwrap().expose_secret(), "from pass");
    run_tool(
        "pass",
        &[os("insert"), os("-m"), os("ext/two")],
        &home.env(),
        Some(b"line1\nline2\n\n"),
    );
    assert_eq!(
        b.get(&key("ext/two")).unwrap().expose_secret(),
        "line1\nline2\n"
    );

    // Entries whose names are not key paths (pass allows spaces) are not listed; hidden files
    // and .git are skipped.
    run_tool(
        "pass",
        &[os("insert"), os("-m"), os("ext/with space")],
        &home.env(),
        Some(b"x\n"),
    );
    std::fs::create_dir_all(home.store.join(".git/objects")).unwrap();
    std::fs::write(home.store.join(".git/objects/x.gpg"), b"").unwrap();
    assert_eq!(
        b.list(None).unwrap(),
        [
            key("ext/one"),
            key("ext/two"),
            key("tessera/auth/token_secret")
        ]
    );
}

#[test]
fn uninitialised_store_is_a_setup_error() {
    let Some(home) = PassHome::new() else { return };
    let empty = home.dir.path().join("empty-store");
    let b = PassBackend::new(PassConfig {
        store_dir: Some(empty.clone()),
        timeout: Some(crate::support::TOOL_TIMEOUT),
    })
    .with_env("GNUPGHOME", &home.gnupg);
    let err = b.check().unwrap_err();
    assert!(matches!(err, BackendError::Setup(_)), "{err:?}");
    assert!(err.to_string().contains("pass init"), "{err}");
    let err = b
        .set(&key("a"), &SecretString::from("v".to_owned()))
        .unwrap_err();
    assert!(err.to_string().contains("pass init"), "{err}");
    assert!(!empty.join("a.gpg").exists());
}

/// A folder holding one fake `pass` program with this shell `body`.
fn fake_pass(dir: &Path, body: &str) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("pass");
    std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn backend_with_path(store: &Path, path: &Path, timeout: Duration) -> PassBackend {
    PassBackend::new(PassConfig {
        store_dir: Some(store.to_path_buf()),
        timeout: Some(timeout),
    })
    .with_env("PATH", path)
}

#[test]
fn missing_pass_is_tool_not_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let empty_bin = tmp.path().join("bin");
    std::fs::create_dir(&empty_bin).unwrap();
    let b = backend_with_path(tmp.path(), &empty_bin, Duration::from_secs(5));
    let err = b
        .set(&key("a"), &SecretString::from("v".to_owned()))
        .unwrap_err();
    assert!(
        matches!(&err, BackendError::ToolNotInstalled { program, .. } if program == "pass"),
        "{err:?}"
    );
    assert!(err.to_string().contains("apt-get install pass"), "{err}");
    assert!(matches!(
        b.check(),
        Err(BackendError::ToolNotInstalled { .. })
    ));
}

fn process_gone(pid: &str) -> bool {
    let stat = Path::new("/proc").join(pid.trim()).join("stat");
    match std::fs::read_to_string(stat) {
        Err(_) => true,
        // A zombie waiting for init is dead too.
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn hanging_pass_times_out_and_is_killed_with_what_it_started() {
    let tmp = tempfile::tempdir().unwrap();
    let pids = tmp.path().join("pids");
    // Like pass waiting on gpg waiting on a pinentry: a child that never finishes and keeps
    // our pipes open.
    let bin = fake_pass(
        tmp.path(),
        &format!(
            "echo $$ > {p}.self\n/bin/sleep 60 &\necho $! > {p}.child\nwait",
            p = pids.display()
        ),
    );
    let b = backend_with_path(tmp.path(), &bin, Duration::from_secs(1));
    let start = Instant::now();
    let err = b
        .set(&key("a"), &SecretString::from("TOPSECRET".to_owned()))
        .unwrap_err();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    match &err {
        BackendError::ToolTimedOut {
            program,
            timeout,
            hint,
        } => {
            assert_eq!(program, "pass");
            assert_eq!(*timeout, Duration::from_secs(1));
            assert!(hint.contains("secrets.timeout"), "{hint}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(!err.to_string().contains("TOPSECRET"));
    // The tool was reaped by us, and what it started was killed.
    let self_pid = std::fs::read_to_string(pids.with_extension("self")).unwrap();
    assert!(
        process_gone(&self_pid),
        "pass (pid {self_pid}) still running"
    );
    let child_pid = std::fs::read_to_string(pids.with_extension("child")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while !process_gone(&child_pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        process_gone(&child_pid),
        "the tool's child (pid {child_pid}) still running"
    );
}

#[test]
fn a_large_value_and_chatty_stderr_arrive_whole() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("a.gpg"), b"").unwrap();
    // More than a pipe holds (64 KiB) on both streams at once: read together or deadlock.
    let bin = fake_pass(
        tmp.path(),
        "i=0\nwhile [ $i -lt 3000 ]; do\n  echo 'line-of-the-secret-value-0123456789-abcdefghijklmnopqrstuvwxyz'\n  echo 'gpg: some chatter on stderr, over and over, 0123456789' >&2\n  i=$((i+1))\ndone",
    );
    let b = backend_with_path(tmp.path(), &bin, Duration::from_secs(20));
    let value = b.get(&key("a")).unwrap();
    let lines: Vec<&str> = value.expose_secret().lines().collect();
    assert_eq!(lines.len(), 3000);
    assert!(
        lines
            .iter()
            .all(|l| *l == "line-of-the-secret-value-0123456789-abcdefghijklmnopqrstuvwxyz")
    );
}

#[test]
fn a_tool_that_exits_but_leaves_a_process_holding_its_output_is_not_waited_for_forever() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("a.gpg"), b"").unwrap();
    let pids = tmp.path().join("pids");
    // Prints the value and exits at once, but leaves a background process with our pipes.
    let bin = fake_pass(
        tmp.path(),
        &format!(
            "echo value\n/bin/sleep 60 &\necho $! > {p}.child",
            p = pids.display()
        ),
    );
    let b = backend_with_path(tmp.path(), &bin, Duration::from_secs(1));
    let start = Instant::now();
    let err = b.get(&key("a")).unwrap_err();
    // The deadline (1 s) plus the grace for such output (2 s), not the 60 s of the sleeper.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    match &err {
        BackendError::ToolTimedOut { program, hint, .. } => {
            assert_eq!(program, "pass");
            assert!(hint.contains("kept its output open"), "{hint}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    if let Ok(pid) = std::fs::read_to_string(pids.with_extension("child")) {
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    }
}

#[test]
fn failing_pass_reports_status_and_bounded_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let long = "x".repeat(3000);
    let bin = fake_pass(
        tmp.path(),
        &format!(
            "/bin/cat > /dev/null\necho 'gpg: decryption failed: No secret key {long}' >&2\nexit 2"
        ),
    );
    let b = backend_with_path(tmp.path(), &bin, Duration::from_secs(10));
    let err = b
        .set(&key("a"), &SecretString::from("TOPSECRET".to_owned()))
        .unwrap_err();
    match &err {
        BackendError::ToolFailed {
            program,
            status,
            stderr,
        } => {
            assert_eq!(program, "pass");
            assert_eq!(status, "exit status 2");
            assert!(
                stderr.starts_with("gpg: decryption failed: No secret key"),
                "{stderr}"
            );
            assert!(
                stderr.chars().count() <= 501,
                "stderr not bounded: {}",
                stderr.len()
            );
        }
        other => panic!("expected ToolFailed, got {other:?}"),
    }
    assert!(!err.to_string().contains("TOPSECRET"));

    // "not in the password store" is NotFound, not a failure.
    std::fs::write(tmp.path().join("gone.gpg"), b"").unwrap();
    let bin = fake_pass(
        tmp.path(),
        "echo 'Error: gone is not in the password store.' >&2\nexit 1",
    );
    let b = backend_with_path(tmp.path(), &bin, Duration::from_secs(10));
    assert!(b.get(&key("gone")).unwrap_err().is_not_found());
}

#[test]
fn the_secret_goes_on_stdin_and_tessera_variables_stay_home() {
    let tmp = tempfile::tempdir().unwrap();
    let record = tmp.path().join("record");
    // The fake pass records its arguments, environment and stdin.
    let bin = fake_pass(
        tmp.path(),
        &format!(
            "echo \"$@\" > {r}.args\n/usr/bin/env > {r}.env\n/bin/cat > {r}.stdin",
            r = record.display()
        ),
    );
    let b = backend_with_path(tmp.path(), &bin, Duration::from_secs(10))
        .with_env("TESSERA_AUTH_TOKEN_SECRET", "leak");
    b.set(
        &key("tessera/auth/token_secret"),
        &SecretString::from("TOPSECRET".to_owned()),
    )
    .unwrap();
    let args = std::fs::read_to_string(record.with_extension("args")).unwrap();
    assert_eq!(
        args.trim(),
        "insert --multiline --force tessera/auth/token_secret"
    );
    assert_eq!(
        std::fs::read(record.with_extension("stdin")).unwrap(),
        b"TOPSECRET\n"
    );
    let env = std::fs::read_to_string(record.with_extension("env")).unwrap();
    assert!(
        !env.contains("TOPSECRET") && !env.contains("TESSERA_"),
        "{env}"
    );
    assert!(env.lines().any(|l| l == "LC_ALL=C"), "{env}");
    assert!(
        env.lines()
            .any(|l| l == format!("PASSWORD_STORE_DIR={}", tmp.path().display())),
        "{env}"
    );
}

/// A pseudo-terminal that nobody reads: what a pinentry would take over when `GPG_TTY` points
/// at the user's terminal.
struct Pty {
    master: std::fs::File,
    path: std::path::PathBuf,
}

impl Pty {
    fn open() -> Pty {
        use std::os::fd::FromRawFd;
        // SAFETY: plain libc calls on a descriptor we own; ptsname's buffer is copied at once.
        unsafe {
            let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(fd >= 0, "posix_openpt failed");
            assert_eq!(libc::grantpt(fd), 0);
            assert_eq!(libc::unlockpt(fd), 0);
            let name = libc::ptsname(fd);
            assert!(!name.is_null());
            let path = std::ffi::CStr::from_ptr(name).to_str().unwrap().into();
            Pty {
                master: std::fs::File::from_raw_fd(fd),
                path,
            }
        }
    }
}

#[test]
fn a_locked_gpg_key_fails_fast_with_how_to_unlock_it_and_no_pinentry() {
    let Some(home) = PassHome::with_passphrase("correct horse battery 42") else {
        return;
    };
    let k = key("app/db");
    // Encrypting needs only the public key: no passphrase.
    home.backend()
        .set(&k, &SecretString::from("the-value".to_owned()))
        .unwrap();
    // Forget the passphrase gpg-agent may have cached when the key was made.
    home.stop_agent();
    // The user's terminal in GPG_TTY, as in an interactive shell: gpg must still not prompt.
    let pty = Pty::open();
    let b = PassBackend::new(PassConfig {
        store_dir: Some(home.store.clone()),
        timeout: Some(Duration::from_secs(8)),
    })
    .with_env("GNUPGHOME", &home.gnupg)
    .with_env("GPG_TTY", &pty.path)
    .with_env("TERM", "xterm");
    let err = b.get(&k).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, BackendError::Setup(_)), "{err:?}");
    assert!(msg.contains("is locked"), "{msg}");
    assert!(msg.contains("pass show app/db >/dev/null"), "{msg}");
    assert!(!msg.contains("the-value"), "{msg}");
    assert_eq!(
        home.agent_children(),
        Vec::<String>::new(),
        "a pinentry is running"
    );
    drop(pty.master);
}

#[test]
fn a_store_for_a_key_we_do_not_have_says_so() {
    let Some(home) = PassHome::new() else {
        return;
    };
    let k = key("app/db");
    home.backend()
        .set(&k, &SecretString::from("the-value".to_owned()))
        .unwrap();
    let empty = tempfile::tempdir().unwrap();
    std::fs::set_permissions(empty.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let b = PassBackend::new(PassConfig {
        store_dir: Some(home.store.clone()),
        timeout: Some(TOOL_TIMEOUT),
    })
    .with_env("GNUPGHOME", empty.path());
    let msg = b.get(&k).unwrap_err().to_string();
    assert!(
        msg.contains("gpg has no secret key for this pass store"),
        "{msg}"
    );
    assert!(msg.contains("pass init"), "{msg}");
    let _ = Command::new("gpgconf")
        .args(["--kill", "gpg-agent"])
        .env("GNUPGHOME", empty.path())
        .status();
}
