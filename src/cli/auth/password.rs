//! `tessera auth password hash`.

use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::cli::Context;
use crate::cli::error::CliError;
use crate::cli::io::{prompt_hidden, read_stdin_line, stdin_is_terminal};
use crate::password::{self, DEFAULT_COST};

#[derive(Debug, Subcommand)]
pub enum PasswordCommand {
    /// Print an argon2id hash of a password (prompted twice without echo, or one line from
    /// stdin with --stdin), with m=19456 KiB, t=2, p=1. With --bcrypt (or --cost), a bcrypt
    /// hash instead, which htpasswd-compatible servers accept; bcrypt passwords over 72 bytes
    /// are refused, never truncated.
    #[command(after_help = "EXAMPLES:
  tessera auth password hash  # prompts twice, prints an argon2id hash
  printf '%s\\n' \"$PW\" | tessera auth password hash --stdin --store
  tessera auth password hash --bcrypt --cost 12  # for htpasswd-compatible servers")]
    Hash(HashArgs),
}

#[derive(Debug, Args)]
pub struct HashArgs {
    /// Read the password as one line from stdin instead of prompting.
    #[arg(long)]
    pub stdin: bool,
    /// Make a bcrypt hash (htpasswd-compatible) instead of argon2id.
    #[arg(long)]
    pub bcrypt: bool,
    /// bcrypt cost (10 to 31, default 12; each step doubles the work). Implies --bcrypt.
    #[arg(long, value_name = "N")]
    pub cost: Option<u32>,
    /// Write the hash to the configured `auth.password_hash` key instead of printing it.
    #[arg(long)]
    pub store: bool,
}

pub fn run(ctx: &Context, cmd: PasswordCommand) -> Result<(), CliError> {
    let PasswordCommand::Hash(args) = cmd;
    let (hash, _) = new_hash(args.bcrypt, args.cost, args.stdin, "Password: ")?;
    if args.store {
        let key = &ctx.config.auth.password_hash;
        let backend = ctx.backend()?;
        backend.set(key, &hash)?;
        if ctx.out.json {
            return ctx
                .out
                .json(&json!({"stored": key.as_str(), "backend": backend.name()}));
        }
        ctx.out.note(&format!(
            "stored the password hash at `{key}` in the {} backend",
            backend.name()
        ));
        if ctx.config.auth.username.is_none() {
            ctx.out.note(
                "password login stays off until a username is set: run `tessera init --username NAME` (or set `auth.username` in the config)",
            );
        }
        return Ok(());
    }
    if ctx.out.json {
        return ctx.out.json(&json!({"hash": hash.expose_secret()}));
    }
    ctx.out.line(hash.expose_secret())
}

/// A new password hash: the password read from stdin (with `stdin`, or when stdin is not a
/// terminal) or asked twice at the terminal with `prompt`, hashed with argon2id, or with
/// bcrypt when `bcrypt` or a `cost` is given (`--cost` implies bcrypt; a cost the server would
/// refuse is refused before the password is asked). Returns the hash and its kind's name.
pub(crate) fn new_hash(
    bcrypt: bool,
    cost: Option<u32>,
    stdin: bool,
    prompt: &str,
) -> Result<(SecretString, &'static str), CliError> {
    let bcrypt_cost = match (bcrypt, cost) {
        (_, Some(cost)) => Some(cost),
        (true, None) => Some(DEFAULT_COST),
        (false, None) => None,
    };
    if let Some(cost) = bcrypt_cost {
        password::check_cost(cost)?;
    }
    let pw = if stdin || !stdin_is_terminal() {
        read_stdin_line("password")?
    } else {
        let first = prompt_hidden(prompt)?;
        let second = prompt_hidden("Retype password: ")?;
        if first.expose_secret() != second.expose_secret() {
            return Err(CliError::new("the two passwords do not match"));
        }
        first
    };
    Ok(match bcrypt_cost {
        Some(cost) => (password::hash(&pw, cost)?, "bcrypt"),
        None => (password::hash_argon2id(&pw)?, "argon2id"),
    })
}
