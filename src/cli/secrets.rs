//! `tessera secrets get|set|list|rm|check|copy|move`.

use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tessera_backends::{BackendKind, KeyPath, SecretsBackend};

use super::Context;
use super::io::{confirm, prompt_hidden, read_stdin_secret, stdin_is_terminal};
use crate::cli::error::CliError;
use crate::keyring::random_secret;

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Print the value stored under KEY.
    #[command(after_help = "EXAMPLES:
  tessera secrets get app/db
  tessera --json secrets get app/db  # {\"key\":\"app/db\",\"value\":\"...\"}")]
    Get(KeyArg),
    /// Store a value under KEY: read from stdin (one trailing newline removed), prompted
    /// without echo on a terminal, or generated with --generate.
    #[command(after_help = "EXAMPLES:
  tessera secrets set app/db                     # prompts twice, no echo
  printf '%s\\n' \"$VALUE\" | tessera secrets set app/db
  tessera secrets set app/api-key --generate 32  # 32 random bytes")]
    Set(SetArgs),
    /// List stored key names (never values), optionally only those under PREFIX.
    #[command(after_help = "EXAMPLES:
  tessera secrets list
  tessera secrets list app  # app/db, app/api-key, not apple/x")]
    List(ListArgs),
    /// Remove KEY.
    #[command(visible_alias = "delete")]
    #[command(after_help = "EXAMPLES:
  tessera secrets rm app/db
  tessera secrets rm --yes tessera/auth/token_secret   # a signing key: confirm up front")]
    Rm(RmArgs),
    /// Check that the backend is usable and which configured keys are present.
    #[command(after_help = "EXAMPLES:
  tessera secrets check
  tessera --json secrets check")]
    Check,
    /// Copy keys from another backend into the configured one (or into --to).
    ///
    /// Each value is read from --from, written to the destination and read back; the source
    /// is left as it was. A key that already holds a different value in the destination is
    /// refused unless --overwrite (nothing is written then). Settings of both backends come
    /// from the config's `[secrets.NAME]` sections, else their defaults.
    #[command(after_help = "EXAMPLES:
  tessera secrets copy --from unsafe             # every key, into the configured backend
  tessera secrets copy --from unsafe --to pass tessera/auth/token_secret
  tessera secrets copy --from pass --to age app  # every key under app/")]
    Copy(CopyArgs),
    /// Like `copy`, then remove each key from the source once the destination holds it.
    ///
    /// Use it to leave the unencrypted `unsafe` backend: the plain files are removed only after
    /// the encrypted copy has been read back and matches.
    #[command(after_help = "EXAMPLES:
  tessera secrets move --from unsafe  # everything, into the configured backend
  tessera secrets move --from unsafe --to pass tessera/auth/token_secret")]
    Move(CopyArgs),
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Backend to read from: pass, sops, unsafe or age.
    #[arg(long, value_name = "NAME")]
    pub from: String,
    /// Backend to write to (default: the configured backend).
    #[arg(long, value_name = "NAME")]
    pub to: Option<String>,
    /// Replace keys that already hold a different value in the destination.
    #[arg(long)]
    pub overwrite: bool,
    /// Keys, or prefixes of keys (whole segments), to copy; default: every key in the source.
    #[arg(value_name = "KEY")]
    pub keys: Vec<String>,
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
        SecretsCommand::Copy(a) => copy(ctx, a, false),
        SecretsCommand::Move(a) => copy(ctx, a, true),
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

/// Opens the backend `kind` with the settings of the configuration (its `[secrets.NAME]`
/// section, else the defaults), whatever backend the configuration selects.
pub(crate) fn open_backend_kind(
    config: &crate::config::Config,
    kind: BackendKind,
) -> Result<Box<dyn SecretsBackend>, CliError> {
    let mut c = config.clone();
    c.secrets.backend = kind;
    Ok(tessera_backends::open(c.backend_config())?)
}

/// Where `key` lives in a backend, for messages: the file of the `unsafe` backend, else the
/// backend's name.
pub(crate) fn describe_place(
    config: &crate::config::Config,
    kind: BackendKind,
    key: &KeyPath,
) -> String {
    match kind {
        BackendKind::Unsafe => format!(
            "the unsafe backend ({}, not encrypted)",
            config.secrets.unsafe_dir.join(key.as_str()).display()
        ),
        other => format!("the {other} backend"),
    }
}

/// Whether two secret values are equal, compared in constant time.
pub(crate) fn same_value(a: &SecretString, b: &SecretString) -> bool {
    use subtle::ConstantTimeEq;
    a.expose_secret()
        .as_bytes()
        .ct_eq(b.expose_secret().as_bytes())
        .into()
}

/// Copies `key` from `from` to `to` and reads it back. `Ok(false)` when `to` already held the
/// same value (nothing written).
pub(crate) fn copy_one(
    from: &dyn SecretsBackend,
    to: &dyn SecretsBackend,
    key: &KeyPath,
    overwrite: bool,
) -> Result<bool, CliError> {
    let value = from.get(key)?;
    if to.list(Some(key))?.contains(key) {
        let existing = to.get(key)?;
        if same_value(&existing, &value) {
            return Ok(false);
        }
        if !overwrite {
            return Err(CliError::new(format!(
                "`{key}` already holds a different value in the {} backend; nothing was changed (pass --overwrite to replace it)",
                to.name()
            )));
        }
    }
    to.set(key, &value)?;
    let back = to.get(key)?;
    if !same_value(&back, &value) {
        return Err(CliError::new(format!(
            "`{key}` reads back differently from the {} backend after writing it; the source was left as it was",
            to.name()
        )));
    }
    Ok(true)
}

fn parse_backend(name: &str, flag: &str) -> Result<BackendKind, CliError> {
    name.parse::<BackendKind>()
        .map_err(|e| CliError::usage(format!("{flag}: {e}")))
}

/// `tessera secrets copy|move`.
fn copy(ctx: &Context, args: CopyArgs, remove_source: bool) -> Result<(), CliError> {
    let verb = if remove_source { "move" } else { "copy" };
    let from_kind = parse_backend(&args.from, "--from")?;
    let to_kind = match &args.to {
        Some(n) => parse_backend(n, "--to")?,
        None => ctx.config.secrets.backend,
    };
    if from_kind == to_kind {
        return Err(CliError::usage(format!(
            "--from and --to are both the {to_kind} backend; name another one with --to (the configured backend is {})",
            ctx.config.secrets.backend
        )));
    }
    let prefixes = args
        .keys
        .iter()
        .map(|k| KeyPath::new(k))
        .collect::<Result<Vec<_>, _>>()?;
    let from = open_backend_kind(&ctx.config, from_kind)?;
    let to = open_backend_kind(&ctx.config, to_kind)?;
    // Which keys: every key under each prefix, each once, in order.
    let mut keys: Vec<KeyPath> = Vec::new();
    if prefixes.is_empty() {
        keys = from.list(None)?;
    } else {
        for p in &prefixes {
            let found = from.list(Some(p))?;
            if found.is_empty() {
                return Err(CliError::new(format!(
                    "no key `{p}` (or under it) in the {from_kind} backend; nothing was changed (without KEY, every key is taken)"
                )));
            }
            keys.extend(found);
        }
        keys.sort();
        keys.dedup();
    }
    if keys.is_empty() {
        ctx.out.note(&format!(
            "the {from_kind} backend holds no keys; nothing to {verb}"
        ));
        if ctx.out.json {
            return ctx.out.json(&json!({
                "from": from_kind.as_str(), "to": to_kind.as_str(),
                "copied": [], "unchanged": [], "removed_from_source": [],
            }));
        }
        return Ok(());
    }
    // Refuse conflicts before writing anything, so a refused copy changes nothing.
    if !args.overwrite {
        let present = to.list(None)?;
        for key in keys.iter().filter(|k| present.binary_search(k).is_ok()) {
            if !same_value(&to.get(key)?, &from.get(key)?) {
                return Err(CliError::new(format!(
                    "`{key}` already holds a different value in the {to_kind} backend; nothing was changed (pass --overwrite to replace it, or name only the other keys)"
                )));
            }
        }
    }
    let mut copied = Vec::new();
    let mut unchanged = Vec::new();
    let mut removed = Vec::new();
    for key in &keys {
        if copy_one(from.as_ref(), to.as_ref(), key, args.overwrite)? {
            ctx.out
                .note(&format!("copied {key}: {from_kind} -> {to_kind}"));
            copied.push(key.as_str().to_owned());
        } else {
            ctx.out.note(&format!(
                "{key}: already in the {to_kind} backend with the same value"
            ));
            unchanged.push(key.as_str().to_owned());
        }
        if remove_source {
            from.delete(key)?;
            removed.push(key.as_str().to_owned());
        }
    }
    if remove_source {
        ctx.out.note(&format!(
            "removed {} key(s) from the {from_kind} backend",
            removed.len()
        ));
    } else if from_kind == BackendKind::Unsafe {
        ctx.out.note(&format!(
            "the unencrypted copies are still under {}; `tessera secrets move --from unsafe{}` removes them once the destination holds them",
            ctx.config.secrets.unsafe_dir.display(),
            if args.to.is_some() {
                format!(" --to {to_kind}")
            } else {
                String::new()
            }
        ));
    }
    if ctx.out.json {
        return ctx.out.json(&json!({
            "from": from_kind.as_str(),
            "to": to_kind.as_str(),
            "copied": copied,
            "unchanged": unchanged,
            "removed_from_source": removed,
        }));
    }
    Ok(())
}
