//! `tessera completions SHELL` and `tessera man`, generated from the same clap definitions.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use serde_json::json;

use super::{Cli, Output};
use crate::cli::error::CliError;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command (tessera.1, tessera-auth-token-generate.1, ...) into DIR
    /// instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<std::path::PathBuf>,
}

pub fn completions(args: &CompletionsArgs, out: &Output) -> Result<(), CliError> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "tessera", &mut buf);
    let text = String::from_utf8_lossy(&buf);
    if out.json {
        return out.json(&json!({"shell": args.shell.to_string(), "script": text}));
    }
    out.line(text.trim_end())
}

pub fn man(args: &ManArgs, out: &Output) -> Result<(), CliError> {
    let cmd = Cli::command();
    match &args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            clap_mangen::generate_to(cmd, dir).map_err(|e| {
                CliError::new(format!("cannot write man pages to {}: {e}", dir.display()))
            })?;
            if out.json {
                return out.json(&json!({"dir": dir.display().to_string()}));
            }
            Ok(())
        }
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut buf)?;
            let text = String::from_utf8_lossy(&buf);
            if out.json {
                return out.json(&json!({"man": text}));
            }
            out.line(text.trim_end())
        }
    }
}
