//! Configuration: file discovery, defaults, relative paths and environment overrides (the
//! user-facing side: the README's "Configuration" section and the commented file `tessera init`
//! writes).
//!
//! Precedence, highest first: command-line flags, environment, the file, the defaults. No file
//! at all is valid. Relative paths in the file are relative to the file's own folder.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tessera_backends::{
    AgeConfig, BackendConfig, BackendKind, KeyPath, PassConfig, SopsConfig, UnsafeConfig,
};

use crate::duration::HumanDuration;

/// Environment variables tessera reads.
pub mod vars {
    pub const CONFIG: &str = "TESSERA_CONFIG";
    pub const TOKEN_SECRET: &str = "TESSERA_AUTH_TOKEN_SECRET";
    pub const BACKEND: &str = "TESSERA_SECRETS_BACKEND";
    pub const STORE_URL: &str = "TESSERA_STORE_URL";
    pub const STORE_PASSWORD: &str = "TESSERA_STORE_PASSWORD";
    pub const AGE_IDENTITY: &str = "TESSERA_AGE_IDENTITY";
    pub const REMOTE: &str = "TESSERA_REMOTE";
    pub const TOKEN: &str = "TESSERA_TOKEN";
}

/// A snapshot of the environment variables that matter, so that tests can inject their own.
#[derive(Clone, Default)]
pub struct Env {
    vars: HashMap<String, OsString>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets (TESSERA_AUTH_TOKEN_SECRET, TESSERA_TOKEN): names only.
        let mut names: Vec<_> = self.vars.keys().collect();
        names.sort();
        f.debug_struct("Env").field("names", &names).finish()
    }
}

const READ_VARS: &[&str] = &[
    vars::CONFIG,
    vars::TOKEN_SECRET,
    vars::BACKEND,
    vars::AGE_IDENTITY,
    vars::REMOTE,
    vars::TOKEN,
    vars::STORE_URL,
    vars::STORE_PASSWORD,
    "HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "PASSWORD_STORE_DIR",
];

impl Env {
    /// The variables tessera reads, taken from this process.
    pub fn from_process() -> Self {
        let vars = READ_VARS
            .iter()
            .filter_map(|name| std::env::var_os(name).map(|v| (name.to_string(), v)))
            .collect();
        Env { vars }
    }

    /// An environment with exactly these variables (for tests).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), OsString::from(v)))
                .collect(),
        }
    }

    /// A TESSERA_* variable: `Ok(None)` when unset, an error when set but empty or not UTF-8.
    pub fn tessera_var(&self, name: &'static str) -> Result<Option<&str>, ConfigError> {
        match self.vars.get(name) {
            None => Ok(None),
            Some(v) => match v.to_str() {
                Some("") => Err(ConfigError::EmptyVar(name)),
                Some(s) => Ok(Some(s)),
                None => Err(ConfigError::NotUtf8Var(name)),
            },
        }
    }

    /// A path-valued variable from outside tessera (XDG, HOME): unset and empty are the same.
    fn path_var(&self, name: &str) -> Option<PathBuf> {
        self.vars
            .get(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    }

    fn home(&self) -> Result<PathBuf, ConfigError> {
        self.path_var("HOME")
            .filter(|p| p.is_absolute())
            .ok_or(ConfigError::NoHome)
    }

    /// `$XDG_CONFIG_HOME/tessera`, else `~/.config/tessera`.
    pub fn config_dir(&self) -> Result<PathBuf, ConfigError> {
        Ok(
            match self.path_var("XDG_CONFIG_HOME").filter(|p| p.is_absolute()) {
                Some(p) => p.join("tessera"),
                None => self.home()?.join(".config/tessera"),
            },
        )
    }

    /// `$XDG_DATA_HOME/tessera`, else `~/.local/share/tessera`.
    pub fn data_dir(&self) -> Result<PathBuf, ConfigError> {
        Ok(
            match self.path_var("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
                Some(p) => p.join("tessera"),
                None => self.home()?.join(".local/share/tessera"),
            },
        )
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("config file {} does not exist; create it with `tessera init` or fix the path given by {origin}", path.display())]
    Missing { path: PathBuf, origin: &'static str },
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: `{key}`: {message}", path.display())]
    Value {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
    #[error("{}:{line}: {message}", path.display())]
    Trust {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("environment variable {0} is set but empty; unset it or give it a value")]
    EmptyVar(&'static str),
    #[error("environment variable {0} is not valid UTF-8")]
    NotUtf8Var(&'static str),
    #[error("{var}: {message}")]
    BadVar { var: &'static str, message: String },
    #[error(
        "HOME is not set to an absolute path, so tessera cannot find its config and data folders; set HOME or pass --config"
    )]
    NoHome,
}

// ---- the file, as written ----------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    secrets: RawSecrets,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    registry: RawRegistry,
    /// The file's text, to turn the byte spans of `[[auth.users]]` and roles into lines.
    #[serde(skip)]
    line_of: Option<String>,
    /// The line of each `[[auth.trust]]` table (filled in by `Config::parse`).
    #[serde(skip)]
    trust_lines: Vec<usize>,
    #[serde(default)]
    store: crate::store::settings::RawStore,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    backend: Option<String>,
    timeout: Option<String>,
    #[serde(default)]
    pass: RawPass,
    #[serde(default)]
    sops: RawSops,
    #[serde(default, rename = "unsafe")]
    unsafe_: RawUnsafe,
    #[serde(default)]
    age: RawAge,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPass {
    store_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSops {
    file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnsafe {
    dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAge {
    file: Option<String>,
    identity: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    enabled: Option<bool>,
    token_secret: Option<String>,
    previous_token_secrets: Option<Vec<String>>,
    token_expiry: Option<String>,
    max_token_expiry: Option<String>,
    issuer: Option<String>,
    username: Option<String>,
    password_hash: Option<String>,
    login_scopes: Option<String>,
    // --- users, roles and sessions (contract section 9) ---
    session_expiry: Option<String>,
    #[serde(default)]
    users: Vec<toml::Spanned<RawUser>>,
    #[serde(default)]
    roles: std::collections::BTreeMap<String, toml::Spanned<RawRole>>,
    // --- API keys (contract section 9) ---
    key_prefix: Option<String>,
    api_keys: Option<Vec<RawApiKey>>,
    trust: Option<Vec<toml::Spanned<crate::auth::trust::RawTrust>>>,
}

/// One `[[auth.users]]` entry, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    password_hash: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

/// One `[auth.roles.NAME]` table, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    scopes: Vec<String>,
}

/// One `[[auth.api_keys]]` entry: a config-held API key (its argon2id hash, never the key).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    name: String,
    hash: String,
    #[serde(default)]
    scopes: RawScopes,
    subject: Option<String>,
    repo: Option<String>,
}

/// Scopes as a comma-separated string or an array of strings.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum RawScopes {
    #[default]
    None,
    Text(String),
    List(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    bind: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    login_attempts_per_minute: Option<u32>,
    /// API keys (contract section 9): proxies whose `X-Forwarded-For` is believed.
    trusted_proxies: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    service: Option<String>,
    header: Option<String>,
    issuer: Option<String>,
    signing_key: Option<String>,
    certificate: Option<String>,
    token_ttl: Option<String>,
}

// ---- the resolved configuration ----------------------------------------------------------

/// The `[secrets]` section, resolved.
#[derive(Debug, Clone)]
pub struct SecretsConfig {
    pub backend: BackendKind,
    pub timeout: Duration,
    pub pass_store_dir: Option<PathBuf>,
    pub sops_file: PathBuf,
    pub unsafe_dir: PathBuf,
    pub age_file: PathBuf,
    pub age_identity: PathBuf,
}

/// The `[auth]` section, resolved.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub enabled: bool,
    pub token_secret: KeyPath,
    pub previous_token_secrets: Vec<KeyPath>,
    pub token_expiry: HumanDuration,
    pub max_token_expiry: HumanDuration,
    pub issuer: String,
    pub username: Option<String>,
    pub password_hash: KeyPath,
    pub login_scopes: String,
    /// `auth.session_expiry`: how long a browser session lasts (default 12h).
    pub session_expiry: HumanDuration,
    /// `[[auth.users]]` and `[auth.roles.NAME]`, checked (see `crate::auth::users`).
    pub users: Vec<UserConfig>,
    pub roles: std::collections::BTreeMap<String, RoleConfig>,
    /// `auth.key_prefix`: the prefix of API keys (default `tsk`).
    pub key_prefix: String,
    /// `[[auth.api_keys]]`: config-held API keys.
    pub api_keys: Vec<ApiKeyConfig>,
    /// `[[auth.trust]]`: workload identity policies (contract section 11).
    pub trust: Vec<crate::auth::trust::TrustPolicy>,
}

/// One `[[auth.users]]` entry, with the line it starts on (for messages).
#[derive(Debug, Clone)]
pub struct UserConfig {
    pub name: String,
    /// Key path of the user's password hash (default `tessera/users/NAME/password_hash`).
    pub password_hash: KeyPath,
    pub roles: Vec<String>,
    /// Extra scopes besides the roles', as written (`${user}` not expanded).
    pub scopes: Vec<String>,
    pub line: usize,
}

/// One `[auth.roles.NAME]` table, with the line it starts on.
#[derive(Debug, Clone)]
pub struct RoleConfig {
    /// As written (`${user}` not expanded).
    pub scopes: Vec<String>,
    pub line: usize,
}

/// A config-held API key (`[[auth.api_keys]]`): name, argon2id hash, scopes, subject.
#[derive(Clone)]
pub struct ApiKeyConfig {
    pub name: String,
    /// The principal the key acts as (default: its name).
    pub subject: String,
    pub hash: secrecy::SecretString,
    pub scopes: crate::scope::ScopeSet,
}

impl std::fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyConfig")
            .field("name", &self.name)
            .field("subject", &self.subject)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// The `[server]` section, resolved.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bind: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Failed password checks allowed per account and per client address (IPv6: per /64) per
    /// minute; 0 = no limit.
    pub login_attempts_per_minute: u32,
    /// `server.trusted_proxies`: the proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// The `[registry]` section, resolved.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// `registry.service`: required by the token service and `registry init` (no default: a
    /// made-up name would only make every token fail at the registry).
    pub service: Option<String>,
    /// How tokens name their key: `x5c` (default) or `jwks`.
    pub header: crate::registry::key::TokenHeader,
    pub issuer: String,
    pub signing_key: KeyPath,
    pub certificate: PathBuf,
    pub token_ttl: HumanDuration,
}

/// The whole configuration, with defaults and overrides applied.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
    /// Where the file is (or would be): `init` writes here.
    pub path: PathBuf,
    /// The data folder (`$XDG_DATA_HOME/tessera`): token store, default secrets.
    pub data_dir: PathBuf,
    /// The config folder (`$XDG_CONFIG_HOME/tessera`): remotes, default identity.
    pub config_dir: PathBuf,
    /// Whether the backend name came from the environment.
    pub backend_from_env: bool,
    pub secrets: SecretsConfig,
    pub auth: AuthConfig,
    pub server: ServerConfig,
    pub registry: RegistryConfig,
    /// `[store]`: which engine keeps token ids, revocations and counters.
    pub store: crate::store::settings::StoreConfig,
}

/// Where the config file is, and who said so.
fn locate(
    explicit: Option<&Path>,
    env: &Env,
) -> Result<(PathBuf, Option<&'static str>), ConfigError> {
    if let Some(p) = explicit {
        return Ok((p.to_path_buf(), Some("--config")));
    }
    if let Some(p) = env.tessera_var(vars::CONFIG)? {
        return Ok((PathBuf::from(p), Some(vars::CONFIG)));
    }
    Ok((env.config_dir()?.join("tessera.toml"), None))
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Adds "did you mean" to serde's "unknown field `x`, expected one of `a`, `b`" messages.
fn suggest(message: &str) -> String {
    let msg = message.trim_end();
    let Some(rest) = msg.strip_prefix("unknown field `") else {
        return msg.to_owned();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return msg.to_owned();
    };
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|cand| (strsim::jaro_winkler(unknown, cand), cand))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, cand)) => format!("{msg}; did you mean `{cand}`?"),
        None => msg.to_owned(),
    }
}

impl Config {
    /// Loads the configuration: `explicit` (from `--config`), else `$TESSERA_CONFIG`, else the
    /// default path; a missing default file means defaults. `backend_flag` overrides the
    /// backend (for `init --backend`).
    pub fn load(explicit: Option<&Path>, env: &Env) -> Result<Config, ConfigError> {
        let (path, origin) = locate(explicit, env)?;
        let (raw, file) = match std::fs::read_to_string(&path) {
            Ok(text) => (Self::parse(&path, &text)?, Some(path.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match origin {
                Some(origin) => return Err(ConfigError::Missing { path, origin }),
                None => (RawConfig::default(), None),
            },
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::resolve(raw, path, file, env)
    }

    /// [`Config::load`] on `text` as if read from `path`, without touching the file system:
    /// the entry point of the fuzz targets and property tests.
    #[doc(hidden)]
    pub fn from_text(path: &Path, text: &str, env: &Env) -> Result<Config, ConfigError> {
        let raw = Self::parse(path, text)?;
        Self::resolve(raw, path.to_path_buf(), Some(path.to_path_buf()), env)
    }

    fn parse(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: suggest(e.message()),
            }
        })?;
        raw.trust_lines = raw
            .auth
            .trust
            .iter()
            .flatten()
            .map(|t| crate::auth::trust::line_of(text, t.span().start))
            .collect();
        raw.line_of = Some(text.to_owned());
        Ok(raw)
    }

    fn resolve(
        raw: RawConfig,
        path: PathBuf,
        file: Option<PathBuf>,
        env: &Env,
    ) -> Result<Config, ConfigError> {
        let config_dir = env.config_dir()?;
        let data_dir = env.data_dir()?;
        // Relative paths are relative to the file's folder (or the config folder when there is
        // no file), never to the working directory.
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = if base.is_absolute() {
            base
        } else {
            std::env::current_dir()
                .map(|cwd| cwd.join(&base))
                .unwrap_or(base)
        };
        let home = env.home().ok();
        let fix = |s: &str| -> PathBuf { resolve_path(s, &base, home.as_deref()) };
        let bad = |key: &'static str, message: String| ConfigError::Value {
            path: path.clone(),
            key,
            message,
        };
        let key = |name: &'static str, value: Option<String>, default: &str| {
            let v = value.unwrap_or_else(|| default.to_owned());
            KeyPath::new(&v).map_err(|e| bad(name, e.to_string()))
        };
        let duration = |name: &'static str, value: Option<String>, default: &str| {
            let v = value.unwrap_or_else(|| default.to_owned());
            HumanDuration::parse(&v).map_err(|e| bad(name, e.to_string()))
        };

        // [secrets]
        let (backend_name, backend_from_env) = match env.tessera_var(vars::BACKEND)? {
            Some(v) => (v.to_owned(), true),
            None => (
                raw.secrets.backend.unwrap_or_else(|| "unsafe".into()),
                false,
            ),
        };
        let backend: BackendKind =
            backend_name
                .parse()
                .map_err(|e: tessera_backends::UnknownBackend| {
                    if backend_from_env {
                        ConfigError::BadVar {
                            var: vars::BACKEND,
                            message: e.to_string(),
                        }
                    } else {
                        bad("secrets.backend", e.to_string())
                    }
                })?;
        let timeout = duration("secrets.timeout", raw.secrets.timeout, "10s")?;
        let timeout = match timeout.as_fixed() {
            Some(d) if !d.is_zero() => d,
            _ => {
                return Err(bad(
                    "secrets.timeout",
                    "must be a positive duration without months or years, e.g. `10s`".into(),
                ));
            }
        };
        let age_identity = match env.tessera_var(vars::AGE_IDENTITY)? {
            Some(p) => resolve_path(
                p,
                &std::env::current_dir().unwrap_or_default(),
                home.as_deref(),
            ),
            None => raw
                .secrets
                .age
                .identity
                .as_deref()
                .map(&fix)
                .unwrap_or_else(|| config_dir.join("age-identity.txt")),
        };
        let secrets = SecretsConfig {
            backend,
            timeout,
            pass_store_dir: raw.secrets.pass.store_dir.as_deref().map(&fix),
            sops_file: fix(raw
                .secrets
                .sops
                .file
                .as_deref()
                .unwrap_or("secrets.enc.yaml")),
            unsafe_dir: raw
                .secrets
                .unsafe_
                .dir
                .as_deref()
                .map(&fix)
                .unwrap_or_else(|| data_dir.join("secrets")),
            age_file: raw
                .secrets
                .age
                .file
                .as_deref()
                .map(&fix)
                .unwrap_or_else(|| data_dir.join("secrets.age")),
            age_identity,
        };

        // [auth]
        let a = raw.auth;
        let previous_token_secrets = a
            .previous_token_secrets
            .unwrap_or_default()
            .iter()
            .map(|k| KeyPath::new(k).map_err(|e| bad("auth.previous_token_secrets", e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let issuer = a.issuer.unwrap_or_else(|| "tessera".into());
        if issuer.is_empty() {
            return Err(bad("auth.issuer", "must not be empty".into()));
        }
        let trust_raw = a
            .trust
            .unwrap_or_default()
            .into_iter()
            .map(toml::Spanned::into_inner);
        let trust_raw = raw
            .trust_lines
            .iter()
            .copied()
            .chain(std::iter::repeat(1))
            .zip(trust_raw)
            .collect();
        let trust =
            crate::auth::trust::resolve(trust_raw, &fix).map_err(|e| ConfigError::Trust {
                path: path.clone(),
                line: e.line,
                message: e.message,
            })?;
        let mut auth = AuthConfig {
            trust,
            enabled: a.enabled.unwrap_or(true),
            token_secret: key(
                "auth.token_secret",
                a.token_secret,
                "tessera/auth/token_secret",
            )?,
            previous_token_secrets,
            token_expiry: duration("auth.token_expiry", a.token_expiry, "30d")?,
            max_token_expiry: duration("auth.max_token_expiry", a.max_token_expiry, "0")?,
            issuer,
            username: a.username.filter(|u| !u.is_empty()),
            password_hash: key(
                "auth.password_hash",
                a.password_hash,
                "tessera/auth/password_hash",
            )?,
            login_scopes: a.login_scopes.unwrap_or_else(|| "push,pull".into()),
            session_expiry: duration("auth.session_expiry", a.session_expiry, "12h")?,
            users: Vec::new(),
            roles: Default::default(),
            key_prefix: a.key_prefix.unwrap_or_else(|| "tsk".into()),
            api_keys: Vec::new(),
        };
        crate::auth::apikey::check_prefix(&auth.key_prefix)
            .map_err(|m| bad("auth.key_prefix", m))?;
        for k in a.api_keys.unwrap_or_default() {
            auth.api_keys
                .push(api_key_entry(k, &auth.api_keys).map_err(|m| bad("auth.api_keys", m))?);
        }
        if auth
            .session_expiry
            .as_fixed()
            .is_none_or(|d| d < Duration::from_secs(60))
        {
            return Err(bad(
                "auth.session_expiry",
                "must be at least 60 s and have no months or years, e.g. `12h`".into(),
            ));
        }
        let text = raw.line_of.as_deref().unwrap_or("");
        let line = |span: std::ops::Range<usize>| line_col(text, span.start).0;
        for (name, role) in a.roles {
            let at = line(role.span());
            auth.roles.insert(
                name,
                RoleConfig {
                    scopes: role.into_inner().scopes,
                    line: at,
                },
            );
        }
        for user in a.users {
            let at = line(user.span());
            let u = user.into_inner();
            let hash = u
                .password_hash
                .unwrap_or_else(|| format!("tessera/users/{}/password_hash", u.name));
            let password_hash = KeyPath::new(&hash).map_err(|e| ConfigError::Parse {
                path: path.clone(),
                line: at,
                column: 1,
                message: format!(
                    "`password_hash` of user `{}`: {e}; give it as a key path such as `tessera/users/NAME/password_hash`",
                    crate::term::escaped_head(&u.name, 40)
                ),
            })?;
            auth.users.push(UserConfig {
                name: u.name,
                password_hash,
                roles: u.roles,
                scopes: u.scopes,
                line: at,
            });
        }
        if let Err(e) = crate::auth::users::Directory::check(&auth) {
            return Err(ConfigError::Parse {
                path: path.clone(),
                line: e.line,
                column: 1,
                message: e.message,
            });
        }

        // [server]
        let s = raw.server;
        let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
        let server = ServerConfig {
            bind: s.bind.unwrap_or_else(|| "127.0.0.1:7390".into()),
            tls_cert: non_empty(s.tls_cert).as_deref().map(&fix),
            tls_key: non_empty(s.tls_key).as_deref().map(&fix),
            login_attempts_per_minute: s.login_attempts_per_minute.unwrap_or(10),
            trusted_proxies: s
                .trusted_proxies
                .unwrap_or_default()
                .iter()
                .map(|c| crate::auth::keys::parse_cidr(c))
                .collect::<Result<_, _>>()
                .map_err(|m| bad("server.trusted_proxies", m))?,
        };
        if server.tls_cert.is_some() != server.tls_key.is_some() {
            return Err(bad(
                "server.tls_cert",
                "set both `tls_cert` and `tls_key` for HTTPS, or neither".into(),
            ));
        }

        // [registry]
        let r = raw.registry;
        let token_ttl = duration("registry.token_ttl", r.token_ttl, "5m")?;
        if token_ttl
            .as_fixed()
            .is_none_or(|d| d < Duration::from_secs(60))
        {
            return Err(bad(
                "registry.token_ttl",
                "must be at least 60 s and have no months or years, e.g. `5m`".into(),
            ));
        }
        if r.service.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(bad(
                "registry.service",
                "is empty; set it to the registry's `auth.token.service`, e.g. \"registry.example.com\"".into(),
            ));
        }
        let header = match r.header.as_deref() {
            None => crate::registry::key::TokenHeader::default(),
            Some(h) => h.parse().map_err(|e| bad("registry.header", e))?,
        };
        let registry = RegistryConfig {
            service: r.service,
            header,
            issuer: r.issuer.unwrap_or_else(|| "tessera".into()),
            signing_key: key(
                "registry.signing_key",
                r.signing_key,
                "tessera/registry/signing_key",
            )?,
            certificate: fix(r.certificate.as_deref().unwrap_or("registry-token.crt")),
            token_ttl,
        };

        let store = crate::store::settings::StoreConfig::resolve(raw.store, env, &fix, &bad)?;

        Ok(Config {
            file,
            path,
            data_dir,
            config_dir,
            backend_from_env,
            secrets,
            auth,
            server,
            registry,
            store,
        })
    }

    /// The backend settings for [`tessera_backends::open`].
    pub fn backend_config(&self) -> BackendConfig {
        let s = &self.secrets;
        match s.backend {
            BackendKind::Pass => BackendConfig::Pass(PassConfig {
                store_dir: s.pass_store_dir.clone(),
                timeout: Some(s.timeout),
            }),
            BackendKind::Sops => BackendConfig::Sops(SopsConfig {
                file: s.sops_file.clone(),
                timeout: Some(s.timeout),
            }),
            BackendKind::Age => BackendConfig::Age(AgeConfig {
                file: s.age_file.clone(),
                identity: s.age_identity.clone(),
            }),
            _ => BackendConfig::Unsafe(UnsafeConfig {
                dir: s.unsafe_dir.clone(),
            }),
        }
    }

    /// The token store file.
    pub fn token_store_path(&self) -> PathBuf {
        self.data_dir.join("tokens.db")
    }

    /// The remotes file.
    pub fn remotes_path(&self) -> PathBuf {
        self.config_dir.join("remotes.toml")
    }
}

/// Expands a leading `~/` and makes relative paths relative to `base`.
fn resolve_path(s: &str, base: &Path, home: Option<&Path>) -> PathBuf {
    if let (Some(rest), Some(home)) = (s.strip_prefix("~/"), home) {
        return home.join(rest);
    }
    if let ("~", Some(home)) = (s, home) {
        return home.to_path_buf();
    }
    let p = Path::new(s);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// One `[[auth.api_keys]]` entry, checked: a name (unique), an argon2id hash at or above the
/// floor, scopes in the `--scopes` grammar, and an optional subject (default: the name).
fn api_key_entry(k: RawApiKey, before: &[ApiKeyConfig]) -> Result<ApiKeyConfig, String> {
    crate::auth::keys::check_name(&k.name).map_err(|e| e.to_string())?;
    if before.iter().any(|b| b.name == k.name) {
        return Err(format!(
            "two keys are named `{}`; give each key its own name",
            k.name
        ));
    }
    let hash = secrecy::SecretString::from(k.hash);
    match crate::password::hash_kind(&hash) {
        Ok(kind @ crate::password::HashKind::Argon2id { .. }) => {
            crate::password::check_stored(kind).map_err(|m| format!("key `{}`: {m}", k.name))?;
        }
        _ => {
            return Err(format!(
                "key `{}`: `hash` must be an argon2id hash (`$argon2id$v=19$...`); make one with `tessera auth key hash`",
                k.name
            ));
        }
    }
    let list = match k.scopes {
        RawScopes::None => String::new(),
        RawScopes::Text(t) => t,
        RawScopes::List(v) => v.join(","),
    };
    let scopes = if list.trim().is_empty() {
        crate::scope::ScopeSet::default()
    } else {
        crate::scope::ScopeSet::parse_list(&list, k.repo.as_deref().unwrap_or("*"))
            .map_err(|e| format!("key `{}`: {e}", k.name))?
    };
    let subject = k
        .subject
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| k.name.clone());
    Ok(ApiKeyConfig {
        name: k.name,
        subject,
        hash,
        scopes,
    })
}

/// The config file `tessera init` writes, with every setting shown.
pub fn template(backend: BackendKind) -> String {
    format!(
        r#"# tessera configuration. Every setting is optional; the values shown are the defaults
# unless noted. Relative paths are relative to this file's folder.

[secrets]
backend = "{backend}"          # "pass" | "sops" | "unsafe" | "age"
timeout = "10s"              # limit for one call of pass, gpg or sops

# [secrets.pass]
# store_dir = "~/.password-store"

# [secrets.sops]
# file = "secrets.enc.yaml"

# [secrets.unsafe]
# dir = "~/.local/share/tessera/secrets"

# [secrets.age]
# file = "~/.local/share/tessera/secrets.age"
# identity = "~/.config/tessera/age-identity.txt"

[auth]
token_secret = "tessera/auth/token_secret"
previous_token_secrets = []
token_expiry = "30d"
max_token_expiry = "0"       # "0" = no cap
issuer = "tessera"
# username = "deploy"        # enables password login
# password_hash = "tessera/auth/password_hash"
# login_scopes = "push,pull"
# session_expiry = "12h"     # browser sessions (POST /auth/session)

# More users, each with roles (built-in: admin, developer, user, viewer); see docs/users.md.
# [[auth.users]]
# name = "alice"
# password_hash = "tessera/users/alice/password_hash"   # set it with `tessera users passwd alice`
# roles = ["developer"]
# scopes = []                # extra scopes besides the roles'
#
# [auth.roles.ci-reader]
# scopes = ["pull", "admin:tokens:read"]   # ${{user}} stands for the user's name

# Workload identity: CI jobs exchange their OIDC ID token (docs/workload-identity.md).
# [[auth.trust]]
# name = "acme-app-release"
# issuer = "https://token.actions.githubusercontent.com"
# audience = "tessera"
# subject = "ci-acme-app"
# scopes = ["push"]
# repo = "acme/*"
# expiry = "15m"                    # at most 1h
# [auth.trust.claims]
# repository_owner_id = "123456"    # immutable ids; see the docs on account resurrection
# ref = "refs/heads/main"

# [server]
# bind = "127.0.0.1:7390"
# tls_cert = ""
# tls_key = ""
# login_attempts_per_minute = 10    # failed password checks per account and per client address (IPv6: /64); 0 = off

# [registry]
# service = "registry.example.com"   # required for the registry token service: the registry's auth.token.service
# header = "x5c"                     # "x5c" (distribution 2.8, 3.x with rootcertbundle) or "jwks" (3.x with only jwks:)
# issuer = "tessera"
# signing_key = "tessera/registry/signing_key"
# certificate = "registry-token.crt"
# token_ttl = "5m"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &Path) -> Env {
        let home = dir.to_str().unwrap();
        Env::from_pairs([("HOME", home)])
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("tessera.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The error of loading a `tessera.toml` holding `text`.
    fn load_error(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), text);
        Config::load(Some(&p), &env(dir.path()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn no_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(None, &env(dir.path())).unwrap();
        assert!(c.file.is_none());
        assert_eq!(c.secrets.backend, BackendKind::Unsafe);
        assert_eq!(
            c.secrets.unsafe_dir,
            dir.path().join(".local/share/tessera/secrets")
        );
        assert_eq!(c.path, dir.path().join(".config/tessera/tessera.toml"));
        assert_eq!(c.auth.token_secret.as_str(), "tessera/auth/token_secret");
        assert_eq!(c.server.bind, "127.0.0.1:7390");
        assert_eq!(c.secrets.timeout, Duration::from_secs(10));
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("conf");
        std::fs::create_dir(&sub).unwrap();
        let p = sub.join("t.toml");
        std::fs::write(
            &p,
            "[secrets]\nbackend = \"sops\"\n[secrets.sops]\nfile = \"s.enc.yaml\"\n[secrets.unsafe]\ndir = \"~/plain\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&p), &env(dir.path())).unwrap();
        assert_eq!(c.secrets.sops_file, sub.join("s.enc.yaml"));
        assert_eq!(c.secrets.unsafe_dir, dir.path().join("plain"));
    }

    #[test]
    fn unknown_key_names_line_and_suggestion() {
        let e = load_error("[secrets]\nbakend = \"pass\"\n");
        assert!(e.contains("tessera.toml:2:"), "{e}");
        assert!(e.contains("did you mean `backend`"), "{e}");
    }

    #[test]
    fn type_error_names_line() {
        let e = load_error("[server]\n\nlogin_attempts_per_minute = \"ten\"\n");
        assert!(e.contains(":3:"), "{e}");
    }

    #[test]
    fn unknown_backend_lists_valid_ones() {
        let e = load_error("[secrets]\nbackend = \"vault\"\n");
        assert!(e.contains("pass, sops, unsafe and age"), "{e}");
    }

    #[test]
    fn environment_overrides_file_and_empty_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "[secrets]\nbackend = \"pass\"\n");
        let home = dir.path().to_str().unwrap();
        let e = Env::from_pairs([("HOME", home), (vars::BACKEND, "age")]);
        let c = Config::load(Some(&p), &e).unwrap();
        assert_eq!(c.secrets.backend, BackendKind::Age);
        let e = Env::from_pairs([("HOME", home), (vars::BACKEND, "")]);
        let err = Config::load(Some(&p), &e).unwrap_err().to_string();
        assert!(
            err.contains("TESSERA_SECRETS_BACKEND is set but empty"),
            "{err}"
        );
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope.toml");
        let e = Config::load(Some(&p), &env(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("does not exist") && e.contains("--config"),
            "{e}"
        );
    }

    #[test]
    fn template_parses_to_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), &template(BackendKind::Pass));
        let c = Config::load(Some(&p), &env(dir.path())).unwrap();
        assert_eq!(c.secrets.backend, BackendKind::Pass);
        assert_eq!(c.auth.token_expiry.to_string(), "30d");
    }
}
