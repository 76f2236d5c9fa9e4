//! `tessera init`: a config file and the token signing secret, if missing.
//!
//! `init` never silently invalidates tokens:
//! - a token secret that already exists in the configured backend is kept, also with
//!   `--force`; only `--rotate-secret` replaces it, and the old one is kept in the same backend
//!   under `KEY.bak-TIMESTAMP`;
//! - when the configured backend has no secret yet but the previous one does (the backend of the
//!   config file being rewritten, or the default `unsafe` folder that `auth token generate`
//!   uses before any `init`), that secret is carried over, and stderr says so and how to
//!   remove the old copy;
//! - `--force` keeps the old config file as `tessera.toml.bak-TIMESTAMP` (mode 0600).

use std::path::{Path, PathBuf};

use clap::Args;
use secrecy::ExposeSecret;
use serde_json::json;
use tessera_backends::{BackendKind, KeyPath, fsutil};

use super::Context;
use super::secrets::{describe_place, open_backend_kind, same_value};
use crate::cli::error::CliError;
use crate::config::{Config, Env, template};
use crate::keyring::random_secret;

#[derive(Debug, Args)]
#[command(after_help = "\
EXAMPLES:
  tessera init                                   # plain files (the `unsafe` backend)
  tessera init --backend pass --username deploy  # pass, and password login for `deploy`
  # rewrite the config; the old one is kept as tessera.toml.bak-TIMESTAMP
  tessera init --force --backend age
  # a new token secret; the old one is kept as KEY.bak-TIMESTAMP
  tessera init --rotate-secret")]
pub struct InitArgs {
    /// Backend to write into the new config: pass, sops, unsafe or age (default: unsafe).
    /// A token secret found in the previous backend is carried over into it.
    #[arg(long, value_name = "NAME")]
    pub backend: Option<String>,
    /// Enable password login for this user (`auth.username`). Then store the password's hash
    /// with `tessera auth password hash --store`.
    #[arg(long, value_name = "U")]
    pub username: Option<String>,
    /// Rewrite an existing config file from the template (the old file is kept as
    /// tessera.toml.bak-TIMESTAMP). The token secret is kept: see --rotate-secret.
    #[arg(long)]
    pub force: bool,
    /// Replace an existing token secret with a new one: every token signed with the old one
    /// stops verifying. The old one is kept in the backend under KEY.bak-TIMESTAMP.
    #[arg(long)]
    pub rotate_secret: bool,
}

/// Where `init` writes the config file.
fn target_path(explicit: Option<&Path>, env: &Env) -> Result<PathBuf, CliError> {
    // `--config PATH` names where to write; a missing file is fine here.
    Ok(match explicit {
        Some(p) => p.to_path_buf(),
        None => match env.tessera_var(crate::config::vars::CONFIG)? {
            Some(p) => PathBuf::from(p),
            None => env.config_dir()?.join("tessera.toml"),
        },
    })
}

/// The `secrets.backend` an existing file names (without environment overrides).
fn file_backend(path: &Path) -> Option<BackendKind> {
    let text = std::fs::read_to_string(path).ok()?;
    let doc: toml::Table = toml::from_str(&text).ok()?;
    doc.get("secrets")?.get("backend")?.as_str()?.parse().ok()
}

fn check_username(u: &str) -> Result<(), CliError> {
    if u.is_empty() || u.len() > 256 || u.chars().any(char::is_control) || u.trim() != u {
        return Err(CliError::usage(
            "--username must be 1 to 256 characters without control characters or surrounding spaces",
        ));
    }
    Ok(())
}

/// The config file `init` writes: the template for `backend`, with `auth.username` set when
/// given.
fn config_text(backend: BackendKind, username: Option<&str>) -> Result<String, CliError> {
    let text = template(backend);
    let Some(u) = username else {
        return Ok(text);
    };
    check_username(u)?;
    // In place of the template's commented-out line, so the file reads as documented.
    let quoted = toml_edit::Value::from(u).to_string();
    let quoted = quoted.trim();
    let mut done = false;
    let lines: Vec<String> = text
        .lines()
        .map(|l| match l.strip_prefix("# username = ") {
            Some(rest) if !done => {
                done = true;
                let comment = rest.split_once('#').map(|(_, c)| c.trim()).unwrap_or("");
                format!("username = {quoted:<18}# {comment}")
            }
            _ => l.to_owned(),
        })
        .collect();
    if done {
        return Ok(lines.join("\n") + "\n");
    }
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| CliError::new(format!("the config template does not parse: {e}")))?;
    doc["auth"]["username"] = toml_edit::value(u);
    Ok(doc.to_string())
}

/// The text of the config file `init` would write now, or `None` when it keeps the existing
/// file.
fn planned_config(target: &Path, args: &InitArgs) -> Result<Option<String>, CliError> {
    let exists = target.exists();
    if exists && !args.force {
        return Ok(None);
    }
    let backend = match args.backend.as_deref() {
        Some(b) => b
            .parse::<BackendKind>()
            .map_err(|e| CliError::usage(e.to_string()))?,
        // With --force and no --backend, keep the backend the existing file names.
        None if exists => file_backend(target).unwrap_or(BackendKind::Unsafe),
        None => BackendKind::Unsafe,
    };
    config_text(backend, args.username.as_deref()).map(Some)
}

/// The configuration `init` works with: the existing file, or the one it is about to write
/// (loaded through the normal path, so what init reports is what later commands read).
/// Nothing is written here.
pub fn load_config(
    explicit: Option<&Path>,
    env: &Env,
    args: &InitArgs,
) -> Result<Config, CliError> {
    if let Some(b) = args.backend.as_deref() {
        b.parse::<BackendKind>()
            .map_err(|e| CliError::usage(e.to_string()))?;
    }
    let target = target_path(explicit, env)?;
    match planned_config(&target, args)? {
        Some(text) => Ok(Config::from_text(&target, &text, env)?),
        None => Ok(Config::load(Some(&target), env)?),
    }
}

/// A UTC time stamp for backup names: `20261202T101500Z`.
fn stamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// Copies the config file to `tessera.toml.bak-TIMESTAMP` (mode 0600) and returns its path.
fn backup_config(path: &Path) -> Result<PathBuf, CliError> {
    let old = std::fs::read(path).map_err(|e| {
        CliError::new(format!(
            "cannot read {} to back it up: {e}; nothing was changed",
            path.display()
        ))
    })?;
    let base = format!("{}.bak-{}", path.display(), stamp());
    let mut bak = PathBuf::from(&base);
    let mut n = 1;
    while bak.exists() {
        n += 1;
        bak = PathBuf::from(format!("{base}-{n}"));
    }
    fsutil::write_atomic(&bak, &old, 0o600).map_err(|e| {
        CliError::new(format!(
            "cannot write the backup {}: {e}; nothing was changed",
            bak.display()
        ))
    })?;
    Ok(bak)
}

/// Sets `auth.username` in an existing config file, keeping everything else as written.
fn add_username(path: &Path, username: &str) -> Result<(), CliError> {
    check_username(username)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
    if !doc.contains_table("auth") {
        doc["auth"] = toml_edit::table();
    }
    doc["auth"]["username"] = toml_edit::value(username);
    fsutil::write_atomic(path, doc.to_string().as_bytes(), 0o600)
        .map_err(|e| CliError::new(format!("cannot write config file {}: {e}", path.display())))
}

/// Where a token secret may already live: the backend of the config being rewritten, then
/// the default `unsafe` folder (used by `auth token generate` before any `init`). Each with
/// the configuration that opens it and the key path.
fn previous_places(
    ctx: &Context,
    previous: Option<&Config>,
    path: &Path,
) -> Result<Vec<(Config, KeyPath)>, CliError> {
    let mut places = Vec::new();
    if let Some(p) = previous {
        places.push((p.clone(), p.auth.token_secret.clone()));
    }
    let defaults = Config::from_text(path, "", &ctx.env)?;
    let mut default_unsafe = defaults.clone();
    default_unsafe.secrets.backend = BackendKind::Unsafe;
    let key = defaults.auth.token_secret.clone();
    places.push((default_unsafe, key));
    // Never the new backend itself.
    let new = format!("{:?}", ctx.config.backend_config());
    places.retain(|(c, _)| format!("{:?}", c.backend_config()) != new);
    places.dedup_by(|a, b| {
        format!("{:?}", a.0.backend_config()) == format!("{:?}", b.0.backend_config())
    });
    Ok(places)
}

/// What happened to the token secret.
enum SecretAction {
    Kept,
    Created,
    Rotated { backup: KeyPath },
    CarriedOver { from: BackendKind },
}

pub fn run(ctx: &Context, args: InitArgs) -> Result<(), CliError> {
    let config = &ctx.config;
    let mut actions = Vec::new();
    let path = config.path.clone();
    let mut config_backup = None;
    let mut previous = None;
    match planned_config(&path, &args)? {
        Some(text) => {
            if path.exists() {
                previous = Config::load(Some(&path), &ctx.env).ok();
                let bak = backup_config(&path)?;
                actions.push(format!(
                    "config: {} (rewritten; the old file is kept as {})",
                    path.display(),
                    bak.display()
                ));
                config_backup = Some(bak);
            } else {
                actions.push(format!("config: {} (created)", path.display()));
            }
            fsutil::write_atomic(&path, text.as_bytes(), 0o600).map_err(|e| {
                CliError::new(format!("cannot write config file {}: {e}", path.display()))
            })?;
        }
        None => {
            if let Some(wanted) = args.backend.as_deref()
                && wanted != config.secrets.backend.as_str()
                && !config.backend_from_env
            {
                ctx.out.warn(&format!(
                    "{} already exists with backend `{}`; kept it (use --force to rewrite it; the old file is kept as a backup)",
                    path.display(),
                    config.secrets.backend
                ));
            }
            match (args.username.as_deref(), config.auth.username.as_deref()) {
                (Some(u), Some(have)) if u != have => {
                    return Err(CliError::usage(format!(
                        "{} already sets auth.username = `{}`; edit it there, or rewrite the file with --force",
                        path.display(),
                        crate::term::safe(have)
                    )));
                }
                (Some(u), None) => {
                    add_username(&path, u)?;
                    actions.push(format!(
                        "config: {} (kept; set auth.username = `{u}`)",
                        path.display()
                    ));
                }
                _ => actions.push(format!("config: {} (kept)", path.display())),
            }
        }
    }

    #[cfg(feature = "age")]
    if config.secrets.backend == BackendKind::Age {
        let id = &config.secrets.age_identity;
        if id.exists() {
            actions.push(format!("age identity: {} (kept)", id.display()));
        } else {
            let recipient = tessera_backends::age::generate_identity(id)?;
            actions.push(format!(
                "age identity: {} (created; public key {recipient})",
                id.display()
            ));
        }
    }

    let backend = ctx.backend()?;
    let key = &config.auth.token_secret;
    let present = backend.list(Some(key))?.contains(key);
    let action = if present && args.rotate_secret {
        let backup = KeyPath::new(&format!("{key}.bak-{}", stamp()))?;
        let old = backend.get(key)?;
        backend.set(&backup, &old)?;
        backend.set(key, &random_secret(32)?)?;
        ctx.out.warn(&format!(
            "replaced the token secret at `{key}`: tokens signed with the old one no longer verify; the old one is kept at `{backup}` in the {} backend (list it in auth.previous_token_secrets to keep accepting its tokens)",
            backend.name()
        ));
        SecretAction::Rotated { backup }
    } else if present {
        warn_about_other_secret(ctx, previous.as_ref(), &path, key)?;
        SecretAction::Kept
    } else {
        match carry_over(ctx, previous.as_ref(), &path, key, args.rotate_secret)? {
            Some(from) => SecretAction::CarriedOver { from },
            None => {
                backend.set(key, &random_secret(32)?)?;
                SecretAction::Created
            }
        }
    };
    actions.push(match &action {
        SecretAction::Kept if args.force => format!(
            "token secret: `{key}` in {} (kept; --rotate-secret replaces it)",
            backend.name()
        ),
        SecretAction::Kept => format!("token secret: `{key}` in {} (kept)", backend.name()),
        SecretAction::Created => format!(
            "token secret: `{key}` in {} (created, 256 bits)",
            backend.name()
        ),
        SecretAction::Rotated { backup } => format!(
            "token secret: `{key}` in {} (replaced, 256 bits; the old one is at `{backup}`)",
            backend.name()
        ),
        SecretAction::CarriedOver { from } => format!(
            "token secret: `{key}` in {} (carried over from the {from} backend; tokens minted with it keep verifying)",
            backend.name()
        ),
    });
    if ctx.out.json {
        return ctx.out.json(&json!({
            "config": path.display().to_string(),
            "config_backup": config_backup.map(|p| p.display().to_string()),
            "backend": backend.name(),
            "token_secret": key.as_str(),
            "token_secret_created": matches!(action, SecretAction::Created | SecretAction::Rotated { .. }),
            "token_secret_carried_from": match &action {
                SecretAction::CarriedOver { from } => json!(from.as_str()),
                _ => json!(null),
            },
            "token_secret_backup": match &action {
                SecretAction::Rotated { backup } => json!(backup.as_str()),
                _ => json!(null),
            },
        }));
    }
    for a in actions {
        ctx.out.note(&a);
    }
    Ok(())
}

/// Copies a token secret found in a previous place into the configured backend. `None` when
/// there is none (or with `--rotate-secret`, which asks for a new one).
fn carry_over(
    ctx: &Context,
    previous: Option<&Config>,
    path: &Path,
    key: &KeyPath,
    rotate: bool,
) -> Result<Option<BackendKind>, CliError> {
    if rotate {
        return Ok(None);
    }
    let to = ctx.backend()?;
    for (cfg, old_key) in previous_places(ctx, previous, path)? {
        let kind = cfg.secrets.backend;
        let found = open_backend_kind(&cfg, kind).and_then(|from| {
            let found = from.list(Some(&old_key))?;
            Ok((from, found))
        });
        let (from, found) = found.map_err(|e| {
            e.context(format!(
                    "cannot look for the existing token secret in the {kind} backend"
                ))
                .with_hint(
                    "fix that backend, or pass --rotate-secret to create a new secret (tokens signed with the old one will stop verifying)",
                )
        })?;
        if !found.contains(&old_key) {
            continue;
        }
        let value = from.get(&old_key)?;
        to.set(key, &value)?;
        if !same_value(&to.get(key)?, &value) {
            return Err(CliError::new(format!(
                "the token secret read back differently from the {} backend after copying it; the old one was left in the {kind} backend",
                to.name()
            )));
        }
        let place = describe_place(&cfg, kind, &old_key);
        let removal = if old_key == *key
            && format!("{:?}", cfg.backend_config())
                == format!("{:?}", open_config_for(ctx, kind).backend_config())
        {
            format!("`tessera secrets move --from {kind} {key}`")
        } else if kind == BackendKind::Unsafe {
            format!(
                "`rm -- '{}'`",
                cfg.secrets.unsafe_dir.join(old_key.as_str()).display()
            )
        } else {
            format!("the {kind} backend's own tools")
        };
        ctx.out.warn(&format!(
            "carried the existing token secret over from {place} into the {} backend, so tokens minted with it keep verifying; the old copy is still there: remove it with {removal}",
            to.name()
        ));
        let others = from
            .list(None)
            .map(|keys| keys.into_iter().filter(|k| *k != old_key).count())
            .unwrap_or(0);
        if others > 0 {
            ctx.out.warn(&format!(
                "the {kind} backend holds {others} other key(s); copy them with `tessera secrets copy --from {kind}` (or move them with `tessera secrets move --from {kind}`)"
            ));
        }
        return Ok(Some(kind));
    }
    Ok(None)
}

/// The configuration that `tessera secrets copy --from KIND` will use after this `init`.
fn open_config_for(ctx: &Context, kind: BackendKind) -> Config {
    let mut c = ctx.config.clone();
    c.secrets.backend = kind;
    c
}

/// When the configured backend already has a token secret and a previous place holds a
/// different one, tokens minted with that one no longer verify: say so, and how to use it.
fn warn_about_other_secret(
    ctx: &Context,
    previous: Option<&Config>,
    path: &Path,
    key: &KeyPath,
) -> Result<(), CliError> {
    let to = ctx.backend()?;
    for (cfg, old_key) in previous_places(ctx, previous, path)? {
        let kind = cfg.secrets.backend;
        let Ok(from) = open_backend_kind(&cfg, kind) else {
            continue;
        };
        if !from
            .list(Some(&old_key))
            .is_ok_and(|k| k.contains(&old_key))
        {
            continue;
        }
        let (Ok(old), Ok(current)) = (from.get(&old_key), to.get(key)) else {
            continue;
        };
        if old.expose_secret().is_empty() || same_value(&old, &current) {
            continue;
        }
        ctx.out.warn(&format!(
            "{} holds another token secret at `{old_key}`; tokens minted with it do not verify with the one in the {} backend (to use that one instead: `tessera secrets copy --from {kind} --overwrite {key}`)",
            describe_place(&cfg, kind, &old_key),
            to.name()
        ));
    }
    Ok(())
}
