//! The `unsafe` backend: one plain, unencrypted file per key.
//!
//! Key path `tessera/auth/token_secret` is the file `DIR/tessera/auth/token_secret`, holding
//! the value followed by one newline, mode 0600, in folders of mode 0700. Writes are atomic
//! ([`crate::fsutil::write_atomic`]). Like ssh with its keys, a secret file that other users may
//! read or write is refused, and so are a secret file and the folders below `DIR` that belong to
//! another user (who could have planted them); files of root are accepted. Symbolic links below `DIR` are never followed: a link where a
//! folder or a secret file should be is refused with an error (`DIR` itself may be a link).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::fsutil::{self, PRIVATE_FILE_MODE};
use crate::{BackendError, KeyPath, SecretString, SecretsBackend, UnsafeConfig, strip_one_newline};

const NAME: &str = "unsafe";

/// How many times a write is retried when a concurrent delete removed its (empty) folder.
const WRITE_ATTEMPTS: usize = 5;

/// Secrets kept as plain files under one folder. Not encrypted: anyone who can read the files
/// (root, backups, a stolen disk) reads the secrets.
#[derive(Debug)]
pub struct UnsafeBackend {
    config: UnsafeConfig,
    /// The user id files and folders must belong to (or root): this process's effective uid.
    owner: u32,
}

/// What is at the place of a key path's parent folders.
enum Parents {
    /// Every parent folder exists and is a real folder.
    Exist,
    /// Some parent folder does not exist (so neither does the key).
    Missing,
}

impl UnsafeBackend {
    /// A backend for the files under `config.dir`. Does no I/O.
    pub fn new(config: UnsafeConfig) -> Self {
        // SAFETY: geteuid(2) takes no arguments and cannot fail.
        let owner = unsafe { libc::geteuid() };
        Self { config, owner }
    }

    /// The same backend expecting files of another user: tests of the owner check that do
    /// not run as root (and so cannot give a file away) use this.
    #[cfg(test)]
    fn with_owner(mut self, owner: u32) -> Self {
        self.owner = owner;
        self
    }

    /// Refuses a file or folder that belongs to neither this user nor root.
    fn check_owner(&self, path: &Path, meta: &fs::Metadata) -> Result<(), BackendError> {
        let owner = meta.uid();
        if owner == self.owner || owner == 0 {
            Ok(())
        } else {
            Err(BackendError::Owner {
                path: path.to_path_buf(),
                owner,
                you: self.owner,
            })
        }
    }

    fn root(&self) -> &Path {
        &self.config.dir
    }

    fn file(&self, key: &KeyPath) -> PathBuf {
        let mut path = self.root().to_path_buf();
        path.extend(key.segments());
        path
    }

    fn symlink_error(path: &Path) -> BackendError {
        BackendError::Corrupt {
            path: path.to_path_buf(),
            reason: "is a symbolic link; the unsafe backend never follows links below its folder, \
                     remove the link or move the real files there"
                .to_owned(),
        }
    }

    /// Checks that each parent folder of `key` below the root is a real folder (not a link, not
    /// a file).
    fn check_parents(&self, key: &KeyPath) -> Result<Parents, BackendError> {
        let segments: Vec<&str> = key.segments().collect();
        let mut path = self.root().to_path_buf();
        for (i, seg) in segments[..segments.len() - 1].iter().enumerate() {
            path.push(seg);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(Self::symlink_error(&path));
                }
                Ok(meta) if meta.is_dir() => self.check_owner(&path, &meta)?,
                Ok(_) => {
                    return Err(BackendError::Conflict {
                        backend: NAME,
                        key: key.clone(),
                        reason: format!(
                            "`{}` already holds a value, so it cannot also be a folder of keys",
                            segments[..=i].join("/")
                        ),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Parents::Missing),
                Err(e) => return Err(BackendError::io(&path, e)),
            }
        }
        Ok(Parents::Exist)
    }

    /// Like [`Self::check_parents`], for reading: a parent that holds a value means there is
    /// no such key.
    fn check_parents_to_read(&self, key: &KeyPath) -> Result<Parents, BackendError> {
        match self.check_parents(key) {
            Err(BackendError::Conflict { .. }) => Ok(Parents::Missing),
            other => other,
        }
    }

    /// Removes what killed writers of `key` left next to its file (see
    /// [`fsutil::remove_stale_temps`]): a temp file can hold the value.
    fn remove_stale_temps(path: &Path) {
        if let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        {
            fsutil::remove_stale_temps(dir, name);
        }
    }

    /// Opens the key's file without following links, refusing files others may access.
    fn open_secret(&self, key: &KeyPath) -> Result<(File, PathBuf), BackendError> {
        if let Parents::Missing = self.check_parents_to_read(key)? {
            return Err(BackendError::not_found(NAME, key));
        }
        let path = self.file(key);
        Self::remove_stale_temps(&path);
        let file = OpenOptions::new()
            .read(true)
            // O_NONBLOCK: a FIFO planted in the folder must not hang us on open.
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENOENT) => BackendError::not_found(NAME, key),
                Some(libc::ELOOP) => Self::symlink_error(&path),
                _ => BackendError::io(&path, e),
            })?;
        let meta = file.metadata().map_err(|e| BackendError::io(&path, e))?;
        if !meta.is_file() {
            // A folder of keys (or anything else) is not a value.
            return Err(BackendError::not_found(NAME, key));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(BackendError::Permissions {
                path,
                mode,
                want: PRIVATE_FILE_MODE,
            });
        }
        self.check_owner(&path, &meta)?;
        Ok((file, path))
    }
}

impl SecretsBackend for UnsafeBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn get(&self, key: &KeyPath) -> Result<SecretString, BackendError> {
        let (mut file, path) = self.open_secret(key)?;
        let mut bytes = Zeroizing::new(Vec::new());
        file.read_to_end(&mut bytes)
            .map_err(|e| BackendError::io(&path, e))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| BackendError::Corrupt {
            path: path.clone(),
            reason: "the secret file is not UTF-8 text".to_owned(),
        })?;
        Ok(SecretString::from(strip_one_newline(text).to_owned()))
    }

    fn set(&self, key: &KeyPath, value: &SecretString) -> Result<(), BackendError> {
        let path = self.file(key);
        let mut content = Zeroizing::new(Vec::with_capacity(value.expose_secret().len() + 1));
        content.extend_from_slice(value.expose_secret().as_bytes());
        content.push(b'\n');
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.check_parents(key)?;
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(Self::symlink_error(&path));
                }
                Ok(meta) if meta.is_dir() => {
                    return Err(BackendError::Conflict {
                        backend: NAME,
                        key: key.clone(),
                        reason: "it is a folder of other keys".to_owned(),
                    });
                }
                _ => {}
            }
            match fsutil::write_atomic(&path, &content, PRIVATE_FILE_MODE) {
                Ok(()) => return Ok(()),
                // A concurrent delete removed the (then empty) folder between its creation and
                // our temp file: try again.
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < WRITE_ATTEMPTS => {}
                Err(e) => return Err(BackendError::io(&path, e)),
            }
        }
    }

    fn delete(&self, key: &KeyPath) -> Result<(), BackendError> {
        if let Parents::Missing = self.check_parents_to_read(key)? {
            return Err(BackendError::not_found(NAME, key));
        }
        let path = self.file(key);
        // Before the file itself, so that an interrupted `set` leaves nothing of the value.
        Self::remove_stale_temps(&path);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => return Err(Self::symlink_error(&path)),
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(BackendError::not_found(NAME, key)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BackendError::not_found(NAME, key));
            }
            Err(e) => return Err(BackendError::io(&path, e)),
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BackendError::not_found(NAME, key));
            }
            Err(e) => return Err(BackendError::io(&path, e)),
        }
        // Remove the folders this left empty, up to (not including) the root. `remove_dir`
        // only removes empty folders, so a concurrent write into one of them wins.
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root() || !d.starts_with(self.root()) || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        if let Some(d) = dir {
            let _ = fsutil::sync_dir(d);
        }
        Ok(())
    }

    fn list(&self, prefix: Option<&KeyPath>) -> Result<Vec<KeyPath>, BackendError> {
        let mut keys = Vec::new();
        match fs::symlink_metadata(self.root()) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(keys),
            Err(e) => return Err(BackendError::io(self.root(), e)),
            Ok(_) => {}
        }
        // Links, temp files and names that are not key paths are skipped.
        fsutil::walk_files(
            self.root(),
            &|_, path| KeyPath::new(path).is_ok(),
            &mut |path| keys.extend(KeyPath::new(path).ok()),
        )?;
        keys.retain(|k| prefix.is_none_or(|p| k.starts_with(p)));
        keys.sort();
        Ok(keys)
    }

    fn check(&self) -> Result<String, BackendError> {
        let root = self.root();
        match fs::metadata(root) {
            Ok(meta) if !meta.is_dir() => Err(BackendError::Setup(format!(
                "{} is not a folder; point `secrets.unsafe.dir` at a folder",
                root.display()
            ))),
            Ok(_) => Ok(format!(
                "plain files under {} (not encrypted)",
                root.display()
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(format!(
                "plain files under {} (not encrypted; the folder is created on first write)",
                root.display()
            )),
            Err(e) => Err(BackendError::io(root, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_folders_of_another_user_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("secrets");
        let backend = UnsafeBackend::new(UnsafeConfig { dir: dir.clone() });
        let key = KeyPath::new("tessera/auth/token_secret").unwrap();
        backend.set(&key, &SecretString::from("mine")).unwrap();
        let file = dir.join("tessera/auth/token_secret");
        let folder = dir.join("tessera/auth");
        // As root, give the file and then its folder to `nobody`; otherwise (a file cannot be
        // given away) make the backend expect another user.
        let root = backend.owner == 0;
        let backend = if root {
            backend
        } else {
            let other = backend.owner + 1;
            backend.with_owner(other)
        };
        let give_away = |path: &Path, uid: u32| {
            if root {
                std::os::unix::fs::lchown(path, Some(uid), None).unwrap();
            }
        };
        give_away(&file, 65534);
        let err = backend.get(&key).unwrap_err();
        let BackendError::Owner { path, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(path, &file);
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("chown {} {}", backend.owner, file.display())),
            "{msg}"
        );
        assert!(msg.contains("another user could have planted"), "{msg}");
        if root {
            give_away(&file, 0);
            assert_eq!(backend.get(&key).unwrap().expose_secret(), "mine");
            give_away(&folder, 65534);
            let err = backend.get(&key).unwrap_err();
            assert!(
                matches!(&err, BackendError::Owner { path, owner: 65534, .. } if path == &folder),
                "{err}"
            );
            // Writing into (or deleting from) a folder of another user is refused too.
            assert!(matches!(
                backend.set(&key, &SecretString::from("x")),
                Err(BackendError::Owner { .. })
            ));
            assert!(matches!(
                backend.delete(&key),
                Err(BackendError::Owner { .. })
            ));
        } else {
            // A folder of another user: what the backend sees when it expects `other`.
            assert!(matches!(
                backend.set(&key, &SecretString::from("x")),
                Err(BackendError::Owner { .. })
            ));
        }
    }
}
