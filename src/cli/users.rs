//! `tessera users list|passwd|check`: the users of the configuration (contract section 9).

use clap::{Args, Subcommand};
use serde_json::json;

use crate::auth::users::{Directory, Source, User};
use crate::cli::Context;
use crate::cli::error::{CliError, ErrorCode};

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List the users: name, roles, effective scopes, where the password hash lives and
    /// whether it is there.
    ///
    /// The users are those of `[[auth.users]]` and the single user of `auth.username`. A user
    /// whose hash is missing cannot log in until `tessera users passwd NAME` stores one. The
    /// server reads hashes when it starts: restart it after a change.
    #[command(after_help = "EXAMPLES:
  tessera users list
  tessera users list --json | jq -r '.users[] | select(.hash_present | not) | .name'")]
    List,
    /// Store a new password hash for a user, at the user's key path in the secrets backend.
    ///
    /// The password is prompted twice without echo, or read as one line from stdin with
    /// --stdin. The hash is argon2id (m=19456 KiB, t=2, p=1) unless --bcrypt. A running
    /// server reads it when it next starts.
    #[command(after_help = "EXAMPLES:
  tessera users passwd alice                 # prompts twice
  printf '%s\\n' \"$PW\" | tessera users passwd alice --stdin
  tessera users passwd alice --bcrypt         # htpasswd-compatible hash")]
    Passwd(PasswdArgs),
    /// Explain a user's effective scopes, role by role.
    ///
    /// Each role (built-in or `[auth.roles.NAME]`) and the user's own `scopes` are shown as
    /// written and as granted to this user (`${user}` replaced by its name); the effective
    /// scopes are their union, and password logins and sessions get at most those.
    #[command(after_help = "EXAMPLES:
  tessera users check alice
  tessera users check alice --json | jq -r '.scopes[]'")]
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// The user (as in `[[auth.users]] name`, or `auth.username`).
    pub name: String,
    /// Read the password as one line from stdin instead of prompting.
    #[arg(long)]
    pub stdin: bool,
    /// Make a bcrypt hash (htpasswd-compatible) instead of argon2id.
    #[arg(long)]
    pub bcrypt: bool,
    /// bcrypt cost (10 to 31, default 12). Implies --bcrypt.
    #[arg(long, value_name = "N")]
    pub cost: Option<u32>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The user.
    pub name: String,
}

pub fn run(ctx: &Context, cmd: UsersCommand) -> Result<(), CliError> {
    let directory = Directory::from_config(&ctx.config.auth).map_err(|e| {
        CliError::new(format!("`auth.login_scopes`: {e}")).with_code(ErrorCode::Config)
    })?;
    match cmd {
        UsersCommand::List => list(ctx, &directory),
        UsersCommand::Passwd(args) => passwd(ctx, &directory, args),
        UsersCommand::Check(args) => check(ctx, &directory, &args.name),
    }
}

fn find<'a>(directory: &'a Directory, name: &str) -> Result<&'a User, CliError> {
    directory.get(name).ok_or_else(|| {
        let shown = crate::term::escaped_head(name, 40);
        CliError::new(format!("there is no user `{shown}` in the configuration"))
            .with_code(ErrorCode::NotFound)
            .with_hint(
                "add a `[[auth.users]]` entry with `name`, `roles` and `password_hash`; `tessera users list` shows the users",
            )
    })
}

fn source_name(source: &Source) -> String {
    match source {
        Source::Role {
            name,
            builtin: true,
        } => format!("role {name} (built-in)"),
        Source::Role { name, .. } => format!("role {name} ([auth.roles.{name}])"),
        Source::Extra => "own scopes".to_owned(),
        Source::LoginScopes => "auth.login_scopes".to_owned(),
    }
}

fn list(ctx: &Context, directory: &Directory) -> Result<(), CliError> {
    let backend = ctx.backend()?;
    let mut rows = Vec::new();
    for u in directory.iter() {
        let present = backend.get_optional(&u.password_hash)?.is_some();
        rows.push((u, present));
    }
    if ctx.out.json {
        let users: Vec<_> = rows
            .iter()
            .map(|(u, present)| {
                json!({
                    "name": u.name,
                    "roles": u.roles,
                    "scopes": u.scopes.to_strings(),
                    "password_hash": u.password_hash.as_str(),
                    "hash_present": present,
                    "single_user_keys": u.single_user_keys,
                })
            })
            .collect();
        return ctx
            .out
            .json(&json!({"users": users, "backend": backend.name()}));
    }
    if rows.is_empty() {
        ctx.out.note(
            "no users: add `[[auth.users]]` entries (or `auth.username`) to the config; see docs/users.md",
        );
        return Ok(());
    }
    for (u, present) in rows {
        let roles = if u.single_user_keys {
            "(auth.username)".to_owned()
        } else if u.roles.is_empty() {
            "-".to_owned()
        } else {
            u.roles.join(",")
        };
        let hash = if present {
            "hash present"
        } else {
            "NO HASH (run `tessera users passwd`)"
        };
        ctx.out.line(&format!(
            "{}\troles: {roles}\tscopes: {}\t{} in {}: {hash}",
            crate::term::safe(&u.name),
            u.scopes.to_strings().join(" "),
            u.password_hash,
            backend.name()
        ))?;
    }
    Ok(())
}

fn passwd(ctx: &Context, directory: &Directory, args: PasswdArgs) -> Result<(), CliError> {
    let user = find(directory, &args.name)?;
    let (hash, kind) = crate::cli::auth::password::new_hash(
        args.bcrypt,
        args.cost,
        args.stdin,
        &format!("New password for {}: ", user.name),
    )?;
    let backend = ctx.backend()?;
    backend.set(&user.password_hash, &hash)?;
    if ctx.out.json {
        return ctx.out.json(&json!({
            "user": user.name,
            "stored": user.password_hash.as_str(),
            "backend": backend.name(),
            "kind": kind,
        }));
    }
    ctx.out.note(&format!(
        "stored a new password hash for `{}` at `{}` in the {} backend; a running server uses it after a restart",
        crate::term::safe(&user.name),
        user.password_hash,
        backend.name()
    ));
    Ok(())
}

fn check(ctx: &Context, directory: &Directory, name: &str) -> Result<(), CliError> {
    let user = find(directory, name)?;
    if ctx.out.json {
        let parts: Vec<_> = user
            .parts
            .iter()
            .map(|p| {
                let (kind, role, builtin) = match &p.source {
                    Source::Role { name, builtin } => ("role", Some(name.as_str()), *builtin),
                    Source::Extra => ("scopes", None, false),
                    Source::LoginScopes => ("login_scopes", None, false),
                };
                json!({
                    "from": kind,
                    "role": role,
                    "builtin": builtin,
                    "written": p.written,
                    "grants": p.scopes.to_strings(),
                })
            })
            .collect();
        return ctx.out.json(&json!({
            "name": user.name,
            "roles": user.roles,
            "parts": parts,
            "scopes": user.scopes.to_strings(),
        }));
    }
    let mut text = format!("user {}\n", crate::term::safe(&user.name));
    for p in &user.parts {
        text.push_str(&format!(
            "  {}: {}\n    grants: {}\n",
            source_name(&p.source),
            p.written.join(", "),
            p.scopes.to_strings().join(" ")
        ));
    }
    if user.parts.is_empty() {
        text.push_str("  no roles and no scopes: its logins get tokens that allow nothing\n");
    }
    text.push_str(&format!(
        "effective scopes: {}",
        user.scopes.to_strings().join(" ")
    ));
    ctx.out.line(&text)
}
