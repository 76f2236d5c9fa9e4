//! `tessera auth ...`: tokens, password hashes, and logins to remote tessera servers.

mod exchange;
mod key;
pub(crate) mod login;
pub(crate) mod password;
mod token;

use clap::Subcommand;

use super::Context;
use crate::cli::error::CliError;

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Mint, verify, list and revoke tokens.
    #[command(subcommand)]
    #[command(after_help = "EXAMPLES:
  tessera auth token generate --subject ci --scopes push,pull --expiry 30d
  tessera auth token list
  tessera auth token revoke --subject ci")]
    Token(token::TokenCommand),
    /// API keys: create, list, show, disable, enable, revoke, rotate (local store, or a
    /// server with --remote), and argon2id-hashed keys for the config.
    #[command(subcommand)]
    #[command(after_help = "EXAMPLES:
  tessera auth key create --name ci --subject ci --scopes pull --expiry 90d
  tessera auth key list
  tessera auth key rotate ci --grace 1h
  tessera auth key revoke ci")]
    Key(key::KeyCommand),
    /// Password hashes (argon2id, or bcrypt) for password login.
    #[command(subcommand)]
    #[command(after_help = "EXAMPLES:
  tessera auth password hash --store  # prompts twice; enables login with auth.username")]
    Password(password::PasswordCommand),
    /// Log in to a remote tessera server and store its token for that remote.
    ///
    /// Prompts for a username and password (or takes --username U --password-stdin), and
    /// exchanges them at the remote for a token. With --token-stdin, --token-file or --token,
    /// stores a token you already have, once the remote confirms it is valid. The token is
    /// kept in the secrets backend for pass, sops and age, else in remotes.toml (mode 0600).
    #[command(after_help = "EXAMPLES:
  tessera auth login --remote prod  # prompts for username and password
  printf '%s\\n' \"$PW\" | tessera auth login --remote prod --username deploy --password-stdin
  tessera auth token generate --subject ci | tessera auth login --remote prod --token-stdin")]
    Login(login::LoginArgs),
    /// Forget the stored token of a remote; with --revoke, revoke it on the server first.
    #[command(after_help = "EXAMPLES:
  tessera auth logout --remote prod
  tessera auth logout --remote prod --revoke  # revoke it on the server first")]
    Logout(login::LogoutArgs),
    /// Ask the remote about the token (TESSERA_TOKEN, else the stored one): its real
    /// subject, scopes and expiry. Exit 1 when the remote refuses it.
    #[command(after_help = "EXAMPLES:
  tessera auth status --remote prod
  TESSERA_TOKEN=\"$TOKEN\" tessera --json auth status --remote prod")]
    Status(login::RemoteArg),
    /// Exchange a CI job's OIDC ID token for a short-lived token of a remote (workload
    /// identity: no stored secret in CI).
    ///
    /// The remote checks the ID token against its [[auth.trust]] policies (issuer, audience,
    /// claims such as the repository and ref) and issues a token with the policy's subject,
    /// scopes and expiry (at most 1 h). An ID token is exchanged once. The token is stored for
    /// the remote like `auth login` does, or printed with --print.
    #[command(after_help = "EXAMPLES:
  tessera auth exchange --remote prod --github-actions   # in a GitHub or Forgejo Actions job
  tessera auth exchange --remote prod --id-token-file /var/run/secrets/tokens/tessera   # Kubernetes
  printf '%s' \"$ID_TOKEN\" | tessera auth exchange --remote prod --id-token-stdin --print
  tessera auth token show --remote prod | docker login -u ci --password-stdin registry.example.com")]
    Exchange(exchange::ExchangeArgs),
    /// Workload identity policies ([[auth.trust]]): test an ID token against them.
    #[command(subcommand)]
    #[command(after_help = "EXAMPLES:
  tessera auth trust test \"$ID_TOKEN\"   # which policy accepts it, and why the others do not")]
    Trust(exchange::TrustCommand),
}

pub fn run(ctx: &Context, cmd: AuthCommand) -> Result<(), CliError> {
    match cmd {
        AuthCommand::Token(c) => token::run(ctx, c),
        AuthCommand::Key(c) => key::run(ctx, c),
        AuthCommand::Password(c) => password::run(ctx, c),
        AuthCommand::Login(a) => login::login(ctx, a),
        AuthCommand::Logout(a) => login::logout(ctx, a),
        AuthCommand::Status(a) => login::status(ctx, a),
        AuthCommand::Exchange(a) => exchange::exchange(ctx, a),
        AuthCommand::Trust(c) => exchange::trust(ctx, c),
    }
}
