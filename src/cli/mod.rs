//! Command-line interface: clap definitions (no I/O in them) and one module per command group.

mod auth;
mod completions;
mod credential_helper;
pub mod error;
mod init;
mod io;
mod registry;
mod remotes;
mod secrets;
mod serve;
mod store;
mod users;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tessera_backends::SecretsBackend;

use crate::cli::error::CliError;
use crate::config::{Config, Env};

pub use io::{Output, write_stderr, write_stdout};

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
    /// The token store: engine, schema version and rows (`check`); copy SQLite into
    /// PostgreSQL (`migrate`).
    #[command(
        subcommand,
        after_help = "EXAMPLES:
  tessera store check --json
  tessera store migrate --to postgres://tessera@db.internal:5432/tessera"
    )]
    Store(store::StoreCommand),
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
    /// Users and roles of the configuration: list them, set a password, explain scopes.
    #[command(
        subcommand,
        after_help = "EXAMPLES:
  tessera users list
  tessera users passwd alice
  tessera users check alice"
    )]
    Users(users::UsersCommand),
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
    pub fn backend(&self) -> Result<&dyn SecretsBackend, tessera_backends::BackendError> {
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
    install_panic_hook();
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
    // `--json` is known before clap has parsed anything, so that usage errors follow it too.
    let json = args.take_while(|a| a != "--").any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(&e, json),
    };
    match run(cli, Env::from_process()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.report(json);
            ExitCode::from(e.exit_code())
        }
    }
}

/// Prints a clap error (or the help or version it stands for) and returns the exit code:
/// 0 for help and version, 2 for usage errors. With `json`, a usage error is one line of
/// JSON on stderr (`{"error","code":"USAGE","hint"}`), the version is `{"name","version"}` on
/// stdout, and a command group run without a subcommand is a usage error too (there is no
/// result to print).
fn clap_error(e: &clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    match (e.kind(), json) {
        (ErrorKind::DisplayVersion, true) => {
            let v = serde_json::json!({"name": "tessera", "version": env!("CARGO_PKG_VERSION")});
            return match write_stdout(&format!("{v}\n")) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    e.report(true);
                    ExitCode::from(e.exit_code())
                }
            };
        }
        (ErrorKind::DisplayHelp | ErrorKind::DisplayVersion, _)
        | (ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand, false) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        (_, false) => {
            let _ = e.print();
            return ExitCode::from(crate::cli::error::EXIT_USAGE);
        }
        (_, true) => {}
    }
    let err = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        CliError::usage("this command needs a subcommand")
            .with_hint("run it with --help to see them")
    } else {
        usage_from_clap(e)
    };
    err.report(true);
    ExitCode::from(crate::cli::error::EXIT_USAGE)
}

/// A clap usage error as one sentence (the lines before `Usage:`, without `error: `), with
/// clap's tips as the hint.
fn usage_from_clap(e: &clap::Error) -> CliError {
    let text = e.render().to_string();
    let mut sentence = Vec::new();
    let mut tips = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") {
            break;
        }
        if let Some(tip) = line.strip_prefix("tip:") {
            tips.push(tip.trim().to_owned());
        } else if !line.is_empty() {
            sentence.push(
                line.strip_prefix("error:")
                    .unwrap_or(line)
                    .trim()
                    .to_owned(),
            );
        }
    }
    tips.push("see --help".to_owned());
    CliError::usage(sentence.join(" ")).with_hint(tips.join("; "))
}

/// Replaces the default panic message: a panic is a bug, and its message could quote a value
/// that is a secret, so only the place is shown (and a backtrace when RUST_BACKTRACE asks for
/// one, which holds function names, not values). Writing to a closed stderr is ignored.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let mut text = panic_report(info.location());
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            text.push_str(&format!("{}\n", std::backtrace::Backtrace::force_capture()));
        }
        write_stderr(&text);
    }));
}

/// What the panic hook prints for a panic at `location`: never the panic's message.
fn panic_report(location: Option<&std::panic::Location<'_>>) -> String {
    let place = location.map_or_else(
        || "an unknown place".to_owned(),
        |l| format!("{}:{}", l.file(), l.line()),
    );
    format!(
        "error: internal error at {place} (a bug in tessera; please report it). The panic message is not shown because it could contain a secret.\n"
    )
}

/// `docker-credential-tessera ACTION`: the protocol's own command line (no flags; the
/// configuration comes from `TESSERA_CONFIG` or the default location).
fn helper_main(action: Option<&str>) -> ExitCode {
    let Some(cmd) = credential_helper::parse_action(action) else {
        write_stderr(&format!(
            "usage: {} get|store|erase|list|version (the Docker credential-helper protocol; input on stdin)\n",
            credential_helper::HELPER_NAME
        ));
        return ExitCode::from(crate::cli::error::EXIT_USAGE);
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
            e.report(false);
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs one parsed command line. Under `--json`, a command that succeeds has printed exactly
/// one JSON document on stdout: its own, or `{"ok":true}` when it has no result to report.
pub fn run(cli: Cli, env: Env) -> Result<(), CliError> {
    let out = Output::new(cli.json, cli.quiet);
    // Commands that need no configuration.
    match &cli.command {
        Command::Completions(args) => return completions::completions(args, &out),
        Command::Man(args) => return completions::man(args, &out),
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
    let json = ctx.out.json;
    match cli.command {
        Command::Init(args) => init::run(&ctx, args),
        Command::Secrets(cmd) => secrets::run(&ctx, cmd),
        Command::Auth(cmd) => auth::run(&ctx, cmd),
        Command::Remotes(cmd) => remotes::run(&ctx, cmd),
        Command::Serve(args) => serve::run(&ctx, args),
        Command::Registry(cmd) => registry::run(&ctx, cmd),
        Command::Users(cmd) => users::run(&ctx, cmd),
        Command::Store(cmd) => store::run(&ctx, cmd),
        Command::CredentialHelper(cmd) => credential_helper::run(&ctx, cmd).map_err(|e| {
            if json || e.is_silent() {
                return e;
            }
            // The protocol reads errors on stdout; stderr still gets the full report, except
            // for the protocol's plain miss.
            let _ = write_stdout(&format!("{}\n", e.message()));
            if e.code() == crate::cli::error::ErrorCode::NotFound {
                CliError::silent(e.exit_code())
            } else {
                e
            }
        }),
        Command::Completions(_) | Command::Man(_) => Ok(()),
    }?;
    if ctx.out.json && !ctx.out.json_written() {
        ctx.out.json(&serde_json::json!({"ok": true}))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_panic_report_names_the_place_and_never_the_message() {
        use std::sync::Mutex;
        static SEEN: Mutex<Option<String>> = Mutex::new(None);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|info| {
            *SEEN.lock().unwrap_or_else(|e| e.into_inner()) = Some(panic_report(info.location()));
        }));
        let secret = "hunter2-secret-value";
        let result = std::panic::catch_unwind(|| panic!("the secret is {secret}"));
        std::panic::set_hook(previous);
        assert!(result.is_err());
        let seen = SEEN.lock().unwrap().clone().unwrap();
        assert!(!seen.contains(secret), "{seen}");
        assert!(seen.contains("internal error at src/cli/mod.rs:"), "{seen}");
    }

    #[test]
    fn clap_usage_errors_become_one_sentence_and_a_hint() {
        let e = Cli::try_parse_from(["tessera", "auth", "token", "generate"]).unwrap_err();
        let err = usage_from_clap(&e);
        assert_eq!(err.exit_code(), crate::cli::error::EXIT_USAGE);
        assert!(err.message().contains("--subject"), "{}", err.message());
        assert!(!err.message().contains("Usage:"), "{}", err.message());
        let v = err.to_json();
        assert_eq!(v["code"], "USAGE");
    }
}
