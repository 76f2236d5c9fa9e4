//! The one error type at the edge: it decides the exit code and prints one readable sentence
//! plus, where there is one, a hint. No variant ever carries a secret value.

use std::fmt;

use tessera_backends::{BackendError, KeyPathError};

use crate::config::ConfigError;
use crate::duration::DurationError;
use crate::password::PasswordError;
use crate::store::StoreError;
use crate::token::{KeyError, MintError, ScopeError};

/// Exit code for failures (including "token invalid").
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for usage errors (bad flags, bad argument values).
pub const EXIT_USAGE: u8 = 2;

/// An error as the user sees it.
#[derive(Debug)]
pub struct CliError {
    message: String,
    hint: Option<String>,
    code: u8,
    quiet: bool,
}

impl CliError {
    /// A failure (exit 1).
    pub fn new(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            hint: None,
            code: EXIT_FAILURE,
            quiet: false,
        }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_USAGE,
            ..CliError::new(message)
        }
    }

    /// An exit with `code` and nothing printed (the command already said what it had to).
    pub fn silent(code: u8) -> Self {
        CliError {
            quiet: true,
            code,
            ..CliError::new("")
        }
    }

    /// Adds a hint line (`hint: ...`).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Prefixes the message with context, e.g. `cannot read the token secret: ...`.
    pub fn context(mut self, prefix: impl fmt::Display) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }

    pub fn exit_code(&self) -> u8 {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Writes the error to stderr (unless it is silent).
    pub fn report(&self) {
        if self.quiet {
            return;
        }
        eprintln!("error: {}", self.message);
        if let Some(h) = &self.hint {
            eprintln!("hint: {h}");
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::new(e.to_string())
    }
}

impl From<BackendError> for CliError {
    fn from(e: BackendError) -> Self {
        let hint = match &e {
            BackendError::NotFound { .. } => {
                Some("list what is stored with `tessera secrets list`".to_owned())
            }
            _ => None,
        };
        let mut err = match e {
            BackendError::InvalidKey(k) => return k.into(),
            other => CliError::new(other.to_string()),
        };
        err.hint = hint;
        err
    }
}

impl From<KeyPathError> for CliError {
    fn from(e: KeyPathError) -> Self {
        CliError::usage(e.to_string())
    }
}

impl From<DurationError> for CliError {
    fn from(e: DurationError) -> Self {
        CliError::usage(e.to_string())
    }
}

impl From<ScopeError> for CliError {
    fn from(e: ScopeError) -> Self {
        CliError::usage(e.to_string())
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        CliError::new(e.to_string())
    }
}

impl From<PasswordError> for CliError {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Cost(_) => CliError::usage(e.to_string()),
            other => CliError::new(other.to_string()),
        }
    }
}

impl From<KeyError> for CliError {
    fn from(e: KeyError) -> Self {
        CliError::new(e.to_string())
    }
}

impl From<MintError> for CliError {
    fn from(e: MintError) -> Self {
        match e {
            MintError::Duration(d) => d.into(),
            MintError::Subject(_) => CliError::usage(e.to_string()),
            other => CliError::new(other.to_string()),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // The reader went away (`tessera ... | head`): exit quietly.
            return CliError::silent(0);
        }
        CliError::new(e.to_string())
    }
}
