//! The TLS crypto provider, shared by the HTTP server and the client.

use std::sync::OnceLock;

/// Installs the `ring` rustls provider for this process (once; later calls do nothing).
pub fn install_crypto_provider() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // Err means another provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
