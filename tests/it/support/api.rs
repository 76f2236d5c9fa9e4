//! Every use of the library's server and registry API by the tests, behind small functions:
//! when those modules move or are renamed, this file is the one place to change.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use tessera::config::{Config, Env};
use tessera::store::TokenStore;
use tessera::token::KeyRing;

pub use tessera::http::extract::basic as parse_basic;
pub use tessera::http::{FIRST_REQUEST_TIMEOUT, HEADER_READ_TIMEOUT, WRITE_TIMEOUT};
pub use tessera::registry::token::{MAX_SCOPES, grant, parse_scope};

/// The tessera server running in this process; it stops when dropped.
pub type RunningServer = tessera::http::RunningServer;

/// Installs the TLS crypto provider the HTTP clients of the tests use.
pub fn install_crypto_provider() {
    tessera::http::install_crypto_provider();
}

/// The server in this process on 127.0.0.1:0, loaded like `tessera serve`, with TLS when
/// `tls` names a certificate and key.
pub fn serve(config: &Config, env: &Env, tls: Option<(PathBuf, PathBuf)>) -> RunningServer {
    let state = tessera::http::ServerState::load(config, env).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let tls = tls.map(|(cert, key)| tessera::http::TlsFiles { cert, key });
    tessera::http::spawn(state, listener, tls).unwrap()
}

/// The server in this process on 127.0.0.1:0 with the given keys and token store.
pub fn serve_with_store(
    config: &Config,
    keys: KeyRing,
    store: Arc<dyn TokenStore>,
) -> RunningServer {
    let state = tessera::http::ServerState::from_parts(config, keys, store);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    tessera::http::spawn(state, listener, None).unwrap()
}

/// Why the server refuses to start with this configuration, in full (the message, the
/// error's `Debug` form and its hint); `None` when it would start.
pub fn start_error(config: &Config, env: &Env) -> Option<String> {
    match tessera::http::ServerState::load(config, env) {
        Ok(_) => None,
        Err(e) => Some(format!(
            "{e}\n{e:?}\nhint: {}",
            e.hint().unwrap_or_default()
        )),
    }
}

/// The whole server state, loaded like `tessera serve` does (for its `Debug` output).
pub fn state(config: &Config, env: &Env) -> impl std::fmt::Debug + use<> {
    tessera::http::ServerState::load(config, env).unwrap()
}
