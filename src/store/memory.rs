//! The token store in memory, for unit tests and embedders: the same answers as the SQLite
//! engine, and nothing kept after the process ends.
//!
//! One lock guards the whole state, so every call is atomic (the checks of `record_checked`
//! with its write, a revocation with the revocation of the descendants: invariants 1 and 2 of
//! [`crate::store`]); `check` takes it shared. Times are kept as Unix milliseconds, like the
//! SQLite engine keeps them. Finding the descendants of a revoked token walks every record:
//! fine for the sizes this engine is meant for.

use std::collections::{HashMap, HashSet};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use jiff::Timestamp;

use super::{
    CounterUpdate, IssueError, PRUNE_BATCH, SessionRecord, Standing, StoreError, TokenRecord,
    TokenState, TokenStore, check_live_limit, from_ms, ms, prune_before,
    unrecorded_parent_issued_at,
};

/// A token store that lives in this process only. Cloning a handle is sharing it: wrap it in
/// an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: RwLock<State>,
    /// Exchanged OIDC ID tokens: id → expiry (Unix ms).
    exchanged: std::sync::Mutex<HashMap<String, i64>>,
    /// Login failure counters ([`TokenStore::update_counters`]), at most [`MAX_COUNTERS`].
    counters: std::sync::Mutex<HashMap<String, super::Counter>>,
}

/// Most login failure counters kept; past that, forgotten ones are dropped, then the least
/// recently written quarter.
const MAX_COUNTERS: usize = 30_000;

#[derive(Debug, Default)]
struct State {
    tokens: HashMap<String, Row>,
    /// Revoked ids, with the expiry of the token when known (for pruning).
    revoked: HashMap<String, Option<i64>>,
    subject_cutoffs: HashMap<String, i64>,
    global_cutoff: Option<i64>,
    /// Browser sessions by id (contract section 9).
    sessions: HashMap<String, SessionRecord>,
    /// API keys (contract section 9).
    keys: super::keys::MemKeys,
}

#[derive(Debug, Clone)]
struct Row {
    subject: String,
    scopes: String,
    issued_at: i64,
    expires_at: Option<i64>,
    single_use: bool,
    used: bool,
    parent: Option<String>,
    /// The issue time of the first token of its line (invariant 3), or `None`: its own.
    root_issued_at: Option<i64>,
}

impl Row {
    fn line_issued_at(&self) -> i64 {
        self.root_issued_at.unwrap_or(self.issued_at)
    }

    fn live_at(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }
}

const LOCATION: &str = "(in memory)";

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    // The state is consistent after every call (each one checks before it changes anything),
    // so a panic elsewhere while holding the lock leaves it usable.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// The cut-off that applies to tokens of `subject`, if any.
    fn cutoff(&self, subject: &str) -> Option<i64> {
        self.subject_cutoffs
            .get(subject)
            .copied()
            .max(self.global_cutoff)
    }

    /// Whether a recorded token is revoked: by id, or by a cut-off of its recorded subject
    /// that covers the issue time of its line.
    fn row_revoked(&self, jti: &str, row: &Row) -> bool {
        self.revoked.contains_key(jti)
            || self
                .cutoff(&row.subject)
                .is_some_and(|cut| row.line_issued_at() <= cut)
    }

    /// Deletes at most [`PRUNE_BATCH`] expired records and as many expired id revocations.
    fn prune_some(&mut self, now: i64) {
        let before = prune_before(now);
        let tokens: Vec<String> = self
            .tokens
            .iter()
            .filter(|(_, r)| r.expires_at.is_some_and(|e| e < before))
            .map(|(j, _)| j.clone())
            .take(PRUNE_BATCH)
            .collect();
        for jti in tokens {
            self.tokens.remove(&jti);
        }
        let revoked: Vec<String> = self
            .revoked
            .iter()
            .filter(|(_, e)| e.is_some_and(|e| e < before))
            .map(|(j, _)| j.clone())
            .take(PRUNE_BATCH)
            .collect();
        for jti in revoked {
            self.revoked.remove(&jti);
        }
    }

    /// Inserts `record` (an error when its id is recorded already), with the issue time of its
    /// line when known, else its recorded parent's; revoked when its parent is revoked by id.
    fn insert(
        &mut self,
        record: &TokenRecord,
        line_issued_at: Option<i64>,
    ) -> Result<(), StoreError> {
        if self.tokens.contains_key(&record.jti) {
            return Err(StoreError::Conflict {
                location: LOCATION.to_owned(),
                message: format!("token id {} is recorded already", record.jti),
                hint: "a token id is recorded only once",
            });
        }
        let parent = record.parent.as_deref();
        let root_issued_at = line_issued_at.or_else(|| {
            parent
                .and_then(|p| self.tokens.get(p))
                .map(Row::line_issued_at)
        });
        let expires_at = record.expires_at.map(ms);
        self.tokens.insert(
            record.jti.clone(),
            Row {
                subject: record.subject.clone(),
                scopes: record.scopes.clone(),
                issued_at: ms(record.issued_at),
                expires_at,
                single_use: record.single_use,
                used: false,
                parent: record.parent.clone(),
                root_issued_at,
            },
        );
        if parent.is_some_and(|p| self.revoked.contains_key(p)) || record.revoked {
            self.revoked.entry(record.jti.clone()).or_insert(expires_at);
        }
        Ok(())
    }

    /// Revoked, unexpired records matching `filter`, counted before a cut-off is moved.
    fn count_live_unrevoked(&self, now: i64, filter: impl Fn(&Row) -> bool) -> usize {
        self.tokens
            .iter()
            .filter(|(j, r)| r.live_at(now) && filter(r) && !self.row_revoked(j, r))
            .count()
    }
}

impl TokenStore for MemoryStore {
    fn record(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let mut state = self.write();
        // Never later than the clock: a wrong issue time must not prune live records.
        state.prune_some(ms(record.issued_at.min(Timestamp::now())));
        state.insert(record, None)
    }

    fn record_checked(
        &self,
        record: &TokenRecord,
        parent_issued_at: Option<Timestamp>,
        max_live: usize,
    ) -> Result<(), IssueError> {
        let now = ms(Timestamp::now());
        let mut state = self.write();
        state.prune_some(now);
        let mut line_issued_at = None;
        if let Some(parent) = &record.parent {
            let recorded = state.tokens.get(parent);
            if recorded.is_some_and(|r| r.single_use) {
                return Err(IssueError::ParentSingleUse);
            }
            // Not recorded: judged by its `iat` second, as `check` judges it.
            let (issued, subject) = match recorded {
                Some(r) => (r.line_issued_at(), r.subject.as_str()),
                None => (
                    unrecorded_parent_issued_at(record, parent_issued_at),
                    record.subject.as_str(),
                ),
            };
            let revoked = state.revoked.contains_key(parent)
                || state.cutoff(subject).is_some_and(|cut| issued <= cut);
            if revoked {
                return Err(IssueError::ParentRevoked);
            }
            line_issued_at = Some(issued);
        }
        let live = state
            .tokens
            .values()
            .filter(|r| r.subject == record.subject && r.live_at(now))
            .count();
        check_live_limit(record, live, max_live)?;
        state.insert(record, line_issued_at)?;
        Ok(())
    }

    fn check(
        &self,
        jti: &str,
        subject: &str,
        issued_at: Timestamp,
    ) -> Result<Standing, StoreError> {
        let state = self.read();
        let row = state.tokens.get(jti);
        // The cut-offs of the subject the token names, compared with its recorded line issue
        // time, or with the `iat` given for a token not recorded here (in doubt, revoked).
        let revoked = state.revoked.contains_key(jti)
            || state
                .cutoff(subject)
                .is_some_and(|cut| row.map_or(ms(issued_at), Row::line_issued_at) <= cut);
        Ok(match (revoked, row.is_some_and(|r| r.single_use)) {
            (true, _) => Standing::Revoked,
            (false, true) => Standing::SingleUse,
            (false, false) => Standing::Valid,
        })
    }

    fn token_state(&self, jti: &str) -> Result<TokenState, StoreError> {
        let state = self.read();
        Ok(match state.tokens.get(jti) {
            Some(row) if state.row_revoked(jti, row) => TokenState::Revoked,
            Some(_) => TokenState::Active,
            None if state.revoked.contains_key(jti) => TokenState::Revoked,
            None => TokenState::Unknown,
        })
    }

    fn revoke(&self, jti: &str, _now: Timestamp) -> Result<bool, StoreError> {
        let mut state = self.write();
        let known = state.tokens.get(jti).map(|r| r.expires_at);
        let inserted = match state.revoked.entry(jti.to_owned()) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(known.flatten());
                true
            }
        };
        // Every recorded descendant, transitively (invariant 2).
        let mut line: HashSet<String> = HashSet::from([jti.to_owned()]);
        loop {
            let children: Vec<(String, Option<i64>)> = state
                .tokens
                .iter()
                .filter(|(j, r)| {
                    !line.contains(*j) && r.parent.as_ref().is_some_and(|p| line.contains(p))
                })
                .map(|(j, r)| (j.clone(), r.expires_at))
                .collect();
            if children.is_empty() {
                break;
            }
            for (child, expires_at) in children {
                state.revoked.entry(child.clone()).or_insert(expires_at);
                line.insert(child);
            }
        }
        Ok(known.is_some() || inserted)
    }

    fn revoke_subject(&self, subject: &str, now: Timestamp) -> Result<usize, StoreError> {
        let now = ms(now);
        let mut state = self.write();
        let touched =
            state.count_live_unrevoked(now, |r| r.subject == subject && r.line_issued_at() <= now);
        let cut = state
            .subject_cutoffs
            .entry(subject.to_owned())
            .or_insert(now);
        *cut = (*cut).max(now);
        Ok(touched)
    }

    fn revoke_all(&self, now: Timestamp) -> Result<usize, StoreError> {
        let now = ms(now);
        let mut state = self.write();
        let touched = state.count_live_unrevoked(now, |r| r.line_issued_at() <= now);
        state.global_cutoff = Some(state.global_cutoff.map_or(now, |c| c.max(now)));
        Ok(touched)
    }

    fn mark_used(&self, jti: &str, _now: Timestamp) -> Result<bool, StoreError> {
        let mut state = self.write();
        Ok(match state.tokens.get_mut(jti) {
            Some(row) if row.single_use => !std::mem::replace(&mut row.used, true),
            _ => true,
        })
    }

    fn list(&self, now: Timestamp) -> Result<Vec<TokenRecord>, StoreError> {
        let now = ms(now);
        let state = self.read();
        let mut records: Vec<TokenRecord> = state
            .tokens
            .iter()
            .filter(|(_, r)| r.live_at(now))
            .map(|(jti, r)| TokenRecord {
                jti: jti.clone(),
                subject: r.subject.clone(),
                scopes: r.scopes.clone(),
                issued_at: from_ms(r.issued_at),
                expires_at: r.expires_at.map(from_ms),
                single_use: r.single_use,
                revoked: state.row_revoked(jti, r),
                parent: r.parent.clone(),
            })
            .collect();
        records.sort_by(|a, b| {
            b.issued_at
                .cmp(&a.issued_at)
                .then_with(|| a.jti.cmp(&b.jti))
        });
        Ok(records)
    }

    fn prune(&self, now: Timestamp) -> Result<usize, StoreError> {
        let before = prune_before(ms(now));
        let mut state = self.write();
        let (tokens, revoked) = (state.tokens.len(), state.revoked.len());
        state
            .tokens
            .retain(|_, r| r.expires_at.is_none_or(|e| e >= before));
        state.revoked.retain(|_, e| e.is_none_or(|e| e >= before));
        Ok(tokens - state.tokens.len() + revoked - state.revoked.len())
    }

    // --- Sessions (contract section 9) ---

    fn session_create(
        &self,
        session: &SessionRecord,
        max_per_subject: usize,
    ) -> Result<(), StoreError> {
        let mut state = self.write();
        if state.sessions.contains_key(&session.id) {
            return Err(StoreError::Conflict {
                location: LOCATION.to_owned(),
                message: "that session id is recorded already".to_owned(),
                hint: "a session id is recorded only once",
            });
        }
        let now = session.created_at;
        let expired: Vec<String> = state
            .sessions
            .values()
            .filter(|s| s.expires_at < now)
            .map(|s| s.id.clone())
            .take(PRUNE_BATCH)
            .collect();
        for id in expired {
            state.sessions.remove(&id);
        }
        state.sessions.insert(session.id.clone(), session.clone());
        let mut mine: Vec<(Timestamp, String)> = state
            .sessions
            .values()
            .filter(|s| s.subject == session.subject && s.expires_at > now)
            .map(|s| (s.created_at, s.id.clone()))
            .collect();
        if mine.len() > max_per_subject {
            mine.sort();
            let excess = mine.len() - max_per_subject;
            for (_, id) in mine.into_iter().take(excess) {
                state.sessions.remove(&id);
            }
        }
        Ok(())
    }

    fn session_get(&self, id: &str, now: Timestamp) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self
            .read()
            .sessions
            .get(id)
            .filter(|s| s.expires_at > now)
            .cloned())
    }

    fn session_touch(&self, id: &str, now: Timestamp, address: &str) -> Result<(), StoreError> {
        if let Some(s) = self.write().sessions.get_mut(id) {
            s.last_seen_at = now;
            s.address = address.to_owned();
        }
        Ok(())
    }

    fn session_delete(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.write().sessions.remove(id).is_some())
    }

    fn session_delete_subject(&self, subject: &str) -> Result<usize, StoreError> {
        let mut state = self.write();
        let before = state.sessions.len();
        state.sessions.retain(|_, s| s.subject != subject);
        Ok(before - state.sessions.len())
    }

    fn session_list(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let mut list: Vec<SessionRecord> = self
            .read()
            .sessions
            .values()
            .filter(|s| s.subject == subject && s.expires_at > now)
            .cloned()
            .collect();
        list.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(list)
    }
    // --- API keys (contract section 9) ---

    fn create_key(
        &self,
        key: &super::ApiKeyRecord,
        max_live: usize,
    ) -> Result<super::KeyCreated, StoreError> {
        self.write().keys.create(key, max_live)
    }

    fn key_by_digest(&self, digest: &[u8; 32]) -> Result<Option<super::ApiKeyRecord>, StoreError> {
        Ok(self.read().keys.by_digest(digest))
    }

    fn key_by_id(&self, id: &str) -> Result<Option<super::ApiKeyRecord>, StoreError> {
        Ok(self.read().keys.by_id(id))
    }

    fn list_keys(&self, owner: Option<&str>) -> Result<Vec<super::ApiKeyRecord>, StoreError> {
        Ok(self.read().keys.list(owner))
    }

    fn set_key_state(
        &self,
        id: &str,
        to: super::StoredKeyState,
    ) -> Result<super::KeyChange, StoreError> {
        Ok(self.write().keys.set_state(id, to))
    }

    fn rotate_key(
        &self,
        old_id: &str,
        new: &super::ApiKeyRecord,
        grace_until: Option<Timestamp>,
    ) -> Result<super::KeyChange, StoreError> {
        self.write().keys.rotate(old_id, new, grace_until)
    }

    fn touch_keys(&self, uses: &[super::KeyUse]) -> Result<(), StoreError> {
        self.write().keys.touch(uses);
        Ok(())
    }

    // --- Exchanged ID tokens (contract section 11) ---

    fn mark_id_token_exchanged(
        &self,
        id: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut map = self.exchanged.lock().unwrap_or_else(|e| e.into_inner());
        let now = ms(now);
        let old: Vec<String> = map
            .iter()
            .filter(|(_, e)| **e < now)
            .map(|(k, _)| k.clone())
            .take(PRUNE_BATCH)
            .collect();
        for k in old {
            map.remove(&k);
        }
        if map.contains_key(id) {
            return Ok(false);
        }
        map.insert(id.to_owned(), ms(expires_at));
        Ok(true)
    }

    fn update_counters(
        &self,
        keys: &[String],
        now: Timestamp,
        update: CounterUpdate,
    ) -> Result<u64, StoreError> {
        let now = ms(now);
        let forgotten = super::counters_before(now);
        let mut table = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<Option<super::Counter>> = keys
            .iter()
            .map(|k| table.get(k).copied().filter(|c| c.at_ms >= forgotten))
            .collect();
        let answer = update(&mut rows);
        for (key, row) in keys.iter().zip(rows) {
            match row {
                None => {
                    table.remove(key);
                }
                Some(c) => {
                    if table.len() >= MAX_COUNTERS && !table.contains_key(key) {
                        table.retain(|_, c| c.at_ms >= forgotten);
                        if table.len() >= MAX_COUNTERS {
                            let mut times: Vec<i64> = table.values().map(|c| c.at_ms).collect();
                            let cut = times.len() / 4;
                            let (_, cutoff, _) = times.select_nth_unstable(cut);
                            let cutoff = *cutoff;
                            table.retain(|_, c| c.at_ms > cutoff);
                        }
                    }
                    table.insert(key.clone(), c);
                }
            }
        }
        Ok(answer)
    }

    fn report(&self) -> Result<super::StoreReport, StoreError> {
        let state = self.read();
        let rows = [
            ("tokens", state.tokens.len()),
            ("revoked_jtis", state.revoked.len()),
            ("subject_cutoffs", state.subject_cutoffs.len()),
            ("global_cutoff", usize::from(state.global_cutoff.is_some())),
            ("login_counters", self.counter_count()),
        ]
        .into_iter()
        .map(|(t, n)| (t.to_owned(), i64::try_from(n).unwrap_or(i64::MAX)))
        .collect();
        Ok(super::StoreReport {
            engine: "memory",
            location: LOCATION.to_owned(),
            schema_version: 0,
            known_version: 0,
            rows,
        })
    }
}

impl MemoryStore {
    /// How many login failure counters are kept (for tests of the bound).
    #[doc(hidden)]
    pub fn counter_count(&self) -> usize {
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}
