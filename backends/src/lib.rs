//! Secrets backends for tessera, usable by any Rust program.
//!
//! A backend stores secret values under validated [`KeyPath`]s. Four real backends are
//! provided, all behind the small object-safe [`SecretsBackend`] trait:
//!
//! | name     | storage                                                      | external tool |
//! |----------|--------------------------------------------------------------|---------------|
//! | `pass`   | one pass entry per key (`pass show tessera/auth/token_secret`) | `pass`, `gpg` |
//! | `sops`   | nested maps in one sops-encrypted YAML or JSON file           | `sops`        |
//! | `unsafe` | one plain file per key, mode 0600, folders 0700               | none          |
//! | `age`    | nested maps in one age-encrypted document (x25519 identity)   | none          |
//!
//! A secret's value is the whole stored content with one trailing newline removed, so values
//! written by `echo x | pass insert -m` or `echo x > file` read back as `x`, and multi-line PEM
//! keys survive.
//!
//! ```no_run
//! use tessera_backends::{open, BackendConfig, KeyPath, UnsafeConfig};
//! use secrecy::{ExposeSecret, SecretString};
//!
//! let backend = open(BackendConfig::Unsafe(UnsafeConfig { dir: "/tmp/secrets".into() }))?;
//! let key = KeyPath::new("app/db")?;
//! backend.set(&key, &SecretString::from("hunter2"))?;
//! assert_eq!(backend.get(&key)?.expose_secret(), "hunter2");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use secrecy::{ExposeSecret, SecretString};

mod error;
mod key;

pub mod fsutil;
pub(crate) mod process;

#[cfg(feature = "age")]
pub mod age;
pub mod files;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod pass;
pub mod sops;

pub use error::BackendError;
pub use key::{KeyPath, KeyPathError, MAX_KEY_PATH_LEN};

/// Default limit for one call of an external tool.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// A store of secret values addressed by [`KeyPath`].
///
/// Implementations are cheap to share across threads. An operation a backend cannot perform
/// returns [`BackendError::Unsupported`].
pub trait SecretsBackend: fmt::Debug + Send + Sync {
    /// The backend's configuration name: `pass`, `sops`, `unsafe`, `age` or `memory`.
    fn name(&self) -> &'static str;

    /// Reads the value stored under `key` ([`BackendError::NotFound`] when there is none).
    fn get(&self, key: &KeyPath) -> Result<SecretString, BackendError>;

    /// Reads the value stored under `key`: `None` when there is none.
    fn get_optional(&self, key: &KeyPath) -> Result<Option<SecretString>, BackendError> {
        match self.get(key) {
            Ok(value) => Ok(Some(value)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stores `value` under `key`, replacing any previous value. The write is atomic: a reader
    /// sees the old value or the new one, never a mix, and a crash leaves one of the two.
    fn set(&self, key: &KeyPath, value: &SecretString) -> Result<(), BackendError>;

    /// Removes `key` ([`BackendError::NotFound`] when there is none).
    fn delete(&self, key: &KeyPath) -> Result<(), BackendError>;

    /// The names of all stored keys under `prefix` (all keys when `None`), sorted. Never reads
    /// or decrypts values when the storage allows it.
    fn list(&self, prefix: Option<&KeyPath>) -> Result<Vec<KeyPath>, BackendError>;

    /// Checks that the backend is usable (tool installed, storage readable) and returns a
    /// one-line description of where secrets live, e.g. `pass store at /home/u/.password-store`.
    fn check(&self) -> Result<String, BackendError>;
}

/// The names of the backends, for configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendKind {
    /// The `pass` password store (gpg-encrypted files, through the `pass` program).
    Pass,
    /// One sops-encrypted YAML or JSON file, through the `sops` program.
    Sops,
    /// Plain, unencrypted files, one per key.
    Unsafe,
    /// One age-encrypted document, encrypted natively.
    Age,
}

impl BackendKind {
    /// Every valid name, as accepted by [`FromStr`].
    pub const NAMES: &'static [&'static str] = &["pass", "sops", "unsafe", "age"];

    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Pass => "pass",
            BackendKind::Sops => "sops",
            BackendKind::Unsafe => "unsafe",
            BackendKind::Age => "age",
        }
    }
}

/// An unknown backend name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown secrets backend `{0}`; valid backends are pass, sops, unsafe and age")]
pub struct UnknownBackend(pub String);

impl FromStr for BackendKind {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pass" => Ok(BackendKind::Pass),
            "sops" => Ok(BackendKind::Sops),
            "unsafe" => Ok(BackendKind::Unsafe),
            "age" => Ok(BackendKind::Age),
            other => Err(UnknownBackend(other.chars().take(40).collect())),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings of the `pass` backend.
#[derive(Debug, Clone, Default)]
pub struct PassConfig {
    /// The password store; else `$PASSWORD_STORE_DIR`, else `~/.password-store`.
    pub store_dir: Option<PathBuf>,
    /// Limit for one call of `pass`.
    pub timeout: Option<Duration>,
}

/// Settings of the `sops` backend.
#[derive(Debug, Clone)]
pub struct SopsConfig {
    /// The one sops-encrypted YAML or JSON file (absolute, or relative to the working directory).
    pub file: PathBuf,
    /// Limit for one call of `sops`.
    pub timeout: Option<Duration>,
}

/// Settings of the `unsafe` (plain files) backend.
#[derive(Debug, Clone)]
pub struct UnsafeConfig {
    /// The folder holding one file per key.
    pub dir: PathBuf,
}

/// Settings of the native `age` backend.
#[derive(Debug, Clone)]
pub struct AgeConfig {
    /// The one age-encrypted document holding every key.
    pub file: PathBuf,
    /// The x25519 identity file (as written by `age-keygen`).
    pub identity: PathBuf,
}

/// Which backend to open, with its settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum BackendConfig {
    /// The `pass` backend.
    Pass(PassConfig),
    /// The `sops` backend.
    Sops(SopsConfig),
    /// The `unsafe` (plain files) backend.
    Unsafe(UnsafeConfig),
    /// The native `age` backend (needs the `age` feature; without it [`open`] returns
    /// [`BackendError::Unsupported`]).
    Age(AgeConfig),
    /// An in-memory backend, for tests.
    #[cfg(any(test, feature = "testing"))]
    Memory,
}

/// Opens the backend described by `config`. This is the one place that maps a configuration
/// to an implementation. Opening does no I/O beyond what is needed to validate settings.
pub fn open(config: BackendConfig) -> Result<Box<dyn SecretsBackend>, BackendError> {
    Ok(match config {
        BackendConfig::Pass(c) => Box::new(pass::PassBackend::new(c)),
        BackendConfig::Sops(c) => Box::new(sops::SopsBackend::new(c)),
        BackendConfig::Unsafe(c) => Box::new(files::UnsafeBackend::new(c)),
        #[cfg(feature = "age")]
        BackendConfig::Age(c) => Box::new(age::AgeBackend::new(c)),
        #[cfg(not(feature = "age"))]
        BackendConfig::Age(_) => {
            return Err(BackendError::Unsupported {
                backend: "age",
                operation: "anything: this build has no `age` feature",
            });
        }
        #[cfg(any(test, feature = "testing"))]
        BackendConfig::Memory => Box::new(memory::MemoryBackend::default()),
    })
}

/// Removes one trailing newline (`\n` or `\r\n`) from stored content.
pub fn strip_one_newline(s: &str) -> &str {
    s.strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(s)
}
