//! Output and input helpers: stdout for results, stderr for notes, secrets from stdin or a
//! no-echo prompt, confirmations on the terminal.
//!
//! Every write to stdout or stderr goes through here and is fallible: nothing panics when a
//! stream is closed or full (`println!`/`eprintln!` would). A stdout whose reader went away
//! ends the command quietly; any other stdout failure is an error; a stderr that cannot be
//! written is ignored (there is nowhere left to say so).

use std::cell::Cell;
use std::io::{BufRead, IsTerminal, Read, Write};

use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::cli::error::CliError;

/// Largest secret read from stdin.
pub const MAX_STDIN_SECRET: usize = 1024 * 1024;

/// Global output options.
#[derive(Debug, Default)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
    /// Whether a JSON document has been written to stdout (so `run` knows whether the
    /// command still owes one).
    json_written: Cell<bool>,
}

impl Output {
    pub fn new(json: bool, quiet: bool) -> Self {
        Output {
            json,
            quiet,
            json_written: Cell::new(false),
        }
    }

    /// Writes `text` and a newline to stdout (a closed pipe exits quietly).
    pub fn line(&self, text: &str) -> Result<(), CliError> {
        write_stdout(&format!("{text}\n"))
    }

    /// Writes a JSON value on one line to stdout: the command's one JSON document.
    pub fn json(&self, value: &serde_json::Value) -> Result<(), CliError> {
        self.json_written.set(true);
        // The document may hold a secret (a minted token, a stored credential).
        let text = Zeroizing::new(format!("{value}\n"));
        write_stdout(&text)
    }

    /// Whether [`Output::json`] has been called.
    pub fn json_written(&self) -> bool {
        self.json_written.get()
    }

    /// A human note on stderr, unless `--quiet`.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            write_stderr(&format!("{text}\n"));
        }
    }

    /// A warning on stderr (shown even with `--quiet`).
    pub fn warn(&self, text: &str) {
        write_stderr(&format!("warning: {text}\n"));
    }
}

/// Writes `text` to stdout and flushes. A reader that went away (`tessera ... | head`) ends
/// the command quietly with exit 0; any other failure (a full disk) is an error.
pub fn write_stdout(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                CliError::from(e)
            } else {
                CliError::new(format!("cannot write to stdout: {e}"))
                    .with_code(crate::cli::error::ErrorCode::Io)
            }
        })
}

/// Writes `text` to stderr and flushes; a failure (closed pipe, full disk) is ignored, since
/// there is nowhere left to report it.
pub fn write_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// Asks for confirmation of a destructive action; `what` says what it does, e.g. "this
/// revokes every token issued until now". With `yes` (the command's `--yes`), goes ahead. On a
/// terminal (stdin or stderr is one, and `/dev/tty` opens), asks `WHAT. Continue? [y/N]`
/// there and goes ahead only on `y` or `yes`. Otherwise refuses with an error that names
/// `--yes` (exit 2, code `CONFIRMATION_REQUIRED`), so a script never destroys anything by
/// accident.
pub fn confirm(what: &str, yes: bool) -> Result<(), CliError> {
    use crate::cli::error::ErrorCode;
    if yes {
        return Ok(());
    }
    let interactive = std::io::stdin().is_terminal() || std::io::stderr().is_terminal();
    let tty = if interactive {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()
    } else {
        None
    };
    let Some(mut tty) = tty else {
        return Err(CliError::usage(format!(
            "{what}; confirm with --yes (there is no terminal to ask on, so nothing was changed)"
        ))
        .with_code(ErrorCode::ConfirmationRequired));
    };
    let cancelled = || {
        CliError::new("cancelled; nothing was changed").with_code(ErrorCode::ConfirmationRequired)
    };
    tty.write_all(format!("{what}. Continue? [y/N] ").as_bytes())
        .and_then(|()| tty.flush())
        .map_err(|_| cancelled())?;
    let mut answer = String::new();
    std::io::BufReader::new(tty)
        .take(256)
        .read_line(&mut answer)
        .map_err(|_| cancelled())?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(cancelled()),
    }
}

/// Reads a secret from stdin: at most [`MAX_STDIN_SECRET`] bytes, UTF-8, one trailing newline
/// removed. `what` names the value for errors (e.g. "the secret value").
pub fn read_stdin_secret(what: &str) -> Result<SecretString, CliError> {
    let mut buf = Zeroizing::new(Vec::new());
    std::io::stdin()
        .lock()
        .take(MAX_STDIN_SECRET as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CliError::new(format!("cannot read {what} from stdin: {e}")))?;
    if buf.len() > MAX_STDIN_SECRET {
        return Err(CliError::new(format!(
            "{what} on stdin is larger than {MAX_STDIN_SECRET} bytes"
        )));
    }
    let text = std::str::from_utf8(&buf)
        .map_err(|_| CliError::new(format!("{what} on stdin is not valid UTF-8")))?;
    let text = tessera_backends::strip_one_newline(text);
    if text.is_empty() {
        return Err(CliError::usage(format!(
            "no {what} on stdin; pipe it in, e.g. `printf '%s\\n' \"$VALUE\" | tessera ...`"
        )));
    }
    Ok(SecretString::from(text.to_owned()))
}

/// Reads one line from stdin (for `--password-stdin` style flags).
pub fn read_stdin_line(what: &str) -> Result<SecretString, CliError> {
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .take(MAX_STDIN_SECRET as u64)
        .read_line_into(&mut line)
        .map_err(|e| CliError::new(format!("cannot read {what} from stdin: {e}")))?;
    let text = tessera_backends::strip_one_newline(&line);
    if text.is_empty() {
        return Err(CliError::usage(format!("no {what} on stdin")));
    }
    Ok(SecretString::from(text.to_owned()))
}

trait ReadLineInto {
    fn read_line_into(&mut self, s: &mut String) -> std::io::Result<usize>;
}

impl<R: Read> ReadLineInto for R {
    fn read_line_into(&mut self, s: &mut String) -> std::io::Result<usize> {
        let mut bytes = Zeroizing::new(Vec::new());
        let mut byte = [0u8; 1];
        while self.read(&mut byte)? == 1 {
            if byte[0] == b'\n' {
                break;
            }
            bytes.push(byte[0]);
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not valid UTF-8"))?;
        s.push_str(text);
        Ok(bytes.len())
    }
}

/// Whether stdin is a terminal (so a prompt can be shown).
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Prompts on the terminal without echo.
pub fn prompt_hidden(prompt: &str) -> Result<SecretString, CliError> {
    rpassword::prompt_password(prompt)
        .map(SecretString::from)
        .map_err(|e| {
            CliError::new(format!("cannot prompt on the terminal: {e}"))
                .with_hint("pass the value on stdin with the command's --stdin flag instead")
        })
}
