//! The `pass` backend: one entry of the standard unix password store per key.
//!
//! Key path `tessera/auth/token_secret` is the entry `pass show tessera/auth/token_secret`,
//! i.e. the file `STORE/tessera/auth/token_secret.gpg`. Values are read with `pass show`,
//! written with `pass insert --multiline --force` (the value goes on stdin, followed by one
//! newline, exactly like `echo VALUE | pass insert -m`), removed with `pass rm --force`, and
//! listed by walking the store for `*.gpg` files (never by parsing `pass ls`).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::process::{self, Call, Tool};
use crate::{
    BackendError, DEFAULT_TOOL_TIMEOUT, KeyPath, PassConfig, SecretString, SecretsBackend,
    strip_one_newline,
};

const NAME: &str = "pass";

/// Secrets kept by the real `pass` program (which encrypts with `gpg`).
#[derive(Debug)]
pub struct PassBackend {
    config: PassConfig,
    env: Vec<(String, OsString)>,
}

impl PassBackend {
    /// A backend for the store described by `config`. Does no I/O.
    pub fn new(config: PassConfig) -> Self {
        Self {
            config,
            env: Vec::new(),
        }
    }

    /// Sets a variable in the environment of every `pass` this backend runs, on top of the
    /// whitelisted variables taken from this process (e.g. `GNUPGHOME` for an isolated key
    /// ring, or `PATH`). `TESSERA_*` names are ignored. Never put a secret here.
    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    fn var(&self, name: &str) -> Option<OsString> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var_os(name))
            .filter(|v| !v.is_empty())
    }

    /// The password store folder: `store_dir`, else `$PASSWORD_STORE_DIR`, else
    /// `~/.password-store`.
    pub fn store_dir(&self) -> Result<PathBuf, BackendError> {
        if let Some(dir) = &self.config.store_dir {
            return Ok(dir.clone());
        }
        if let Some(dir) = self.var("PASSWORD_STORE_DIR") {
            return Ok(PathBuf::from(dir));
        }
        match self.var("HOME") {
            Some(home) => Ok(PathBuf::from(home).join(".password-store")),
            None => Err(BackendError::Setup(
                "cannot find the password store: HOME is not set; set `secrets.pass.store_dir` \
                 or PASSWORD_STORE_DIR"
                    .to_owned(),
            )),
        }
    }

    fn entry_file(store: &Path, key: &KeyPath) -> PathBuf {
        store.join(format!("{}.gpg", key.as_str()))
    }

    fn run(
        &self,
        store: &Path,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<process::Output, BackendError> {
        let mut env = self.env.clone();
        env.push((
            "PASSWORD_STORE_DIR".to_owned(),
            store.as_os_str().to_owned(),
        ));
        process::run(Call {
            tool: Tool::Pass,
            args: args.iter().map(OsString::from).collect(),
            stdin,
            env: &env,
            cwd: None,
            timeout: self.config.timeout.unwrap_or(DEFAULT_TOOL_TIMEOUT),
        })
    }

    fn not_found(key: &KeyPath) -> BackendError {
        BackendError::NotFound {
            backend: NAME,
            key: key.clone(),
        }
    }

    fn not_initialised(store: &Path) -> BackendError {
        BackendError::Setup(format!(
            "the password store at {} is not initialised; run `pass init GPG-ID` (with \
             PASSWORD_STORE_DIR={} if it is not the default store)",
            store.display(),
            store.display()
        ))
    }

    /// Maps a failed `pass` run to the most precise error.
    fn failure(out: &process::Output, store: &Path, key: &KeyPath) -> BackendError {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("is not in the password store") {
            Self::not_found(key)
        } else if stderr.contains("You must run") || stderr.contains(".gpg-id") {
            Self::not_initialised(store)
        } else {
            out.failure(Tool::Pass)
        }
    }
}

impl SecretsBackend for PassBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn get(&self, key: &KeyPath) -> Result<SecretString, BackendError> {
        let store = self.store_dir()?;
        let file = Self::entry_file(&store, key);
        // `pass show FOLDER` prints a tree listing; only an existing entry file is a secret.
        if !file.is_file() {
            return Err(Self::not_found(key));
        }
        let out = self.run(&store, &["show", key.as_str()], None)?;
        if !out.status.success() {
            return Err(Self::failure(&out, &store, key));
        }
        let text = std::str::from_utf8(&out.stdout).map_err(|_| BackendError::Corrupt {
            path: file.clone(),
            reason: "the decrypted entry is not UTF-8 text".to_owned(),
        })?;
        Ok(SecretString::from(strip_one_newline(text).to_owned()))
    }

    fn set(&self, key: &KeyPath, value: &SecretString) -> Result<(), BackendError> {
        let store = self.store_dir()?;
        let mut content = Zeroizing::new(String::with_capacity(value.expose_secret().len() + 1));
        content.push_str(value.expose_secret());
        content.push('\n');
        let out = self.run(
            &store,
            &["insert", "--multiline", "--force", key.as_str()],
            Some(content.as_bytes()),
        )?;
        if !out.status.success() {
            return Err(Self::failure(&out, &store, key));
        }
        Ok(())
    }

    fn delete(&self, key: &KeyPath) -> Result<(), BackendError> {
        let store = self.store_dir()?;
        if !Self::entry_file(&store, key).is_file() {
            return Err(Self::not_found(key));
        }
        let out = self.run(&store, &["rm", "--force", key.as_str()], None)?;
        if !out.status.success() {
            return Err(Self::failure(&out, &store, key));
        }
        Ok(())
    }

    fn list(&self, prefix: Option<&KeyPath>) -> Result<Vec<KeyPath>, BackendError> {
        let store = self.store_dir()?;
        let mut keys = Vec::new();
        if store.is_dir() {
            walk(&store, "", &mut keys)?;
        }
        keys.retain(|k| prefix.is_none_or(|p| k.starts_with(p)));
        keys.sort();
        Ok(keys)
    }

    fn check(&self) -> Result<String, BackendError> {
        let store = self.store_dir()?;
        let out = self.run(&store, &["version"], None)?;
        if !out.status.success() {
            return Err(out.failure(Tool::Pass));
        }
        if !store.join(".gpg-id").is_file() {
            return Err(Self::not_initialised(&store));
        }
        Ok(format!("pass store at {}", store.display()))
    }
}

/// Collects the `*.gpg` entries below `dir` as key paths (`rel` is `dir`'s path in the store).
/// Hidden entries (`.git`, `.gpg-id`, `.extensions`, ...), symbolic links and names that are
/// not valid key paths are skipped.
fn walk(dir: &Path, rel: &str, keys: &mut Vec<KeyPath>) -> Result<(), BackendError> {
    let entries = fs::read_dir(dir).map_err(|e| BackendError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BackendError::io(dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let file_type = entry
            .file_type()
            .map_err(|e| BackendError::io(entry.path(), e))?;
        let child = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if file_type.is_dir() {
            walk(&entry.path(), &child, keys)?;
        } else if file_type.is_file()
            && let Some(stem) = child.strip_suffix(".gpg")
            && let Ok(key) = KeyPath::new(stem)
        {
            keys.push(key);
        }
    }
    Ok(())
}
