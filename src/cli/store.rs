//! `tessera store check` and `tessera store migrate`: the token store's engine, schema and
//! contents, and copying an SQLite store into PostgreSQL.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::Context;
use crate::cli::error::CliError;
use crate::store::settings::{StoreEngine, check_url};
use crate::store::{self, migrate};

/// The token store: which engine, which schema, how many rows; moving to PostgreSQL.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Report the engine, where the store is, its schema version and the rows of each table.
    ///
    /// Opens the store that `[store]` names (creating an SQLite store, or the tables of a
    /// PostgreSQL database, when missing, like every other command), checks that it answers
    /// and prints what it holds. Exit code 1 when it cannot be reached or is of a newer
    /// schema. With --json: {"engine","location","schema_version","known_version","rows":{...},
    /// "healthy"}.
    #[command(after_help = "EXAMPLES:
  tessera store check
  tessera store check --json | jq .rows.tokens
  tessera --config /etc/tessera/replica.toml store check")]
    Check,
    /// Copy an SQLite token store into PostgreSQL.
    ///
    /// Reads the SQLite store (the configured one, or --from FILE) and copies every token
    /// record, revocation, cut-off, single-use mark and login failure counter into the
    /// PostgreSQL database at --to, creating its tables when missing. Idempotent: a row
    /// already there is left alone (a used mark is added, a cut-off only moves forward), so
    /// running it twice copies nothing twice, and it is safe while replicas already use the
    /// database. Then set `[store] engine = "postgres"` and `url` in the config of every
    /// replica and CLI.
    ///
    /// The URL never carries the password: set TESSERA_STORE_PASSWORD (in the environment,
    /// never on the command line), or store it in the
    /// secrets backend under tessera/store/password. `?sslmode=require` (or verify-full)
    /// turns TLS on, verified against the system's CAs or `[store] ca_file`.
    #[command(after_help = "EXAMPLES:
  tessera store migrate --to postgres://tessera@db.internal:5432/tessera
  tessera store migrate --to 'postgres://tessera@db:5432/tessera?sslmode=require'
  tessera --json store migrate --from /srv/tokens.db --to postgres://tessera@db/tessera")]
    Migrate(MigrateArgs),
}

/// Arguments of `tessera store migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The PostgreSQL database to copy into: postgres://USER@HOST:PORT/DATABASE.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// The SQLite store to copy (default: the configured one, $XDG_DATA_HOME/tessera/tokens.db).
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
}

/// Runs a `tessera store` command.
pub fn run(ctx: &Context, cmd: StoreCommand) -> Result<(), CliError> {
    match cmd {
        StoreCommand::Check => check(ctx),
        StoreCommand::Migrate(args) => migrate(ctx, args),
    }
}

fn check(ctx: &Context) -> Result<(), CliError> {
    let store = store::open(&ctx.config)?;
    store.health()?;
    let report = store.report()?;
    if ctx.out.json {
        let mut v = serde_json::to_value(&report).map_err(|e| CliError::new(e.to_string()))?;
        v["healthy"] = json!(true);
        return ctx.out.json(&v);
    }
    ctx.out
        .line(&format!("engine:          {}", report.engine))?;
    ctx.out
        .line(&format!("location:        {}", report.location))?;
    ctx.out.line(&format!(
        "schema version:  {} (this tessera writes {})",
        report.schema_version, report.known_version
    ))?;
    for (table, n) in &report.rows {
        ctx.out.line(&format!("{table:<17}{n}"))?;
    }
    Ok(())
}

fn migrate(ctx: &Context, args: MigrateArgs) -> Result<(), CliError> {
    let (url, sslmode) = check_url(&args.to).map_err(|m| CliError::usage(format!("--to {m}")))?;
    let from = args
        .from
        .clone()
        .unwrap_or_else(|| ctx.config.token_store_path());
    let dump = migrate::read_sqlite(&from)?;
    let mut config = ctx.config.clone();
    config.store.engine = StoreEngine::Postgres;
    config.store.url = url;
    config.store.sslmode = sslmode;
    let target = store::open_postgres(&config)?;
    let copied = target.import(dump)?;
    let total: u64 = copied.values().sum();
    if ctx.out.json {
        return ctx.out.json(&json!({
            "from": from.display().to_string(),
            "to": target.location(),
            "copied": copied,
        }));
    }
    for (table, n) in &copied {
        ctx.out.line(&format!("{table:<17}{n} copied"))?;
    }
    ctx.out.note(&format!(
        "copied {total} rows from {} to {}{}",
        from.display(),
        target.location(),
        if total == 0 {
            " (everything was there already)"
        } else {
            ""
        }
    ));
    Ok(())
}
