//! `tessera auth password hash`.

use clap::{Args, Subcommand};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::cli::Context;
use crate::cli::error::CliError;
use crate::cli::io::{prompt_hidden, read_stdin_line, stdin_is_terminal};
use crate::password::{self, DEFAULT_COST};

#[derive(Debug, Subcommand)]
pub enum PasswordCommand {
    /// Print a bcrypt hash of a password (prompted twice without echo, or one line from
    /// stdin with --stdin). The hash is accepted by htpasswd-compatible servers. Passwords
    /// over 72 bytes are refused, never truncated.
    #[command(after_help = "EXAMPLES:
  tessera auth password hash  # prompts twice, prints the hash
  printf '%s\\n' \"$PW\" | tessera auth password hash --stdin --store")]
    Hash(HashArgs),
}

#[derive(Debug, Args)]
pub struct HashArgs {
    /// Read the password as one line from stdin instead of prompting.
    #[arg(long)]
    pub stdin: bool,
    /// bcrypt cost (10 to 31; each step doubles the work).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_COST)]
    pub cost: u32,
    /// Write the hash to the configured `auth.password_hash` key instead of printing it.
    #[arg(long)]
    pub store: bool,
}

pub fn run(ctx: &Context, cmd: PasswordCommand) -> Result<(), CliError> {
    let PasswordCommand::Hash(args) = cmd;
    // Before asking for the password: a cost the server would refuse is refused here.
    password::check_cost(args.cost)?;
    let pw = if args.stdin || !stdin_is_terminal() {
        read_stdin_line("password")?
    } else {
        let first = prompt_hidden("Password: ")?;
        let second = prompt_hidden("Retype password: ")?;
        if first.expose_secret() != second.expose_secret() {
            return Err(CliError::new("the two passwords do not match"));
        }
        first
    };
    let hash = password::hash(&pw, args.cost)?;
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
