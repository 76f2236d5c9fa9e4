//! `tessera auth login|logout|status` and `tessera auth token show`: one token per remote.

use std::io::BufRead;
use std::path::PathBuf;

use clap::{ArgGroup, Args};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::cli::Context;
use crate::cli::error::{CliError, EXIT_FAILURE, ErrorCode};
use crate::cli::io::{prompt_hidden, read_stdin_line, read_stdin_secret, stdin_is_terminal};
use crate::cli::remotes::{
    check_token_text, client_for, forget_token, load_token, save_token, select, select_token,
};
use crate::client::ClientError;
use crate::term::safe;

/// Arguments of `auth login`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("given").args(["token", "token_stdin", "token_file"])))]
pub struct LoginArgs {
    /// The remote to log in to (default: TESSERA_REMOTE, else the active remote).
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// The username (prompted for when absent).
    #[arg(long, value_name = "U", conflicts_with = "given")]
    pub username: Option<String>,
    /// Read the password from the first line of stdin instead of prompting.
    #[arg(long, conflicts_with = "given")]
    pub password_stdin: bool,
    /// Store this token, once the remote confirms it. Visible to other processes: prefer
    /// --token-stdin or --token-file.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Read the token to store from stdin.
    #[arg(long)]
    pub token_stdin: bool,
    /// Read the token to store from a file.
    #[arg(long, value_name = "F")]
    pub token_file: Option<PathBuf>,
}

/// Arguments of `auth logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The remote (default: TESSERA_REMOTE, else the active remote).
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Also revoke the token on the server before forgetting it.
    #[arg(long)]
    pub revoke: bool,
}

/// Arguments of `auth status` and `auth token show`.
#[derive(Debug, Args)]
pub struct RemoteArg {
    /// The remote (default: TESSERA_REMOTE, else the active remote).
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
}

fn given_token(ctx: &Context, args: &LoginArgs) -> Result<Option<SecretString>, CliError> {
    let token = if let Some(t) = &args.token {
        ctx.out.warn(
            "a token given as an argument is visible to other processes; use --token-stdin or --token-file instead",
        );
        SecretString::from(t.trim().to_owned())
    } else if args.token_stdin {
        read_stdin_secret("token")?
    } else if let Some(path) = &args.token_file {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            CliError::new(format!(
                "cannot read the token file {}: {e}",
                path.display()
            ))
        })?);
        SecretString::from(text.trim().to_owned())
    } else {
        return Ok(None);
    };
    check_token_text(&token)?;
    Ok(Some(token))
}

fn read_username(args: &LoginArgs) -> Result<String, CliError> {
    if let Some(u) = &args.username {
        return Ok(u.clone());
    }
    if args.password_stdin || !stdin_is_terminal() {
        return Err(CliError::usage(
            "no terminal to prompt for a username; pass --username U --password-stdin, or --token-stdin",
        ));
    }
    crate::cli::write_stderr("Username: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::new(format!("cannot read the username: {e}")))?;
    let u = line.trim().to_owned();
    if u.is_empty() {
        return Err(CliError::usage("no username given"));
    }
    Ok(u)
}

fn summary(v: &Value) -> String {
    let scopes = v["scopes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "(none)".to_owned());
    // Everything here came from the remote: shown with control characters escaped.
    format!(
        "  subject: {}\n  scopes:  {}\n  expires: {}\n  id:      {}",
        safe(v["subject"].as_str().unwrap_or("?")),
        safe(&scopes),
        safe(v["expires_at"].as_str().unwrap_or("never")),
        safe(v["jti"].as_str().unwrap_or("?")),
    )
}

/// `tessera auth login`.
pub fn login(ctx: &Context, args: LoginArgs) -> Result<(), CliError> {
    let (name, remote) = select(ctx, args.remote.as_deref())?;
    let client = client_for(&remote)?;
    let (token, info) = match given_token(ctx, &args)? {
        Some(token) => {
            let info = client.verify(&token).map_err(|e| match e {
                ClientError::Api { .. } => {
                    CliError::new(format!("remote `{name}` does not accept that token: {e}"))
                        .with_code(ErrorCode::InvalidToken)
                }
                other => other.into(),
            })?;
            (token, info)
        }
        None => {
            let username = read_username(&args)?;
            let password = if args.password_stdin {
                read_stdin_line("password")?
            } else if stdin_is_terminal() {
                prompt_hidden("Password: ")?
            } else {
                return Err(CliError::usage(
                    "no terminal to prompt for a password; pass --password-stdin",
                ));
            };
            let issued = client.login(&username, &password).map_err(|e| match e {
                // The server's own reason ("the username or password is wrong", "password
                // login is not enabled on this server ..."), escaped.
                ClientError::Api {
                    ref code,
                    ref message,
                    ..
                } if code == "INVALID_CREDENTIALS" => CliError::new(format!(
                    "remote `{name}` ({}) refused the login: {}",
                    safe(&remote.url),
                    safe(message)
                ))
                .with_code(ErrorCode::InvalidCredentials),
                other => other.into(),
            })?;
            let info = json!({
                "subject": username,
                "expires_at": issued.expires_at,
            });
            (issued.token, info)
        }
    };
    let place = save_token(ctx, &name, &token)?;
    if ctx.out.json {
        let mut v = info.clone();
        v["remote"] = json!(name);
        v["url"] = json!(remote.url);
        v["stored_in"] = json!(place);
        return ctx.out.json(&v);
    }
    ctx.out.note(&format!(
        "logged in to `{name}` ({}) as `{}`; token stored in {place}, expires {}",
        safe(&remote.url),
        safe(info["subject"].as_str().unwrap_or("?")),
        safe(info["expires_at"].as_str().unwrap_or("never")),
    ));
    Ok(())
}

/// `tessera auth logout`.
pub fn logout(ctx: &Context, args: LogoutArgs) -> Result<(), CliError> {
    let (name, remote) = select(ctx, args.remote.as_deref())?;
    let Some(token) = load_token(ctx, &name, &remote)? else {
        if ctx.out.json {
            return ctx.out.json(&json!({
                "remote": name, "url": remote.url, "logged_out": false, "revoked": false,
            }));
        }
        ctx.out
            .note(&format!("not logged in to `{name}`; nothing to do"));
        return Ok(());
    };
    let mut revoked = false;
    if args.revoke {
        match client_for(&remote)?.revoke(&token) {
            Ok(()) => revoked = true,
            // Already dead on the server: forgetting it is all that is left.
            Err(ClientError::Api { ref code, .. })
                if matches!(
                    code.as_str(),
                    "TOKEN_REVOKED" | "TOKEN_EXPIRED" | "INVALID_TOKEN"
                ) => {}
            Err(e) => {
                return Err(CliError::from(e)
                    .context("cannot revoke the token, so it was kept")
                    .with_hint(format!(
                        "try again later, or run `tessera auth logout --remote {name}` without --revoke to only forget it"
                    )));
            }
        }
    }
    forget_token(ctx, &name)?;
    if ctx.out.json {
        return ctx.out.json(&json!({
            "remote": name, "url": remote.url, "logged_out": true, "revoked": revoked,
        }));
    }
    ctx.out.note(&format!(
        "logged out of `{name}`{}",
        if revoked {
            "; the token is revoked on the server"
        } else {
            ""
        }
    ));
    Ok(())
}

/// `tessera auth status`: what the remote says about the token.
pub fn status(ctx: &Context, args: RemoteArg) -> Result<(), CliError> {
    let (name, remote) = select(ctx, args.remote.as_deref())?;
    let (token, source) = select_token(ctx, &name, &remote)?;
    match client_for(&remote)?.verify(&token) {
        Ok(mut v) => {
            if ctx.out.json {
                v["remote"] = json!(name);
                v["url"] = json!(remote.url);
                v["token_source"] = json!(source);
                return ctx.out.json(&v);
            }
            ctx.out.line(&format!(
                "logged in to `{name}` ({})\n{}\n  token:   from {source}",
                safe(&remote.url),
                summary(&v)
            ))
        }
        Err(ClientError::Api { code, message, .. }) => {
            if ctx.out.json {
                ctx.out.json(&json!({
                    "remote": name, "url": remote.url, "valid": false,
                    "code": code, "error": message, "token_source": source,
                }))?;
                return Err(CliError::silent(EXIT_FAILURE));
            }
            Err(CliError::new(format!(
                "the token for `{name}` (from {source}) is not valid: {} ({})",
                safe(&message),
                safe(&code)
            ))
            .with_hint(format!(
                "log in again with `tessera auth login --remote {name}`"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// `tessera auth token show`: the token alone on stdout.
pub fn show(ctx: &Context, args: RemoteArg) -> Result<(), CliError> {
    let (name, remote) = select(ctx, args.remote.as_deref())?;
    let (token, source) = select_token(ctx, &name, &remote)?;
    if ctx.out.json {
        return ctx.out.json(&json!({
            "remote": name,
            "url": remote.url,
            "token": token.expose_secret(),
            "token_source": source,
        }));
    }
    ctx.out.line(token.expose_secret())
}
