//! Shared set-up of the registry tests: a temporary tessera home with password login and a
//! registry key, and an in-process tessera server on 127.0.0.1:0.
#![allow(dead_code)]

pub mod real;
pub mod serve;

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tessera::config::{Config, Env};
use tessera::server::{self, RunningServer, ServerState};

pub const SECRET: &str = "registry-test-signing-secret-0123456789-abcdef";
pub const PASSWORD: &str = "pass:word with a colon";
pub const SERVICE: &str = "tessera-test-registry";

/// A temporary HOME with XDG folders, a config file, a password hash and a registry key.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let h = Home { dir };
        std::fs::create_dir_all(h.config_dir()).unwrap();
        std::fs::create_dir_all(h.data()).unwrap();
        std::fs::write(
            h.config_file(),
            format!(
                "[secrets.unsafe]\ndir = \"secrets\"\n\n[auth]\nusername = \"deploy\"\ntoken_expiry = \"1h\"\nlogin_scopes = \"push,pull\"\n\n[registry]\nservice = \"{SERVICE}\"\nissuer = \"tessera\"\ncertificate = \"registry-token.crt\"\ntoken_ttl = \"5m\"\n"
            ),
        )
        .unwrap();
        h.cmd()
            .args([
                "auth", "password", "hash", "--stdin", "--cost", "10", "--store",
            ])
            .write_stdin(format!("{PASSWORD}\n"))
            .assert()
            .success();
        h.cmd().args(["registry", "init"]).assert().success();
        h
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }
    pub fn config_dir(&self) -> PathBuf {
        self.home().join("config/tessera")
    }
    pub fn config_file(&self) -> PathBuf {
        self.config_dir().join("tessera.toml")
    }
    pub fn certificate(&self) -> PathBuf {
        self.config_dir().join("registry-token.crt")
    }
    pub fn data(&self) -> PathBuf {
        self.home().join("data")
    }

    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HOME", self.home().display().to_string()),
            (
                "XDG_CONFIG_HOME",
                self.home().join("config").display().to_string(),
            ),
            ("XDG_DATA_HOME", self.data().display().to_string()),
            ("TESSERA_AUTH_TOKEN_SECRET", SECRET.to_owned()),
        ]
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("tessera").unwrap();
        c.env_clear();
        c.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for (k, v) in self.vars() {
            c.env(k, v);
        }
        c
    }

    /// Mints a tessera token with the CLI: `args` after `auth token generate`.
    pub fn token(&self, args: &[&str]) -> String {
        let out = self
            .cmd()
            .args(["auth", "token", "generate"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Mints a token and returns it with its jti.
    pub fn token_with_jti(&self, args: &[&str]) -> (String, String) {
        let out = self
            .cmd()
            .args(["--json", "auth", "token", "generate"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            v["token"].as_str().unwrap().to_owned(),
            v["jti"].as_str().unwrap().to_owned(),
        )
    }

    pub fn config(&self) -> (Config, Env) {
        let vars = self.vars();
        let env = Env::from_pairs(vars.iter().map(|(k, v)| (*k, v.as_str())));
        let config = Config::load(None, &env).unwrap();
        (config, env)
    }

    /// The tessera server, in-process on 127.0.0.1:0, loaded like `tessera serve`.
    pub fn serve(&self) -> RunningServer {
        let (config, env) = self.config();
        let state = ServerState::load(&config, &env).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        server::spawn(state, listener, None).unwrap()
    }
}
