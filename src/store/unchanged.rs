//! Answers of the revocation check, reused while the database has not changed at all.
//!
//! Every authenticated request of the server asks the store whether its token was revoked.
//! The query itself is a few index lookups, but each one is a SQLite read transaction: locks
//! on the shared-memory file (two `fcntl`s and a mutex), a file-size check, and the statement
//! machinery. That cost more than verifying the token's signature. Instead, an answer is kept
//! together with the WAL-index header it was computed under, and reused only while the header
//! is byte for byte the same.
//!
//! The WAL-index header is the first 96 bytes of SQLite's `-shm` file: two copies of a
//! 48-byte header that every SQLite writer, in any process, rewrites when it commits (it holds
//! a counter bumped by each transaction, the last frame, and salts that change when the WAL is
//! reset). Its layout is fixed by SQLite's file-format documentation
//! (<https://www.sqlite.org/walformat.html>, "The WAL-Index Header"), since processes running
//! different SQLite versions share it. So "same header" means "no transaction committed
//! since", and a revocation by another process is seen by the next check, as without reuse.
//!
//! The header is read with `pread` (no mapping, so a truncated file is an error, never a
//! signal). Reads can race with a writer: any difference, including between the two copies,
//! counts as a change, and the store is asked.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

/// Bytes of the two header copies.
const HEADER_LEN: usize = 96;
/// Most answers kept; past that the table is emptied and refilled.
const MAX_ANSWERS: usize = 4096;

type Header = [u8; HEADER_LEN];

/// Who asked: the token id, its subject and its `iat` (milliseconds).
type Key = (String, String, i64);

#[derive(Debug)]
pub(super) struct Unchanged {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The `-shm` file, with the store generation it was opened in.
    shm: Option<(u64, File)>,
    /// The header the answers below were computed under.
    header: Option<Header>,
    /// Tokens known not to be revoked under `header`.
    not_revoked: HashSet<Key>,
}

impl Unchanged {
    pub(super) fn new() -> Self {
        Unchanged {
            state: Mutex::new(State::default()),
        }
    }

    /// Whether `key` is known not to be revoked in the current state of the store at `store`
    /// (opened in `generation`); if not, the header to give [`Unchanged::remember`] once the
    /// store has answered.
    pub(super) fn lookup(&self, store: &Path, generation: u64, key: &Key) -> Lookup {
        let mut state = self.lock();
        let header = state.read_header(store, generation);
        match header {
            Some(h) if state.header == Some(h) && state.not_revoked.contains(key) => {
                Lookup::NotRevoked
            }
            _ => Lookup::Ask(header),
        }
    }

    /// Remembers that `key` is not revoked, as the store answered after `lookup` gave
    /// `before`: kept only when the header is still `before` (no commit while asking).
    pub(super) fn remember(&self, store: &Path, generation: u64, before: Header, key: Key) {
        let mut state = self.lock();
        // Not across a reopening of the store (another file may be in place now).
        if state.shm.as_ref().is_none_or(|(g, _)| *g != generation)
            || state.read_header(store, generation) != Some(before)
        {
            return;
        }
        if state.header != Some(before) || state.not_revoked.len() >= MAX_ANSWERS {
            state.not_revoked.clear();
            state.header = Some(before);
        }
        state.not_revoked.insert(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a cache: after a panic elsewhere it is still consistent enough, since
        // every use re-checks the header.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What [`Unchanged::lookup`] found.
pub(super) enum Lookup {
    NotRevoked,
    /// Ask the store; the header read before asking, when there is a usable one.
    Ask(Option<Header>),
}

impl State {
    /// The current header, or `None` when it cannot be read consistently right now.
    fn read_header(&mut self, store: &Path, generation: u64) -> Option<Header> {
        if self.shm.as_ref().is_none_or(|(g, _)| *g != generation) {
            self.header = None;
            self.not_revoked.clear();
            self.shm = File::open(shm_path(store)).ok().map(|f| (generation, f));
        }
        let (_, file) = self.shm.as_ref()?;
        let mut bytes = [0u8; HEADER_LEN];
        file.read_exact_at(&mut bytes, 0).ok()?;
        // Both copies equal and initialised (isInit, byte 12): a header SQLite readers would
        // accept as it is.
        let (a, b) = bytes.split_at(HEADER_LEN / 2);
        (a == b && a[12] == 1).then_some(bytes)
    }
}

fn shm_path(store: &Path) -> std::path::PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push("-shm");
    p.into()
}
