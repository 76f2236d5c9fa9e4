//! A new user on a fresh machine: a scratch HOME and nothing else (the default XDG folders
//! below it, no token secret in the environment), driving the real binary.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

use super::Run;
use super::serve::BinServer;

/// A scratch user: a HOME of its own and extra variables for every command.
pub struct User {
    home: tempfile::TempDir,
    pub vars: Vec<(String, PathBuf)>,
}

impl User {
    pub fn new() -> Self {
        User {
            home: tempfile::tempdir().unwrap(),
            vars: Vec::new(),
        }
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// `tessera` for this user.
    pub fn cmd(&self) -> Command {
        Command::from_std(self.std_cmd())
    }

    /// `tessera` for this user as a `std::process::Command`.
    pub fn std_cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("tessera"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home());
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c
    }

    pub fn config_file(&self) -> PathBuf {
        self.home().join(".config/tessera/tessera.toml")
    }

    /// Where the default `unsafe` backend keeps the token secret.
    pub fn secret_file(&self) -> PathBuf {
        self.home()
            .join(".local/share/tessera/secrets/tessera/auth/token_secret")
    }

    /// Writes the config file; returns its path.
    pub fn write_config(&self, text: &str) -> PathBuf {
        let p = self.config_file();
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Mints a token (`args` after `auth token generate`) and returns it.
    pub fn mint(&self, args: &[&str]) -> String {
        let mut all = vec!["auth", "token", "generate"];
        all.extend_from_slice(args);
        let (o, _) = self.ok(&all);
        assert_eq!(o.lines().count(), 1, "the token alone, on one line: {o:?}");
        o.trim().to_owned()
    }

    /// Whether `auth token verify` accepts `token`.
    pub fn verifies(&self, token: &str) -> bool {
        self.cmd()
            .args(["auth", "token", "verify", token])
            .output()
            .unwrap()
            .status
            .success()
    }

    /// `tessera serve` for this user as a real process, its log in `serve.log`.
    pub fn serve_process(&self) -> BinServer {
        BinServer::start(self.std_cmd(), &self.home().join("serve.log"), "http")
    }
}

/// stdout and stderr of a finished process, as text.
pub fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
