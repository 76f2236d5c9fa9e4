//! Token records waiting to enter the SQLite store: one JSON line each in `tokens.db-pending`.
//! Private to the SQLite engine; other engines record at once.
//!
//! `tessera auth token generate` is a short process whose whole job is a few microseconds of
//! HMAC. Recording the token in SQLite (open, schema, locks, shared memory, and the checkpoint
//! with four fsyncs when the last connection closes) took a third to a half of its time, so it
//! appends its record here instead ([`crate::store::TokenStore::record_minted`]), in one
//! `write`, and the next process that opens the store moves the lines into the database.
//!
//! Invariants:
//! - Only records that may wait are appended: not single-use (its first use is asked of the
//!   database), not revoked, not derived (a derived token needs its parent checked in the
//!   database at once). The format can carry a `parent`, and a moved line with one inherits
//!   the parent's line and revocation as any record does ([`super::insert`]).
//! - Nothing that decides whether a token is valid waits for a pending record: revocation by
//!   id does not need the record, and a cut-off (by subject or `--all`) judges a token that is
//!   not recorded by its `iat` second (in doubt, revoked), as it does for tokens minted on
//!   another host. A check that finds a token revoked by a cut-off moves the lines in and asks
//!   again, so that the exact mint time decides.
//! - Everything that lists, counts or revokes moves the lines in first, so it sees every
//!   token minted before it started.
//! - No line is lost or moved twice: appenders hold a shared `flock` on the file while they
//!   write (one `write` of an `O_APPEND` file, so lines never interleave); the mover holds it
//!   exclusively from reading to truncating. Moving is idempotent (`INSERT OR IGNORE`), so a
//!   crash between the commit and the truncation only leaves lines that the next move skips;
//!   a line cut short by a power loss is skipped.
//! - The file is 0600, never followed through a symlink, and kept small: past
//!   [`MOVE_AT_BYTES`] the appender moves the lines itself.

use std::borrow::Cow;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rusqlite::Connection;

use crate::store::TokenRecord;

/// From this size on, the appender moves the lines into the database itself, so that a file
/// that no other process ever opens (a CI machine that only mints) stays small. About 6,000
/// records.
pub(super) const MOVE_AT_BYTES: u64 = 1024 * 1024;

/// One pending record. Times in Unix milliseconds, as in the database.
#[derive(serde::Serialize, serde::Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    jti: Cow<'a, str>,
    #[serde(borrow)]
    subject: Cow<'a, str>,
    #[serde(borrow)]
    scopes: Cow<'a, str>,
    issued_at: i64,
    expires_at: Option<i64>,
    /// Absent in lines written before derived tokens were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<Cow<'a, str>>,
}

/// The pending file beside the store at `store`.
pub(super) fn path(store: &Path) -> PathBuf {
    super::beside(store, "-pending")
}

/// Appends `record` (not single-use, not revoked, not derived: those need the database at
/// once) to the
/// pending file of the store at `store`, creating it with mode 0600. Returns the file's size
/// after the write. The folder must exist.
pub(super) fn append(store: &Path, record: &TokenRecord) -> std::io::Result<u64> {
    debug_assert!(!record.single_use && !record.revoked && record.parent.is_none());
    let mut line = serde_json::to_vec(&Line {
        jti: Cow::Borrowed(&record.jti),
        subject: Cow::Borrowed(&record.subject),
        scopes: Cow::Borrowed(&record.scopes),
        issued_at: record.issued_at.as_millisecond(),
        expires_at: record.expires_at.map(Timestamp::as_millisecond),
        parent: record.parent.as_deref().map(Cow::Borrowed),
    })
    .map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path(store))?;
    file.lock_shared()?;
    // One write of an O_APPEND file: whole lines, never interleaved with another appender's.
    file.write_all(&line)?;
    Ok(file.metadata()?.len())
}

/// Moves every pending line into the database through `conn`, then empties the file. Returns
/// how many lines were moved; lines that cannot be read (a write cut short by a power loss)
/// are dropped.
/// Waits at most `wait` for appenders (they hold the file for one write) and for the
/// database's write lock.
pub(super) fn move_into(
    store: &Path,
    conn: &mut Connection,
    wait: Duration,
) -> Result<usize, MoveError> {
    let mut file = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path(store))
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(MoveError::Io(e)),
    };
    if file.metadata().map_err(MoveError::Io)?.len() == 0 {
        return Ok(0);
    }
    lock_within(&file, wait).map_err(MoveError::Io)?;
    let moved = move_locked(&mut file, conn)?;
    file.set_len(0).map_err(MoveError::Io)?;
    Ok(moved)
}

/// Takes the exclusive lock, giving up after `wait`: an appender that was stopped while
/// holding its shared lock must not hang the process that moves records.
fn lock_within(file: &File, wait: Duration) -> std::io::Result<()> {
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) if start.elapsed() < wait => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    ErrorKind::WouldBlock,
                    "another process is appending to the pending file",
                ));
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
    }
}

fn move_locked(file: &mut File, conn: &mut Connection) -> Result<usize, MoveError> {
    let mut text = Vec::new();
    file.read_to_end(&mut text).map_err(MoveError::Io)?;
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(MoveError::Sql)?;
    let mut moved = 0;
    for raw in text.split(|b| *b == b'\n') {
        let Ok(l) = serde_json::from_slice::<Line>(raw) else {
            continue;
        };
        let (Ok(issued_at), Ok(expires_at)) = (
            Timestamp::from_millisecond(l.issued_at),
            l.expires_at.map(Timestamp::from_millisecond).transpose(),
        ) else {
            continue;
        };
        let record = TokenRecord {
            jti: l.jti.into_owned(),
            subject: l.subject.into_owned(),
            scopes: l.scopes.into_owned(),
            issued_at,
            expires_at,
            single_use: false,
            revoked: false,
            parent: l.parent.map(Cow::into_owned),
        };
        if super::insert(&tx, super::INSERT_OR_IGNORE_SQL, &record, None).map_err(MoveError::Sql)? {
            moved += 1;
        }
    }
    tx.commit().map_err(MoveError::Sql)?;
    Ok(moved)
}

#[derive(Debug)]
pub(super) enum MoveError {
    Io(std::io::Error),
    Sql(rusqlite::Error),
}
