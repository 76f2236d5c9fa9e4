//! Signing keys: one HMAC secret with its key id, and the ring of current and previous keys.

use jsonwebtoken::{DecodingKey, EncodingKey};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Shortest accepted signing secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// One HMAC signing secret and its key id (a fingerprint of the secret, so the CLI and the
/// server derive the same `kid` from the same secret wherever it was loaded from).
///
/// The secret lives only inside the jsonwebtoken keys, which zeroize it on drop; they are built
/// once here so that verification does not rebuild them per call.
pub struct SigningKey {
    pub(super) kid: String,
    pub(super) encoding: EncodingKey,
    pub(super) decoding: DecodingKey,
}

/// Domain separation for the key id, so it is never the hash of the bare secret.
const KID_DOMAIN: &[u8] = b"tessera token kid v1\0";

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the token signing secret{origin} is {len} bytes; at least {MIN_SECRET_LEN} are required (generate one with `tessera secrets set KEY --generate 32`)"
    )]
    TooShort { origin: String, len: usize },
}

impl SigningKey {
    /// Wraps a secret, refusing one shorter than [`MIN_SECRET_LEN`]. `origin` names where it
    /// came from for the error (e.g. ` from TESSERA_AUTH_TOKEN_SECRET`); never the value.
    pub fn new(secret: &SecretString, origin: &str) -> Result<Self, KeyError> {
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < MIN_SECRET_LEN {
            return Err(KeyError::TooShort {
                origin: origin.to_owned(),
                len: bytes.len(),
            });
        }
        let digest = Sha256::new()
            .chain_update(KID_DOMAIN)
            .chain_update(bytes)
            .finalize();
        let mut kid = hex::encode(digest);
        kid.truncate(16);
        Ok(SigningKey {
            kid,
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// The current signing key and the previous ones still accepted for verification.
#[derive(Debug)]
pub struct KeyRing {
    pub current: SigningKey,
    pub previous: Vec<SigningKey>,
}

impl KeyRing {
    /// A ring with only `current`.
    pub fn single(current: SigningKey) -> Self {
        KeyRing {
            current,
            previous: Vec::new(),
        }
    }

    /// The key whose id is `kid`, current first.
    pub(super) fn find(&self, kid: &str) -> Option<&SigningKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.kid == kid)
    }
}
