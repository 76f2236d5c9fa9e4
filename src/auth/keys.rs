//! API keys as a way in (contract section 9): authenticating a presented key, and managing
//! keys (create, list, show, disable, enable, revoke, rotate) for the HTTP API and the CLI.
//!
//! Authentication of a key, in order, with no store access until the key has the right
//! shape:
//! 1. prefix, shape and checksum ([`super::apikey::check_shape`]): a mistyped or made-up key
//!    is refused here;
//! 2. its SHA-256 is looked up in the config-held keys already verified, then in the table of
//!    store keys seen in the last second, then in the store (once a second per key at most),
//!    then, for a digest the store does not know, against the config-held argon2id hashes
//!    (once per digest per server start, on the bounded hashing pool);
//! 3. the key's state at this instant (active, disabled, revoked, replaced past its grace,
//!    expired), its allow-list against the client address, and its rate limit;
//! 4. the use (time, address) is noted in memory and written to the store at most once a
//!    second for all keys together, by a background task.
//!
//! The invariants of the two caches are in docs/architecture.md ("Caches").

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};

use super::apikey::{self, KeyFormatError, KeyText};
use super::{Auth, AuthError, Method, Principal};
use crate::duration::HumanDuration;
use crate::scope::{Action, Scope, ScopeSet};
use crate::store::{
    ApiKeyRecord, KeyChange, KeyCreated, KeyState, KeyUse, StoreError, StoredKeyState, TokenStore,
};

/// How long a store key's record is trusted without asking the store again: a revocation or
/// a disable made by any process is obeyed within this time.
pub const TRUST_FOR: Duration = Duration::from_secs(1);
/// How often the uses noted in memory are written to the store.
pub const TOUCH_EVERY: Duration = Duration::from_secs(1);
/// Most entries in each cache table; past that the table is emptied and refilled.
const MAX_CACHED: usize = 4096;
/// Most keys one owner may hold (neither revoked nor replaced).
pub const MAX_KEYS_PER_OWNER: usize = 100;
/// Longest key name.
pub const MAX_NAME_LEN: usize = 64;
/// Most CIDR blocks in an allow-list.
pub const MAX_ALLOW_IP: usize = 32;

// ---- rate limits ---------------------------------------------------------------------------

/// `N/PERIOD`: at most `count` requests per `period` (a fixed window aligned to Unix time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub period: Duration,
    /// As written, e.g. `100/1m`.
    pub text: String,
}

impl RateLimit {
    /// Parses `N/PERIOD` (`100/1m`, `5000/1h`): N from 1 to 1,000,000, the period a duration
    /// without months or years, from 1 s to 1 d.
    pub fn parse(s: &str) -> Result<RateLimit, String> {
        let grammar = "write N/PERIOD, e.g. `100/1m` or `5000/1h` (N from 1 to 1000000, PERIOD from 1s to 1d)";
        let shown = crate::term::escaped_head(s, 40);
        let (n, p) = s
            .split_once('/')
            .ok_or_else(|| format!("`{shown}` is not a rate limit: {grammar}"))?;
        let count: u32 = n
            .parse()
            .ok()
            .filter(|c| (1..=1_000_000).contains(c))
            .ok_or_else(|| format!("`{shown}` is not a rate limit: {grammar}"))?;
        let period = HumanDuration::parse(p)
            .ok()
            .and_then(|d| d.as_fixed())
            .filter(|d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(86_400))
            .ok_or_else(|| format!("`{shown}` is not a rate limit: {grammar}"))?;
        Ok(RateLimit {
            count,
            period,
            text: s.to_owned(),
        })
    }
}

/// Where a rate-limited key stands after a request: what the `X-RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateStatus {
    pub limit: u32,
    pub remaining: u32,
    /// Unix time (seconds) when the window ends and the count starts again.
    pub reset: i64,
}

/// Per-process counts of the current window of each rate-limited key.
#[derive(Debug, Default)]
struct Windows(Mutex<HashMap<String, (i64, u32)>>);

impl Windows {
    /// Counts one request of key `id` at `now` (Unix seconds); `Err` past the limit.
    fn hit(&self, id: &str, limit: &RateLimit, now: i64) -> Result<RateStatus, RateStatus> {
        let period = i64::try_from(limit.period.as_secs()).unwrap_or(1).max(1);
        let window = now.div_euclid(period);
        let reset = (window + 1) * period;
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_CACHED && !map.contains_key(id) {
            map.retain(|_, (w, _)| *w >= window);
        }
        let slot = map.entry(id.to_owned()).or_insert((window, 0));
        if slot.0 != window {
            *slot = (window, 0);
        }
        if slot.1 >= limit.count {
            return Err(RateStatus {
                limit: limit.count,
                remaining: 0,
                reset,
            });
        }
        slot.1 += 1;
        Ok(RateStatus {
            limit: limit.count,
            remaining: limit.count - slot.1,
            reset,
        })
    }
}

// ---- keys as the server knows them ---------------------------------------------------------

/// A key as authentication uses it: its record (or config entry) with the scopes, allow-list
/// and rate limit parsed once.
#[derive(Debug)]
pub struct KnownKey {
    pub record: ApiKeyRecord,
    pub scopes: ScopeSet,
    pub allow: Vec<IpNet>,
    pub limit: Option<RateLimit>,
    /// A config-held key (`[[auth.api_keys]]`), not in the store.
    pub from_config: bool,
    /// Whether the credential the key was created with (see [`ApiKeyRecord::parent`]) was
    /// still good when the record was read.
    pub parent_alive: bool,
    /// The body of `GET /auth/verify` for this key, made once.
    rendered: std::sync::OnceLock<Arc<[u8]>>,
}

impl KnownKey {
    /// The key of a stored record; `None` when a field does not parse (it is then refused,
    /// fail closed).
    fn of(record: ApiKeyRecord, from_config: bool) -> Option<KnownKey> {
        let scopes = ScopeSet::parse_claim(&record.scopes).ok()?;
        let allow = record
            .allow_ip
            .iter()
            .map(|c| parse_cidr(c).ok())
            .collect::<Option<Vec<_>>>()?;
        let limit = match &record.rate_limit {
            None => None,
            Some(t) => Some(RateLimit::parse(t).ok()?),
        };
        Some(KnownKey {
            record,
            scopes,
            allow,
            limit,
            from_config,
            parent_alive: true,
            rendered: Default::default(),
        })
    }

    /// Bytes made by `make` the first time, then kept with the key.
    pub fn rendered(&self, make: impl FnOnce(&KnownKey) -> Vec<u8>) -> Arc<[u8]> {
        Arc::clone(self.rendered.get_or_init(|| make(self).into()))
    }

    /// How the audit line names it: `key NAME (ID)`.
    pub fn audit_name(&self) -> String {
        format!("key {} ({})", self.record.name, self.record.id)
    }
}

/// The key a principal authenticated with, and where its rate limit stands.
#[derive(Debug, Clone)]
pub struct PresentedKey {
    pub key: Arc<KnownKey>,
    pub rate: Option<RateStatus>,
}

/// A CIDR block (`10.0.0.0/8`, `2001:db8::/32`) or a single address.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| {
            format!(
                "`{}` is not an address block: write CIDR like `10.0.0.0/8`, `192.0.2.7/32` or `2001:db8::/32`",
                crate::term::escaped_head(s, 50)
            )
        })
}

/// Parses a comma-separated CIDR list (empty items are refused).
pub fn parse_cidr_list(s: &str) -> Result<Vec<IpNet>, String> {
    let list: Vec<IpNet> = s.split(',').map(parse_cidr).collect::<Result<_, _>>()?;
    if list.len() > MAX_ALLOW_IP {
        return Err(format!("at most {MAX_ALLOW_IP} address blocks per key"));
    }
    Ok(list)
}

/// Whether `ip` is in one of `blocks` (an IPv4-mapped IPv6 address counts as IPv4).
pub fn ip_in(blocks: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    blocks.iter().any(|b| b.contains(&ip))
}

/// A key held in the configuration (`[[auth.api_keys]]`): an argon2id hash, never the key.
pub struct ConfigKey {
    pub name: String,
    pub subject: String,
    pub hash: SecretString,
    pub scopes: ScopeSet,
}

impl std::fmt::Debug for ConfigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigKey")
            .field("name", &self.name)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// One entry of the table of store keys: the key (`None`: the store has no such digest) and
/// when the store said so.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    key: Option<Arc<KnownKey>>,
}

/// What a server holds for API keys: the prefix, the config-held keys, the two caches, the
/// rate-limit windows and the uses waiting to be written.
#[derive(Debug)]
pub struct KeyAuth {
    prefix: String,
    config: Vec<Arc<KnownKey>>,
    config_hashes: Vec<SecretString>,
    /// Digest to the index of the config key it verified against, or `None`: none of them.
    config_verified: RwLock<HashMap<[u8; 32], Option<usize>>>,
    /// Digest to what the store said, and when.
    seen: RwLock<HashMap<[u8; 32], Seen>>,
    windows: Windows,
    uses: Arc<Mutex<HashMap<String, KeyUse>>>,
    flusher: AtomicBool,
    /// Store lookups made (for tests of the cache).
    lookups: std::sync::atomic::AtomicU64,
}

impl Default for KeyAuth {
    fn default() -> Self {
        KeyAuth::new(apikey::DEFAULT_PREFIX, Vec::new())
    }
}

impl KeyAuth {
    /// Keys with `prefix` (`auth.key_prefix`) and the config-held keys.
    pub fn new(prefix: &str, config: Vec<ConfigKey>) -> KeyAuth {
        let mut known = Vec::new();
        let mut hashes = Vec::new();
        for c in config {
            let record = ApiKeyRecord {
                id: format!("config:{}", c.name),
                digest: [0; 32],
                name: c.name.clone(),
                owner: c.subject.clone(),
                scopes: c.scopes.to_string(),
                created_at: Timestamp::UNIX_EPOCH,
                expires_at: None,
                state: StoredKeyState::Active,
                last_used_at: None,
                last_addresses: vec![],
                allow_ip: vec![],
                rate_limit: None,
                successor: None,
                grace_until: None,
                parent: None,
            };
            known.push(Arc::new(KnownKey {
                record,
                scopes: c.scopes,
                allow: vec![],
                limit: None,
                from_config: true,
                parent_alive: true,
                rendered: Default::default(),
            }));
            hashes.push(c.hash);
        }
        KeyAuth {
            prefix: prefix.to_owned(),
            config: known,
            config_hashes: hashes,
            config_verified: Default::default(),
            seen: Default::default(),
            windows: Windows::default(),
            uses: Default::default(),
            flusher: AtomicBool::new(false),
            lookups: Default::default(),
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The config-held keys.
    pub fn config_keys(&self) -> impl Iterator<Item = &ApiKeyRecord> {
        self.config.iter().map(|k| &k.record)
    }

    /// Drops what the table holds about `digest` (after this server changed the key).
    pub fn forget(&self, digest: &[u8; 32]) {
        write(&self.seen).remove(digest);
    }

    /// How many times the store was asked for a key (for tests).
    #[doc(hidden)]
    pub fn store_lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    /// Takes the uses noted since the last write.
    fn take_uses(&self) -> Vec<KeyUse> {
        take(&self.uses)
    }
}

fn take(uses: &Mutex<HashMap<String, KeyUse>>) -> Vec<KeyUse> {
    let mut map = uses.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::take(&mut *map).into_values().collect()
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl From<KeyFormatError> for AuthError {
    fn from(e: KeyFormatError) -> Self {
        AuthError::Invalid(e.to_string())
    }
}

impl Auth {
    /// The API-key part of the server.
    pub fn api_keys(&self) -> &KeyAuth {
        &self.api_keys
    }

    /// Authenticates an API key presented by a client at `client` (see the module comment
    /// for the steps). Errors: `Invalid` (shape, checksum, unknown key), `KeyDisabled`,
    /// `KeyRevoked`, `KeyExpired`, `IpNotAllowed`, `KeyRateLimited`, `StoreUnavailable`.
    pub async fn authenticate_key(
        &self,
        text: &str,
        client: IpAddr,
    ) -> Result<Principal, AuthError> {
        let keys = &self.api_keys;
        let key = KeyText::parse(text, &keys.prefix)?;
        let digest = key.digest();
        let known = match self.find_key(&key, &digest, client).await? {
            Some(k) => k,
            None => {
                return Err(AuthError::Invalid(
                    "the API key is not known to this server; check that it was copied whole, or create one with `tessera auth key create`".to_owned(),
                ));
            }
        };
        let now = Timestamp::now();
        if !known.parent_alive {
            return Err(AuthError::KeyRevoked);
        }
        match known.record.state_at(now) {
            KeyState::Active => {}
            KeyState::Disabled => return Err(AuthError::KeyDisabled),
            KeyState::Revoked => return Err(AuthError::KeyRevoked),
            KeyState::Expired => {
                return Err(AuthError::KeyExpired {
                    at: known.record.expires_at.unwrap_or(now),
                });
            }
        }
        if !known.allow.is_empty() && !ip_in(&known.allow, client) {
            return Err(AuthError::IpNotAllowed);
        }
        let rate = match &known.limit {
            None => None,
            Some(limit) => match keys.windows.hit(&known.record.id, limit, now.as_second()) {
                Ok(status) => Some(status),
                Err(status) => {
                    return Err(AuthError::KeyRateLimited {
                        retry_after: u64::try_from(status.reset - now.as_second())
                            .unwrap_or(1)
                            .max(1),
                        status,
                    });
                }
            },
        };
        if !known.from_config {
            self.note_use(&known.record.id, now, client);
        }
        Ok(Principal {
            subject: known.record.owner.clone(),
            scopes: known.scopes.clone(),
            method: Method::ApiKey,
            token: None,
            key: Some(PresentedKey { key: known, rate }),
        })
    }

    /// The key with text `key` and SHA-256 `digest`, from the caches, the store or the
    /// config-held hashes; `None` when there is none.
    async fn find_key(
        &self,
        key: &KeyText,
        digest: &[u8; 32],
        client: IpAddr,
    ) -> Result<Option<Arc<KnownKey>>, AuthError> {
        let keys = &self.api_keys;
        if let Some(Some(i)) = read(&keys.config_verified).get(digest) {
            return Ok(keys.config.get(*i).cloned());
        }
        if let Some(seen) = read(&keys.seen).get(digest)
            && seen.at.elapsed() < TRUST_FOR
        {
            return Ok(seen.key.clone());
        }
        // A read on the store's read connections, which never wait for a writer: inline, as
        // the token check is.
        keys.lookups.fetch_add(1, Ordering::Relaxed);
        let fetched = self
            .store
            .key_by_digest(digest)
            .map_err(AuthError::StoreUnavailable)?;
        let at = Instant::now();
        let known = match fetched.and_then(|r| KnownKey::of(r, false)) {
            None => None,
            Some(mut k) => {
                k.parent_alive = parent_alive(self.store.as_ref(), &k.record, Timestamp::now())
                    .map_err(AuthError::StoreUnavailable)?;
                Some(Arc::new(k))
            }
        };
        if known.is_some() || keys.config.is_empty() {
            let mut seen = write(&keys.seen);
            if seen.len() >= MAX_CACHED {
                seen.clear();
            }
            seen.insert(
                *digest,
                Seen {
                    at,
                    key: known.clone(),
                },
            );
            return Ok(known);
        }
        self.check_config_keys(key, digest, client).await
    }

    /// Checks `key` against every config-held hash (once per digest per server start, on the
    /// bounded hashing pool), and remembers the answer. Keys that verify against none count
    /// as failed logins of the client address (the login rate limiter), since each costs
    /// argon2id work.
    async fn check_config_keys(
        &self,
        key: &KeyText,
        digest: &[u8; 32],
        client: IpAddr,
    ) -> Result<Option<Arc<KnownKey>>, AuthError> {
        let keys = &self.api_keys;
        if let Some(answer) = read(&keys.config_verified).get(digest) {
            return Ok(answer.and_then(|i| keys.config.get(i).cloned()));
        }
        let account = format!("api-key:{}", hex::encode(&digest[..8]));
        // The counts are in the store, shared by every replica: a write, off the async threads.
        let limiter = self.limiter;
        let attempt = match self
            .with_store(move |store| Ok(limiter.begin(store, &account, client, Timestamp::now())))
            .await?
        {
            Ok(attempt) => attempt,
            Err(super::ratelimit::Refused::Wait(retry_after)) => {
                return Err(AuthError::RateLimited { retry_after });
            }
            Err(super::ratelimit::Refused::Store(e)) => return Err(AuthError::StoreUnavailable(e)),
        };
        let mut found = None;
        for (i, hash) in keys.config_hashes.iter().enumerate() {
            let text = SecretString::from(key.expose().to_owned());
            let hash = SecretString::from(hash.expose_secret().to_owned());
            if self.hashing.check(text, hash).await? {
                found = Some(i);
                break;
            }
        }
        {
            let mut verified = write(&keys.config_verified);
            if verified.len() >= MAX_CACHED {
                // Keep the keys that verified: only the misses are dropped.
                verified.retain(|_, v| v.is_some());
            }
            verified.insert(*digest, found);
        }
        if found.is_some() {
            self.with_store(move |store| limiter.succeeded(store, attempt, Timestamp::now()))
                .await?;
        }
        Ok(found.and_then(|i| keys.config.get(i).cloned()))
    }

    /// Notes a use of key `id`; a background task writes the uses to the store once a
    /// second.
    fn note_use(&self, id: &str, at: Timestamp, client: IpAddr) {
        let keys = &self.api_keys;
        {
            let mut map = keys.uses.lock().unwrap_or_else(|e| e.into_inner());
            if map.len() < MAX_CACHED || map.contains_key(id) {
                let u = map.entry(id.to_owned()).or_insert_with(|| KeyUse {
                    id: id.to_owned(),
                    at,
                    addresses: Vec::new(),
                });
                u.at = u.at.max(at);
                let addr = client.to_string();
                if u.addresses.first() != Some(&addr) {
                    u.addresses.retain(|a| a != &addr);
                    u.addresses.insert(0, addr);
                    u.addresses.truncate(crate::store::keys::MAX_ADDRESSES);
                }
            }
        }
        if !keys.flusher.swap(true, Ordering::AcqRel)
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let uses = Arc::downgrade(&keys.uses);
            let store = Arc::clone(&self.store);
            rt.spawn(flush_loop(uses, store));
        }
    }

    /// Writes the uses noted so far to the store now (before a listing, and at shutdown).
    pub async fn flush_key_uses(&self) -> Result<(), AuthError> {
        let uses = self.api_keys.take_uses();
        if uses.is_empty() {
            return Ok(());
        }
        self.with_store(move |s| s.touch_keys(&uses)).await
    }
}

/// Most links followed from a key to the credential it was created with.
const MAX_PARENT_DEPTH: usize = 16;

/// Whether the credential `key` was created with is still good at `now`: a token that is not
/// revoked (by id, its line, its subject or `--all`), or an API key whose current rotation is
/// active and whose own parent is alive; no parent is alive. Fails closed past
/// [`MAX_PARENT_DEPTH`] links or on a parent that cannot be read.
pub fn parent_alive(
    store: &dyn TokenStore,
    key: &ApiKeyRecord,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let mut parent = key.parent.clone();
    let mut owner = key.owner.clone();
    for _ in 0..MAX_PARENT_DEPTH {
        let Some(p) = parent else { return Ok(true) };
        if let Some(rest) = p.strip_prefix("token:") {
            let Some((jti, iat)) = rest.rsplit_once(':') else {
                return Ok(false);
            };
            let iat = iat
                .parse::<i64>()
                .ok()
                .and_then(|s| Timestamp::from_second(s).ok())
                .unwrap_or(Timestamp::MIN);
            return Ok(store.check(jti, &owner, iat)? != crate::store::Standing::Revoked);
        }
        let Some(id) = p.strip_prefix("key:") else {
            return Ok(false);
        };
        let Some(mut current) = store.key_by_id(id)? else {
            return Ok(false);
        };
        // A rotated parent lives on in its successor.
        for _ in 0..MAX_PARENT_DEPTH {
            match current.successor.clone() {
                Some(next) => match store.key_by_id(&next)? {
                    Some(k) => current = k,
                    None => return Ok(false),
                },
                None => break,
            }
        }
        if current.successor.is_some() || current.state_at(now) != KeyState::Active {
            return Ok(false);
        }
        owner = current.owner.clone();
        parent = current.parent.clone();
    }
    Ok(false)
}

/// What a new key's `parent` is when `who` creates it (see [`ApiKeyRecord::parent`]), and the
/// latest expiry that parent allows.
pub fn parent_of(who: &Principal) -> (Option<String>, Option<Timestamp>) {
    if let Some(t) = &who.token {
        let c = t.claims();
        return (
            Some(format!("token:{}:{}", c.jti, c.iat)),
            c.exp.and_then(|e| Timestamp::from_second(e).ok()),
        );
    }
    match &who.key {
        Some(p) if !p.key.from_config => (
            Some(format!("key:{}", p.key.record.id)),
            p.key.record.expires_at,
        ),
        _ => (None, None),
    }
}

/// Every [`TOUCH_EVERY`], writes the uses noted since to the store, until the server is gone.
async fn flush_loop(uses: Weak<Mutex<HashMap<String, KeyUse>>>, store: Arc<dyn TokenStore>) {
    loop {
        tokio::time::sleep(TOUCH_EVERY).await;
        let Some(uses) = uses.upgrade() else { return };
        let batch = take(&uses);
        drop(uses);
        if batch.is_empty() {
            continue;
        }
        let store = Arc::clone(&store);
        let written = tokio::task::spawn_blocking(move || store.touch_keys(&batch)).await;
        if let Ok(Err(e)) = written {
            tracing::warn!(error = %e, "cannot record when API keys were last used");
        }
    }
}

// ---- managing keys -------------------------------------------------------------------------

/// Why a key could not be created or changed. Never carries a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Bad input (name, scopes, expiry, allow-list, rate limit), with the fix.
    #[error("{0}")]
    Invalid(String),
    /// Another key of the owner holds the name.
    #[error(
        "`{owner}` already has a key named `{name}`; choose another name, or revoke that key first"
    )]
    NameTaken { owner: String, name: String },
    /// The owner holds as many keys as allowed.
    #[error(
        "`{owner}` already holds {limit} keys, the most allowed; revoke keys that are no longer used"
    )]
    TooMany { owner: String, limit: usize },
    /// No key with that id or name (or not one the caller may see).
    #[error("no API key `{0}`; `tessera auth key list` shows the keys")]
    NotFound(String),
    /// The key is revoked or replaced: it cannot change any more.
    #[error(
        "the API key `{0}` is revoked or was replaced by a rotation; it cannot be changed any more"
    )]
    Final(String),
    /// The caller may not do it.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The store cannot answer.
    #[error("the token store cannot answer: {0}")]
    Store(#[from] StoreError),
}

/// What a new key is asked to be.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub owner: String,
    pub scopes: ScopeSet,
    pub expiry: Option<HumanDuration>,
    pub allow_ip: Vec<IpNet>,
    pub rate_limit: Option<RateLimit>,
    /// The credential it is created with ([`parent_of`]).
    pub parent: Option<String>,
    /// The latest expiry its parent allows: the key never expires later.
    pub not_after: Option<Timestamp>,
}

/// Checks a key name: 1 to 64 characters of letters, digits and `._-`, not starting with `-`.
pub fn check_name(name: &str) -> Result<(), KeyError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(KeyError::Invalid(format!(
            "`{}` is not a key name: use 1 to {MAX_NAME_LEN} letters, digits, `.`, `_` and `-`, not starting with `-`",
            crate::term::escaped_head(name, 40)
        )))
    }
}

/// A new random key id: 32 hex characters.
fn new_id() -> Result<String, KeyError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)
        .map_err(|e| KeyError::Invalid(format!("the random number generator failed: {e}")))?;
    Ok(hex::encode(b))
}

/// Builds the record and the key text of a new key, with expiry capped by
/// `max_expiry` (`auth.max_token_expiry`; never = no cap): with a cap, no expiry asked means
/// the cap.
pub fn prepare_key(
    prefix: &str,
    new: &NewKey,
    max_expiry: HumanDuration,
    now: Timestamp,
) -> Result<(KeyText, ApiKeyRecord), KeyError> {
    check_name(&new.name)?;
    if new.owner.is_empty() || new.owner.len() > 256 || new.owner.chars().any(char::is_control) {
        return Err(KeyError::Invalid(
            "the owner (subject) must be 1 to 256 printable characters".to_owned(),
        ));
    }
    let expiry = new.expiry.unwrap_or(max_expiry);
    super::issue::check_cap(max_expiry, expiry, now)?;
    let expires_at = match (expiry.after(now).map_err(AuthError::from)?, new.not_after) {
        (Some(e), Some(n)) => Some(e.min(n)),
        (e, n) => e.or(n),
    };
    let text = KeyText::generate(prefix).map_err(|e| KeyError::Invalid(e.to_string()))?;
    let now_ms = Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now);
    let record = ApiKeyRecord {
        id: new_id()?,
        digest: text.digest(),
        name: new.name.clone(),
        owner: new.owner.clone(),
        scopes: new.scopes.to_string(),
        created_at: now_ms,
        expires_at,
        state: StoredKeyState::Active,
        last_used_at: None,
        last_addresses: vec![],
        allow_ip: new.allow_ip.iter().map(ToString::to_string).collect(),
        rate_limit: new.rate_limit.as_ref().map(|r| r.text.clone()),
        successor: None,
        grace_until: None,
        parent: new.parent.clone(),
    };
    Ok((text, record))
}

/// Creates a key in `store`: the key text (shown once) and its record.
pub fn create_key(
    store: &dyn TokenStore,
    prefix: &str,
    new: &NewKey,
    max_expiry: HumanDuration,
    now: Timestamp,
) -> Result<(KeyText, ApiKeyRecord), KeyError> {
    let (text, record) = prepare_key(prefix, new, max_expiry, now)?;
    match store.create_key(&record, MAX_KEYS_PER_OWNER)? {
        KeyCreated::Created => Ok((text, record)),
        KeyCreated::NameTaken => Err(KeyError::NameTaken {
            owner: record.owner,
            name: record.name,
        }),
        KeyCreated::TooMany { limit } => Err(KeyError::TooMany {
            owner: record.owner,
            limit,
        }),
    }
}

/// Finds a key by id, else by name (of `owner` when given; a name must then name one key
/// that holds it).
pub fn find_key(
    store: &dyn TokenStore,
    id_or_name: &str,
    owner: Option<&str>,
) -> Result<ApiKeyRecord, KeyError> {
    if let Some(k) = store.key_by_id(id_or_name)? {
        return Ok(k);
    }
    let mut named: Vec<ApiKeyRecord> = store
        .list_keys(owner)?
        .into_iter()
        .filter(|k| k.name == id_or_name)
        .collect();
    // The current key of that name first (it holds the name), else the newest.
    named.sort_by_key(|k| !k.holds_name());
    match named.len() {
        0 => Err(KeyError::NotFound(crate::term::escaped_head(
            id_or_name, 64,
        ))),
        1 => Ok(named.remove(0)),
        _ if named[0].holds_name() && named.iter().skip(1).all(|k| k.owner == named[0].owner) => {
            Ok(named.remove(0))
        }
        _ => Err(KeyError::Invalid(format!(
            "`{}` names keys of several owners; name the key by its id",
            crate::term::escaped_head(id_or_name, 64)
        ))),
    }
}

/// Sets the state of key `id` (disable, enable, revoke).
pub fn set_state(
    store: &dyn TokenStore,
    id: &str,
    to: StoredKeyState,
) -> Result<ApiKeyRecord, KeyError> {
    match store.set_key_state(id, to)? {
        KeyChange::Done(k) => Ok(k),
        KeyChange::Final(k) if to == StoredKeyState::Revoked => Ok(k),
        KeyChange::Final(k) => Err(KeyError::Final(k.id)),
        KeyChange::NotFound => Err(KeyError::NotFound(id.to_owned())),
    }
}

/// Rotates key `old`: a new key with its name, owner, scopes, expiry time, allow-list and
/// rate limit; the old one keeps working for `grace` (none: revoked at once). Returns the
/// new key's text and record, and the old record after the change.
pub fn rotate_key(
    store: &dyn TokenStore,
    prefix: &str,
    old: &ApiKeyRecord,
    grace: Option<HumanDuration>,
    now: Timestamp,
) -> Result<(KeyText, ApiKeyRecord, ApiKeyRecord), KeyError> {
    let grace_until = match grace {
        None => None,
        Some(g) if g.is_never() => {
            return Err(KeyError::Invalid(
                "a grace period must end: give a duration such as `1h` or `7d`".to_owned(),
            ));
        }
        Some(g) => g.after(now).map_err(AuthError::from)?,
    };
    let text = KeyText::generate(prefix).map_err(|e| KeyError::Invalid(e.to_string()))?;
    let now_ms = Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now);
    let new = ApiKeyRecord {
        id: new_id()?,
        digest: text.digest(),
        created_at: now_ms,
        state: StoredKeyState::Active,
        last_used_at: None,
        last_addresses: vec![],
        successor: None,
        grace_until: None,
        ..old.clone()
    };
    match store.rotate_key(&old.id, &new, grace_until)? {
        KeyChange::Done(old) => Ok((text, new, old)),
        KeyChange::Final(k) => Err(KeyError::Final(k.id)),
        KeyChange::NotFound => Err(KeyError::NotFound(old.id.clone())),
    }
}

// ---- who may manage which keys -------------------------------------------------------------

/// What a caller wants to do with keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Whether `who` may read or change the keys of `owner`: the rule of every credential, in
/// [`super::access`] (its own always; anyone's with `admin:tokens:read` / `write`).
pub fn may_manage(who: &Principal, owner: &str, access: Access) -> bool {
    match access {
        Access::Read => super::access::may_read(who, owner),
        Access::Write => super::access::may_write(who, owner),
    }
}

/// `admin:tokens:read` or `admin:tokens:write`.
pub fn admin_scope(access: Access) -> Scope {
    Scope::AdminResource {
        resource: "tokens".to_owned(),
        action: match access {
            Access::Read => Action::Read,
            Access::Write => Action::Write,
        },
    }
}

/// `Ok` when `who` holds every scope of `scopes` (a key never grants more than its creator
/// holds), else `Forbidden` naming the first missing one ([`super::access::require_within`]).
pub fn check_grantable(who: &Principal, scopes: &ScopeSet) -> Result<(), AuthError> {
    super::access::require_within(who, scopes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn rate_limits_parse_and_count_in_windows() {
        let r = RateLimit::parse("3/1m").unwrap();
        assert_eq!((r.count, r.period), (3, Duration::from_secs(60)));
        for bad in ["", "3", "0/1m", "3/0", "3/1M", "x/1m", "3/2d", "-1/1m"] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
        let w = Windows::default();
        let t0: i64 = 1_799_999_940; // a multiple of 60
        assert_eq!(w.hit("k", &r, t0).unwrap().remaining, 2);
        assert_eq!(w.hit("k", &r, t0 + 1).unwrap().remaining, 1);
        let last = w.hit("k", &r, t0 + 2).unwrap();
        assert_eq!((last.remaining, last.reset), (0, t0 + 60));
        assert_eq!(w.hit("k", &r, t0 + 59).unwrap_err().reset, t0 + 60);
        assert_eq!(w.hit("other", &r, t0 + 59).unwrap().remaining, 2);
        assert_eq!(w.hit("k", &r, t0 + 60).unwrap().remaining, 2);
    }

    #[test]
    fn cidr_lists_match_v4_v6_and_mapped_addresses() {
        let l = parse_cidr_list("10.0.0.0/8,2001:db8::/32,192.0.2.7").unwrap();
        assert!(ip_in(&l, "10.1.2.3".parse().unwrap()));
        assert!(ip_in(&l, "::ffff:10.1.2.3".parse().unwrap()));
        assert!(ip_in(&l, "2001:db8::1".parse().unwrap()));
        assert!(ip_in(&l, "192.0.2.7".parse().unwrap()));
        assert!(!ip_in(&l, "192.0.2.8".parse().unwrap()));
        assert!(!ip_in(&l, "11.0.0.1".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "nope", "10.0.0.0/8,,"] {
            assert!(parse_cidr_list(bad).is_err(), "{bad}");
        }
    }

    /// A store that counts the key lookups it answers.
    #[derive(Debug, Default)]
    struct Counting {
        inner: MemoryStore,
        lookups: std::sync::atomic::AtomicUsize,
    }

    macro_rules! delegate {
        ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
            $(fn $name(&self, $($arg: $ty),*) -> $ret { self.inner.$name($($arg),*) })*
        };
    }

    impl TokenStore for Counting {
        delegate! {
            record(r: &crate::store::TokenRecord) -> Result<(), StoreError>;
            check(j: &str, s: &str, t: Timestamp) -> Result<crate::store::Standing, StoreError>;
            token_state(j: &str) -> Result<crate::store::TokenState, StoreError>;
            revoke(j: &str, t: Timestamp) -> Result<bool, StoreError>;
            revoke_subject(s: &str, t: Timestamp) -> Result<usize, StoreError>;
            revoke_all(t: Timestamp) -> Result<usize, StoreError>;
            mark_used(j: &str, t: Timestamp) -> Result<bool, StoreError>;
            list(t: Timestamp) -> Result<Vec<crate::store::TokenRecord>, StoreError>;
            prune(t: Timestamp) -> Result<usize, StoreError>;
            create_key(k: &ApiKeyRecord, m: usize) -> Result<KeyCreated, StoreError>;
            key_by_id(i: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
            list_keys(o: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError>;
            set_key_state(i: &str, s: StoredKeyState) -> Result<KeyChange, StoreError>;
            rotate_key(i: &str, n: &ApiKeyRecord, g: Option<Timestamp>) -> Result<KeyChange, StoreError>;
            touch_keys(u: &[KeyUse]) -> Result<(), StoreError>;
            mark_id_token_exchanged(i: &str, e: Timestamp, n: Timestamp) -> Result<bool, StoreError>;
            update_counters(k: &[String], n: Timestamp, u: crate::store::CounterUpdate) -> Result<u64, StoreError>;
            report() -> Result<crate::store::StoreReport, StoreError>;
        }
        fn record_checked(
            &self,
            r: &crate::store::TokenRecord,
            p: Option<Timestamp>,
            m: usize,
        ) -> Result<(), crate::store::IssueError> {
            self.inner.record_checked(r, p, m)
        }
        fn key_by_digest(&self, d: &[u8; 32]) -> Result<Option<ApiKeyRecord>, StoreError> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            self.inner.key_by_digest(d)
        }
    }

    fn auth_with(store: Arc<Counting>) -> Auth {
        let keys = crate::token::KeyRing::single(
            crate::token::SigningKey::new(
                &SecretString::from("0123456789abcdef0123456789abcdef-secret".to_owned()),
                "test",
            )
            .unwrap(),
        );
        let settings = super::super::Settings {
            issuer: "tessera".into(),
            enabled: true,
            token_expiry: HumanDuration::parse("1h").unwrap(),
            max_token_expiry: HumanDuration::default(),
            session_expiry: Duration::from_secs(12 * 3600),
        };
        Auth::new(settings, keys, store, None, 10)
    }

    #[tokio::test]
    async fn a_changed_character_is_refused_without_asking_the_store() {
        let store = Arc::new(Counting::default());
        let auth = auth_with(Arc::clone(&store));
        let new = NewKey {
            name: "ci".into(),
            owner: "alice".into(),
            scopes: ScopeSet::parse_list("pull", "*").unwrap(),
            expiry: None,
            allow_ip: vec![],
            rate_limit: None,
            parent: None,
            not_after: None,
        };
        let (text, _) = create_key(
            store.as_ref(),
            "tsk",
            &new,
            HumanDuration::default(),
            Timestamp::now(),
        )
        .unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let who = auth.authenticate_key(text.expose(), ip).await.unwrap();
        assert_eq!(who.subject, "alice");
        assert_eq!(store.lookups.load(Ordering::SeqCst), 1);
        // Seen within the last second: no second lookup.
        auth.authenticate_key(text.expose(), ip).await.unwrap();
        assert_eq!(store.lookups.load(Ordering::SeqCst), 1);
        let mut changed = text.expose().as_bytes().to_vec();
        let i = 10;
        changed[i] = if changed[i] == b'a' { b'b' } else { b'a' };
        let changed = String::from_utf8(changed).unwrap();
        let e = auth.authenticate_key(&changed, ip).await.unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        let e = auth.authenticate_key("tsk_short", ip).await.unwrap_err();
        assert!(e.to_string().contains("malformed"), "{e}");
        assert_eq!(store.lookups.load(Ordering::SeqCst), 1, "no store call");
    }

    #[tokio::test]
    async fn a_revocation_by_another_process_wins_within_a_second() {
        let store = Arc::new(Counting::default());
        let auth = auth_with(Arc::clone(&store));
        let new = NewKey {
            name: "ci".into(),
            owner: "alice".into(),
            scopes: ScopeSet::default(),
            expiry: None,
            allow_ip: vec![],
            rate_limit: None,
            parent: None,
            not_after: None,
        };
        let (text, rec) = create_key(
            store.as_ref(),
            "tsk",
            &new,
            HumanDuration::default(),
            Timestamp::now(),
        )
        .unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        auth.authenticate_key(text.expose(), ip).await.unwrap();
        // Another process revokes it in the store, behind this server's back.
        store
            .inner
            .set_key_state(&rec.id, StoredKeyState::Revoked)
            .unwrap();
        tokio::time::sleep(TRUST_FOR + Duration::from_millis(50)).await;
        let e = auth.authenticate_key(text.expose(), ip).await.unwrap_err();
        assert!(matches!(e, AuthError::KeyRevoked), "{e}");
    }

    #[test]
    fn owners_manage_their_own_keys_and_admins_everyones() {
        let p = |subject: &str, scopes: &str| Principal {
            subject: subject.into(),
            scopes: ScopeSet::parse_list(scopes, "*").unwrap(),
            method: Method::Token,
            token: None,
            key: None,
        };
        let alice = p("alice", "pull");
        assert!(may_manage(&alice, "alice", Access::Write));
        assert!(!may_manage(&alice, "bob", Access::Read));
        let reader = p("ops", "admin:tokens:read");
        assert!(may_manage(&reader, "bob", Access::Read));
        assert!(!may_manage(&reader, "bob", Access::Write));
        let admin = p("root", "admin");
        assert!(may_manage(&admin, "bob", Access::Write));
        let push = ScopeSet::parse_list("push", "*").unwrap();
        assert!(check_grantable(&alice, &push).is_err());
        assert!(check_grantable(&admin, &push).is_ok());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn limits_and_address_lists_never_panic(s in "\\PC{0,40}") {
            let _ = RateLimit::parse(&s);
            let _ = parse_cidr_list(&s);
            let _ = check_name(&s);
        }
    }
}
