//! `tessera secrets get|set|list|rm|check`.

use clap::{Args, Subcommand};
use secrecy::ExposeSecret;
use serde_json::json;
use tessera_backends::KeyPath;

use super::Context;
use super::io::{confirm, prompt_hidden, read_stdin_secret, stdin_is_terminal};
use crate::error::CliError;
use crate::keyring::random_secret;

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Print the value stored under KEY.
    Get(KeyArg),
    /// Store a value under KEY: read from stdin (one trailing newline removed), prompted
    /// without echo on a terminal, or generated with --generate.
    Set(SetArgs),
    /// List stored key names (never values), optionally only those under PREFIX.
    List(ListArgs),
    /// Remove KEY.
    #[command(visible_alias = "delete")]
    Rm(RmArgs),
    /// Check that the backend is usable and which configured keys are present.
    Check,
}

#[derive(Debug, Args)]
pub struct KeyArg {
    /// Key path, e.g. `app/db` or `tessera/auth/token_secret`.
    pub key: String,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// Key path, e.g. `app/db`.
    pub key: String,
    /// Store BYTES random bytes (base64url-encoded) instead of reading a value.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u16).range(16..=4096))]
    pub generate: Option<u16>,
    /// Do not ask before replacing a configured signing key (needed when there is no terminal).
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Key path, e.g. `app/db`.
    pub key: String,
    /// Do not ask before removing a configured signing key (needed when there is no terminal).
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only keys under this path (segment-wise: `app` matches `app/db`, not `apple`).
    pub prefix: Option<String>,
}

pub fn run(ctx: &Context, cmd: SecretsCommand) -> Result<(), CliError> {
    match cmd {
        SecretsCommand::Get(a) => get(ctx, &a.key),
        SecretsCommand::Set(a) => set(ctx, a),
        SecretsCommand::List(a) => list(ctx, a.prefix.as_deref()),
        SecretsCommand::Rm(a) => rm(ctx, &a.key, a.yes),
        SecretsCommand::Check => check(ctx),
    }
}

fn get(ctx: &Context, key: &str) -> Result<(), CliError> {
    let key = KeyPath::new(key)?;
    let value = ctx.backend()?.get(&key)?;
    if ctx.out.json {
        ctx.out
            .json(&json!({"key": key.as_str(), "value": value.expose_secret()}))
    } else {
        ctx.out.line(value.expose_secret())
    }
}

/// When `key` is one of the configured signing keys and is stored now: what it is and what
/// replacing or removing it breaks (a missing key breaks nothing, so it needs no confirmation).
fn signing_key_at_stake(
    ctx: &Context,
    key: &KeyPath,
) -> Result<Option<(&'static str, &'static str)>, CliError> {
    let c = &ctx.config;
    let what = if *key == c.auth.token_secret {
        (
            "the token signing secret (`auth.token_secret`)",
            "every token signed with it stops verifying",
        )
    } else if c.auth.previous_token_secrets.contains(key) {
        (
            "a previous token signing secret (`auth.previous_token_secrets`)",
            "tokens signed with it stop verifying",
        )
    } else if *key == c.registry.signing_key {
        (
            "the registry signing key (`registry.signing_key`)",
            "the registry refuses tokens until its certificate is replaced too",
        )
    } else {
        return Ok(None);
    };
    // Presence from listing, so no value is read or decrypted.
    let stored = ctx.backend()?.list(Some(key))?;
    Ok(stored.contains(key).then_some(what))
}

fn set(ctx: &Context, args: SetArgs) -> Result<(), CliError> {
    let key = KeyPath::new(&args.key)?;
    let backend = ctx.backend()?;
    if let Some((name, breaks)) = signing_key_at_stake(ctx, &key)? {
        confirm(
            &format!("replacing `{key}`, {name}, cannot be undone: {breaks}"),
            args.yes,
        )?;
    }
    let value = match args.generate {
        Some(bytes) => random_secret(bytes.into())?,
        None if stdin_is_terminal() => {
            let first = prompt_hidden(&format!("Value for {key}: "))?;
            let second = prompt_hidden(&format!("Retype value for {key}: "))?;
            if first.expose_secret() != second.expose_secret() {
                return Err(CliError::new(
                    "the two values do not match; nothing was stored",
                ));
            }
            if first.expose_secret().is_empty() {
                return Err(CliError::usage("empty value; nothing was stored"));
            }
            first
        }
        None => read_stdin_secret("secret value")?,
    };
    backend.set(&key, &value)?;
    if ctx.out.json {
        ctx.out
            .json(&json!({"key": key.as_str(), "backend": backend.name(), "stored": true}))
    } else {
        ctx.out
            .note(&format!("stored {key} in the {} backend", backend.name()));
        Ok(())
    }
}

fn list(ctx: &Context, prefix: Option<&str>) -> Result<(), CliError> {
    let prefix = prefix.map(KeyPath::new).transpose()?;
    let keys = ctx.backend()?.list(prefix.as_ref())?;
    if ctx.out.json {
        let names: Vec<&str> = keys.iter().map(KeyPath::as_str).collect();
        return ctx.out.json(&json!(names));
    }
    for k in &keys {
        ctx.out.line(k.as_str())?;
    }
    Ok(())
}

fn rm(ctx: &Context, key: &str, yes: bool) -> Result<(), CliError> {
    let key = KeyPath::new(key)?;
    let backend = ctx.backend()?;
    if let Some((name, breaks)) = signing_key_at_stake(ctx, &key)? {
        confirm(
            &format!("removing `{key}`, {name}, cannot be undone: {breaks}"),
            yes,
        )?;
    }
    backend.delete(&key)?;
    if ctx.out.json {
        ctx.out.json(&json!({"key": key.as_str(), "removed": true}))
    } else {
        ctx.out.note(&format!(
            "removed {key} from the {} backend",
            backend.name()
        ));
        Ok(())
    }
}

/// The keys the configuration names, with what each is for.
fn configured_keys(ctx: &Context) -> Vec<(KeyPath, &'static str)> {
    let c = &ctx.config;
    let mut keys = vec![(c.auth.token_secret.clone(), "token signing secret")];
    for k in &c.auth.previous_token_secrets {
        keys.push((k.clone(), "previous token secret"));
    }
    if c.auth.username.is_some() {
        keys.push((c.auth.password_hash.clone(), "password hash"));
    }
    keys.push((c.registry.signing_key.clone(), "registry signing key"));
    keys
}

fn check(ctx: &Context) -> Result<(), CliError> {
    let backend = ctx.backend()?;
    let location = backend.check()?;
    let mut rows = Vec::new();
    // Presence comes from listing, so no value is read or decrypted.
    let stored = backend.list(None)?;
    for (key, purpose) in configured_keys(ctx) {
        let present = stored.binary_search(&key).is_ok();
        rows.push((key, purpose, present));
    }
    if ctx.out.json {
        let keys: Vec<_> = rows
            .iter()
            .map(|(k, p, present)| json!({"key": k.as_str(), "purpose": p, "present": present}))
            .collect();
        return ctx.out.json(&json!({
            "backend": backend.name(),
            "location": location,
            "usable": true,
            "config": ctx.config.file.as_ref().map(|p| p.display().to_string()),
            "keys": keys,
        }));
    }
    ctx.out
        .line(&format!("backend: {} ({location})", backend.name()))?;
    match &ctx.config.file {
        Some(p) => ctx.out.line(&format!("config:  {}", p.display()))?,
        None => ctx.out.line("config:  none (defaults)")?,
    }
    for (key, purpose, present) in rows {
        let mark = if present { "present" } else { "missing" };
        ctx.out.line(&format!("{mark:8} {key}  ({purpose})"))?;
    }
    Ok(())
}
