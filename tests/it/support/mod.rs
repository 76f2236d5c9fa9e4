//! What the integration tests share: a scratch tessera home (HOME and XDG folders, a
//! config file, the token secret in the environment), the `tessera` binary run in it, the
//! server in-process (`api`) or as a real process (`serve`), the real registry and its
//! clients (`real`), and the constants every test uses.

pub mod api;
pub mod browser;
pub mod http;
pub mod keys;
pub mod pass;
pub mod principals;
pub mod real;
pub mod replicas;
pub mod run;
pub mod serve;
pub mod snapshot;
pub mod user;
pub mod workload;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tessera::config::{Config, Env};

pub use run::Run;

/// The token signing secret every home gets in `TESSERA_AUTH_TOKEN_SECRET`.
pub const SECRET: &str = "registry-test-signing-secret-0123456789-abcdef";
/// The password of `deploy` in homes with password login (a colon, for Basic credentials).
pub const PASSWORD: &str = "pass:word with a colon";
/// A password that is not `PASSWORD`.
pub const WRONG_PASSWORD: &str = "Tr0ub4dor&3-wrong";
/// The `[registry] service` of registry homes.
pub const SERVICE: &str = "tessera-test-registry";

/// A temporary HOME with XDG folders (`config/`, `data/`) and a config file.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    /// A home with password login for `deploy` and a registry key: what the registry
    /// tests use.
    pub fn new() -> Home {
        let h = Home::with_config(&format!(
            "[secrets.unsafe]\ndir = \"secrets\"\n\n[auth]\nusername = \"deploy\"\ntoken_expiry = \"1h\"\nlogin_scopes = \"push,pull\"\n\n[registry]\nservice = \"{SERVICE}\"\nissuer = \"tessera\"\ncertificate = \"registry-token.crt\"\ntoken_ttl = \"5m\"\n"
        ));
        h.store_password();
        h.cmd().args(["registry", "init"]).assert().success();
        h
    }

    /// A home whose config file holds `config`.
    pub fn with_config(config: &str) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let h = Home { dir };
        std::fs::create_dir_all(h.config_dir()).unwrap();
        std::fs::create_dir_all(h.data()).unwrap();
        std::fs::write(h.config_file(), config).unwrap();
        h
    }

    /// A home with password login for `deploy` and `extra` after the `[auth]` section.
    pub fn with_login(extra: &str) -> Home {
        let h = Home::with_config(&format!(
            "[auth]\nusername = \"deploy\"\ntoken_expiry = \"1h\"\nlogin_scopes = \"push,pull\"\n{extra}"
        ));
        h.store_password();
        h
    }

    /// Stores the bcrypt hash of `PASSWORD` (cost 10, the server's minimum).
    pub fn store_password(&self) {
        self.ok_with_stdin(
            &argv("auth password hash --stdin --cost 10 --store"),
            format!("{PASSWORD}\n"),
        );
    }

    /// Appends `text` to the config file.
    pub fn append_config(&self, text: &str) {
        let mut config = std::fs::read_to_string(self.config_file()).unwrap();
        config.push_str(text);
        std::fs::write(self.config_file(), config).unwrap();
    }

    /// Points `[registry] certificate` (of a home made by `Home::new`) at `cert`.
    pub fn set_certificate(&self, cert: &Path) {
        let config = std::fs::read_to_string(self.config_file()).unwrap();
        let moved = config.replace(
            "certificate = \"registry-token.crt\"",
            &format!("certificate = \"{}\"", cert.display()),
        );
        assert_ne!(moved, config, "no `certificate` line to change");
        std::fs::write(self.config_file(), moved).unwrap();
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
    pub fn remotes(&self) -> PathBuf {
        self.config_dir().join("remotes.toml")
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

    pub fn env(&self) -> Env {
        let vars = self.vars();
        Env::from_pairs(vars.iter().map(|(k, v)| (*k, v.as_str())))
    }

    /// `tessera` as a `std::process::Command` in this home (for a server process).
    pub fn std_cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("tessera"));
        c.env_clear();
        c.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        c.envs(self.vars());
        c
    }

    /// `tessera` in this home.
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
        self.token_with_jti(args).0
    }

    /// Mints a token and returns it with its jti.
    pub fn token_with_jti(&self, args: &[&str]) -> (String, String) {
        let (out, _) = self.ok(&[&["--json", "auth", "token", "generate"], args].concat());
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        (
            v["token"].as_str().unwrap().to_owned(),
            v["jti"].as_str().unwrap().to_owned(),
        )
    }

    pub fn config(&self) -> (Config, Env) {
        let env = self.env();
        let config = Config::load(None, &env).unwrap();
        (config, env)
    }

    /// Mints a token with the CLI for `subject` with `scopes`; returns (token, jti).
    pub fn mint(&self, subject: &str, scopes: &str) -> (String, String) {
        self.token_with_jti(&["--subject", subject, "--scopes", scopes])
    }

    /// The tessera server, in-process on 127.0.0.1:0, loaded like `tessera serve`.
    pub fn serve(&self) -> api::RunningServer {
        let (config, env) = self.config();
        api::serve(&config, &env, None)
    }

    /// `tessera serve` in this home as a real process, its log in `server.log` with
    /// `RUST_LOG` at `level` (or unset).
    pub fn serve_process(&self, level: Option<&str>) -> serve::BinServer {
        self.serve_process_as(self.std_cmd(), level, "http")
    }

    /// `serve_process` with `cmd` (this home's `std_cmd` with changes) and the scheme the
    /// server announces.
    pub fn serve_process_as(
        &self,
        mut cmd: std::process::Command,
        level: Option<&str>,
        scheme: &'static str,
    ) -> serve::BinServer {
        if let Some(level) = level {
            cmd.env("RUST_LOG", level);
        }
        serve::BinServer::start(cmd, &self.home().join("server.log"), scheme)
    }

    /// The server in this process and its base URL, `http://ADDR`.
    pub fn serve_base(&self) -> (api::RunningServer, String) {
        let server = self.serve();
        let base = format!("http://{}", server.addr());
        (server, base)
    }

    /// Why the server refuses to start with this home's configuration (panics when it
    /// would start).
    pub fn start_error(&self) -> String {
        let (config, env) = self.config();
        api::start_error(&config, &env).expect("the server started")
    }
}

/// The words of a command line (split at white space), as the arguments of a command.
pub fn argv(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}
