//! Private files and folders, written atomically, and a simple cross-process lock.
//!
//! Every file that holds a secret (or a token, or configuration pointing at one) goes through
//! [`write_atomic`]: the new content is written to a temporary file in the same folder, created
//! with its final mode already set, synced, and renamed over the old file; the folder is synced
//! too. A reader therefore sees the old content or the new content, never a mix, and a crash at
//! any point leaves one of the two. On error the old file is left untouched.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of files holding secrets.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of folders holding secrets.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Writes `contents` to `path` atomically with `mode` (temp file in the same folder, fsync,
/// rename, fsync of the folder). Missing parent folders are created with mode 0700.
///
/// If `path` is a symbolic link, the link itself is replaced (never followed).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let (dir, name) = split_parent(path)?;
    create_private_dir(&dir)?;
    let mut tmp = temp_file_in(&dir, &name, mode)?;
    tmp.as_file_mut().write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(&dir)?;
    remove_stale_temps(&dir, &name);
    Ok(())
}

/// Temp files older than this are left over by a writer that was killed (`kill -9`, power
/// loss) and are removed by the next write of the same file. No write takes this long, so a
/// live writer's temp file is never touched. Temp files whose name says which process wrote them
/// are removed sooner: as soon as that process is gone (see [`remove_stale_temps`]).
pub const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes `name`'s temp files in `dir` (see [`temp_file_in`]) that no live writer owns: those
/// whose writer process (its id is in the name) no longer exists, and any last modified more
/// than [`STALE_TEMP_AGE`] ago. A killed `secrets set` can leave the value (or part of it) in
/// such a file; the next write, read or delete of the same key removes it. Best effort: errors
/// are ignored, links and folders are left alone.
pub fn remove_stale_temps(dir: &Path, name: &str) {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}~");
    let now = std::time::SystemTime::now();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(n) = file_name.to_str() else {
            continue;
        };
        let Some(rest) = n.strip_prefix(&prefix).filter(|_| n.ends_with(".tmp")) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > STALE_TEMP_AGE);
        let orphan = writer_pid(rest).is_some_and(|pid| !process_alive(pid));
        if old || orphan {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The writer's process id in the rest of a temp file's name (`PID.RANDOM.tmp`), when it is
/// there and is not this process.
fn writer_pid(rest: &str) -> Option<libc::pid_t> {
    let (pid, _) = rest.split_once('.')?;
    let pid: libc::pid_t = pid.parse().ok().filter(|p| *p > 0)?;
    (u32::try_from(pid).ok() != Some(std::process::id())).then_some(pid)
}

/// Whether a process with this id exists (it may belong to another user).
fn process_alive(pid: libc::pid_t) -> bool {
    // SAFETY: kill(2) with signal 0 sends nothing; it only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Creates `dir` and its missing parents with mode 0700. Existing folders are left as they are.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
}

/// Syncs a folder, so that a rename inside it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// A temporary file next to `path`'s final name (same folder, so a rename is atomic), created
/// with `mode` set before anything is written: `.NAME~PID.RANDOM.tmp`. Its name contains `~`,
/// which no key path may contain, so listings never mistake it for a secret, and the writer's
/// process id, so that [`remove_stale_temps`] knows when its writer is gone. It is removed when
/// dropped unless persisted.
pub(crate) fn temp_file_in(
    dir: &Path,
    name: &str,
    mode: u32,
) -> io::Result<tempfile::NamedTempFile> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}~{}.", std::process::id()))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    // The umask may have removed bits from `mode`; set it exactly.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(tmp)
}

/// The parent folder and file name of `path`.
pub(crate) fn split_parent(path: &Path) -> io::Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path has no file name (or one that is not UTF-8)",
            )
        })?
        .to_owned();
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((dir, name))
}

/// An exclusive lock on a sidecar file, held until dropped.
///
/// Used around read-modify-write cycles of one-document stores (age, sops) so that two
/// processes (or threads) setting different keys at once lose no update. The lock file is
/// `.NAME.lock` next to the protected file; it is empty and left in place (removing it would
/// race with another process about to lock it).
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Blocks until the lock guarding `protected` is held.
    pub fn acquire(protected: &Path) -> io::Result<FileLock> {
        let path = lock_path(protected)?;
        if let Some(dir) = path.parent() {
            create_private_dir(dir)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE_FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)?;
        file.lock()?;
        Ok(FileLock { file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file releases the lock as well; unlocking first is just explicit.
        let _ = self.file.unlock();
    }
}

/// The sidecar lock file guarding `protected`: `.NAME.lock` in the same folder.
pub fn lock_path(protected: &Path) -> io::Result<PathBuf> {
    let (dir, name) = split_parent(protected)?;
    Ok(dir.join(format!(".{name}.lock")))
}

/// Walks the folders below `dir` and hands `found` the path in the tree ("a/b/c") of every
/// regular file in them. An entry whose name is not UTF-8, or that `enter` refuses (given its
/// name and its path in the tree), is skipped, a folder with all it holds; symbolic links are
/// never followed.
pub(crate) fn walk_files(
    dir: &Path,
    enter: &dyn Fn(&str, &str) -> bool,
    found: &mut dyn FnMut(&str),
) -> Result<(), crate::BackendError> {
    walk_below(dir, "", enter, found)
}

fn walk_below(
    dir: &Path,
    rel: &str,
    enter: &dyn Fn(&str, &str) -> bool,
    found: &mut dyn FnMut(&str),
) -> Result<(), crate::BackendError> {
    use crate::BackendError;
    let entries = fs::read_dir(dir).map_err(|e| BackendError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BackendError::io(dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let child = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if !enter(&name, &child) {
            continue;
        }
        let file_type = entry
            .file_type()
            .map_err(|e| BackendError::io(entry.path(), e))?;
        if file_type.is_dir() {
            walk_below(&entry.path(), &child, enter, found)?;
        } else if file_type.is_file() {
            found(&child);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn write_atomic_creates_private_parents_and_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b/file");
        write_atomic(&path, b"one", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(tmp.path().join("a")).unwrap().mode() & 0o777,
            0o700
        );
        assert_eq!(
            fs::metadata(tmp.path().join("a/b")).unwrap().mode() & 0o777,
            0o700
        );
        write_atomic(&path, b"two", 0o640).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(tmp.path().join("a/b")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn write_atomic_failure_leaves_old_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("file");
        write_atomic(&path, b"old", 0o600).unwrap();
        // Make the folder read-only: the temp file cannot be created (unless we are root,
        // who ignores modes; then only check that the old content is intact).
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o500)).unwrap();
        let res = write_atomic(&path, b"new", 0o600);
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let expected: &[u8] = if res.is_err() { b"old" } else { b"new" };
        assert_eq!(fs::read(&path).unwrap(), expected);
        // A path whose parent is a file fails (even for root) and changes nothing.
        let bad = path.join("child");
        assert!(write_atomic(&bad, b"x", 0o600).is_err());
        assert_eq!(fs::read(&path).unwrap(), expected);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temp_files_are_removed_by_the_next_write_and_fresh_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let old = std::time::SystemTime::now() - 2 * STALE_TEMP_AGE;
        for name in [".f~stale.tmp", ".f~fresh.tmp", ".g~other.tmp", ".f~nottmp"] {
            let f = File::create(tmp.path().join(name)).unwrap();
            if name != ".f~fresh.tmp" {
                f.set_modified(old).unwrap();
            }
        }
        write_atomic(&path, b"x", 0o600).unwrap();
        let mut left: Vec<String> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".f~fresh.tmp", ".f~nottmp", ".g~other.tmp", "f"]);
    }

    #[test]
    fn temp_files_of_a_dead_writer_are_removed_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        // A process that has exited (and been reaped): its id is free.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let mine = std::process::id();
        let names = [
            format!(".f~{dead}.abc123.tmp"),
            format!(".f~{mine}.abc123.tmp"),
            ".f~1.abc123.tmp".to_owned(),
            ".f~abc123.tmp".to_owned(),
        ];
        for name in &names {
            File::create(tmp.path().join(name)).unwrap();
        }
        remove_stale_temps(tmp.path(), "f");
        let mut left: Vec<String> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        // Ours (a live writer, maybe another thread), pid 1 (alive) and an old-style name
        // without a pid (removed only when old) stay.
        let mut want = names[1..].to_vec();
        want.sort();
        assert_eq!(left, want);
        // The temp files we create carry our id.
        let t = temp_file_in(tmp.path(), "g", 0o600).unwrap();
        let name = t.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with(&format!(".g~{mine}.")), "{name}");
        assert!(name.ends_with(".tmp"), "{name}");
    }

    #[test]
    fn write_atomic_replaces_a_symlink_without_following_it() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        fs::write(&target, b"target").unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomic(&link, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"target");
        assert!(
            !fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn lock_is_exclusive_between_threads() {
        let tmp = tempfile::tempdir().unwrap();
        let protected = tmp.path().join("doc");
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let protected = protected.clone();
                let counter = counter.clone();
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let _lock = FileLock::acquire(&protected).unwrap();
                        // Read-modify-write through the file: a lost update shows up as a
                        // wrong final count.
                        let n: usize = fs::read_to_string(&protected)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        write_atomic(&protected, (n + 1).to_string().as_bytes(), 0o600).unwrap();
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(fs::read_to_string(&protected).unwrap(), "80");
        assert!(lock_path(&protected).unwrap().ends_with(".doc.lock"));
    }
}
