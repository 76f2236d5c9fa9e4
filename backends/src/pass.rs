//! The `pass` backend: one entry of the standard unix password store per key.
//!
//! Key path `tessera/auth/token_secret` is the entry `pass show tessera/auth/token_secret`,
//! i.e. the file `STORE/tessera/auth/token_secret.gpg`. Values are read with `pass show`,
//! written with `pass insert --multiline --force` (the value goes on stdin, followed by one
//! newline, exactly like `echo VALUE | pass insert -m`), removed with `pass rm --force`, and
//! listed by walking the store for `*.gpg` files (never by parsing `pass ls`).
//!
//! gpg never asks for a passphrase here: `pass` runs with `--pinentry-mode=error` added to
//! `PASSWORD_STORE_GPG_OPTS` and without the caller's `GPG_TTY`, `TERM` or `DISPLAY`, so no
//! pinentry can take over the terminal (or outlive the call). A key whose passphrase gpg-agent
//! does not have cached is reported as locked, with how to unlock it.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::fsutil;
use crate::process::{self, Call, Tool};
use crate::{
    BackendError, DEFAULT_TOOL_TIMEOUT, KeyPath, PassConfig, SecretString, SecretsBackend,
    strip_one_newline,
};

const NAME: &str = "pass";

/// The gpg option that makes a needed passphrase an error instead of a pinentry prompt.
const NO_PINENTRY: &str = "--pinentry-mode=error";

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
        // pass splits this variable into gpg's arguments; the user's own options stay first.
        let mut gpg_opts = self.var("PASSWORD_STORE_GPG_OPTS").unwrap_or_default();
        if !gpg_opts.is_empty() {
            gpg_opts.push(" ");
        }
        gpg_opts.push(NO_PINENTRY);
        env.push(("PASSWORD_STORE_GPG_OPTS".to_owned(), gpg_opts));
        process::run(Call {
            tool: Tool::Pass,
            args: args.iter().map(OsString::from).collect(),
            stdin,
            env: &env,
            cwd: None,
            timeout: self.config.timeout.unwrap_or(DEFAULT_TOOL_TIMEOUT),
        })
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
    fn failure(&self, out: &process::Output, store: &Path, key: &KeyPath) -> BackendError {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("is not in the password store") {
            BackendError::not_found(NAME, key)
        } else if stderr.contains("You must run") || stderr.contains(".gpg-id") {
            Self::not_initialised(store)
        } else if stderr.contains("No secret key")
            || stderr.contains("No pinentry")
            || stderr.contains("Bad passphrase")
        {
            self.no_secret_key(out, store, key)
        } else {
            out.failure(Tool::Pass)
        }
    }

    /// gpg could not decrypt: either the secret key is in the key ring but locked (a
    /// passphrase that gpg-agent has not cached, and no pinentry may ask for it), or it is not
    /// there at all. Asks gpg which, for the keys the entry's folder encrypts to.
    fn no_secret_key(&self, out: &process::Output, store: &Path, key: &KeyPath) -> BackendError {
        let ids = gpg_ids(store, key);
        let mut args: Vec<OsString> = ["--batch", "--with-colons", "--list-secret-keys", "--"]
            .into_iter()
            .map(OsString::from)
            .collect();
        args.extend(ids.iter().map(OsString::from));
        let listing = process::run(Call {
            tool: Tool::Gpg,
            args,
            stdin: None,
            env: &self.env,
            cwd: None,
            timeout: self.config.timeout.unwrap_or(DEFAULT_TOOL_TIMEOUT),
        });
        let who = if ids.is_empty() {
            "this pass store".to_owned()
        } else {
            format!("this pass store ({})", ids.join(", "))
        };
        match listing {
            Ok(l)
                if l.status.success()
                    && l.stdout
                        .split(|b| *b == b'\n')
                        .any(|line| line.starts_with(b"sec:")) =>
            {
                BackendError::Setup(format!(
                    "the gpg key of {who} is locked, and tessera never lets gpg ask for a \
                     passphrase (no pinentry may take over the terminal): unlock it first in a \
                     terminal with `pass show {key} >/dev/null`, so that gpg-agent caches the \
                     passphrase (see `default-cache-ttl` in gpg-agent.conf), or use a key \
                     without a passphrase for unattended use"
                ))
            }
            Ok(l) if l.status.code() == Some(2) || l.status.success() => {
                BackendError::Setup(format!(
                    "gpg has no secret key for {who} (GNUPGHOME={}): import the secret key \
                 (`gpg --import`), or re-encrypt the store for a key you have with `pass init \
                 YOUR-KEY-ID`; gpg said: {}",
                    self.var("GNUPGHOME")
                        .map(|g| PathBuf::from(g).display().to_string())
                        .unwrap_or_else(|| "~/.gnupg".to_owned()),
                    out.stderr_excerpt()
                ))
            }
            // gpg itself cannot be asked: keep pass's own words.
            _ => out.failure(Tool::Pass),
        }
    }
}

/// The gpg ids an entry is encrypted to: the `.gpg-id` nearest to the entry, up to the store.
fn gpg_ids(store: &Path, key: &KeyPath) -> Vec<String> {
    let segments: Vec<&str> = key.segments().collect();
    for depth in (0..segments.len()).rev() {
        let mut dir = store.to_path_buf();
        dir.extend(&segments[..depth]);
        if let Ok(text) = fs::read_to_string(dir.join(".gpg-id")) {
            return text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('-'))
                .map(str::to_owned)
                .collect();
        }
    }
    Vec::new()
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
            return Err(BackendError::not_found(NAME, key));
        }
        let out = self.run(&store, &["show", key.as_str()], None)?;
        if !out.status.success() {
            return Err(self.failure(&out, &store, key));
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
            return Err(self.failure(&out, &store, key));
        }
        Ok(())
    }

    fn delete(&self, key: &KeyPath) -> Result<(), BackendError> {
        let store = self.store_dir()?;
        if !Self::entry_file(&store, key).is_file() {
            return Err(BackendError::not_found(NAME, key));
        }
        let out = self.run(&store, &["rm", "--force", key.as_str()], None)?;
        if !out.status.success() {
            return Err(self.failure(&out, &store, key));
        }
        Ok(())
    }

    fn list(&self, prefix: Option<&KeyPath>) -> Result<Vec<KeyPath>, BackendError> {
        let store = self.store_dir()?;
        let mut keys = Vec::new();
        if store.is_dir() {
            // The `*.gpg` entries, as key paths. Hidden entries (`.git`, `.gpg-id`,
            // `.extensions`, ...), symbolic links and names that are not key paths are skipped.
            fsutil::walk_files(&store, &|name, _| !name.starts_with('.'), &mut |path| {
                let stem = path.strip_suffix(".gpg");
                keys.extend(stem.and_then(|s| KeyPath::new(s).ok()));
            })?;
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
