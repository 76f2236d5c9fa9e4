//! Output and input helpers: stdout for results, stderr for notes, secrets from stdin or a
//! no-echo prompt.

use std::io::{IsTerminal, Read, Write};

use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::error::CliError;

/// Largest secret read from stdin.
pub const MAX_STDIN_SECRET: usize = 1024 * 1024;

/// Global output options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
}

impl Output {
    /// Writes `text` and a newline to stdout (a closed pipe exits quietly).
    pub fn line(&self, text: &str) -> Result<(), CliError> {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(())
    }

    /// Writes a JSON value on one line to stdout.
    pub fn json(&self, value: &serde_json::Value) -> Result<(), CliError> {
        self.line(&value.to_string())
    }

    /// A human note on stderr, unless `--quiet`.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    /// A warning on stderr (shown even with `--quiet`).
    pub fn warn(&self, text: &str) {
        eprintln!("warning: {text}");
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
