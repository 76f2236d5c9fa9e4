//! Command-line interface: clap definitions (no I/O in them) and one module per command group.

mod auth;
mod completions;
mod credential_helper;
mod init;
mod io;
mod registry;
mod remotes;
mod secrets;
mod serve;
pub(crate) mod term;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tessera_backends::SecretsBackend;

use crate::config::{Config, Env};
use crate::error::CliError;

pub use io::Output;

const AFTER_HELP: &str = "\
EXAMPLES:
  tessera auth token generate --subject ci --scopes push,pull --expiry 30d
  tessera init --backend pass --username deploy
  tessera secrets list
  tessera serve

ENVIRONMENT:
  TESSERA_CONFIG              config file (else $XDG_CONFIG_HOME/tessera/tessera.toml)
  TESSERA_SECRETS_BACKEND     overrides [secrets] backend
  TESSERA_AUTH_TOKEN_SECRET   the raw token signing secret; wins over the backend
  TESSERA_AGE_IDENTITY        age identity file for the age backend
  TESSERA_REMOTE, TESSERA_TOKEN   remote and token selection
A variable that is set but empty is an error.

EXIT STATUS:
  0 success, 1 failure (including an invalid token), 2 usage error.

Docs: docs/ in the source tree (backends, tokens, remotes, server, docker registry, security).";

/// Scoped tokens and secrets for your own container registry and deploy pipelines.
///
/// tessera keeps signing secrets and password hashes in a secrets backend you already trust
/// (pass, sops, plain files or native age files), mints scoped tokens with human durations, and
/// acts as the token server of a Docker registry.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, after_long_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    /// Read the configuration from PATH instead of the default location.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Print machine-readable JSON on stdout where the command has output.
    #[arg(long, global = true)]
    pub json: bool,

    /// Print nothing on stderr but errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a config file and create the token signing secret, if missing.
    Init(init::InitArgs),
    /// Read and write secrets in the configured backend.
    #[command(
        subcommand,
        after_help = "EXAMPLES:
  tessera secrets set app/db --generate 32  # a random value
  tessera secrets get app/db
  tessera secrets check                     # is the backend usable
  tessera secrets move --from unsafe        # out of the plain files"
    )]
    Secrets(secrets::SecretsCommand),
    /// Tokens, passwords, and logins to remote tessera servers.
    #[command(
        subcommand,
        after_help = "EXAMPLES:
  tessera auth token generate --subject ci --scopes pull
  tessera auth token verify \"$TOKEN\"
  tessera auth login --remote prod
  tessera auth status"
    )]
    Auth(auth::AuthCommand),
    /// Manage the remote tessera servers this machine logs in to.
    #[command(
        subcommand,
        after_help = "EXAMPLES:
  tessera remotes add prod https://tessera.example.com
  tessera remotes list
  tessera remotes use prod"
    )]
    Remotes(remotes::RemotesCommand),
    /// Run the HTTP server: password login, token verification, refresh, revocation and the
    /// admin API for tokens.
    ///
    /// Logs go to stderr (RUST_LOG sets the filter, default `info`); mutating requests get one
    /// audit line each. SIGINT or SIGTERM stops it after open requests finish.
    #[command(after_help = "EXAMPLES:
  tessera serve                      # on server.bind (127.0.0.1:7390)
  tessera serve --bind 0.0.0.0:7390  # every interface (set tls_cert and tls_key)
  RUST_LOG=debug tessera serve       # more detail in the log")]
    Serve(serve::ServeArgs),
    /// The Docker registry token service: signing key, certificate and registry config.
    #[command(
        subcommand,
        after_help = "EXAMPLES:
  tessera registry init           # key, certificate and the registry's auth: block
  tessera registry init --rotate  # a new key; the old certificate stays in the bundle"
    )]
    Registry(registry::RegistryCommand),
    /// The Docker credential-helper protocol (also run as `docker-credential-tessera ACTION`).
    ///
    /// Credentials are kept in the secrets backend under `tessera/docker/HOST/`, never in
    /// ~/.docker/config.json or the containers auth file. Point a registry at it with
    /// `{"credHelpers": {"HOST:PORT": "tessera"}}` and put `docker-credential-tessera` on PATH
    /// (`tessera credential-helper install`).
    #[command(
        subcommand,
        name = "credential-helper",
        after_help = "EXAMPLES:
  tessera credential-helper install  # link docker-credential-tessera into ~/.local/bin
  echo registry.example.com | tessera credential-helper get
  tessera credential-helper list"
    )]
    CredentialHelper(credential_helper::HelperCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "EXAMPLES:
  tessera completions bash > ~/.local/share/bash-completion/completions/tessera
  tessera completions zsh > \"${fpath[1]}/_tessera\"
  tessera completions fish > ~/.config/fish/completions/tessera.fish")]
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff) on stdout.
    #[command(after_help = "EXAMPLES:
  tessera man | man -l -                         # read it now
  tessera man --out-dir ~/.local/share/man/man1  # one page per command")]
    Man(completions::ManArgs),
}

/// What every command gets: the loaded configuration, the environment and output options.
pub struct Context {
    pub config: Config,
    pub env: Env,
    pub out: Output,
    backend: std::cell::OnceCell<Box<dyn SecretsBackend>>,
}

impl Context {
    /// The configured secrets backend, opened on first use.
    pub fn backend(&self) -> Result<&dyn SecretsBackend, CliError> {
        if let Some(b) = self.backend.get() {
            return Ok(b.as_ref());
        }
        let b = tessera_backends::open(self.config.backend_config())?;
        Ok(self.backend.get_or_init(|| b).as_ref())
    }
}

/// Parses the process's arguments, runs the command, prints any error, and returns the exit
/// code.
pub fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let argv0 = args.next();
    let invoked_as = argv0
        .as_deref()
        .map(std::path::Path::new)
        .and_then(std::path::Path::file_name)
        .and_then(|n| n.to_str());
    if invoked_as == Some(credential_helper::HELPER_NAME) {
        return helper_main(args.next().as_deref().and_then(|a| a.to_str()));
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => crate::error::EXIT_USAGE,
            });
        }
    };
    match run(cli, Env::from_process()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.report();
            ExitCode::from(e.exit_code())
        }
    }
}

/// `docker-credential-tessera ACTION`: the protocol's own command line (no flags; the
/// configuration comes from `TESSERA_CONFIG` or the default location).
fn helper_main(action: Option<&str>) -> ExitCode {
    let Some(cmd) = credential_helper::parse_action(action) else {
        eprintln!(
            "usage: {} get|store|erase|list|version (the Docker credential-helper protocol; input on stdin)",
            credential_helper::HELPER_NAME
        );
        return ExitCode::from(crate::error::EXIT_USAGE);
    };
    let cli = Cli {
        config: None,
        json: false,
        quiet: true,
        command: Command::CredentialHelper(cmd),
    };
    match run(cli, Env::from_process()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.report();
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs one parsed command line.
pub fn run(cli: Cli, env: Env) -> Result<(), CliError> {
    let out = Output {
        json: cli.json,
        quiet: cli.quiet,
    };
    // Commands that need no configuration.
    match &cli.command {
        Command::Completions(args) => return completions::completions(args),
        Command::Man(args) => return completions::man(args),
        _ => {}
    }
    let config = match &cli.command {
        Command::Init(args) => init::load_config(cli.config.as_deref(), &env, args)?,
        _ => Config::load(cli.config.as_deref(), &env)?,
    };
    let ctx = Context {
        config,
        env,
        out,
        backend: std::cell::OnceCell::new(),
    };
    match cli.command {
        Command::Init(args) => init::run(&ctx, args),
        Command::Secrets(cmd) => secrets::run(&ctx, cmd),
        Command::Auth(cmd) => auth::run(&ctx, cmd),
        Command::Remotes(cmd) => remotes::run(&ctx, cmd),
        Command::Serve(args) => serve::run(&ctx, args),
        Command::Registry(cmd) => registry::run(&ctx, cmd),
        Command::CredentialHelper(cmd) => credential_helper::run(&ctx, cmd).inspect_err(|e| {
            // The protocol reads errors on stdout; stderr still gets the full report.
            if !e.message().is_empty() {
                println!("{}", e.message());
            }
        }),
        Command::Completions(_) | Command::Man(_) => Ok(()),
    }
}
