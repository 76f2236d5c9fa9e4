//! `tessera credential-helper` and `docker-credential-tessera`: the Docker credential-helper
//! protocol over stdin/stdout, with secrets kept in the secrets backend.
//!
//! Per registry host, three keys: `tessera/docker/HOST/server_url`, `.../username` and
//! `.../secret`, where HOST is the server URL reduced to `host[:port]`, lower case, with every
//! byte outside `[a-z0-9.-]` written `_XX` (hex), so `127.0.0.1:5000` is `127.0.0.1_3a5000`.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use tessera_backends::KeyPath;
use zeroize::Zeroizing;

use super::Context;
use crate::cli::error::CliError;

/// The program name Docker, skopeo and podman run for `credHelpers: {HOST: "tessera"}`.
pub const HELPER_NAME: &str = "docker-credential-tessera";
/// What the protocol answers on a miss (clients match this text).
pub const NOT_FOUND: &str = "credentials not found in native keychain";
const PREFIX: &str = "tessera/docker";
const MAX_INPUT: u64 = 64 * 1024;

/// Docker credential-helper actions. Each reads its input on stdin and writes JSON on stdout;
/// errors go to stdout too (as the protocol wants) with exit status 1.
#[derive(Debug, Subcommand)]
pub enum HelperCommand {
    /// Print `{"ServerURL","Username","Secret"}` for the server URL read on stdin; exit 1 with
    /// `credentials not found in native keychain` when there are none.
    #[command(after_help = "EXAMPLES:
  echo registry.example.com | tessera credential-helper get")]
    Get,
    /// Store `{"ServerURL","Username","Secret"}` read on stdin in the secrets backend.
    #[command(after_help = "EXAMPLES:
  printf '{\"ServerURL\":\"registry.example.com\",\"Username\":\"ci\",\"Secret\":\"%s\"}' \"$TOKEN\" \\
    | tessera credential-helper store")]
    Store,
    /// Forget the credentials of the server URL read on stdin.
    #[command(after_help = "EXAMPLES:
  echo registry.example.com | tessera credential-helper erase")]
    Erase,
    /// Print `{"SERVER_URL":"username",...}` for every stored server.
    #[command(after_help = "EXAMPLES:
  tessera credential-helper list")]
    List,
    /// Print the helper's version.
    #[command(after_help = "EXAMPLES:
  tessera credential-helper version")]
    Version,
    /// Create the `docker-credential-tessera` link to this program in DIR (default
    /// ~/.local/bin), so that `credHelpers` can find it on PATH. Warns, with the line to add,
    /// when DIR is not on PATH. A missing DIR is created only with --create (the default
    /// ~/.local/bin is created when missing, and the output says so).
    #[command(after_help = "EXAMPLES:
  tessera credential-helper install  # into ~/.local/bin
  tessera credential-helper install --create ~/bin")]
    Install(InstallArgs),
}

/// Arguments of `tessera credential-helper install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Folder for the link (it should be on PATH).
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Create DIR (and its parents) when it does not exist.
    #[arg(long)]
    pub create: bool,
}

/// Whether `dir` is one of the folders of `path` (a PATH value), comparing resolved paths.
fn on_path(dir: &std::path::Path, path: &std::ffi::OsStr) -> bool {
    let want = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    std::env::split_paths(path)
        .filter(|p| p.is_absolute())
        .any(|p| std::fs::canonicalize(&p).unwrap_or(p) == want)
}

/// Parses the action of a `docker-credential-tessera ACTION` invocation.
pub fn parse_action(action: Option<&str>) -> Option<HelperCommand> {
    match action? {
        "get" => Some(HelperCommand::Get),
        "store" => Some(HelperCommand::Store),
        "erase" => Some(HelperCommand::Erase),
        "list" => Some(HelperCommand::List),
        "version" | "--version" | "-v" => Some(HelperCommand::Version),
        _ => None,
    }
}

/// `host[:port]` of a server URL (`https://index.docker.io/v1/` gives `index.docker.io`).
pub fn server_host(url: &str) -> String {
    let s = url.trim();
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    let s = s.split(['/', '?', '#']).next().unwrap_or("");
    // user@host: drop any userinfo.
    let s = s.rsplit_once('@').map_or(s, |(_, h)| h);
    s.to_ascii_lowercase()
}

/// The key path segment of a host: `[a-z0-9.-]` kept, anything else `_XX`.
pub fn host_segment(host: &str) -> String {
    let mut out = String::new();
    for (i, b) in host.bytes().enumerate() {
        let keep =
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || (b == b'-' && i > 0);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

fn keys(url: &str) -> Result<(KeyPath, KeyPath, KeyPath), CliError> {
    let host = server_host(url);
    if host.is_empty() {
        return Err(CliError::new("the server URL is empty"));
    }
    let base = format!("{PREFIX}/{}", host_segment(&host));
    Ok((
        KeyPath::new(&format!("{base}/server_url"))?,
        KeyPath::new(&format!("{base}/username"))?,
        KeyPath::new(&format!("{base}/secret"))?,
    ))
}

fn read_stdin() -> Result<Zeroizing<String>, CliError> {
    let mut buf = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .take(MAX_INPUT)
        .read_to_string(&mut buf)
        .map_err(|e| CliError::new(format!("cannot read stdin: {e}")))?;
    Ok(buf)
}

fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// The protocol's miss: exit 1 with the message, which the caller prints on stdout (the
/// protocol), or under `--json` as a `NOT_FOUND` error on stderr.
fn not_found() -> CliError {
    CliError::new(NOT_FOUND).with_code(crate::cli::error::ErrorCode::NotFound)
}

/// What `store` reads.
#[derive(Deserialize)]
struct StoreInput {
    #[serde(rename = "ServerURL")]
    server_url: String,
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: HelperSecret,
}

struct HelperSecret(SecretString);

impl<'de> Deserialize<'de> for HelperSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| HelperSecret(SecretString::from(s)))
    }
}

/// Runs one helper action. Errors are printed on stdout (the protocol) by the caller.
pub fn run(ctx: &Context, cmd: HelperCommand) -> Result<(), CliError> {
    match cmd {
        HelperCommand::Version if ctx.out.json => ctx.out.json(&json!({
            "name": HELPER_NAME,
            "version": env!("CARGO_PKG_VERSION"),
        })),
        HelperCommand::Version => print(&format!(
            "{HELPER_NAME} (tessera {})",
            env!("CARGO_PKG_VERSION")
        )),
        HelperCommand::Install(args) => install(ctx, args),
        HelperCommand::Get => {
            let url = read_stdin()?;
            let (url_key, user_key, secret_key) = keys(&url)?;
            let b = ctx.backend()?;
            let (Some(user), Some(secret)) =
                (b.get_optional(&user_key)?, b.get_optional(&secret_key)?)
            else {
                return Err(not_found());
            };
            let stored_url = b
                .get_optional(&url_key)?
                .map_or_else(|| url.trim().to_owned(), |u| u.expose_secret().to_owned());
            // The protocol's answer is already one JSON document, so `--json` changes nothing.
            ctx.out.json(&json!({
                "ServerURL": stored_url,
                "Username": user.expose_secret(),
                "Secret": secret.expose_secret(),
            }))
        }
        HelperCommand::Store => {
            let input = read_stdin()?;
            let parsed: StoreInput = serde_json::from_str(&input).map_err(|_| {
                CliError::new(
                    "stdin is not the JSON object {\"ServerURL\",\"Username\",\"Secret\"}",
                )
            })?;
            let (url_key, user_key, secret_key) = keys(&parsed.server_url)?;
            let b = ctx.backend()?;
            b.set(&secret_key, &parsed.secret.0)?;
            b.set(&user_key, &SecretString::from(parsed.username))?;
            b.set(&url_key, &SecretString::from(parsed.server_url.clone()))?;
            if ctx.out.json {
                return ctx
                    .out
                    .json(&json!({"server_url": parsed.server_url, "stored": true}));
            }
            Ok(())
        }
        HelperCommand::Erase => {
            let url = read_stdin()?;
            let (url_key, user_key, secret_key) = keys(&url)?;
            let b = ctx.backend()?;
            let mut found = false;
            for k in [&secret_key, &user_key, &url_key] {
                match b.delete(k) {
                    Ok(()) => found = true,
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if !found {
                return Err(not_found());
            }
            if ctx.out.json {
                return ctx
                    .out
                    .json(&json!({"server_url": url.trim(), "erased": true}));
            }
            Ok(())
        }
        HelperCommand::List => {
            let b = ctx.backend()?;
            let prefix = KeyPath::new(PREFIX)?;
            let mut map = serde_json::Map::new();
            let listed = match b.list(Some(&prefix)) {
                Ok(l) => l,
                Err(e) if e.is_not_found() => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            for k in listed.iter().filter(|k| k.as_str().ends_with("/username")) {
                let base = k.as_str().trim_end_matches("/username");
                let url_key = KeyPath::new(&format!("{base}/server_url"))?;
                if let (Some(url), Some(user)) = (b.get_optional(&url_key)?, b.get_optional(k)?) {
                    map.insert(url.expose_secret().to_owned(), json!(user.expose_secret()));
                }
            }
            ctx.out.json(&serde_json::Value::Object(map))
        }
    }
}

fn install(ctx: &Context, args: InstallArgs) -> Result<(), CliError> {
    let (dir, is_default) = match args.dir {
        Some(d) => (d, false),
        None => {
            let home = std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .ok_or_else(|| CliError::usage("HOME is not set; give the folder as DIR"))?;
            (PathBuf::from(home).join(".local/bin"), true)
        }
    };
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let exe = std::env::current_exe()
        .map_err(|e| CliError::new(format!("cannot find this program's path: {e}")))?;
    if !dir.is_dir() {
        if dir.exists() {
            return Err(CliError::usage(format!(
                "{} is not a folder; give a folder as DIR",
                dir.display()
            )));
        }
        if !is_default && !args.create {
            return Err(CliError::usage(format!(
                "{} does not exist; check the name, or pass --create to create it",
                dir.display()
            )));
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError::new(format!("cannot create {}: {e}", dir.display())))?;
        ctx.out
            .note(&format!("created the folder {}", dir.display()));
    }
    let link = dir.join(HELPER_NAME);
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(&link)
            .map_err(|e| CliError::new(format!("cannot replace {}: {e}", link.display())))?;
    }
    #[cfg(unix)]
    std::os::unix::fs::symlink(&exe, &link)
        .map_err(|e| CliError::new(format!("cannot create the link {}: {e}", link.display())))?;
    #[cfg(not(unix))]
    std::fs::copy(&exe, &link)
        .map_err(|e| CliError::new(format!("cannot copy to {}: {e}", link.display())))?;
    ctx.out.note(&format!(
        "linked {} -> {}\nuse it with {{\"credHelpers\": {{\"HOST:PORT\": \"tessera\"}}}} in ~/.docker/config.json or the containers auth file",
        link.display(),
        exe.display()
    ));
    let path = std::env::var_os("PATH").unwrap_or_default();
    if !on_path(&dir, &path) {
        ctx.out.warn(&format!(
            "{} is not on PATH, so docker, podman and skopeo will not find {HELPER_NAME}; add it, e.g. with this line in ~/.profile (then log in again):\n  export PATH=\"{}:$PATH\"",
            dir.display(),
            dir.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_segments() {
        assert_eq!(server_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(
            server_host("https://index.docker.io/v1/"),
            "index.docker.io"
        );
        assert_eq!(
            server_host("http://u@Reg.Example.com:443/x"),
            "reg.example.com:443"
        );
        assert_eq!(host_segment("127.0.0.1:5000"), "127.0.0.1_3a5000");
        assert_eq!(host_segment("a_b"), "a_5fb");
        assert_eq!(host_segment("-x"), "_2dx");
        assert!(keys("127.0.0.1:5000").is_ok());
        assert!(keys("  ").is_err());
        assert!(keys("[::1]:5000").is_ok());
    }
}
