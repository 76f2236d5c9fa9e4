//! What the store keeps about API keys (contract section 9): never the key, only its SHA-256,
//! with the key's name, owner, scopes, limits and state. The methods are at the end of
//! [`super::TokenStore`]; their exact semantics are in their doc comments there.

use jiff::Timestamp;

/// Most client addresses kept per key (the latest first).
pub const MAX_ADDRESSES: usize = 5;

/// The state a key is stored in. `expired` is not stored: it follows from `expires_at`
/// ([`ApiKeyRecord::state_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredKeyState {
    /// Usable (until it expires, or its grace ends after a rotation).
    Active,
    /// Refused until enabled again.
    Disabled,
    /// Refused for ever.
    Revoked,
}

impl StoredKeyState {
    /// The name kept in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            StoredKeyState::Active => "active",
            StoredKeyState::Disabled => "disabled",
            StoredKeyState::Revoked => "revoked",
        }
    }

    /// The state of a stored name; unknown names read as revoked (fail closed).
    pub fn parse(s: &str) -> StoredKeyState {
        match s {
            "active" => StoredKeyState::Active,
            "disabled" => StoredKeyState::Disabled,
            _ => StoredKeyState::Revoked,
        }
    }
}

/// The state of a key at a given time, as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Active,
    Disabled,
    Revoked,
    Expired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Disabled => "disabled",
            KeyState::Revoked => "revoked",
            KeyState::Expired => "expired",
        }
    }
}

/// One API key as stored (everything but the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Random id (32 hex characters), how the API and the CLI name a key.
    pub id: String,
    /// SHA-256 of the key text.
    pub digest: [u8; 32],
    /// Unique per owner among keys that are neither revoked nor replaced by a rotation.
    pub name: String,
    /// The principal (subject) the key acts as.
    pub owner: String,
    /// Canonical scope list, space-separated (as in a token's `scope` claim).
    pub scopes: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub state: StoredKeyState,
    pub last_used_at: Option<Timestamp>,
    /// The last client addresses, latest first, at most [`MAX_ADDRESSES`], no repeats.
    pub last_addresses: Vec<String>,
    /// CIDR blocks the key may be used from; empty = anywhere.
    pub allow_ip: Vec<String>,
    /// `N/PERIOD` (e.g. `100/1m`), or `None` for no limit.
    pub rate_limit: Option<String>,
    /// The key that replaced this one in a rotation.
    pub successor: Option<String>,
    /// Until when a rotated key still works (its grace period).
    pub grace_until: Option<Timestamp>,
    /// The credential the key was created with, which it never outlives: `token:JTI:IAT_MS`
    /// (a tessera token) or `key:ID` (another API key, followed through its rotations), or
    /// `None` (a password login, the CLI on the local store, an admin with auth off).
    pub parent: Option<String>,
}

impl ApiKeyRecord {
    /// The state at `now`: revoked (stored, or replaced and past its grace), disabled,
    /// expired, or active.
    pub fn state_at(&self, now: Timestamp) -> KeyState {
        match self.state {
            StoredKeyState::Revoked => KeyState::Revoked,
            _ if self.successor.is_some() && self.grace_until.is_none_or(|g| g <= now) => {
                KeyState::Revoked
            }
            _ if self.expires_at.is_some_and(|e| e <= now) => KeyState::Expired,
            StoredKeyState::Disabled => KeyState::Disabled,
            StoredKeyState::Active => KeyState::Active,
        }
    }

    /// Whether the key holds its name (neither revoked nor replaced): the name is unique
    /// among such keys of one owner.
    pub fn holds_name(&self) -> bool {
        self.state != StoredKeyState::Revoked && self.successor.is_none()
    }
}

/// Uses of one key seen by a server since its last report ([`super::TokenStore::touch_keys`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    pub id: String,
    /// The latest use.
    pub at: Timestamp,
    /// Addresses seen, latest first.
    pub addresses: Vec<String>,
}

/// The outcome of a change to a key's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChange {
    /// No key has that id.
    NotFound,
    /// The key is revoked (or replaced): nothing changes it any more. Its record.
    Final(ApiKeyRecord),
    /// Changed (or already so): the record after the change.
    Done(ApiKeyRecord),
}

/// Merges addresses: `newer` (latest first) before `older`, no repeats, at most
/// [`MAX_ADDRESSES`].
pub fn merge_addresses(newer: &[String], older: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(MAX_ADDRESSES);
    for a in newer.iter().chain(older) {
        if out.len() == MAX_ADDRESSES {
            break;
        }
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    out
}

/// The outcome of [`super::TokenStore::create_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCreated {
    /// Stored.
    Created,
    /// Another key of the owner holds the name.
    NameTaken,
    /// The owner holds as many keys as it may.
    TooMany { limit: usize },
}

/// The in-memory engine's keys (`MemoryStore` delegates here; its one lock makes each call
/// atomic).
#[derive(Debug, Default)]
pub(super) struct MemKeys {
    keys: std::collections::HashMap<String, ApiKeyRecord>,
}

impl MemKeys {
    fn conflict(what: &str) -> super::StoreError {
        super::StoreError::Conflict {
            location: "(in memory)".to_owned(),
            message: format!("an API key with this {what} is already stored"),
            hint: "key ids and digests are random: this is a bug in the caller",
        }
    }

    fn name_held(&self, owner: &str, name: &str, except: Option<&str>) -> bool {
        self.keys.values().any(|k| {
            k.owner == owner && k.name == name && k.holds_name() && Some(k.id.as_str()) != except
        })
    }

    fn check_new(&self, key: &ApiKeyRecord) -> Result<(), super::StoreError> {
        if self.keys.contains_key(&key.id) {
            return Err(Self::conflict("id"));
        }
        if self.keys.values().any(|k| k.digest == key.digest) {
            return Err(Self::conflict("digest"));
        }
        Ok(())
    }

    pub(super) fn create(
        &mut self,
        key: &ApiKeyRecord,
        max_live: usize,
    ) -> Result<KeyCreated, super::StoreError> {
        self.check_new(key)?;
        if self.name_held(&key.owner, &key.name, None) {
            return Ok(KeyCreated::NameTaken);
        }
        let live = self
            .keys
            .values()
            .filter(|k| k.owner == key.owner && k.holds_name())
            .count();
        if live >= max_live {
            return Ok(KeyCreated::TooMany { limit: max_live });
        }
        self.keys.insert(key.id.clone(), key.clone());
        Ok(KeyCreated::Created)
    }

    pub(super) fn by_digest(&self, digest: &[u8; 32]) -> Option<ApiKeyRecord> {
        self.keys.values().find(|k| &k.digest == digest).cloned()
    }

    pub(super) fn by_id(&self, id: &str) -> Option<ApiKeyRecord> {
        self.keys.get(id).cloned()
    }

    pub(super) fn list(&self, owner: Option<&str>) -> Vec<ApiKeyRecord> {
        let mut out: Vec<ApiKeyRecord> = self
            .keys
            .values()
            .filter(|k| owner.is_none_or(|o| k.owner == o))
            .cloned()
            .collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        out
    }

    pub(super) fn set_state(&mut self, id: &str, to: StoredKeyState) -> KeyChange {
        match self.keys.get_mut(id) {
            None => KeyChange::NotFound,
            Some(k) if k.state == StoredKeyState::Revoked => KeyChange::Final(k.clone()),
            Some(k) => {
                k.state = to;
                KeyChange::Done(k.clone())
            }
        }
    }

    pub(super) fn rotate(
        &mut self,
        old_id: &str,
        new: &ApiKeyRecord,
        grace_until: Option<Timestamp>,
    ) -> Result<KeyChange, super::StoreError> {
        let old = match self.keys.get(old_id) {
            None => return Ok(KeyChange::NotFound),
            Some(k) if !k.holds_name() => return Ok(KeyChange::Final(k.clone())),
            Some(k) => k.clone(),
        };
        self.check_new(new)?;
        if self.name_held(&new.owner, &new.name, Some(old_id)) {
            return Err(Self::conflict("name"));
        }
        self.keys.insert(new.id.clone(), new.clone());
        let k = self.keys.entry(old.id.clone()).or_insert(old);
        k.successor = Some(new.id.clone());
        k.grace_until = grace_until;
        if grace_until.is_none() {
            k.state = StoredKeyState::Revoked;
        }
        Ok(KeyChange::Done(k.clone()))
    }

    pub(super) fn touch(&mut self, uses: &[KeyUse]) {
        for u in uses {
            if let Some(k) = self.keys.get_mut(&u.id) {
                k.last_used_at = Some(k.last_used_at.map_or(u.at, |t| t.max(u.at)));
                k.last_addresses = merge_addresses(&u.addresses, &k.last_addresses);
            }
        }
    }
}
