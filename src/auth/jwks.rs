//! The keys of trusted OIDC issuers: parsed from a JWKS (RS256 and ES256 only, the
//! algorithm pinned per key), fetched through the issuer's discovery document
//! (`ISSUER/.well-known/openid-configuration` → `jwks_uri`) or read from a pinned
//! `jwks_file`, and cached.
//!
//! The cache's invariants (docs/architecture.md):
//! - A key set is replaced whole by each successful fetch: a key the issuer no longer
//!   publishes is dropped at the next fetch, never kept beside the new ones.
//! - A fetch happens when an issuer has no keys yet, or when a token names a `kid` the cached
//!   set does not hold, and then at most once per [`MIN_REFETCH`] per issuer, whatever the
//!   outcome (an unknown `kid` cannot make tessera hammer the issuer); concurrent requests for
//!   one issuer wait for a single fetch.
//! - A failed fetch keeps the previous set. Documents are bounded ([`MAX_DOCUMENT`]) and so is
//!   the time of a fetch ([`FETCH_TIMEOUT`]); redirects are not followed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// The least time between two fetches of one issuer's keys.
pub const MIN_REFETCH: Duration = Duration::from_secs(60);
/// The largest discovery document or JWKS read.
pub const MAX_DOCUMENT: usize = 256 * 1024;
/// The most keys kept of one JWKS.
pub const MAX_KEYS: usize = 32;
/// Limit for one fetch (connect, headers and body).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// One verification key: its id, its one algorithm, the key.
#[derive(Clone)]
pub struct Key {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The keys of one JWKS.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
}

impl KeySet {
    /// The key named `kid`.
    pub fn by_kid(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// Parses a JWKS document. Keys that are not signing keys for RS256 (RSA ≥ 2048 bits) or
/// ES256 (P-256) are skipped; the algorithm of a key is its `alg` when present, else the only
/// one its type allows here. An error when the document is not a JWKS or holds no usable key.
pub fn parse_jwks(bytes: &[u8]) -> Result<KeySet, String> {
    if bytes.len() > MAX_DOCUMENT {
        return Err(format!("the JWKS is larger than {MAX_DOCUMENT} bytes"));
    }
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let Some(list) = doc.get("keys").and_then(Value::as_array) else {
        return Err("the JWKS has no `keys` array".to_owned());
    };
    let mut keys = Vec::new();
    for jwk in list.iter().take(MAX_KEYS) {
        if let Some(key) = parse_key(jwk) {
            keys.push(key);
        }
    }
    if keys.is_empty() {
        return Err(
            "the JWKS holds no RS256 (RSA, 2048 bits or more) or ES256 (P-256) signing key"
                .to_owned(),
        );
    }
    Ok(KeySet { keys })
}

fn parse_key(jwk: &Value) -> Option<Key> {
    let s = |name: &str| jwk.get(name).and_then(Value::as_str);
    if s("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let kid = s("kid").map(str::to_owned);
    let (alg, key) = match s("kty")? {
        "RSA" => {
            if s("alg").is_some_and(|a| a != "RS256") {
                return None;
            }
            let n = b64(s("n")?)?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < MIN_RSA_BITS || b64(s("e")?)?.is_empty() {
                return None;
            }
            let key = DecodingKey::from_rsa_components(s("n")?, s("e")?).ok()?;
            (Algorithm::RS256, key)
        }
        "EC" => {
            if s("crv")? != "P-256" || s("alg").is_some_and(|a| a != "ES256") {
                return None;
            }
            let (x, y) = (s("x")?, s("y")?);
            if b64(x)?.len() != 32 || b64(y)?.len() != 32 {
                return None;
            }
            (
                Algorithm::ES256,
                DecodingKey::from_ec_components(x, y).ok()?,
            )
        }
        _ => return None,
    };
    Some(Key { kid, alg, key })
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `ISSUER/.well-known/openid-configuration` → `jwks_uri`.
    Discovery(String),
    /// A pinned JWKS file.
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Discovery(issuer) => write!(f, "the discovery document of {issuer}"),
            Source::File(p) => write!(f, "the JWKS file {}", p.display()),
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    keys: Option<Arc<KeySet>>,
    last_fetch: Option<Instant>,
    last_error: Option<String>,
}

#[derive(Debug)]
struct Entry {
    source: Source,
    slot: Mutex<Slot>,
    /// Held while fetching, so that concurrent requests wait for one fetch.
    fetching: tokio::sync::Mutex<()>,
}

/// What a lookup of a key found.
#[derive(Debug)]
pub enum Lookup {
    /// The current set (it may or may not hold the `kid` asked for).
    Keys(Arc<KeySet>),
    /// No keys could be had: why.
    Unavailable(String),
}

/// The key sets of every trusted issuer, each fetched when first needed and refetched on an
/// unknown `kid` at most once per [`MIN_REFETCH`] (see the module's invariants).
#[derive(Debug)]
pub struct JwksCache {
    entries: HashMap<String, Arc<Entry>>,
    http: reqwest::Client,
    min_refetch: Mutex<Duration>,
    fetches: std::sync::atomic::AtomicU64,
}

impl JwksCache {
    /// A cache for these issuers and their sources (no fetch yet).
    pub fn new(sources: impl IntoIterator<Item = (String, Source)>) -> Result<JwksCache, String> {
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tessera/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client for OIDC keys: {e}"))?;
        let mut entries = HashMap::new();
        for (issuer, source) in sources {
            entries.entry(issuer).or_insert_with(|| {
                Arc::new(Entry {
                    source,
                    slot: Mutex::new(Slot::default()),
                    fetching: tokio::sync::Mutex::new(()),
                })
            });
        }
        Ok(JwksCache {
            entries,
            http,
            min_refetch: Mutex::new(MIN_REFETCH),
            fetches: Default::default(),
        })
    }

    /// Sets the least time between two fetches of one issuer (tests shorten it).
    #[doc(hidden)]
    pub fn set_min_refetch(&self, d: Duration) {
        *self.min_refetch.lock().unwrap_or_else(|e| e.into_inner()) = d;
    }

    /// How many fetches were made (for tests and benchmarks).
    #[doc(hidden)]
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Where the keys of `issuer` come from.
    pub fn source(&self, issuer: &str) -> Option<&Source> {
        self.entries.get(issuer).map(|e| &e.source)
    }

    /// The keys of `issuer`, such that they hold `kid` if the issuer publishes it: the cached
    /// set when it holds `kid` (or, without a `kid`, when there is one); else one fetch, if
    /// the last one is [`MIN_REFETCH`] old or there is none.
    pub async fn keys_for(&self, issuer: &str, kid: Option<&str>) -> Lookup {
        let Some(entry) = self.entries.get(issuer) else {
            return Lookup::Unavailable(format!("no policy trusts the issuer {issuer}"));
        };
        let satisfied = |slot: &Slot| -> Option<Arc<KeySet>> {
            let keys = slot.keys.as_ref()?;
            match kid {
                Some(kid) if keys.by_kid(kid).is_none() => None,
                _ => Some(Arc::clone(keys)),
            }
        };
        let min = *self.min_refetch.lock().unwrap_or_else(|e| e.into_inner());
        let may_fetch = |slot: &Slot| slot.last_fetch.is_none_or(|t| t.elapsed() >= min);
        {
            let slot = entry.slot.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(keys) = satisfied(&slot) {
                return Lookup::Keys(keys);
            }
            if !may_fetch(&slot) {
                return current(&slot);
            }
        }
        let _one = entry.fetching.lock().await;
        {
            // Another request may have fetched while this one waited.
            let slot = entry.slot.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(keys) = satisfied(&slot) {
                return Lookup::Keys(keys);
            }
            if !may_fetch(&slot) {
                return current(&slot);
            }
        }
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let fetched = self.fetch(&entry.source, issuer).await;
        let mut slot = entry.slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.last_fetch = Some(Instant::now());
        match fetched {
            Ok(set) => {
                slot.keys = Some(Arc::new(set));
                slot.last_error = None;
            }
            Err(e) => {
                tracing::warn!(target: "tessera::exchange", issuer = %issuer, error = %e, "cannot fetch the issuer's keys; keeping the previous ones");
                slot.last_error = Some(e);
            }
        }
        current(&slot)
    }

    async fn fetch(&self, source: &Source, issuer: &str) -> Result<KeySet, String> {
        match source {
            Source::File(path) => {
                let path = path.clone();
                let bytes = tokio::task::spawn_blocking(move || read_bounded(&path))
                    .await
                    .map_err(|e| e.to_string())??;
                parse_jwks(&bytes)
            }
            Source::Discovery(issuer_url) => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer_url.trim_end_matches('/')
                );
                let doc = self.get(&url).await?;
                let doc: Value = serde_json::from_slice(&doc)
                    .map_err(|e| format!("the discovery document {url} is not JSON: {e}"))?;
                if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
                    return Err(format!(
                        "the discovery document {url} names another issuer than `{issuer}`"
                    ));
                }
                let jwks_uri = doc
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("the discovery document {url} has no `jwks_uri`"))?;
                if !super::trust::allowed_url(jwks_uri) {
                    return Err(format!(
                        "the `jwks_uri` of {url} is not an https:// URL (http:// only on loopback)"
                    ));
                }
                let bytes = self.get(jwks_uri).await?;
                parse_jwks(&bytes).map_err(|e| format!("{jwks_uri}: {e}"))
            }
        }
    }

    /// GET `url`, at most [`MAX_DOCUMENT`] bytes of a 200 answer.
    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut r = self
            .http
            .get(url)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("cannot fetch {url}: {}", without_url(&e)))?;
        if !r.status().is_success() {
            return Err(format!("{url} answered HTTP {}", r.status().as_u16()));
        }
        if r.content_length().is_some_and(|n| n > MAX_DOCUMENT as u64) {
            return Err(format!("{url} is larger than {MAX_DOCUMENT} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = r
            .chunk()
            .await
            .map_err(|e| format!("cannot read {url}: {}", without_url(&e)))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT {
                return Err(format!("{url} is larger than {MAX_DOCUMENT} bytes"));
            }
        }
        Ok(body)
    }
}

/// A fetch error's causes (the URL is named by the caller).
fn without_url(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s", FETCH_TIMEOUT.as_secs());
    }
    let mut parts = Vec::new();
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    parts.join(": ")
}

fn current(slot: &Slot) -> Lookup {
    match (&slot.keys, &slot.last_error) {
        (Some(k), _) => Lookup::Keys(Arc::clone(k)),
        (None, Some(e)) => Lookup::Unavailable(e.clone()),
        (None, None) => Lookup::Unavailable("the issuer's keys have not been fetched yet".into()),
    }
}

/// Reads at most [`MAX_DOCUMENT`] bytes of `path`.
pub fn read_bounded(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path)
        .map_err(|e| format!("cannot read the JWKS file {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    f.take(MAX_DOCUMENT as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the JWKS file {}: {e}", path.display()))?;
    if bytes.len() > MAX_DOCUMENT {
        return Err(format!(
            "the JWKS file {} is larger than {MAX_DOCUMENT} bytes",
            path.display()
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rs256_and_es256_signing_keys_are_kept() {
        let small_rsa = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xffu8; 128]);
        let big_rsa = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xc5u8; 256]);
        let xy = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "small", "n": small_rsa, "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": big_rsa, "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": big_rsa, "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "p384", "crv": "P-384", "x": xy, "y": xy},
            {"kty": "RSA", "kid": "good", "n": big_rsa, "e": "AQAB"},
        ]});
        let set = parse_jwks(doc.to_string().as_bytes()).unwrap();
        let kids: Vec<_> = set.keys.iter().map(|k| k.kid.clone().unwrap()).collect();
        assert_eq!(kids, ["good"]);
        assert_eq!(set.keys[0].alg, Algorithm::RS256);
        assert!(parse_jwks(b"{\"keys\": []}").is_err());
        assert!(parse_jwks(b"not json").is_err());
        assert!(parse_jwks(&vec![b' '; MAX_DOCUMENT + 1]).is_err());
    }
}
