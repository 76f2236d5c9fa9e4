//! Isolated homes for the real tools, and the "skip locally, fail in CI" rule.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tessera_backends::age::{AgeBackend, generate_identity};
use tessera_backends::pass::PassBackend;
use tessera_backends::sops::SopsBackend;
use tessera_backends::{AgeConfig, KeyPath, PassConfig, SopsConfig};

/// Generous limit for real tools on a busy shared machine.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

pub fn key(s: &str) -> KeyPath {
    KeyPath::new(s).unwrap()
}

/// Where `program` is on PATH, if anywhere.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Whether `program` is installed. When it is not: prints a skip message and returns false, or
/// panics when `CI=true` (in CI every tool must be there, a skipped test would hide a defect).
pub fn require_tool(program: &str) -> bool {
    if which(program).is_some() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "`{program}` is not on PATH, and CI=true: every backend tool must be installed in CI"
        );
    }
    eprintln!("skipping: `{program}` is not installed (this would fail with CI=true)");
    false
}

/// Runs a tool for a test (a fixture or an interop check), panicking with its stderr on failure.
pub fn run_tool(
    program: &str,
    args: &[&OsStr],
    env: &[(&str, &OsStr)],
    stdin: Option<&[u8]>,
) -> Output {
    let out = run_tool_status(program, args, env, stdin);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn run_tool_status(
    program: &str,
    args: &[&OsStr],
    env: &[(&str, &OsStr)],
    stdin: Option<&[u8]>,
) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    child.wait_with_output().unwrap()
}

pub fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A throwaway gpg home with a passphrase-less key and an initialised pass store.
pub struct PassHome {
    pub dir: tempfile::TempDir,
    pub gnupg: PathBuf,
    pub store: PathBuf,
}

impl PassHome {
    /// `None` (after the skip message) when pass or gpg is missing.
    pub fn new() -> Option<PassHome> {
        Self::with_passphrase("")
    }

    /// Like [`PassHome::new`], with a key protected by `passphrase` (none when empty).
    pub fn with_passphrase(passphrase: &str) -> Option<PassHome> {
        if !(require_tool("pass") && require_tool("gpg")) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let gnupg = dir.path().join("gnupg");
        std::fs::create_dir(&gnupg).unwrap();
        std::fs::set_permissions(&gnupg, std::fs::Permissions::from_mode(0o700)).unwrap();
        let store = dir.path().join("store");
        let home = PassHome { dir, gnupg, store };
        run_tool(
            "gpg",
            &[
                os("--batch"),
                os("--pinentry-mode"),
                os("loopback"),
                os("--passphrase"),
                os(passphrase),
                os("--quick-gen-key"),
                os("tessera test <t@example.invalid>"),
                os("future-default"),
                os("default"),
                os("never"),
            ],
            &home.env(),
            None,
        );
        let listing = run_tool(
            "gpg",
            &[os("--list-keys"), os("--with-colons")],
            &home.env(),
            None,
        );
        let listing = String::from_utf8(listing.stdout).unwrap();
        let fpr = listing
            .lines()
            .find_map(|l| {
                l.strip_prefix("fpr:")
                    .map(|r| r.trim_matches(':').to_owned())
            })
            .expect("a fingerprint");
        run_tool("pass", &[os("init"), os(&fpr)], &home.env(), None);
        Some(home)
    }

    pub fn env(&self) -> Vec<(&str, &OsStr)> {
        vec![
            ("GNUPGHOME", self.gnupg.as_os_str()),
            ("PASSWORD_STORE_DIR", self.store.as_os_str()),
        ]
    }

    pub fn backend(&self) -> PassBackend {
        PassBackend::new(PassConfig {
            store_dir: Some(self.store.clone()),
            timeout: Some(TOOL_TIMEOUT),
        })
        .with_env("GNUPGHOME", &self.gnupg)
    }
}

impl PassHome {
    /// Stops this home's gpg-agent, so that it forgets every cached passphrase.
    pub fn stop_agent(&self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", &self.gnupg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Processes whose parent is this home's gpg-agent (a pinentry it started), as
    /// `pid: command line`.
    pub fn agent_children(&self) -> Vec<String> {
        let home = self.gnupg.display().to_string();
        let procs: Vec<(String, String, String)> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let pid = e.file_name().into_string().ok()?;
                pid.parse::<u32>().ok()?;
                let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                let status = std::fs::read_to_string(e.path().join("status")).ok()?;
                let ppid = status
                    .lines()
                    .find_map(|l| l.strip_prefix("PPid:"))?
                    .trim()
                    .to_owned();
                Some((pid, ppid, cmdline))
            })
            .collect();
        let agents: Vec<&String> = procs
            .iter()
            .filter(|(_, _, cmd)| cmd.contains("gpg-agent") && cmd.contains(&home))
            .map(|(pid, _, _)| pid)
            .collect();
        procs
            .iter()
            .filter(|(_, ppid, _)| agents.contains(&ppid))
            .map(|(pid, _, cmd)| format!("{pid}: {cmd}"))
            .collect()
    }
}

impl Drop for PassHome {
    fn drop(&mut self) {
        // Stop the gpg-agent that gpg started for this home.
        self.stop_agent();
    }
}

/// A folder with an age key for sops and a `.sops.yaml` whose creation rule uses it.
pub struct SopsHome {
    pub dir: tempfile::TempDir,
    pub key_file: PathBuf,
    pub recipient: String,
}

impl SopsHome {
    pub fn new() -> Option<SopsHome> {
        if !(require_tool("sops") && require_tool("age-keygen")) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("keys.txt");
        run_tool("age-keygen", &[os("-o"), key_file.as_os_str()], &[], None);
        let out = run_tool("age-keygen", &[os("-y"), key_file.as_os_str()], &[], None);
        let recipient = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        std::fs::write(
            dir.path().join(".sops.yaml"),
            format!("creation_rules:\n  - age: {recipient}\n"),
        )
        .unwrap();
        Some(SopsHome {
            dir,
            key_file,
            recipient,
        })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn env(&self) -> Vec<(&str, &OsStr)> {
        vec![
            ("SOPS_AGE_KEY_FILE", self.key_file.as_os_str()),
            ("SOPS_DISABLE_VERSION_CHECK", os("1")),
        ]
    }

    pub fn backend(&self, name: &str) -> SopsBackend {
        SopsBackend::new(SopsConfig {
            file: self.file(name),
            timeout: Some(TOOL_TIMEOUT),
        })
        .with_env("SOPS_AGE_KEY_FILE", &self.key_file)
    }
}

/// A folder with a fresh identity for the native age backend.
pub struct AgeHome {
    pub dir: tempfile::TempDir,
    pub identity: PathBuf,
    pub recipient: String,
}

impl AgeHome {
    pub fn new() -> AgeHome {
        let dir = tempfile::tempdir().unwrap();
        let identity = dir.path().join("keys/identity.txt");
        let recipient = generate_identity(&identity).unwrap();
        AgeHome {
            dir,
            identity,
            recipient,
        }
    }

    pub fn file(&self) -> PathBuf {
        self.dir.path().join("data/secrets.age")
    }

    pub fn backend(&self) -> AgeBackend {
        AgeBackend::new(AgeConfig {
            file: self.file(),
            identity: self.identity.clone(),
        })
    }
}

/// The permission bits of `path`.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}
