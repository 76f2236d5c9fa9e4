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
    NotFound {
        /// The backend's name.
        backend: &'static str,
        /// The key asked for.
        key: KeyPath,
    },

    /// This backend cannot do this operation.
    #[error("the {backend} backend does not support {operation}")]
    Unsupported {
        /// The backend's name.
        backend: &'static str,
        /// What was asked.
        operation: &'static str,
    },

    /// The key cannot be stored where the storage already has something of another shape: in
    /// the file and document backends a key cannot be both a value and a folder of other keys
    /// (`a/b` and `a/b/c`).
    #[error("cannot store `{key}` in the {backend} backend: {reason}")]
    Conflict {
        /// The backend's name.
        backend: &'static str,
        /// The key that could not be stored.
        key: KeyPath,
        /// What is in the way.
        reason: String,
    },

    /// The key path is not valid.
    #[error(transparent)]
    InvalidKey(#[from] KeyPathError),

    /// An external program (pass, gpg, sops) is not installed.
    #[error("`{program}` is not installed or not on PATH; {hint}")]
    ToolNotInstalled {
        /// The program looked for on `PATH`.
        program: String,
        /// How to install it.
        hint: &'static str,
    },

    /// An external program did not finish in time; it was killed.
    #[error("`{program}` did not finish within {timeout:?} and was stopped; {hint}")]
    ToolTimedOut {
        /// The program that did not finish.
        program: String,
        /// The limit it had.
        timeout: Duration,
        /// Why it may have hung, and what to do.
        hint: &'static str,
    },

    /// An external program exited unsuccessfully.
    #[error("`{program}` failed ({status}): {stderr}")]
    ToolFailed {
        /// The program that failed.
        program: String,
        /// Its exit status, e.g. `exit status 2`.
        status: String,
        /// Trimmed standard error of the tool (never contains the value we sent it on stdin).
        stderr: String,
    },

    /// The backend's storage exists but cannot be understood (not sops-encrypted, wrong age
    /// identity, not UTF-8, a value that is not a string, ...).
    #[error("{}: {reason}", path.display())]
    Corrupt {
        /// The file that cannot be understood.
        path: PathBuf,
        /// What is wrong with it, and what to check.
        reason: String,
    },

    /// A secret file or folder is readable or writable by other users.
    #[error(
        "{} has mode {mode:04o}, so other users can read or change it; run `chmod {want:o} {}`", path.display(), path.display()
    )]
    Permissions {
        /// The file or folder.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The permission bits it should have.
        want: u32,
    },

    /// A secret file or folder belongs to another user, who could have planted it (a signing
    /// secret of their choosing) or could change it.
    #[error(
        "{} belongs to user id {owner}, not to you (user id {you}), so another user could have \
         planted or changed it; if its content is yours, run `chown {you} {}`, else remove it",
        path.display(), path.display()
    )]
    Owner {
        /// The file or folder.
        path: PathBuf,
        /// Its owner's user id.
        owner: u32,
        /// The user id of this process (the owner it should have).
        you: u32,
    },

    /// The backend is not set up (missing identity, missing creation rules, ...); the message
    /// says what to do.
    #[error("{0}")]
    Setup(String),

    /// A filesystem operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl BackendError {
    /// No secret named `key` in the backend named `backend`.
    pub(crate) fn not_found(backend: &'static str, key: &KeyPath) -> Self {
        BackendError::NotFound {
            backend,
            key: key.clone(),
        }
    }

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
