//! `tessera serve`: the HTTP server.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;

use clap::Args;

use crate::cli::Context;
use crate::cli::error::CliError;
use crate::http::{self, ServerState, TlsFiles};

/// Arguments of `tessera serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen on ADDR (host:port) instead of `server.bind` (default 127.0.0.1:7390). Port 0
    /// picks a free port; the log says which.
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
}

/// Resolves `host:port` to one socket address.
fn resolve(bind: &str) -> Result<SocketAddr, CliError> {
    let usage = || {
        CliError::usage(format!(
            "cannot use `{bind}` as a listening address; give host:port, e.g. 127.0.0.1:7390 or [::1]:7390"
        ))
    };
    bind.to_socket_addrs()
        .map_err(|_| usage())?
        .next()
        .ok_or_else(usage)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        // A log line that cannot be written (stderr closed or full) is dropped; the default
        // would report that with `eprintln!`, which panics on the same stderr.
        .log_internal_errors(false)
        .try_init();
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing open requests");
}

/// Runs `tessera serve`.
pub fn run(ctx: &Context, args: ServeArgs) -> Result<(), CliError> {
    init_logging();
    let config = &ctx.config;
    let bind = args.bind.as_deref().unwrap_or(&config.server.bind);
    let addr = resolve(bind)?;
    let tls = TlsFiles::from_config(config);
    if let Some(warning) = http::check_bind(config, &addr, tls.is_some())? {
        tracing::warn!("{warning}");
    }
    let state = ServerState::load(config, &ctx.env)?;
    let listener = TcpListener::bind(addr).map_err(|e| {
        CliError::new(format!("cannot listen on {addr}: {e}"))
            .with_hint("pick another address with --bind, or stop what uses this one")
    })?;
    let local = listener.local_addr().unwrap_or(addr);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the async runtime: {e}")))?;
    tracing::info!(
        "listening on {}://{local} (token store {}, password login {})",
        if tls.is_some() { "https" } else { "http" },
        config.token_store_path().display(),
        if config.auth.username.is_some() {
            "on"
        } else {
            "off"
        }
    );
    runtime.block_on(http::serve(
        Arc::new(state),
        listener,
        tls,
        shutdown_signal(),
    ))?;
    tracing::info!("stopped");
    Ok(())
}
