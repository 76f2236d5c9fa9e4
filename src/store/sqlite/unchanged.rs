//! Answers of the token check (and sessions found, see `sessions.rs`), reused while the
//! database has not changed at all. Private to the SQLite engine.
//!
//! Every authenticated request of the server asks the store whether its token may be used
//! ([`crate::store::TokenStore::check`]). The query itself is a few index lookups, but each
//! one is a SQLite read transaction: locks on the shared-memory file (two `fcntl`s and a
//! mutex), a file-size check, and the statement machinery. That cost more than verifying the
//! token's signature. Instead, a "valid" answer is kept together with the WAL-index header it
//! was computed under, and reused only while the header is byte for byte the same.
//!
//! The WAL-index header is the first 96 bytes of SQLite's `-shm` file: two copies of a
//! 48-byte header that every SQLite writer, in any process, rewrites when it commits (it holds
//! a counter bumped by each transaction, the last frame, and salts that change when the WAL is
//! reset). Its layout is fixed by SQLite's file-format documentation
//! (<https://www.sqlite.org/walformat.html>, "The WAL-Index Header"), since processes running
//! different SQLite versions share it. So "same header" means "no transaction committed
//! since", and a revocation by another process is seen by the next check, as without reuse.
//!
//! Invariants that keep the reuse correct:
//! - An answer depends on the database alone (the token's id revocation, the cut-offs, and its
//!   record: single-use or not, and the issue time of its line), never on anything outside
//!   it. Derived tokens keep to it: revoking an ancestor writes revocations of its descendants
//!   in the same transaction, and a derived token is recorded (with its line's issue time)
//!   before it is handed out (invariants 1 to 3 in [`crate::store`]). So a revocation of a
//!   parent is, like every other, a commit that changes the header, and no answer about one
//!   of its descendants is reused after it.
//! - Only "valid" (not revoked, not single-use) answers are kept: a single-use token goes to
//!   the database at each use, where its use is marked.
//! - An answer is kept only when the header read before asking is still the header after
//!   (no commit while asking), and all answers are dropped when the header changes or the
//!   store is reopened after a fault; no answer is reused while the store is marked broken.
//! - The header is read with `pread` (no mapping, so a truncated file is an error, never a
//!   signal). Reads can race with a writer: any difference, including between the two copies,
//!   counts as a change, and the store is asked.
//! - At most [`MAX_ANSWERS`] answers are kept; past that the table is emptied and refilled.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Bytes of the two header copies.
const HEADER_LEN: usize = 96;
/// Most answers kept; past that the table is emptied and refilled.
const MAX_ANSWERS: usize = 4096;

pub(super) type Header = [u8; HEADER_LEN];

#[derive(Debug, Default)]
pub(super) struct Unchanged {
    /// The `-shm` file, with the store generation it was opened in.
    shm: RwLock<Option<(u64, Arc<File>)>>,
    answers: RwLock<Answers>,
}

/// Tokens known to be valid (not revoked, not single-use) under `header`: token id to subject
/// and `iat` (ms).
#[derive(Debug, Default)]
struct Answers {
    header: Option<Header>,
    valid: HashMap<String, (String, i64)>,
    /// Browser sessions found in the store under `header`, by id (contract section 9). The
    /// same rule as for tokens: only sessions found are kept (an ended one is a commit that
    /// changes the header), and their expiry is checked again on every use by the caller.
    sessions: HashMap<String, crate::store::SessionRecord>,
}

/// What [`Unchanged::lookup`] found.
pub(super) enum Lookup {
    /// Known valid: not revoked, not single-use.
    Valid,
    /// Ask the store; the header read before asking, when there is a usable one.
    Ask(Option<Header>),
}

impl Unchanged {
    /// Whether the token is known to be valid in the current state of the store at
    /// `store` (opened in `generation`); if not, the header to give [`Unchanged::remember`]
    /// once the store has answered. Takes no lock for longer than a hash lookup.
    pub(super) fn lookup(
        &self,
        store: &Path,
        generation: u64,
        jti: &str,
        subject: &str,
        iat: i64,
    ) -> Lookup {
        let header = self.read_header(store, generation);
        let Some(h) = header else {
            return Lookup::Ask(None);
        };
        let answers = read(&self.answers);
        let known = answers.header == Some(h)
            && answers
                .valid
                .get(jti)
                .is_some_and(|(s, i)| s == subject && *i == iat);
        if known {
            Lookup::Valid
        } else {
            Lookup::Ask(header)
        }
    }

    /// Remembers that the token is valid, as the store answered after `lookup` gave
    /// `before`: kept only when the header is still `before` (no commit while asking).
    pub(super) fn remember(
        &self,
        store: &Path,
        generation: u64,
        before: Header,
        jti: &str,
        subject: &str,
        iat: i64,
    ) {
        if self.read_header(store, generation) != Some(before) {
            return;
        }
        let mut answers = write(&self.answers);
        if answers.header != Some(before) || answers.valid.len() >= MAX_ANSWERS {
            answers.valid.clear();
            answers.sessions.clear();
            answers.header = Some(before);
        }
        answers
            .valid
            .insert(jti.to_owned(), (subject.to_owned(), iat));
    }

    /// The session `id` when it was found in the store in its current state; else the header
    /// to give [`Unchanged::remember_session`] once the store has answered (`Err`).
    pub(super) fn lookup_session(
        &self,
        store: &Path,
        generation: u64,
        id: &str,
    ) -> Result<crate::store::SessionRecord, Option<Header>> {
        let Some(h) = self.read_header(store, generation) else {
            return Err(None);
        };
        let answers = read(&self.answers);
        match answers.sessions.get(id) {
            Some(s) if answers.header == Some(h) => Ok(s.clone()),
            _ => Err(Some(h)),
        }
    }

    /// Remembers a session the store returned after `lookup_session` gave `before`: kept only
    /// when the header is still `before`.
    pub(super) fn remember_session(
        &self,
        store: &Path,
        generation: u64,
        before: Header,
        session: &crate::store::SessionRecord,
    ) {
        if self.read_header(store, generation) != Some(before) {
            return;
        }
        let mut answers = write(&self.answers);
        if answers.header != Some(before) || answers.sessions.len() >= MAX_ANSWERS {
            answers.valid.clear();
            answers.sessions.clear();
            answers.header = Some(before);
        }
        answers.sessions.insert(session.id.clone(), session.clone());
    }

    /// The current header, or `None` when it cannot be read consistently right now. After the
    /// store was reopened (`generation` grew) the file is opened again and the answers are
    /// dropped.
    fn read_header(&self, store: &Path, generation: u64) -> Option<Header> {
        let current = read(&self.shm).clone();
        let file = match current {
            Some((g, f)) if g == generation => f,
            // A caller that started before the store was reopened: nothing to reuse.
            Some((g, _)) if g > generation => return None,
            _ => {
                let mut shm = write(&self.shm);
                if shm.as_ref().is_none_or(|(g, _)| *g < generation) {
                    *write(&self.answers) = Answers::default();
                    *shm = File::open(super::beside(store, "-shm"))
                        .ok()
                        .map(|f| (generation, Arc::new(f)));
                }
                match shm.as_ref()? {
                    (g, f) if *g == generation => Arc::clone(f),
                    _ => return None,
                }
            }
        };
        let mut bytes = [0u8; HEADER_LEN];
        file.read_exact_at(&mut bytes, 0).ok()?;
        // Both copies equal and initialised (isInit, byte 12): a header SQLite readers would
        // accept as it is.
        let (a, b) = bytes.split_at(HEADER_LEN / 2);
        (a == b && a[12] == 1).then_some(bytes)
    }
}

// The state is a cache that every use re-checks against the header: after a panic elsewhere
// it is still safe to use.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}
