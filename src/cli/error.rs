//! The one error type at the edge: it decides the exit code and prints one readable sentence
//! plus, where there is one, a hint (or, under `--json`, one line of JSON with a stable code).
//! No variant ever carries a secret value.
//!
//! The library below `cli/` returns its own typed errors and knows nothing of exit codes or
//! `tessera ...` hints; the `From` impls at the end of this file are the one place where each
//! library error becomes what the user reads.

use std::fmt;

use tessera_backends::{BackendError, KeyPathError};

use crate::auth::{AuthError, LoginError};
use crate::client::ClientError;
use crate::config::ConfigError;
use crate::duration::DurationError;
use crate::http::StartError;
use crate::keyring::KeyringError;
use crate::password::PasswordError;
use crate::registry::RegistryError;
use crate::registry::key::KeyError as RegistryKeyError;
use crate::remotes::RemotesError;
use crate::store::StoreError;
use crate::token::{KeyError, MintError, ScopeError};

/// Exit code for failures (including "token invalid").
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for usage errors (bad flags, bad argument values).
pub const EXIT_USAGE: u8 = 2;

/// The stable, machine-readable kind of an error: the `code` of the JSON error line that
/// `--json` prints on stderr. Scripts may match on these; the sentences may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Bad flags or argument values (exit 2).
    Usage,
    /// A confirmation was needed and there was no terminal to ask on (exit 2; add `--yes`).
    ConfirmationRequired,
    /// The named thing does not exist: a secret, a remote, a token id, stored credentials.
    NotFound,
    /// The named thing exists already (e.g. `remotes add` of a known name).
    AlreadyExists,
    /// A token was refused (by `verify`, or by a remote).
    InvalidToken,
    /// A remote refused the username or password.
    InvalidCredentials,
    /// The configuration file or environment is wrong.
    Config,
    /// The secrets backend failed (tool missing, timeout, unreadable storage, bad secret).
    Backend,
    /// The token store could not answer.
    Store,
    /// A remote could not be reached, or answered with an error.
    Remote,
    /// Reading or writing a file or stream failed.
    Io,
    /// Anything else.
    Failed,
}

impl ErrorCode {
    /// The code as printed: `USAGE`, `NOT_FOUND`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Usage => "USAGE",
            ErrorCode::ConfirmationRequired => "CONFIRMATION_REQUIRED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::AlreadyExists => "ALREADY_EXISTS",
            ErrorCode::InvalidToken => "INVALID_TOKEN",
            ErrorCode::InvalidCredentials => "INVALID_CREDENTIALS",
            ErrorCode::Config => "CONFIG",
            ErrorCode::Backend => "BACKEND",
            ErrorCode::Store => "STORE",
            ErrorCode::Remote => "REMOTE",
            ErrorCode::Io => "IO",
            ErrorCode::Failed => "FAILED",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as the user sees it.
#[derive(Debug)]
pub struct CliError {
    message: String,
    hint: Option<String>,
    exit: u8,
    kind: ErrorCode,
    quiet: bool,
}

impl CliError {
    /// A failure (exit 1).
    pub fn new(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            hint: None,
            exit: EXIT_FAILURE,
            kind: ErrorCode::Failed,
            quiet: false,
        }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            exit: EXIT_USAGE,
            kind: ErrorCode::Usage,
            ..CliError::new(message)
        }
    }

    /// Sets the machine-readable code (the exit code stays).
    pub fn with_code(mut self, kind: ErrorCode) -> Self {
        self.kind = kind;
        self
    }

    /// An exit with `code` and nothing printed (the command already said what it had to).
    pub fn silent(code: u8) -> Self {
        CliError {
            quiet: true,
            exit: code,
            ..CliError::new("")
        }
    }

    /// Adds a hint line (`hint: ...`).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Sets the hint when there is one, else keeps the one `self` has: a library error's own
    /// hint wins over that of the error it wraps.
    fn with_hint_if_any(self, hint: Option<impl Into<String>>) -> Self {
        match hint {
            Some(h) => self.with_hint(h),
            None => self,
        }
    }

    /// Prefixes the message with context, e.g. `cannot read the token secret: ...`.
    pub fn context(mut self, prefix: impl fmt::Display) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }

    pub fn exit_code(&self) -> u8 {
        self.exit
    }

    /// The machine-readable code.
    pub fn code(&self) -> ErrorCode {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Whether nothing is printed for this error.
    pub fn is_silent(&self) -> bool {
        self.quiet
    }

    /// The error as the one line of JSON that `--json` prints on stderr:
    /// `{"error":"sentence","code":"CODE"}`, plus `"hint"` when there is one.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"error": self.message, "code": self.kind.as_str()});
        if let Some(h) = &self.hint {
            v["hint"] = serde_json::Value::from(h.as_str());
        }
        v
    }

    /// Writes the error to stderr (unless it is silent): `error: ...` and `hint: ...` lines,
    /// or with `json` one line of JSON. A stderr that cannot be written is ignored.
    pub fn report(&self, json: bool) {
        if self.quiet {
            return;
        }
        if json {
            crate::cli::write_stderr(&format!("{}\n", self.to_json()));
            return;
        }
        let mut text = format!("error: {}\n", self.message);
        if let Some(h) = &self.hint {
            text.push_str(&format!("hint: {h}\n"));
        }
        crate::cli::write_stderr(&text);
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::new(e.to_string()).with_code(ErrorCode::Config)
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
        let err = match e {
            BackendError::InvalidKey(k) => return k.into(),
            BackendError::NotFound { .. } => {
                CliError::new(e.to_string()).with_code(ErrorCode::NotFound)
            }
            other => CliError::new(other.to_string()).with_code(ErrorCode::Backend),
        };
        err.with_hint_if_any(hint)
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
        CliError::new(e.to_string()).with_code(ErrorCode::Store)
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
        // The signing secret is unusable (too short): a matter of set-up.
        CliError::new(e.to_string()).with_code(ErrorCode::Config)
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

impl From<RemotesError> for CliError {
    fn from(e: RemotesError) -> Self {
        match e {
            RemotesError::InvalidName(_) | RemotesError::InvalidUrl { .. } => {
                CliError::usage(e.to_string())
            }
            RemotesError::Unknown { .. } => {
                CliError::new(e.to_string()).with_code(ErrorCode::NotFound)
            }
            RemotesError::Exists(_) => {
                CliError::new(e.to_string()).with_code(ErrorCode::AlreadyExists)
            }
            RemotesError::Parse { .. } => CliError::new(e.to_string()).with_code(ErrorCode::Config),
            RemotesError::Io { .. } => CliError::new(e.to_string()).with_code(ErrorCode::Io),
        }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        // The remote's own code decides where it says something about the credentials.
        let code = match &e {
            ClientError::Api { code, .. } => match code.as_str() {
                "INVALID_TOKEN" | "TOKEN_EXPIRED" | "TOKEN_REVOKED" => ErrorCode::InvalidToken,
                "INVALID_CREDENTIALS" => ErrorCode::InvalidCredentials,
                "NOT_FOUND" => ErrorCode::NotFound,
                _ => ErrorCode::Remote,
            },
            _ => ErrorCode::Remote,
        };
        CliError::new(e.to_string()).with_code(code)
    }
}

impl From<RegistryKeyError> for CliError {
    fn from(e: RegistryKeyError) -> Self {
        CliError::new(e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // The reader went away (`tessera ... | head`): exit quietly.
            return CliError::silent(0);
        }
        CliError::new(e.to_string()).with_code(ErrorCode::Io)
    }
}

impl From<KeyringError> for CliError {
    fn from(e: KeyringError) -> Self {
        let hint = e.hint();
        let err = match e {
            KeyringError::Config(e) => e.into(),
            KeyringError::Key(e) => e.into(),
            KeyringError::Backend(e) => e.into(),
            KeyringError::ReadSecret(e) => {
                CliError::from(e).context("cannot read the token signing secret")
            }
            KeyringError::ReadPrevious(e) => {
                CliError::from(e).context("cannot read a previous token secret")
            }
            other => CliError::new(other.to_string()),
        };
        err.with_hint_if_any(hint)
    }
}

impl From<LoginError> for CliError {
    fn from(e: LoginError) -> Self {
        let hint = e.hint();
        let err = match e {
            LoginError::Backend(e) => e.into(),
            LoginError::ReadHash(e) => CliError::from(e).context("cannot read the password hash"),
            LoginError::Random(e) => e.into(),
            LoginError::Hash(e) => e.into(),
            other => CliError::new(other.to_string()),
        };
        err.with_hint_if_any(hint)
    }
}

impl From<RegistryError> for CliError {
    fn from(e: RegistryError) -> Self {
        let hint = e.hint();
        let err = match e {
            RegistryError::Backend(e) => e.into(),
            RegistryError::ReadKey(e) => {
                CliError::from(e).context("cannot read the registry signing key")
            }
            other => CliError::new(other.to_string()),
        };
        err.with_hint_if_any(hint)
    }
}

impl From<StartError> for CliError {
    fn from(e: StartError) -> Self {
        let hint = e.hint();
        let err = match e {
            StartError::Keyring(e) => return e.into(),
            StartError::Login(e) => return e.into(),
            StartError::Registry(e) => return e.into(),
            StartError::Backend(e) => e.into(),
            StartError::OpenStore(e) => CliError::from(e).context("cannot open the token store"),
            other => CliError::new(other.to_string()),
        };
        err.with_hint_if_any(hint)
    }
}

impl From<AuthError> for CliError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::ExpiryTooLong { asked, max } => CliError::usage(format!(
                "expiry `{asked}` ({}) is longer than `auth.max_token_expiry` ({max}: {}); choose a shorter --expiry",
                asked.words(),
                max.words()
            )),
            AuthError::Duration(e) => e.into(),
            AuthError::Mint(e) => e.into(),
            AuthError::StoreUnavailable(e) => e.into(),
            other => CliError::new(other.to_string()),
        }
    }
}
