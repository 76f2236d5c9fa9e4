//! `tessera remotes add|list|remove|use|set-token`, and the helpers that `tessera auth login`
//! and friends share: remote selection and where a remote's token lives.

use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tessera_backends::BackendKind;

use crate::cli::Context;
use crate::cli::error::{CliError, ErrorCode};
use crate::cli::io::read_stdin_secret;
use crate::client::Client;
use crate::config::vars;
use crate::remotes::{
    self, Remote, RemotesError, RemotesFile, RemotesStore, StoredToken, normalize_url,
    validate_name,
};

/// Manage the tessera servers this machine logs in to.
#[derive(Debug, Subcommand)]
pub enum RemotesCommand {
    /// Add a remote server. Checks that URL answers `GET /health` like a tessera server
    /// (skip with --no-verify). The first remote added becomes the active one.
    ///
    /// Plain http is accepted for loopback addresses only; elsewhere use https, or pass
    /// --insecure, which also turns off certificate checks for this remote.
    #[command(after_help = "EXAMPLES:
  tessera remotes add prod https://tessera.example.com
  tessera remotes add dev http://127.0.0.1:7390             # plain http: loopback only
  tessera remotes add lab https://10.0.0.5:7390 --insecure  # self-signed certificate")]
    Add(AddArgs),
    /// List the remotes: name, URL, whether it is active and where its token is.
    #[command(after_help = "EXAMPLES:
  tessera remotes list
  tessera --json remotes list")]
    List,
    /// Remove a remote and its stored token.
    #[command(after_help = "EXAMPLES:
  tessera remotes remove dev")]
    Remove(NameArg),
    /// Make NAME the active remote (used when neither --remote nor TESSERA_REMOTE is given).
    #[command(after_help = "EXAMPLES:
  tessera remotes use prod")]
    Use(NameArg),
    /// Store a token for a remote without asking the server (TOKEN, or stdin when absent or
    /// `-`). Prefer stdin: a token in the arguments is visible to other processes.
    #[command(after_help = "EXAMPLES:
  tessera remotes set-token prod < token.txt
  printf '%s\\n' \"$TOKEN\" | tessera remotes set-token prod")]
    SetToken(SetTokenArgs),
}

/// Arguments of `remotes add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The remote's name: letters, digits, `.`, `_`, `-` (at most 64).
    pub name: String,
    /// Its base URL, e.g. https://tessera.example.com.
    pub url: String,
    /// Accept an invalid or self-signed TLS certificate, and plain http to a non-loopback host.
    #[arg(long)]
    pub insecure: bool,
    /// Do not check that the URL answers like a tessera server.
    #[arg(long)]
    pub no_verify: bool,
}

/// A remote name.
#[derive(Debug, Args)]
pub struct NameArg {
    /// The remote's name.
    pub name: String,
}

/// Arguments of `remotes set-token`.
#[derive(Debug, Args)]
pub struct SetTokenArgs {
    /// The remote's name.
    pub name: String,
    /// The token; read from stdin when absent or `-`.
    pub token: Option<String>,
}

/// The remotes file of this configuration.
pub(crate) fn store(ctx: &Context) -> RemotesStore {
    RemotesStore::new(ctx.config.remotes_path())
}

/// Whether tokens go into the secrets backend (pass, sops, age) rather than `remotes.toml`.
fn backend_holds_tokens(ctx: &Context) -> bool {
    matches!(
        ctx.config.secrets.backend,
        BackendKind::Pass | BackendKind::Sops | BackendKind::Age
    )
}

/// The remote to use: `--remote`, else `TESSERA_REMOTE`, else the active one.
pub(crate) fn select(ctx: &Context, flag: Option<&str>) -> Result<(String, Remote), CliError> {
    let file = store(ctx).load()?;
    let name = match flag {
        Some(n) => n.to_owned(),
        None => match ctx.env.tessera_var(vars::REMOTE)? {
            Some(n) => n.to_owned(),
            None => match &file.active {
                Some(n) => n.clone(),
                None => {
                    return Err(CliError::new("no remote is selected").with_hint(
                        if file.remotes.is_empty() {
                            "add one with `tessera remotes add NAME URL`"
                        } else {
                            "pass --remote NAME, set TESSERA_REMOTE, or run `tessera remotes use NAME`"
                        },
                    ));
                }
            },
        },
    };
    validate_name(&name)?;
    let remote = file.get(&name)?.clone();
    Ok((name, remote))
}

/// A client for a remote.
pub(crate) fn client_for(remote: &Remote) -> Result<Client, CliError> {
    Ok(Client::new(&remote.url, remote.insecure)?)
}

/// Where a remote's token is kept, in words.
pub(crate) fn token_place(remote: &Remote) -> Option<String> {
    match (&remote.token_backend, &remote.token) {
        (Some(b), _) => Some(format!("{b} backend")),
        (None, Some(_)) => Some("remotes.toml".to_owned()),
        (None, None) => None,
    }
}

/// Stores `token` for remote `name` (backend or file, per the configured backend), under the
/// remotes lock. Returns where it went.
pub(crate) fn save_token(
    ctx: &Context,
    name: &str,
    token: &SecretString,
) -> Result<String, CliError> {
    validate_name(name)?;
    let in_backend = backend_holds_tokens(ctx);
    store(ctx).update(|file: &mut RemotesFile| -> Result<String, CliError> {
        file.get(name)?;
        if in_backend {
            let key = remotes::token_key(name)?;
            ctx.backend()?
                .set(&key, token)
                .map_err(|e| CliError::from(e).context("cannot store the token"))?;
        }
        let remote = file.get_mut(name)?;
        if in_backend {
            remote.token_backend = Some(ctx.config.secrets.backend.as_str().to_owned());
            remote.token = None;
        } else {
            remote.token_backend = None;
            remote.token = Some(StoredToken(token.clone()));
        }
        Ok(token_place(remote).unwrap_or_default())
    })
}

/// The stored token of a remote, if any.
pub(crate) fn load_token(
    ctx: &Context,
    name: &str,
    remote: &Remote,
) -> Result<Option<SecretString>, CliError> {
    if let Some(t) = &remote.token {
        return Ok(Some(t.0.clone()));
    }
    let Some(kind) = &remote.token_backend else {
        return Ok(None);
    };
    if kind != ctx.config.secrets.backend.as_str() {
        return Err(CliError::new(format!(
            "the token of remote `{name}` is in the {kind} backend, but the configured backend is {}",
            ctx.config.secrets.backend
        ))
        .with_hint(format!("log in again with `tessera auth login --remote {name}`")));
    }
    let key = remotes::token_key(name)?;
    ctx.backend()?
        .get_optional(&key)
        .map_err(|e| CliError::from(e).context(format!("cannot read the token of remote `{name}`")))
}

/// The token to send to a remote: `TESSERA_TOKEN`, else the stored one. The second value
/// says where it came from.
pub(crate) fn select_token(
    ctx: &Context,
    name: &str,
    remote: &Remote,
) -> Result<(SecretString, String), CliError> {
    if let Some(t) = ctx.env.tessera_var(vars::TOKEN)? {
        return Ok((
            SecretString::from(t.trim().to_owned()),
            vars::TOKEN.to_owned(),
        ));
    }
    match load_token(ctx, name, remote)? {
        Some(t) => Ok((t, token_place(remote).unwrap_or_default())),
        None => Err(CliError::new(format!(
            "not logged in to remote `{name}` ({})",
            crate::term::safe(&remote.url)
        ))
        .with_code(ErrorCode::NotFound)
        .with_hint(format!(
            "run `tessera auth login --remote {name}`, or set TESSERA_TOKEN"
        ))),
    }
}

/// Forgets the stored token of `name`; true when there was one.
pub(crate) fn forget_token(ctx: &Context, name: &str) -> Result<bool, CliError> {
    store(ctx).update(|file: &mut RemotesFile| -> Result<bool, CliError> {
        let remote = file.get_mut(name)?;
        let had = remote.has_token();
        if remote.token_backend.take().is_some() {
            let key = remotes::token_key(name)?;
            match ctx.backend()?.delete(&key) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(CliError::from(e).context("cannot delete the stored token")),
            }
        }
        remote.token = None;
        Ok(had)
    })
}

/// A token given on the command line or stdin: one line of printable ASCII.
pub(crate) fn check_token_text(token: &SecretString) -> Result<(), CliError> {
    let t = token.expose_secret();
    if t.is_empty()
        || t.len() > crate::token::MAX_TOKEN_LEN
        || !t.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(CliError::usage(
            "that does not look like a token (one line of printable characters, no spaces)",
        ));
    }
    Ok(())
}

/// Runs a `tessera remotes` command.
pub fn run(ctx: &Context, cmd: RemotesCommand) -> Result<(), CliError> {
    match cmd {
        RemotesCommand::Add(a) => add(ctx, a),
        RemotesCommand::List => list(ctx),
        RemotesCommand::Remove(a) => remove(ctx, &a.name),
        RemotesCommand::Use(a) => use_remote(ctx, &a.name),
        RemotesCommand::SetToken(a) => set_token(ctx, a),
    }
}

fn add(ctx: &Context, args: AddArgs) -> Result<(), CliError> {
    validate_name(&args.name)?;
    let url = normalize_url(&args.url, args.insecure)?;
    // Fail early on a bad or existing name, before talking to the network.
    if store(ctx).load()?.remotes.contains_key(&args.name) {
        return Err(RemotesError::Exists(args.name).into());
    }
    if !args.no_verify {
        Client::new(&url, args.insecure)?.health()?;
    }
    let name = args.name.clone();
    let active = store(ctx).update(|file: &mut RemotesFile| -> Result<bool, CliError> {
        if file.remotes.contains_key(&name) {
            return Err(RemotesError::Exists(name.clone()).into());
        }
        file.remotes
            .insert(name.clone(), Remote::new(url.clone(), args.insecure));
        let make_active = file.active.is_none();
        if make_active {
            file.active = Some(name.clone());
        }
        Ok(make_active)
    })?;
    if args.insecure {
        ctx.out.warn(&format!(
            "remote `{name}` skips TLS certificate checks (--insecure)"
        ));
    }
    if ctx.out.json {
        return ctx.out.json(&json!({
            "remote": name, "url": url, "insecure": args.insecure, "active": active,
        }));
    }
    ctx.out.note(&format!(
        "added remote `{name}` ({url}){}; log in with `tessera auth login --remote {name}`",
        if active {
            ", now the active remote"
        } else {
            ""
        }
    ));
    Ok(())
}

fn list(ctx: &Context) -> Result<(), CliError> {
    let file = store(ctx).load()?;
    if ctx.out.json {
        let items: Vec<_> = file
            .remotes
            .iter()
            .map(|(name, r)| {
                json!({
                    "name": name,
                    "url": r.url,
                    "insecure": r.insecure,
                    "active": file.active.as_deref() == Some(name),
                    "token": token_place(r),
                })
            })
            .collect();
        return ctx.out.json(&json!(items));
    }
    if file.remotes.is_empty() {
        ctx.out
            .note("no remotes; add one with `tessera remotes add NAME URL`");
        return Ok(());
    }
    ctx.out
        .line(&format!("  {:<20} {:<40} TOKEN", "NAME", "URL"))?;
    for (name, r) in &file.remotes {
        let mark = if file.active.as_deref() == Some(name) {
            "*"
        } else {
            " "
        };
        // remotes.toml can be edited by hand: never let it drive the terminal.
        let url = crate::term::safe(&r.url);
        let url = if r.insecure {
            format!("{url} (insecure)")
        } else {
            url.into_owned()
        };
        ctx.out.line(&format!(
            "{mark} {name:<20} {url:<40} {}",
            token_place(r).unwrap_or_else(|| "-".to_owned())
        ))?;
    }
    Ok(())
}

fn remove(ctx: &Context, name: &str) -> Result<(), CliError> {
    validate_name(name)?;
    let had_token = forget_token(ctx, name)?;
    let was_active = store(ctx).update(|file: &mut RemotesFile| -> Result<bool, CliError> {
        file.get(name)?;
        file.remotes.remove(name);
        let was_active = file.active.as_deref() == Some(name);
        if was_active {
            file.active = None;
        }
        Ok(was_active)
    })?;
    if ctx.out.json {
        return ctx.out.json(&json!({
            "remote": name, "removed": true, "had_token": had_token, "was_active": was_active,
        }));
    }
    ctx.out
        .note(&format!("removed remote `{name}` and its stored token"));
    Ok(())
}

fn use_remote(ctx: &Context, name: &str) -> Result<(), CliError> {
    validate_name(name)?;
    store(ctx).update(|file: &mut RemotesFile| -> Result<(), CliError> {
        file.get(name)?;
        file.active = Some(name.to_owned());
        Ok(())
    })?;
    if ctx.out.json {
        return ctx.out.json(&json!({"remote": name, "active": true}));
    }
    ctx.out.note(&format!("`{name}` is now the active remote"));
    Ok(())
}

fn set_token(ctx: &Context, args: SetTokenArgs) -> Result<(), CliError> {
    validate_name(&args.name)?;
    let token = match args.token.as_deref() {
        None | Some("-") => read_stdin_secret("token")?,
        Some(t) => {
            ctx.out.warn(
                "a token given as an argument is visible to other processes; pipe it on stdin instead",
            );
            SecretString::from(t.trim().to_owned())
        }
    };
    check_token_text(&token)?;
    let place = save_token(ctx, &args.name, &token)?;
    if ctx.out.json {
        return ctx
            .out
            .json(&json!({"remote": args.name, "stored_in": place}));
    }
    ctx.out.note(&format!(
        "stored the token of remote `{}` in {place}",
        args.name
    ));
    Ok(())
}
