//! The one error type of this crate. Variants carry context (key path, program, exit status,
//! file) and never a secret value.

use std::path::PathBuf;
use std::time::Duration;

use crate::KeyPath;
use crate::key::KeyPathError;

/// What went wrong in a backend operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// No secret is stored under this key.
    #[error("no secret named `{key}` in the {backend} backend")]
    NotFound { backend: &'static str, key: KeyPath },

    /// This backend cannot do this operation.
    #[error("the {backend} backend does not support {operation}")]
    Unsupported {
        backend: &'static str,
        operation: &'static str,
    },

    /// The key cannot be stored where the storage already has something of another shape: in
    /// the file and document backends a key cannot be both a value and a folder of other keys
    /// (`a/b` and `a/b/c`).
    #[error("cannot store `{key}` in the {backend} backend: {reason}")]
    Conflict {
        backend: &'static str,
        key: KeyPath,
        reason: String,
    },

    /// The key path is not valid.
    #[error(transparent)]
    InvalidKey(#[from] KeyPathError),

    /// An external program (pass, gpg, sops) is not installed.
    #[error("`{program}` is not installed or not on PATH; {hint}")]
    ToolNotInstalled { program: String, hint: &'static str },

    /// An external program did not finish in time; it was killed.
    #[error("`{program}` did not finish within {timeout:?} and was stopped; {hint}")]
    ToolTimedOut {
        program: String,
        timeout: Duration,
        hint: &'static str,
    },

    /// An external program exited unsuccessfully.
    #[error("`{program}` failed ({status}): {stderr}")]
    ToolFailed {
        program: String,
        status: String,
        /// Trimmed standard error of the tool (never contains the value we sent it on stdin).
        stderr: String,
    },

    /// The backend's storage exists but cannot be understood (not sops-encrypted, wrong age
    /// identity, not UTF-8, a value that is not a string, ...).
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },

    /// A secret file or folder is readable or writable by other users.
    #[error(
        "{} has mode {mode:04o}, so other users can read or change it; run `chmod {want:o} {}`", path.display(), path.display()
    )]
    Permissions { path: PathBuf, mode: u32, want: u32 },

    /// The backend is not set up (missing identity, missing creation rules, ...); the message
    /// says what to do.
    #[error("{0}")]
    Setup(String),

    /// A filesystem operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BackendError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BackendError::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether this error means "there is no such secret".
    pub fn is_not_found(&self) -> bool {
        matches!(self, BackendError::NotFound { .. })
    }
}
