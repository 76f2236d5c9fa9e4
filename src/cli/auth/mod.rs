//! `tessera auth ...`: tokens and passwords.

mod password;
mod token;

use clap::Subcommand;

use super::Context;
use crate::error::CliError;

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Mint, verify, list and revoke tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// bcrypt password hashes for password login.
    #[command(subcommand)]
    Password(password::PasswordCommand),
}

pub fn run(ctx: &Context, cmd: AuthCommand) -> Result<(), CliError> {
    match cmd {
        AuthCommand::Token(c) => token::run(ctx, c),
        AuthCommand::Password(c) => password::run(ctx, c),
    }
}
