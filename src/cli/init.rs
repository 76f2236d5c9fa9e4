//! `tessera init`: a config file and the token signing secret, if missing.

use std::path::Path;

use clap::Args;
use serde_json::json;
use tessera_backends::{BackendKind, fsutil};

use super::Context;
use crate::config::{Config, Env, template};
use crate::error::CliError;
use crate::keyring::random_secret;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Backend to write into the new config: pass, sops, unsafe or age (default: unsafe).
    #[arg(long, value_name = "NAME")]
    pub backend: Option<String>,
    /// Rewrite an existing config and replace an existing token secret (every token signed
    /// with the old secret stops verifying).
    #[arg(long)]
    pub force: bool,
}

/// The configuration `init` works with: the existing file, or the defaults with `--backend`.
pub fn load_config(
    explicit: Option<&Path>,
    env: &Env,
    args: &InitArgs,
) -> Result<Config, CliError> {
    let backend = args
        .backend
        .as_deref()
        .map(str::parse::<BackendKind>)
        .transpose()
        .map_err(|e| CliError::usage(e.to_string()))?;
    // `--config PATH` names where to write; a missing file is fine here.
    let path = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => env
            .tessera_var(crate::config::vars::CONFIG)?
            .map(std::path::PathBuf::from),
    };
    let exists = path.as_deref().map(Path::exists).unwrap_or_else(|| {
        env.config_dir()
            .map(|d| d.join("tessera.toml").exists())
            .unwrap_or(false)
    });
    if exists && !args.force {
        return Ok(Config::load(path.as_deref(), env)?);
    }
    // Write the template first into memory and load it through the normal path, so what init
    // reports is exactly what later commands will read.
    let target = match path {
        Some(p) => p,
        None => env.config_dir()?.join("tessera.toml"),
    };
    // With --force and no --backend, keep the backend the existing file names.
    let backend = match backend {
        Some(b) => b,
        None if exists => Config::load(Some(&target), env)
            .map(|c| c.secrets.backend)
            .unwrap_or(BackendKind::Unsafe),
        None => BackendKind::Unsafe,
    };
    write_config(&target, backend)?;
    Ok(Config::load(Some(&target), env)?)
}

fn write_config(path: &Path, backend: BackendKind) -> Result<(), CliError> {
    fsutil::write_atomic(path, template(backend).as_bytes(), 0o600)
        .map_err(|e| CliError::new(format!("cannot write config file {}: {e}", path.display())))
}

pub fn run(ctx: &Context, args: InitArgs) -> Result<(), CliError> {
    let config = &ctx.config;
    let mut actions = Vec::new();
    let path = config.file.clone().unwrap_or_else(|| config.path.clone());
    if let Some(wanted) = args.backend.as_deref()
        && wanted != config.secrets.backend.as_str()
        && !config.backend_from_env
    {
        ctx.out.warn(&format!(
            "{} already exists with backend `{}`; kept it (use --force to rewrite it)",
            path.display(),
            config.secrets.backend
        ));
    }
    actions.push(format!("config: {}", path.display()));

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
    let created = if present && !args.force {
        actions.push(format!(
            "token secret: `{key}` in {} (kept)",
            backend.name()
        ));
        false
    } else {
        let secret = random_secret(32)?;
        backend.set(key, &secret)?;
        if present {
            ctx.out.warn(&format!(
                "replaced the token secret at `{key}`: tokens signed with the old one no longer verify"
            ));
        }
        actions.push(format!(
            "token secret: `{key}` in {} (created, 256 bits)",
            backend.name()
        ));
        true
    };
    if ctx.out.json {
        return ctx.out.json(&json!({
            "config": path.display().to_string(),
            "backend": backend.name(),
            "token_secret": key.as_str(),
            "token_secret_created": created,
        }));
    }
    for a in actions {
        ctx.out.note(&a);
    }
    Ok(())
}
