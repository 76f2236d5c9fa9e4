//! A store opened at its first use ([`crate::store::open_lazily`]), for every engine: a
//! command that never needs the store (or fails before) never opens or creates it, and
//! `record_minted` may be recorded without opening it where the engine can (SQLite's pending
//! file). Every call is delegated, so a part that adds a method to [`TokenStore`] adds one line
//! here, once for all engines.

use std::sync::{Arc, Mutex};

use jiff::Timestamp;

use crate::store::{
    ApiKeyRecord, CounterUpdate, IssueError, KeyChange, KeyCreated, KeyUse, SessionRecord,
    Standing, StoreError, StoreReport, StoredKeyState, TokenRecord, TokenState, TokenStore,
};

/// How an engine opens its store, and records a minted token without opening it.
pub(crate) trait Opener: Send + Sync + std::fmt::Debug {
    /// Opens the store (called once, by the first call that needs it; again after a failure).
    fn open(&self) -> Result<Arc<dyn TokenStore>, StoreError>;

    /// [`TokenStore::record_minted`] without the store, when the engine can defer the record.
    fn defer_minted(&self, record: &TokenRecord) -> Result<Deferred, StoreError> {
        let _ = record;
        Ok(Deferred::No)
    }
}

/// What [`Opener::defer_minted`] did.
pub(crate) enum Deferred {
    /// Recorded; nothing more to do.
    Recorded,
    /// Recorded, and the store should be opened now (it then takes in what was deferred).
    RecordedOpenNow,
    /// Not deferred: the record goes to the store.
    No,
}

/// Delegates every call to the store its [`Opener`] opens at the first call that needs it.
#[derive(Debug)]
pub(crate) struct Lazy<O> {
    opener: O,
    store: Mutex<Option<Arc<dyn TokenStore>>>,
}

impl<O: Opener> Lazy<O> {
    pub(crate) fn new(opener: O) -> Lazy<O> {
        Lazy {
            opener,
            store: Mutex::new(None),
        }
    }

    fn store(&self) -> Result<Arc<dyn TokenStore>, StoreError> {
        let mut slot = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = &*slot {
            return Ok(Arc::clone(s));
        }
        let s = self.opener.open()?;
        *slot = Some(Arc::clone(&s));
        Ok(s)
    }
}

impl<O: Opener> TokenStore for Lazy<O> {
    fn record_minted(&self, record: &TokenRecord) -> Result<(), StoreError> {
        match self.opener.defer_minted(record)? {
            Deferred::Recorded => Ok(()),
            Deferred::RecordedOpenNow => self.store().map(drop),
            Deferred::No => self.store()?.record(record),
        }
    }
    fn record(&self, record: &TokenRecord) -> Result<(), StoreError> {
        self.store()?.record(record)
    }
    fn record_checked(
        &self,
        record: &TokenRecord,
        parent_issued_at: Option<Timestamp>,
        max_live: usize,
    ) -> Result<(), IssueError> {
        self.store()?
            .record_checked(record, parent_issued_at, max_live)
    }
    fn check(
        &self,
        jti: &str,
        subject: &str,
        issued_at: Timestamp,
    ) -> Result<Standing, StoreError> {
        self.store()?.check(jti, subject, issued_at)
    }
    fn token_state(&self, jti: &str) -> Result<TokenState, StoreError> {
        self.store()?.token_state(jti)
    }
    fn revoke(&self, jti: &str, now: Timestamp) -> Result<bool, StoreError> {
        self.store()?.revoke(jti, now)
    }
    fn revoke_subject(&self, subject: &str, now: Timestamp) -> Result<usize, StoreError> {
        self.store()?.revoke_subject(subject, now)
    }
    fn revoke_all(&self, now: Timestamp) -> Result<usize, StoreError> {
        self.store()?.revoke_all(now)
    }
    fn mark_used(&self, jti: &str, now: Timestamp) -> Result<bool, StoreError> {
        self.store()?.mark_used(jti, now)
    }
    fn list(&self, now: Timestamp) -> Result<Vec<TokenRecord>, StoreError> {
        self.store()?.list(now)
    }
    fn prune(&self, now: Timestamp) -> Result<usize, StoreError> {
        self.store()?.prune(now)
    }
    fn update_counters(
        &self,
        keys: &[String],
        now: Timestamp,
        update: CounterUpdate,
    ) -> Result<u64, StoreError> {
        self.store()?.update_counters(keys, now, update)
    }
    fn session_create(&self, s: &SessionRecord, max_per_subject: usize) -> Result<(), StoreError> {
        self.store()?.session_create(s, max_per_subject)
    }
    fn session_get(&self, id: &str, now: Timestamp) -> Result<Option<SessionRecord>, StoreError> {
        self.store()?.session_get(id, now)
    }
    fn session_touch(&self, id: &str, now: Timestamp, address: &str) -> Result<(), StoreError> {
        self.store()?.session_touch(id, now, address)
    }
    fn session_delete(&self, id: &str) -> Result<bool, StoreError> {
        self.store()?.session_delete(id)
    }
    fn session_delete_subject(&self, subject: &str) -> Result<usize, StoreError> {
        self.store()?.session_delete_subject(subject)
    }
    fn session_list(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.store()?.session_list(subject, now)
    }
    fn create_key(&self, key: &ApiKeyRecord, max_live: usize) -> Result<KeyCreated, StoreError> {
        self.store()?.create_key(key, max_live)
    }
    fn key_by_digest(&self, digest: &[u8; 32]) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.store()?.key_by_digest(digest)
    }
    fn key_by_id(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.store()?.key_by_id(id)
    }
    fn list_keys(&self, owner: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.store()?.list_keys(owner)
    }
    fn set_key_state(&self, id: &str, to: StoredKeyState) -> Result<KeyChange, StoreError> {
        self.store()?.set_key_state(id, to)
    }
    fn rotate_key(
        &self,
        old_id: &str,
        new: &ApiKeyRecord,
        grace_until: Option<Timestamp>,
    ) -> Result<KeyChange, StoreError> {
        self.store()?.rotate_key(old_id, new, grace_until)
    }
    fn touch_keys(&self, uses: &[KeyUse]) -> Result<(), StoreError> {
        self.store()?.touch_keys(uses)
    }
    fn mark_id_token_exchanged(
        &self,
        id: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.store()?.mark_id_token_exchanged(id, expires_at, now)
    }
    fn health(&self) -> Result<(), StoreError> {
        self.store()?.health()
    }
    fn report(&self) -> Result<StoreReport, StoreError> {
        self.store()?.report()
    }
}
