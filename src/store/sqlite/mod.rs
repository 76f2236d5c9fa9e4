//! The token store in one SQLite file (WAL mode), safe for several processes at once.
//!
//! Invariants of this engine, beside those of every store (in [`crate::store`]):
//! - Every call that decides whether a token is valid reads the database, so a revocation
//!   committed by one process is seen by the next check of every other. The one reuse, of
//!   answers while no transaction has committed anywhere, is explained in [`unchanged`].
//! - Records of freshly minted tokens may wait in a file beside the database (see
//!   [`pending`]); every call that lists, counts or revokes moves them in first, and a
//!   revocation check that finds a token revoked by a cut-off moves them in and asks again.
//! - Times are stored as Unix milliseconds; the issue time of a token's line is
//!   `COALESCE(root_issued_at, issued_at)`.
//! - A store that fails in a way a fresh connection may cure is reopened by the next call,
//!   but never created again: a store moved aside stays unavailable until it is restored.

mod counters;
mod exchange;
mod keys;
mod pending;
mod sessions;
mod unchanged;

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

use unchanged::{Lookup, Unchanged};

use crate::store::{
    IssueError, PRUNE_BATCH, SessionRecord, Standing, StoreError, TokenRecord, TokenState,
    TokenStore, check_live_limit, from_ms, ms, prune_before, unrecorded_parent_issued_at,
};

/// `PRAGMA user_version` of the schema this code writes: one step per entry of [`MIGRATIONS`].
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;
/// How long to wait for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema steps: `MIGRATIONS[i]` brings a database of version `i` to version `i + 1`. A step is
/// never changed once released: a change is a new step, so that existing stores are upgraded.
const MIGRATIONS: [&str; 6] = [
    SCHEMA_V1,
    SCHEMA_V2,
    sessions::SCHEMA_SESSIONS,
    keys::SCHEMA_KEYS,
    exchange::SCHEMA_EXCHANGED_ID_TOKENS,
    counters::SCHEMA_COUNTERS,
];

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS tokens (
    jti        TEXT PRIMARY KEY NOT NULL,
    subject    TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER,
    single_use INTEGER NOT NULL DEFAULT 0,
    used_at    INTEGER
);
CREATE INDEX IF NOT EXISTS tokens_subject ON tokens (subject, issued_at);
CREATE TABLE IF NOT EXISTS revoked_jtis (
    jti        TEXT PRIMARY KEY NOT NULL,
    revoked_at INTEGER NOT NULL,
    expires_at INTEGER
);
CREATE TABLE IF NOT EXISTS subject_cutoffs (
    subject        TEXT PRIMARY KEY NOT NULL,
    revoked_before INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS global_cutoff (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    revoked_before INTEGER NOT NULL
);
";

/// Version 2: derived tokens. `parent` is the id of the token a token was derived from;
/// `root_issued_at` the issue time of the first token of its line, which cut-offs compare
/// (NULL: the token's own `issued_at`). Indexes for the descendants of a token, the
/// unexpired tokens of a subject, and pruning by expiry.
const SCHEMA_V2: &str = "
ALTER TABLE tokens ADD COLUMN parent TEXT;
ALTER TABLE tokens ADD COLUMN root_issued_at INTEGER;
CREATE INDEX IF NOT EXISTS tokens_parent ON tokens (parent) WHERE parent IS NOT NULL;
CREATE INDEX IF NOT EXISTS tokens_live ON tokens (subject, expires_at);
CREATE INDEX IF NOT EXISTS tokens_expiry ON tokens (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS revoked_expiry ON revoked_jtis (expires_at) WHERE expires_at IS NOT NULL;
";

/// Records one token; `?8` is its line's issue time when the caller knows it, else it is
/// taken from the recorded parent (`?7`), else NULL (its own issue time).
const INSERT_SQL: &str = "INSERT INTO tokens
    (jti, subject, scopes, issued_at, expires_at, single_use, parent, root_issued_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,
        COALESCE(?8, (SELECT COALESCE(p.root_issued_at, p.issued_at) FROM tokens p WHERE p.jti = ?7)))";

/// [`INSERT_SQL`] for records that may be there already (moving pending lines).
pub(super) const INSERT_OR_IGNORE_SQL: &str = "INSERT OR IGNORE INTO tokens
    (jti, subject, scopes, issued_at, expires_at, single_use, parent, root_issued_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,
        COALESCE(?8, (SELECT COALESCE(p.root_issued_at, p.issued_at) FROM tokens p WHERE p.jti = ?7)))";

/// After a record with a parent (`?4`) is inserted: when the parent is revoked by id, the
/// record is too (invariant 2 of [`crate::store`] for records made without the checks of
/// `record_checked`). `?1` jti, `?2` now, `?3` expiry.
const INHERIT_REVOCATION_SQL: &str =
    "INSERT OR IGNORE INTO revoked_jtis (jti, revoked_at, expires_at)
    SELECT ?1, ?2, ?3 WHERE ?4 IS NOT NULL AND EXISTS (SELECT 1 FROM revoked_jtis WHERE jti = ?4)";

/// Revokes every recorded descendant of `?1` (children, their children, ...) at `?2`.
const REVOKE_DESCENDANTS_SQL: &str = "WITH RECURSIVE line(jti) AS (
        SELECT jti FROM tokens WHERE parent = ?1
        UNION
        SELECT t.jti FROM tokens t JOIN line ON t.parent = line.jti
    )
    INSERT OR IGNORE INTO revoked_jtis (jti, revoked_at, expires_at)
    SELECT t.jti, ?2, t.expires_at FROM tokens t JOIN line ON t.jti = line.jti";

/// Unexpired recorded tokens of subject `?1` at `?2`: two ranges of the `tokens_live` index.
const COUNT_LIVE_SQL: &str = "SELECT
    (SELECT COUNT(*) FROM tokens WHERE subject = ?1 AND expires_at > ?2)
    + (SELECT COUNT(*) FROM tokens WHERE subject = ?1 AND expires_at IS NULL)";

/// Deletes at most [`PRUNE_BATCH`] expired token records and as many expired id revocations
/// (through the expiry indexes: the work is bounded whatever the size of the store).
fn prune_some(conn: &Connection, now: i64) -> rusqlite::Result<usize> {
    let before = prune_before(now);
    let tokens = conn.execute(
        "DELETE FROM tokens WHERE rowid IN
            (SELECT rowid FROM tokens WHERE expires_at < ?1 LIMIT ?2)",
        params![before, PRUNE_BATCH as i64],
    )?;
    let revoked = conn.execute(
        "DELETE FROM revoked_jtis WHERE rowid IN
            (SELECT rowid FROM revoked_jtis WHERE expires_at < ?1 LIMIT ?2)",
        params![before, PRUNE_BATCH as i64],
    )?;
    Ok(tokens + revoked)
}

/// Whether the `tokens` row `t` is revoked: by id (which covers its ancestors, invariant 2 of
/// [`crate::store`]), by its subject's cut-off or by the global cut-off (the issue time of its line
/// `<=` the cut-off, invariant 3).
const REVOKED_SQL: &str = "(
    EXISTS (SELECT 1 FROM revoked_jtis r WHERE r.jti = t.jti)
    OR COALESCE(t.root_issued_at, t.issued_at) <= COALESCE((SELECT c.revoked_before FROM subject_cutoffs c WHERE c.subject = t.subject), -9223372036854775808)
    OR COALESCE(t.root_issued_at, t.issued_at) <= COALESCE((SELECT g.revoked_before FROM global_cutoff g WHERE g.id = 1), -9223372036854775808)
)";

const HINT_LOCKED: &str = "another tessera process holds the lock; retry";
const HINT_CORRUPT: &str = "the file is not a tessera token store; move it aside";
const HINT_NEWER: &str = "it was written by a newer tessera; upgrade, or move it aside";
const HINT_IO: &str = "check that the folder exists and is writable";
const HINT_CONFLICT: &str = "a token id is recorded only once";

/// Most read connections kept for [`TokenStore::check`]; one more is opened only when all
/// open ones are busy at that moment.
const MAX_READERS: usize = 4;

/// The check of a token presented for use, in one statement of four index lookups: revoked
/// by id, the cut-offs that apply (the subject's and the global one), and the token's record
/// (whether it is single-use, and the issue time of its line, which a cut-off compares:
/// invariant 3 of [`crate::store`]). A derived token needs nothing more: a revoked ancestor
/// was written down as a revocation of its id (invariants 1 and 2). The aggregate makes one
/// row, of NULLs for a token that is not recorded.
const CHECK_SQL: &str = "SELECT EXISTS (SELECT 1 FROM revoked_jtis WHERE jti = ?1),
    (SELECT revoked_before FROM subject_cutoffs WHERE subject = ?2),
    (SELECT revoked_before FROM global_cutoff WHERE id = 1),
    MAX(t.single_use), MAX(COALESCE(t.root_issued_at, t.issued_at))
    FROM tokens t WHERE t.jti = ?1";

/// The SQLite engine: one store file, shared by every process on the host that opens it.
/// Callers open it through [`crate::store::open`].
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Set when a call failed in a way that a fresh connection may cure (the file was
    /// damaged, moved aside, replaced or unreadable): the next call reopens the file first, so
    /// a long-running server recovers once the file is restored, without a restart.
    broken: AtomicBool,
    /// Bumped each time the write connection is reopened after a fault, so that read
    /// connections opened on the old file are reopened too.
    generation: AtomicU64,
    /// Read-only connections for `check`, opened on first use, with the generation they
    /// were opened in.
    readers: [Mutex<Option<(u64, Connection)>>; MAX_READERS],
    /// "Valid" answers of `check`, reused while no transaction has committed since.
    unchanged: Unchanged,
}

/// Creates the folder of the store at `path` (mode 0700) when it is missing.
fn create_folder(path: &Path) -> Result<(), StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| StoreError::Io {
                location: path.display().to_string(),
                message: format!("cannot create {}: {e}", parent.display()),
                hint: HINT_IO,
            })?;
    }
    Ok(())
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating with mode 0600 in a 0700 folder) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        create_folder(path)?;
        // Create the file ourselves so that it is 0600 from the start; SQLite gives its -wal
        // and -shm files the same mode.
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| StoreError::Io {
                location: path.display().to_string(),
                message: format!("cannot open: {e}"),
                hint: HINT_IO,
            })?;
        let store = SqliteStore {
            path: path.to_owned(),
            conn: Mutex::new(connect(path)?),
            broken: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            readers: std::array::from_fn(|_| Mutex::new(None)),
            unchanged: Unchanged::default(),
        };
        store.move_pending(false);
        Ok(store)
    }

    /// Records `record` for the store at `path` without opening the database when it can: a
    /// token that is neither single-use, nor revoked, nor derived is appended to the pending
    /// file (see [`pending`]), which the next [`SqliteStore::open`] (or the next call that
    /// needs it) moves into the database. It costs one write instead of a database
    /// transaction. Returns the size of the pending file after the write, or `None` when the
    /// record needs the database at once.
    fn append_pending(path: &Path, record: &TokenRecord) -> Result<Option<u64>, StoreError> {
        // A derived record needs its parent's line and revocation at once (invariants 1 and 2
        // of [`crate::store`]); a single-use one is asked about at its first use.
        if record.single_use || record.revoked || record.parent.is_some() {
            return Ok(None);
        }
        create_folder(path)?;
        let size = pending::append(path, record).map_err(|e| StoreError::Io {
            location: pending::path(path).display().to_string(),
            message: format!("cannot append: {e}"),
            hint: HINT_IO,
        })?;
        Ok(Some(size))
    }

    /// Whether there is a store at `path`: the database, or records waiting to enter it.
    pub(super) fn exists(path: &Path) -> bool {
        path.exists() || pending::path(path).exists()
    }

    /// Moves pending records into the database, best effort: what cannot be moved now stays
    /// for the next call. With `wait`, waits for locks as a write does ([`BUSY_TIMEOUT`]);
    /// without, gives up at once when another process holds one, so that opening the store
    /// and checking a token never wait for a writer.
    fn move_pending(&self, wait: bool) {
        let mut conn = self.conn();
        let timeout = if wait { BUSY_TIMEOUT } else { Duration::ZERO };
        if !wait {
            let _ = conn.busy_timeout(timeout);
        }
        let result = pending::move_into(&self.path, &mut conn, timeout);
        if !wait {
            let _ = conn.busy_timeout(BUSY_TIMEOUT);
        }
        let e = match result {
            Ok(_) => return,
            Err(pending::MoveError::Io(e)) => e.to_string(),
            Err(pending::MoveError::Sql(e)) => self.err(e).to_string(),
        };
        tracing::warn!(error = %e, "token records stay pending; the next write moves them");
    }

    /// Whether records are waiting in the pending file.
    fn has_pending(&self) -> bool {
        std::fs::metadata(pending::path(&self.path)).is_ok_and(|m| m.len() > 0)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no half-done transaction behind (rusqlite rolls
        // back on drop), so the connection is still usable.
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if self.broken.load(Ordering::Acquire) {
            // Never creates the file: a store that was moved aside stays unavailable (fail
            // closed) until it is restored, rather than silently starting empty.
            if self.path.is_file()
                && let Ok(fresh) = connect(&self.path)
            {
                *conn = fresh;
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.broken.store(false, Ordering::Release);
            }
        }
        conn
    }

    /// Runs `f` on a read connection: the first one free at this moment (lowest first, so few
    /// are ever opened and their page caches stay warm), else waits for the first one. After a
    /// fault the write connection is reopened first (see `conn`), and a reader opened before
    /// that is replaced.
    fn with_reader<R>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R>,
    ) -> Result<R, StoreError> {
        if self.broken.load(Ordering::Acquire) {
            drop(self.conn());
        }
        let generation = self.generation.load(Ordering::Acquire);
        let mut slot = None;
        for reader in &self.readers {
            match reader.try_lock() {
                Ok(g) => {
                    slot = Some(g);
                    break;
                }
                // A panic on another thread mid-query leaves no transaction open (the
                // statement is reset on drop): the connection is still usable.
                Err(TryLockError::Poisoned(p)) => {
                    slot = Some(p.into_inner());
                    break;
                }
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let mut guard = match slot {
            Some(g) => g,
            None => self.readers[0].lock().unwrap_or_else(|e| e.into_inner()),
        };
        if guard.as_ref().is_some_and(|(g, _)| *g != generation) {
            *guard = None;
        }
        let conn = match &mut *guard {
            Some((_, c)) => c,
            empty => {
                &mut empty
                    .insert((generation, self.open_reader().map_err(|e| self.err(e))?))
                    .1
            }
        };
        f(conn).map_err(|e| self.err(e))
    }

    /// A connection that only reads (`query_only`), on the file `connect` has set up (WAL mode
    /// is a property of the file). It never creates the file.
    fn open_reader(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch("PRAGMA query_only = ON;")?;
        Ok(conn)
    }

    /// Makes the last commit survive a power cut. With `synchronous = NORMAL` a WAL commit is
    /// not synced, which is fine for token records but not for revocations; a checkpoint
    /// syncs the WAL first.
    fn make_durable(&self, conn: &Connection) -> Result<(), StoreError> {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(|e| self.err(e))
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        if matches!(
            e.sqlite_error_code(),
            Some(
                ErrorCode::NotADatabase
                    | ErrorCode::DatabaseCorrupt
                    | ErrorCode::CannotOpen
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::ReadOnly
            )
        ) {
            self.broken.store(true, Ordering::Release);
        }
        error(&self.path, e)
    }
}

/// Opens the existing file at `path` and brings it to the current schema (WAL mode, busy
/// timeout).
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| error(path, e))?;
    init(path, &mut conn)?;
    Ok(conn)
}

fn init(path: &Path, conn: &mut Connection) -> Result<(), StoreError> {
    let err = |e| error(path, e);
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    if version > SCHEMA_VERSION {
        return Err(newer(path, version));
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .map_err(err)?;
    }
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
        .map_err(err)?;
    if version < SCHEMA_VERSION {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        // Another process may have upgraded it meanwhile: read the version again under the
        // write lock, and run only the steps still missing.
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        if version > SCHEMA_VERSION {
            return Err(newer(path, version));
        }
        let done = usize::try_from(version).unwrap_or(0);
        for step in MIGRATIONS.iter().skip(done) {
            tx.execute_batch(step).map_err(err)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(())
}

impl SqliteStore {
    /// Counts recorded, unexpired, not yet revoked tokens matching `filter` (an SQL condition
    /// on `t` with `?1` = now in ms and `?2` = an optional subject).
    fn count_live(
        conn: &Connection,
        filter: &str,
        now: i64,
        subject: Option<&str>,
    ) -> rusqlite::Result<usize> {
        let sql = format!(
            "SELECT COUNT(*) FROM tokens t WHERE {filter}
             AND (t.expires_at IS NULL OR t.expires_at > ?1) AND NOT {REVOKED_SQL}"
        );
        conn.query_row(&sql, params![now, subject], |r| r.get::<_, i64>(0))
            .map(|n| usize::try_from(n).unwrap_or(0))
    }

    /// Writes a revocation cut-off (`cutoff_sql` with `cutoff_params`) in one write
    /// transaction, after moving pending records in, and returns how many live tokens it
    /// touched: those [`Self::count_live`] finds with `live` (`?1` is `now`, `?2` `subject`).
    fn write_cutoff(
        &self,
        live: &str,
        now: i64,
        subject: Option<&str>,
        cutoff_sql: &str,
        cutoff_params: impl rusqlite::Params,
    ) -> Result<usize, StoreError> {
        self.move_pending(true);
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let touched = Self::count_live(&tx, live, now, subject).map_err(|e| self.err(e))?;
        tx.execute(cutoff_sql, cutoff_params)
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        self.make_durable(&conn)?;
        Ok(touched)
    }
}

/// Inserts `record` with `sql` ([`INSERT_SQL`] or [`INSERT_OR_IGNORE_SQL`]), with the issue
/// time of its line when known, and marks it revoked when its parent is revoked by id. Returns
/// whether a row was inserted.
pub(super) fn insert(
    conn: &Connection,
    sql: &str,
    record: &TokenRecord,
    line_issued_at: Option<i64>,
) -> rusqlite::Result<bool> {
    let inserted = conn.prepare_cached(sql)?.execute(params![
        record.jti,
        record.subject,
        record.scopes,
        ms(record.issued_at),
        record.expires_at.map(ms),
        record.single_use,
        record.parent,
        line_issued_at,
    ])? == 1;
    if inserted && record.parent.is_some() {
        conn.prepare_cached(INHERIT_REVOCATION_SQL)?
            .execute(params![
                record.jti,
                ms(Timestamp::now()),
                record.expires_at.map(ms),
                record.parent,
            ])?;
    }
    Ok(inserted)
}

fn newer(path: &Path, found: i64) -> StoreError {
    StoreError::NewerSchema {
        location: path.display().to_string(),
        found,
        known: SCHEMA_VERSION,
        hint: HINT_NEWER,
    }
}

/// Maps a SQLite error to its kind, with SQLite's sentence and a hint.
fn error(path: &Path, e: rusqlite::Error) -> StoreError {
    let location = path.display().to_string();
    let message = e.to_string();
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy {
            location,
            message,
            hint: HINT_LOCKED,
        },
        Some(
            ErrorCode::ReadOnly
            | ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull,
        ) => StoreError::Io {
            location,
            message,
            hint: HINT_IO,
        },
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict {
            location,
            message,
            hint: HINT_CONFLICT,
        },
        // Not a database, damaged, or anything else SQLite cannot make sense of.
        _ => StoreError::Corrupt {
            location,
            message,
            hint: HINT_CORRUPT,
        },
    }
}

impl TokenStore for SqliteStore {
    /// Appends the record to the pending file when it can wait (see [`pending`]); past
    /// [`pending::MOVE_AT_BYTES`] the file is moved into the database at once, so that a file
    /// that no other process ever reads stays small.
    fn record_minted(&self, record: &TokenRecord) -> Result<(), StoreError> {
        match Self::append_pending(&self.path, record)? {
            Some(size) if size >= pending::MOVE_AT_BYTES => {
                self.move_pending(true);
                Ok(())
            }
            Some(_) => Ok(()),
            None => self.record(record),
        }
    }

    fn record(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        // Never later than the clock: a wrong issue time must not prune live records.
        let now = ms(record.issued_at.min(Timestamp::now()));
        prune_some(&tx, now).map_err(|e| self.err(e))?;
        insert(&tx, INSERT_SQL, record, None).map_err(|e| self.err(e))?;
        if record.revoked {
            tx.execute(
                "INSERT OR IGNORE INTO revoked_jtis (jti, revoked_at, expires_at) VALUES (?1, ?2, ?3)",
                params![record.jti, ms(record.issued_at), record.expires_at.map(ms)],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// A recorded token is judged by its recorded (millisecond) issue time, so a token minted
    /// in the same second as, but after, a `revoke --subject`/`--all` stays valid. A token not
    /// recorded here is judged by `issued_at` as given (the `iat` second), so it is revoked
    /// when issued in the second of the cut-off: in doubt, revoked.
    fn check(
        &self,
        jti: &str,
        subject: &str,
        issued_at: Timestamp,
    ) -> Result<Standing, StoreError> {
        let issued_at = ms(issued_at);
        let query = || {
            self.with_reader(|conn| {
                // Statements cached per connection: this runs on every authenticated request
                // of the server.
                let (by_id, subject_cut, global_cut, single_use, line_issued) = conn
                    .prepare_cached(CHECK_SQL)?
                    .query_row(params![jti, subject], |r| {
                        Ok((
                            r.get::<_, bool>(0)?,
                            r.get::<_, Option<i64>>(1)?,
                            r.get::<_, Option<i64>>(2)?,
                            r.get::<_, Option<bool>>(3)?,
                            r.get::<_, Option<i64>>(4)?,
                        ))
                    })?;
                let cut = subject_cut.max(global_cut);
                let revoked =
                    by_id || cut.is_some_and(|cut| line_issued.unwrap_or(issued_at) <= cut);
                Ok(match (revoked, single_use) {
                    (true, _) => Standing::Revoked,
                    (false, Some(true)) => Standing::SingleUse,
                    (false, _) => Standing::Valid,
                })
            })
        };
        // No reuse after a fault: a store that cannot answer must say so.
        let generation = self.generation.load(Ordering::Acquire);
        let before = match self.broken.load(Ordering::Acquire) {
            true => None,
            false => match (self.unchanged).lookup(&self.path, generation, jti, subject, issued_at)
            {
                Lookup::Valid => return Ok(Standing::Valid),
                Lookup::Ask(header) => header,
            },
        };
        let standing = query()?;
        // A cut-off in the second of `iat` catches a token that is not recorded yet: with its
        // pending record moved in, its exact mint time decides.
        if standing == Standing::Revoked && self.has_pending() {
            self.move_pending(false);
            return query();
        }
        // Only "valid" is reused: a single-use token is marked in the database at each use.
        if let (Standing::Valid, Some(before)) = (standing, before) {
            (self.unchanged).remember(&self.path, generation, before, jti, subject, issued_at);
        }
        Ok(standing)
    }

    fn token_state(&self, jti: &str) -> Result<TokenState, StoreError> {
        self.move_pending(true);
        let conn = self.conn();
        let sql = format!(
            "SELECT (SELECT {REVOKED_SQL} FROM tokens t WHERE t.jti = ?1),
                    EXISTS (SELECT 1 FROM revoked_jtis WHERE jti = ?1)"
        );
        let (recorded, revoked_id) = conn
            .query_row(&sql, [jti], |r| {
                Ok((r.get::<_, Option<bool>>(0)?, r.get::<_, bool>(1)?))
            })
            .map_err(|e| self.err(e))?;
        Ok(match (recorded, revoked_id) {
            (Some(true), _) | (None, true) => TokenState::Revoked,
            (Some(false), _) => TokenState::Active,
            (None, false) => TokenState::Unknown,
        })
    }

    fn record_checked(
        &self,
        record: &TokenRecord,
        parent_issued_at: Option<Timestamp>,
        max_live: usize,
    ) -> Result<(), IssueError> {
        // The parent may still wait in the pending file, with its exact issue time.
        if record.parent.is_some() && self.has_pending() {
            self.move_pending(true);
        }
        let now = ms(Timestamp::now());
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        prune_some(&tx, now).map_err(|e| self.err(e))?;
        let mut line_issued_at = None;
        if let Some(parent) = &record.parent {
            let recorded: Option<(bool, i64, String)> = tx
                .query_row(
                    "SELECT single_use, COALESCE(root_issued_at, issued_at), subject
                     FROM tokens WHERE jti = ?1",
                    [parent],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(|e| self.err(e))?;
            if recorded.as_ref().is_some_and(|r| r.0) {
                return Err(IssueError::ParentSingleUse);
            }
            // Not recorded: judged by its `iat` second, as `is_revoked` judges it.
            let (issued, subject) = match recorded {
                Some((_, issued, subject)) => (issued, subject),
                None => (
                    unrecorded_parent_issued_at(record, parent_issued_at),
                    record.subject.clone(),
                ),
            };
            let revoked: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM revoked_jtis WHERE jti = ?1)
                     OR ?2 <= COALESCE((SELECT revoked_before FROM subject_cutoffs WHERE subject = ?3), -9223372036854775808)
                     OR ?2 <= COALESCE((SELECT revoked_before FROM global_cutoff WHERE id = 1), -9223372036854775808)",
                    params![parent, issued, subject],
                    |r| r.get(0),
                )
                .map_err(|e| self.err(e))?;
            if revoked {
                return Err(IssueError::ParentRevoked);
            }
            line_issued_at = Some(issued);
        }
        let live: i64 = tx
            .query_row(COUNT_LIVE_SQL, params![record.subject, now], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        check_live_limit(
            record,
            usize::try_from(live).unwrap_or(usize::MAX),
            max_live,
        )?;
        insert(&tx, INSERT_SQL, record, line_issued_at).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(())
    }

    fn revoke(&self, jti: &str, now: Timestamp) -> Result<bool, StoreError> {
        self.move_pending(true);
        let mut conn = self.conn();
        // Immediate: no derived token can be recorded between finding the descendants and
        // committing (invariant 1 of [`crate::store`]).
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let known: Option<Option<i64>> = tx
            .query_row("SELECT expires_at FROM tokens WHERE jti = ?1", [jti], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO revoked_jtis (jti, revoked_at, expires_at) VALUES (?1, ?2, ?3)",
                params![jti, ms(now), known.flatten()],
            )
            .map_err(|e| self.err(e))?;
        let descendants = tx
            .execute(REVOKE_DESCENDANTS_SQL, params![jti, ms(now)])
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        if descendants > 0 {
            tracing::debug!(
                descendants,
                "revoked the tokens derived from a revoked token"
            );
        }
        self.make_durable(&conn)?;
        Ok(known.is_some() || inserted == 1)
    }

    fn revoke_subject(&self, subject: &str, now: Timestamp) -> Result<usize, StoreError> {
        let now = ms(now);
        self.write_cutoff(
            "t.subject = ?2 AND COALESCE(t.root_issued_at, t.issued_at) <= ?1",
            now,
            Some(subject),
            "INSERT INTO subject_cutoffs (subject, revoked_before) VALUES (?1, ?2)
             ON CONFLICT (subject) DO UPDATE SET revoked_before = MAX(revoked_before, excluded.revoked_before)",
            params![subject, now],
        )
    }

    fn revoke_all(&self, now: Timestamp) -> Result<usize, StoreError> {
        let now = ms(now);
        self.write_cutoff(
            "COALESCE(t.root_issued_at, t.issued_at) <= ?1 AND ?2 IS NULL",
            now,
            None,
            "INSERT INTO global_cutoff (id, revoked_before) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET revoked_before = MAX(revoked_before, excluded.revoked_before)",
            params![now],
        )
    }

    /// True when the token may be used now: it is not a recorded single-use token, or this is
    /// the first use of one (which is recorded atomically). False when it was used before.
    fn mark_used(&self, jti: &str, now: Timestamp) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let single_use: Option<bool> = tx
            .query_row("SELECT single_use FROM tokens WHERE jti = ?1", [jti], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        let ok = match single_use {
            Some(true) => {
                tx.execute(
                    "UPDATE tokens SET used_at = ?2 WHERE jti = ?1 AND used_at IS NULL",
                    params![jti, ms(now)],
                )
                .map_err(|e| self.err(e))?
                    == 1
            }
            _ => true,
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(ok)
    }

    fn list(&self, now: Timestamp) -> Result<Vec<TokenRecord>, StoreError> {
        self.move_pending(true);
        let conn = self.conn();
        let sql = format!(
            "SELECT t.jti, t.subject, t.scopes, t.issued_at, t.expires_at, t.single_use, {REVOKED_SQL}, t.parent
             FROM tokens t WHERE t.expires_at IS NULL OR t.expires_at > ?1
             ORDER BY t.issued_at DESC, t.jti"
        );
        let mut stmt = conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([ms(now)], |r| {
                Ok(TokenRecord {
                    jti: r.get(0)?,
                    subject: r.get(1)?,
                    scopes: r.get(2)?,
                    issued_at: from_ms(r.get(3)?),
                    expires_at: r.get::<_, Option<i64>>(4)?.map(from_ms),
                    single_use: r.get(5)?,
                    revoked: r.get(6)?,
                    parent: r.get(7)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Deletes token records and id revocations whose token expired before `now` less the
    /// verification leeway (an expired token is accepted for that long, so its revocation must
    /// stay). Revocations of tokens whose expiry is unknown, and cut-offs, are kept: they may
    /// cover tokens that never expire. Derived tokens never expire after their parent
    /// (invariant 4 of [`crate::store`]), so no live descendant loses its parent's record.
    fn prune(&self, now: Timestamp) -> Result<usize, StoreError> {
        self.move_pending(true);
        let now = prune_before(ms(now));
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let revoked = tx
            .execute(
                "DELETE FROM revoked_jtis WHERE expires_at IS NOT NULL AND expires_at < ?1",
                [now],
            )
            .map_err(|e| self.err(e))?;
        let tokens = tx
            .execute(
                "DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at < ?1",
                [now],
            )
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(revoked + tokens)
    }

    // --- Sessions (contract section 9): in `sessions.rs` ---

    fn session_create(&self, s: &SessionRecord, max_per_subject: usize) -> Result<(), StoreError> {
        self.sessions_create(s, max_per_subject)
    }
    fn session_get(&self, id: &str, now: Timestamp) -> Result<Option<SessionRecord>, StoreError> {
        self.sessions_get(id, now)
    }
    fn session_touch(&self, id: &str, now: Timestamp, address: &str) -> Result<(), StoreError> {
        self.sessions_touch(id, now, address)
    }
    fn session_delete(&self, id: &str) -> Result<bool, StoreError> {
        self.sessions_delete(id)
    }
    fn session_delete_subject(&self, subject: &str) -> Result<usize, StoreError> {
        self.sessions_delete_subject(subject)
    }
    fn session_list(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.sessions_list(subject, now)
    }

    // --- API keys (contract section 9): in keys.rs ---

    fn create_key(
        &self,
        key: &crate::store::ApiKeyRecord,
        max_live: usize,
    ) -> Result<crate::store::KeyCreated, StoreError> {
        self.create_key_in(key, max_live)
    }
    fn key_by_digest(
        &self,
        digest: &[u8; 32],
    ) -> Result<Option<crate::store::ApiKeyRecord>, StoreError> {
        self.key_by_digest_in(digest)
    }
    fn key_by_id(&self, id: &str) -> Result<Option<crate::store::ApiKeyRecord>, StoreError> {
        self.key_by_id_in(id)
    }
    fn list_keys(
        &self,
        owner: Option<&str>,
    ) -> Result<Vec<crate::store::ApiKeyRecord>, StoreError> {
        self.list_keys_in(owner)
    }
    fn set_key_state(
        &self,
        id: &str,
        to: crate::store::StoredKeyState,
    ) -> Result<crate::store::KeyChange, StoreError> {
        self.set_key_state_in(id, to)
    }
    fn rotate_key(
        &self,
        old_id: &str,
        new: &crate::store::ApiKeyRecord,
        grace_until: Option<Timestamp>,
    ) -> Result<crate::store::KeyChange, StoreError> {
        self.rotate_key_in(old_id, new, grace_until)
    }
    fn touch_keys(&self, uses: &[crate::store::KeyUse]) -> Result<(), StoreError> {
        self.touch_keys_in(uses)
    }

    // --- Exchanged ID tokens (contract section 11): in exchange.rs ---

    fn mark_id_token_exchanged(
        &self,
        id: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.mark_exchanged(id, expires_at, now)
    }

    fn update_counters(
        &self,
        keys: &[String],
        now: Timestamp,
        update: crate::store::CounterUpdate,
    ) -> Result<u64, StoreError> {
        self.counters_update(keys, now, update)
    }

    fn report(&self) -> Result<crate::store::StoreReport, StoreError> {
        self.move_pending(true);
        let conn = self.conn();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let mut rows = std::collections::BTreeMap::new();
        for table in crate::store::REPORTED_TABLES {
            let exists: bool = conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
                    [table],
                    |r| r.get(0),
                )
                .map_err(|e| self.err(e))?;
            if exists {
                let n: i64 = conn
                    .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                    .map_err(|e| self.err(e))?;
                rows.insert((*table).to_owned(), n);
            }
        }
        Ok(crate::store::StoreReport {
            engine: "sqlite",
            location: self.path.display().to_string(),
            schema_version: version,
            known_version: SCHEMA_VERSION,
            rows,
        })
    }
}

/// How the SQLite store at a path is opened at its first use ([`crate::store::open_lazily`]):
/// recording a freshly minted token only appends to the pending file, without opening (or
/// creating) the database, which costs a short process more than minting does.
#[derive(Debug)]
pub(super) struct SqliteOpener(pub(super) PathBuf);

impl crate::store::lazy::Opener for SqliteOpener {
    fn open(&self) -> Result<std::sync::Arc<dyn TokenStore>, StoreError> {
        Ok(std::sync::Arc::new(SqliteStore::open(&self.0)?))
    }

    fn defer_minted(
        &self,
        record: &TokenRecord,
    ) -> Result<crate::store::lazy::Deferred, StoreError> {
        use crate::store::lazy::Deferred;
        Ok(match SqliteStore::append_pending(&self.0, record)? {
            // Opening the store moves the pending records in.
            Some(size) if size >= pending::MOVE_AT_BYTES => Deferred::RecordedOpenNow,
            Some(_) => Deferred::Recorded,
            None => Deferred::No,
        })
    }
}

/// The file named like the store at `store` plus `suffix`, beside it (`tokens.db-shm`).
fn beside(store: &Path, suffix: &str) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push(suffix);
    p.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract::{ago, live, rec, t};
    use std::os::unix::fs::PermissionsExt;

    fn open(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(&dir.path().join("data/tessera/tokens.db")).unwrap()
    }

    #[test]
    fn is_send_sync_and_creates_private_files() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SqliteStore>();
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.path()), 0o600);
        assert_eq!(mode(&dir.path().join("data/tessera")), 0o700);
        assert_eq!(mode(&dir.path().join("data")), 0o700);
        store
            .record(&rec("a", "ci", "2026-01-01T00:00:00Z", None))
            .unwrap();
        let wal = dir.path().join("data/tessera/tokens.db-wal");
        assert_eq!(mode(&wal), 0o600);
        let conn = store.conn();
        let journal: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(journal, "wal");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert!(format!("{store:?}").contains("tokens.db"));
    }

    #[test]
    fn corrupt_or_foreign_files_give_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.db");
        std::fs::write(
            &path,
            b"this is not a database, it is a shopping list\n".repeat(100),
        )
        .unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert_eq!(err.hint(), HINT_CORRUPT);
        assert!(err.is_unavailable());
        let msg = err.to_string();
        assert!(
            msg.contains("tokens.db") && msg.contains("move it aside"),
            "{msg}"
        );

        // A database of a newer schema.
        let newer = dir.path().join("newer.db");
        let c = Connection::open(&newer).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let err = SqliteStore::open(&newer).unwrap_err();
        assert!(
            matches!(err, StoreError::NewerSchema { found: 99, .. }),
            "{err:?}"
        );
        let err = err.to_string();
        assert!(err.contains("newer tessera"), "{err}");
    }

    #[test]
    fn a_held_write_lock_is_reported_as_busy() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let other = Connection::open(store.path()).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        store
            .conn()
            .busy_timeout(Duration::from_millis(50))
            .unwrap();
        let err = store.revoke("x", t("2026-01-01T00:00:00Z")).unwrap_err();
        assert!(matches!(err, StoreError::Busy { .. }), "{err:?}");
        assert_eq!(err.hint(), HINT_LOCKED, "{err}");
        other.execute_batch("ROLLBACK").unwrap();
        assert!(store.revoke("x", t("2026-01-01T00:00:00Z")).unwrap());
    }

    /// What `tessera auth token generate` does: record through a handle that has not opened
    /// the store.
    fn record_pending(path: &Path, record: &TokenRecord) -> Result<(), StoreError> {
        crate::store::lazy::Lazy::new(SqliteOpener(path.to_owned())).record_minted(record)
    }

    fn pending_file(store: &Path) -> PathBuf {
        pending::path(store)
    }

    #[test]
    fn pending_records_enter_the_store_when_it_is_next_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/tessera/tokens.db");
        let odd = "ci \"quoted\" \\ \u{e9}\u{1F600}\nline";
        record_pending(&path, &rec("a", "ci", "2026-05-01T00:00:00.250Z", None)).unwrap();
        record_pending(
            &path,
            &rec(
                "b",
                odd,
                "2026-05-02T00:00:00Z",
                Some("2027-01-01T00:00:00Z"),
            ),
        )
        .unwrap();
        // Only the pending file exists so far, private like the database.
        assert!(!path.exists());
        assert!(SqliteStore::exists(&path));
        let mode = std::fs::metadata(pending_file(&path))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(std::fs::metadata(pending_file(&path)).unwrap().len(), 0);
        let listed = store.list(t("2026-06-01T00:00:00Z")).unwrap();
        assert_eq!(
            listed,
            vec![
                rec(
                    "b",
                    odd,
                    "2026-05-02T00:00:00Z",
                    Some("2027-01-01T00:00:00Z")
                ),
                rec("a", "ci", "2026-05-01T00:00:00.250Z", None),
            ]
        );
        // Moving again finds nothing and changes nothing.
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.list(t("2026-06-01T00:00:00Z")).unwrap().len(), 2);
    }

    #[test]
    fn a_running_store_sees_pending_records_when_listing_and_revoking() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        record_pending(
            store.path(),
            &rec(
                "late",
                "ci",
                "2026-05-01T00:00:00Z",
                Some("2026-07-01T00:00:00Z"),
            ),
        )
        .unwrap();
        let listed = store.list(t("2026-06-01T00:00:00Z")).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].jti, "late");

        record_pending(
            store.path(),
            &rec("other", "bot", "2026-05-01T00:00:00Z", None),
        )
        .unwrap();
        assert_eq!(
            store
                .revoke_subject("bot", t("2026-06-01T00:00:00Z"))
                .unwrap(),
            1,
            "the pending token of `bot` counts as touched"
        );
    }

    #[test]
    fn a_pending_token_minted_after_a_cutoff_in_the_same_second_stays_valid() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        store
            .revoke_subject("ci", t("2026-05-01T00:00:00.500Z"))
            .unwrap();
        let second = t("2026-05-01T00:00:00Z");
        // Not recorded: judged by its `iat` second, which the cut-off covers.
        assert!(store.is_revoked("after", "ci", second).unwrap());
        record_pending(
            store.path(),
            &rec("after", "ci", "2026-05-01T00:00:00.700Z", None),
        )
        .unwrap();
        assert!(!store.is_revoked("after", "ci", second).unwrap());
        record_pending(
            store.path(),
            &rec("before", "ci", "2026-05-01T00:00:00.300Z", None),
        )
        .unwrap();
        assert!(store.is_revoked("before", "ci", second).unwrap());
    }

    #[test]
    fn damaged_and_repeated_pending_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        store
            .record(&rec("known", "ci", "2026-05-01T00:00:00Z", None))
            .unwrap();
        record_pending(
            store.path(),
            &rec("known", "someone-else", "2026-05-03T00:00:00Z", None),
        )
        .unwrap();
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(pending_file(store.path()))
                .unwrap();
            // A line cut short by a power loss, then garbage, then no final newline.
            f.write_all(b"{\"jti\":\"cut\",\"subj\n\x00\xff not json\n")
                .unwrap();
        }
        record_pending(
            store.path(),
            &rec("good", "ci", "2026-05-02T00:00:00Z", None),
        )
        .unwrap();
        let listed = store.list(t("2026-06-01T00:00:00Z")).unwrap();
        let names: Vec<_> = listed
            .iter()
            .map(|r| (r.jti.as_str(), r.subject.as_str()))
            .collect();
        assert_eq!(names, vec![("good", "ci"), ("known", "ci")]);
        assert_eq!(
            std::fs::metadata(pending_file(store.path())).unwrap().len(),
            0
        );
    }

    #[test]
    fn a_large_pending_file_is_moved_by_the_appender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/tessera/tokens.db");
        drop(SqliteStore::open(&path).unwrap());
        let filler = rec("filler", "ci", "2026-05-01T00:00:00Z", None);
        let mut size = 0;
        while size < pending::MOVE_AT_BYTES {
            size = pending::append(&path, &filler).unwrap();
        }
        record_pending(&path, &rec("last", "ci", "2026-05-02T00:00:00Z", None)).unwrap();
        assert_eq!(std::fs::metadata(pending_file(&path)).unwrap().len(), 0);
        let conn = Connection::open(&path).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2, "the filler (once) and the last record");
    }

    #[test]
    fn concurrent_appenders_and_movers_lose_and_repeat_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/tessera/tokens.db");
        drop(SqliteStore::open(&path).unwrap());
        const THREADS: usize = 4;
        const EACH: usize = 150;
        std::thread::scope(|s| {
            for n in 0..THREADS {
                let path = &path;
                s.spawn(move || {
                    for i in 0..EACH {
                        let r = rec(&format!("t{n}-{i}"), "ci", "2026-05-01T00:00:00Z", None);
                        record_pending(path, &r).unwrap();
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..30 {
                    drop(SqliteStore::open(&path).unwrap());
                }
            });
        });
        let store = SqliteStore::open(&path).unwrap();
        let listed = store.list(t("2026-06-01T00:00:00Z")).unwrap();
        let mut ids: Vec<_> = listed.into_iter().map(|r| r.jti).collect();
        ids.sort();
        let mut want: Vec<_> = (0..THREADS)
            .flat_map(|n| (0..EACH).map(move |i| format!("t{n}-{i}")))
            .collect();
        want.sort();
        let missing = want.iter().filter(|w| !ids.contains(w)).count();
        assert!(
            ids == want,
            "{missing} of {} records lost, {} listed",
            want.len(),
            ids.len()
        );
    }

    #[test]
    fn a_reused_answer_never_outlives_a_commit_by_another_handle() {
        let dir = tempfile::tempdir().unwrap();
        let a = open(&dir);
        let b = open(&dir);
        let iat = t("2026-05-01T00:00:00Z");
        a.record(&rec("x", "ci", "2026-05-01T00:00:00Z", None))
            .unwrap();
        for _ in 0..3 {
            assert!(!a.is_revoked("x", "ci", iat).unwrap());
        }
        b.revoke("x", t("2026-05-02T00:00:00Z")).unwrap();
        assert!(a.is_revoked("x", "ci", iat).unwrap());

        for _ in 0..3 {
            assert!(!a.is_revoked("y", "bot", iat).unwrap());
        }
        b.revoke_subject("bot", t("2026-05-02T00:00:00Z")).unwrap();
        assert!(a.is_revoked("y", "bot", iat).unwrap());

        for _ in 0..3 {
            assert!(!a.is_revoked("z", "other", iat).unwrap());
        }
        b.revoke_all(t("2026-05-02T00:00:00Z")).unwrap();
        assert!(a.is_revoked("z", "other", iat).unwrap());
    }
    // ---- derived tokens, issue times, pruning -------------------------------------------------

    fn rows(store: &SqliteStore, table: &str) -> i64 {
        store
            .conn()
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_version_1_store_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(SCHEMA_V1).unwrap();
            c.execute_batch(
                "INSERT INTO tokens (jti, subject, scopes, issued_at, expires_at, single_use)
                     VALUES ('old', 'ci', 'repository:*:pull', 1000, NULL, 0),
                            ('once', 'ci', '', 2000, NULL, 1);
                 INSERT INTO revoked_jtis VALUES ('gone', 3000, NULL);
                 INSERT INTO subject_cutoffs VALUES ('bot', 5000);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let version: i64 = store
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let listed = store.list(from_ms(0)).unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().all(|r| r.parent.is_none() && !r.revoked));
        assert!(store.is_revoked("gone", "ci", from_ms(0)).unwrap());
        assert!(store.is_revoked("x", "bot", from_ms(4000)).unwrap());
        assert!(store.mark_used("once", from_ms(9000)).unwrap());
        assert!(!store.mark_used("once", from_ms(9000)).unwrap());
        // Derived records work on the upgraded file, and opening it again changes nothing.
        store
            .record_checked(
                &live("child", "ci", Timestamp::now()).with_parent("old"),
                None,
                10,
            )
            .unwrap();
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        store.revoke("old", Timestamp::now()).unwrap();
        assert!(store.is_revoked("child", "ci", Timestamp::now()).unwrap());
    }

    #[test]
    fn every_write_prunes_a_bounded_batch_and_prune_keeps_the_leeway() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        {
            let conn = store.conn();
            for i in 0..250 {
                conn.execute(
                    "INSERT INTO tokens (jti, subject, scopes, issued_at, expires_at) VALUES (?1, 'ci', '', ?2, ?3)",
                    params![format!("old{i}"), ms(ago(7200)), ms(ago(3600))],
                )
                .unwrap();
                conn.execute(
                    "INSERT INTO revoked_jtis VALUES (?1, ?2, ?3)",
                    params![format!("old{i}"), ms(ago(7000)), ms(ago(3600))],
                )
                .unwrap();
            }
        }
        store.record(&live("new", "ci", Timestamp::now())).unwrap();
        assert_eq!(rows(&store, "tokens"), 150 + 1);
        assert_eq!(rows(&store, "revoked_jtis"), 150);
        store
            .record_checked(&live("new2", "ci", Timestamp::now()), None, 1000)
            .unwrap();
        assert_eq!(rows(&store, "tokens"), 50 + 2);
        // Within the verification leeway an expired token is still accepted: its revocation
        // stays until the leeway is over.
        let mut just = live("just", "ci", ago(600));
        just.expires_at = Some(ago(30));
        store.record(&just).unwrap();
        store.revoke("just", Timestamp::now()).unwrap();
        store.prune(Timestamp::now()).unwrap();
        assert!(store.is_revoked("just", "ci", ago(600)).unwrap());
        assert_eq!(rows(&store, "tokens"), 3);
        store
            .prune(Timestamp::now() + jiff::SignedDuration::from_secs(31 + 60))
            .unwrap();
        assert_eq!(rows(&store, "tokens"), 2);
    }

    #[test]
    fn a_pending_line_with_a_parent_inherits_its_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let now = Timestamp::now();
        store.record(&live("p", "ci", ago(10))).unwrap();
        store.revoke("p", now).unwrap();
        let line = format!(
            "{{\"jti\":\"c\",\"subject\":\"ci\",\"scopes\":\"\",\"issued_at\":{},\"expires_at\":null,\"parent\":\"p\"}}\n",
            ms(now)
        );
        std::fs::write(pending_file(store.path()), line).unwrap();
        let listed = store.list(now).unwrap();
        let c = listed.iter().find(|r| r.jti == "c").unwrap();
        assert_eq!(c.parent.as_deref(), Some("p"));
        assert!(c.revoked);
    }

    /// The check of every request, the statements of every write, the limit check and the
    /// revocation of a line go through indexes: their work is bounded by what they touch, not
    /// by the size of the store.
    #[test]
    fn upkeep_statements_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let conn = store.conn();
        for sql in [
            "DELETE FROM tokens WHERE rowid IN (SELECT rowid FROM tokens WHERE expires_at < 1 LIMIT 100)",
            "DELETE FROM revoked_jtis WHERE rowid IN (SELECT rowid FROM revoked_jtis WHERE expires_at < 1 LIMIT 100)",
            &CHECK_SQL.replace("?1", "'x'").replace("?2", "'ci'"),
            &COUNT_LIVE_SQL.replace("?1", "'ci'").replace("?2", "1"),
            &REVOKE_DESCENDANTS_SQL
                .replace("?1", "'x'")
                .replace("?2", "1"),
        ] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                plan.iter().all(|step| !step.starts_with("SCAN ")
                    || step == "SCAN line"
                    || step == "SCAN CONSTANT ROW"),
                "{sql}: {plan:?}"
            );
        }
    }
}
