//! The native `age` backend: every key in one age-encrypted document, no external tool.
//!
//! The document is a JSON object of nested maps, the same shape as the sops backend's file:
//! key path `a/b/c` is `{"a": {"b": {"c": "VALUE\n"}}}` (each value is stored followed by one
//! newline and read back with one trailing newline removed). The whole document is encrypted
//! with the [`age`] crate to the recipient of one x25519 identity file (as written by
//! `age-keygen` or [`generate_identity`]) and stored ASCII-armored
//! (`-----BEGIN AGE ENCRYPTED FILE-----`), so `age -d -i IDENTITY FILE` shows it. Binary age
//! files are read too.
//!
//! Every change takes a sidecar lock (`.FILE.lock`), decrypts, modifies, re-encrypts and
//! replaces the file atomically, so concurrent writers lose no update. Re-encryption is to the
//! identity's own recipient only: a file that was also encrypted to other recipients is not
//! readable by them after tessera changes it.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use age::x25519;
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use zeroize::{Zeroize, Zeroizing};

use crate::fsutil::{self, FileLock, PRIVATE_FILE_MODE};
use crate::key::json_leaves;
use crate::{AgeConfig, BackendError, KeyPath, SecretString, SecretsBackend, strip_one_newline};

const NAME: &str = "age";

/// Secrets kept in one age-encrypted document, encrypted natively.
#[derive(Debug)]
pub struct AgeBackend {
    config: AgeConfig,
}

/// The decrypted document; every string in it is wiped when it is dropped.
struct Doc(Map<String, Value>);

impl Drop for Doc {
    fn drop(&mut self) {
        for (_, v) in self.0.iter_mut() {
            wipe(v);
        }
    }
}

fn wipe(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Object(map) => map.iter_mut().for_each(|(_, v)| wipe(v)),
        Value::Array(items) => items.iter_mut().for_each(wipe),
        _ => {}
    }
}

impl AgeBackend {
    /// A backend for the document and identity described by `config`. Does no I/O.
    pub fn new(config: AgeConfig) -> Self {
        Self { config }
    }

    fn identity(&self) -> Result<x25519::Identity, BackendError> {
        load_identity(&self.config.identity)
    }

    /// Decrypts the document (`None` when the file does not exist yet).
    fn read(&self, identity: &x25519::Identity) -> Result<Option<Doc>, BackendError> {
        let file = &self.config.file;
        let ciphertext = match fs::read(file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BackendError::io(file, e)),
        };
        let corrupt = |reason: String| BackendError::Corrupt {
            path: file.clone(),
            reason,
        };
        let plaintext =
            Zeroizing::new(age::decrypt(identity, &ciphertext).map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => corrupt(format!(
                    "cannot decrypt it with identity {}: it was encrypted to another key",
                    self.config.identity.display()
                )),
                other => corrupt(format!("is not a valid age file or is damaged ({other})")),
            })?);
        match serde_json::from_slice::<Value>(&plaintext) {
            Ok(Value::Object(map)) => Ok(Some(Doc(map))),
            Ok(mut other) => {
                wipe(&mut other);
                Err(corrupt(
                    "decrypts, but does not hold a JSON object of nested maps".to_owned(),
                ))
            }
            Err(e) => Err(corrupt(format!(
                "decrypts, but does not hold a JSON document (line {}, column {})",
                e.line(),
                e.column()
            ))),
        }
    }

    /// Encrypts `doc` to the identity's recipient and replaces the file atomically.
    fn write(&self, identity: &x25519::Identity, doc: &Doc) -> Result<(), BackendError> {
        let file = &self.config.file;
        let mut plaintext = Zeroizing::new(Vec::with_capacity(64 * 1024));
        serde_json::to_writer(&mut *plaintext, &doc.0).map_err(|e| BackendError::Corrupt {
            path: file.clone(),
            reason: format!("cannot serialize the document (at line {})", e.line()),
        })?;
        let armored = age::encrypt_and_armor(&identity.to_public(), &plaintext).map_err(|e| {
            BackendError::io(
                file,
                io::Error::other(format!("age encryption failed: {e}")),
            )
        })?;
        fsutil::write_atomic(file, armored.as_bytes(), PRIVATE_FILE_MODE)
            .map_err(|e| BackendError::io(file, e))
    }

    fn lock(&self) -> Result<FileLock, BackendError> {
        FileLock::acquire(&self.config.file).map_err(|e| BackendError::io(&self.config.file, e))
    }
}

/// Finds the value at `key`.
fn lookup<'a>(map: &'a Map<String, Value>, key: &KeyPath) -> Option<&'a Value> {
    let mut segments = key.segments();
    let mut node = map.get(segments.next()?)?;
    for seg in segments {
        node = node.as_object()?.get(seg)?;
    }
    Some(node)
}

/// Stores `value` at `key`, creating maps on the way; refuses to turn a value into a map or a
/// map into a value.
fn insert(map: &mut Map<String, Value>, key: &KeyPath, value: String) -> Result<(), BackendError> {
    let segments: Vec<&str> = key.segments().collect();
    let conflict = |reason: String| BackendError::Conflict {
        backend: NAME,
        key: key.clone(),
        reason,
    };
    let (last, parents) = segments.split_last().unwrap_or((&"", &[]));
    let mut node = map;
    for (i, seg) in parents.iter().enumerate() {
        let child = node
            .entry((*seg).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        node = child.as_object_mut().ok_or_else(|| {
            conflict(format!(
                "`{}` already holds a value, so it cannot also be a map of keys",
                segments[..=i].join("/")
            ))
        })?;
    }
    if let Some(Value::Object(_)) = node.get(*last) {
        return Err(conflict("it is a map of other keys".to_owned()));
    }
    if let Some(mut old) = node.insert((*last).to_owned(), Value::String(value)) {
        wipe(&mut old);
    }
    Ok(())
}

/// Removes the value at `segments`, and the maps this leaves empty. Whether it was there.
fn remove(map: &mut Map<String, Value>, segments: &[&str]) -> bool {
    match segments {
        [] => false,
        [last] => match map.get(*last) {
            Some(Value::Object(_)) | None => false,
            Some(_) => {
                if let Some(mut old) = map.remove(*last) {
                    wipe(&mut old);
                }
                true
            }
        },
        [first, rest @ ..] => {
            let Some(Value::Object(child)) = map.get_mut(*first) else {
                return false;
            };
            let removed = remove(child, rest);
            if removed && child.is_empty() {
                map.remove(*first);
            }
            removed
        }
    }
}

impl SecretsBackend for AgeBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn get(&self, key: &KeyPath) -> Result<SecretString, BackendError> {
        let identity = self.identity()?;
        let Some(doc) = self.read(&identity)? else {
            return Err(BackendError::not_found(NAME, key));
        };
        match lookup(&doc.0, key) {
            Some(Value::String(s)) => Ok(SecretString::from(strip_one_newline(s).to_owned())),
            Some(Value::Object(_)) | None => Err(BackendError::not_found(NAME, key)),
            Some(_) => Err(BackendError::Corrupt {
                path: self.config.file.clone(),
                reason: format!("the value of `{key}` is not a string"),
            }),
        }
    }

    fn set(&self, key: &KeyPath, value: &SecretString) -> Result<(), BackendError> {
        let identity = self.identity()?;
        let _lock = self.lock()?;
        let mut doc = self.read(&identity)?.unwrap_or(Doc(Map::new()));
        let mut stored = String::with_capacity(value.expose_secret().len() + 1);
        stored.push_str(value.expose_secret());
        stored.push('\n');
        insert(&mut doc.0, key, stored)?;
        self.write(&identity, &doc)
    }

    fn delete(&self, key: &KeyPath) -> Result<(), BackendError> {
        let identity = self.identity()?;
        let _lock = self.lock()?;
        let Some(mut doc) = self.read(&identity)? else {
            return Err(BackendError::not_found(NAME, key));
        };
        let segments: Vec<&str> = key.segments().collect();
        if !remove(&mut doc.0, &segments) {
            return Err(BackendError::not_found(NAME, key));
        }
        self.write(&identity, &doc)
    }

    fn list(&self, prefix: Option<&KeyPath>) -> Result<Vec<KeyPath>, BackendError> {
        let identity = self.identity()?;
        let mut keys = Vec::new();
        if let Some(doc) = self.read(&identity)? {
            // Strings are secrets; other values are not tessera's and are skipped.
            json_leaves(&doc.0, "", Value::is_string, &mut keys);
        }
        keys.retain(|k| prefix.is_none_or(|p| k.starts_with(p)));
        keys.sort();
        Ok(keys)
    }

    fn check(&self) -> Result<String, BackendError> {
        let identity = self.identity()?;
        let file = &self.config.file;
        let state = match self.read(&identity)? {
            Some(_) => "",
            None => ", created on first write",
        };
        Ok(format!(
            "age file {} (identity {}{state})",
            file.display(),
            self.config.identity.display()
        ))
    }
}

fn missing_identity(path: &Path) -> BackendError {
    BackendError::Setup(format!(
        "no age identity at {p}; run `tessera init --backend age` or `age-keygen -o {p}`",
        p = path.display()
    ))
}

/// Reads an x25519 identity file as written by `age-keygen`: `#` comment lines, blank lines
/// and one `AGE-SECRET-KEY-1...` line. Like ssh, refuses a file other users may read.
pub fn load_identity(path: &Path) -> Result<x25519::Identity, BackendError> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing_identity(path)),
        Err(e) => return Err(BackendError::io(path, e)),
    };
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(BackendError::Permissions {
            path: path.to_path_buf(),
            mode,
            want: PRIVATE_FILE_MODE,
        });
    }
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => BackendError::Corrupt {
            path: path.to_path_buf(),
            reason: "is not an age identity file (not UTF-8 text)".to_owned(),
        },
        _ => BackendError::io(path, e),
    })?);
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let corrupt = |reason: &str| BackendError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let line = lines.next().ok_or_else(|| {
        corrupt("is not an age identity file: it has no AGE-SECRET-KEY-1... line")
    })?;
    if line.starts_with("AGE-PLUGIN-") {
        return Err(corrupt(
            "holds a plugin identity; the age backend supports x25519 identities \
             (AGE-SECRET-KEY-1...) from `age-keygen`",
        ));
    }
    x25519::Identity::from_str(line).map_err(|_| {
        corrupt("is not an age identity file: its key line is not a valid AGE-SECRET-KEY-1...")
    })
}

/// Writes a new x25519 identity file at `path`, as `age-keygen -o PATH` does (mode 0600, in a
/// 0700 folder created if missing, with `# created:` and `# public key:` comments), and
/// returns its recipient (`age1...`). Never overwrites an existing file.
pub fn generate_identity(path: &Path) -> Result<String, BackendError> {
    let exists = || {
        BackendError::Setup(format!(
            "an age identity already exists at {}; refusing to overwrite it",
            path.display()
        ))
    };
    if fs::symlink_metadata(path).is_ok() {
        return Err(exists());
    }
    let identity = x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let mut content = Zeroizing::new(format!(
        "# created: {}\n# public key: {recipient}\n",
        rfc3339_now()
    ));
    content.push_str(identity.to_string().expose_secret());
    content.push('\n');

    let io_err = |e| BackendError::io(path, e);
    let (dir, name) = fsutil::split_parent(path).map_err(io_err)?;
    fsutil::create_private_dir(&dir).map_err(io_err)?;
    let mut tmp = fsutil::temp_file_in(&dir, &name, PRIVATE_FILE_MODE).map_err(io_err)?;
    tmp.as_file_mut()
        .write_all(content.as_bytes())
        .map_err(io_err)?;
    tmp.as_file().sync_all().map_err(io_err)?;
    match tmp.persist_noclobber(path) {
        Ok(_) => {}
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => return Err(exists()),
        Err(e) => return Err(io_err(e.error)),
    }
    fsutil::sync_dir(&dir).map_err(io_err)?;
    // An earlier, killed run may have left the identity of its own attempt in a temp file.
    fsutil::remove_stale_temps(&dir, &name);
    Ok(recipient)
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ` (UTC), as in `age-keygen`'s comment.
fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The recipient (`age1...`) of the identity file at `path`.
pub fn recipient_of(path: &Path) -> Result<String, BackendError> {
    Ok(load_identity(path)?.to_public().to_string())
}

impl AgeBackend {
    /// The identity file this backend decrypts with.
    pub fn identity_path(&self) -> &Path {
        &self.config.identity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> KeyPath {
        KeyPath::new(s).unwrap()
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }

    #[test]
    fn insert_and_remove_keep_nested_maps_tidy() {
        let mut map = Map::new();
        insert(&mut map, &key("a/b/c"), "1".into()).unwrap();
        insert(&mut map, &key("a/d"), "2".into()).unwrap();
        assert!(matches!(
            insert(&mut map, &key("a/b"), "x".into()),
            Err(BackendError::Conflict { .. })
        ));
        assert!(matches!(
            insert(&mut map, &key("a/d/e"), "x".into()),
            Err(BackendError::Conflict { .. })
        ));
        assert_eq!(
            lookup(&map, &key("a/b/c")),
            Some(&Value::String("1".into()))
        );
        assert!(!remove(&mut map, &["a", "b"]));
        assert!(remove(&mut map, &["a", "b", "c"]));
        assert_eq!(
            Value::Object(map.clone()),
            serde_json::json!({"a": {"d": "2"}})
        );
        assert!(remove(&mut map, &["a", "d"]));
        assert!(map.is_empty());
    }
}
