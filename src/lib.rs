//! tessera: scoped tokens, secrets backends and a Docker registry token server.
//!
//! The binary is a thin shell over this library: `main` calls [`cli::main`], which parses the
//! arguments, runs the command and returns the exit code.

pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod duration;
pub mod http;
pub mod keyring;
pub mod password;
pub mod registry;
pub mod remotes;
pub mod scope;
pub mod store;
pub(crate) mod term;
pub mod tls;
pub mod token;

pub use tessera_backends as backends;
