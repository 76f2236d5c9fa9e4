//! The `sops` backend: every key in one sops-encrypted YAML or JSON file, through the real
//! `sops` program.
//!
//! Key path `a/b/c` is the value at nested maps `a: {b: {c: VALUE}}`; it is read with
//! `sops --decrypt --extract '["a"]["b"]["c"]' FILE`, written with
//! `sops set --value-stdin FILE '["a"]["b"]["c"]'` (the JSON-encoded value on stdin, never in
//! the arguments) and removed with `sops unset`. The value is stored followed by one newline,
//! like `pass` does, and read back with one trailing newline removed.
//!
//! - A file that does not exist yet is created through `sops encrypt`, run in the file's
//!   folder, so the user's `.sops.yaml` `creation_rules` decide the recipients.
//! - Every change runs `sops` on a temporary copy in the same folder, which is then renamed over
//!   the file, under a sidecar lock (`.FILE.lock`): writes are atomic and two concurrent writers
//!   lose no update.
//! - Listing reads the file's key structure without decrypting anything (sops leaves keys in
//!   clear), skipping the top-level `sops` metadata.
//! - Format by extension: `.json` is JSON, anything else YAML.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::fsutil::{self, FileLock, PRIVATE_FILE_MODE};
use crate::key::json_leaves;
use crate::process::{self, Call, Tool};
use crate::{
    BackendError, DEFAULT_TOOL_TIMEOUT, KeyPath, SecretString, SecretsBackend, SopsConfig,
    strip_one_newline,
};

const NAME: &str = "sops";

/// The top-level map where sops keeps its metadata.
const METADATA_KEY: &str = "sops";

/// Secrets kept in one sops-encrypted file by the real `sops` program.
#[derive(Debug)]
pub struct SopsBackend {
    config: SopsConfig,
    env: Vec<(String, OsString)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Yaml,
    Json,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
        }
    }
}

/// Where a key path lands in the document's key structure.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    /// A value (a leaf).
    Value,
    /// A map of other keys.
    Folder,
    /// Nothing there; the parents up to here are maps or absent.
    Missing,
    /// A parent (the given path) holds a value, so the key cannot exist below it.
    BlockedBy(String),
}

impl SopsBackend {
    /// A backend for the file described by `config`. Does no I/O.
    pub fn new(config: SopsConfig) -> Self {
        Self {
            config,
            env: Vec::new(),
        }
    }

    /// Sets a variable in the environment of every `sops` this backend runs, on top of the
    /// whitelisted variables taken from this process (e.g. `SOPS_AGE_KEY_FILE`, or `PATH`).
    /// `TESSERA_*` names are ignored. Never put a value stored by tessera here.
    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    fn format(&self) -> Format {
        match self.config.file.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }

    /// The file as an absolute path (sops runs in the file's folder).
    fn file(&self) -> Result<PathBuf, BackendError> {
        std::path::absolute(&self.config.file).map_err(|e| BackendError::io(&self.config.file, e))
    }

    fn run(
        &self,
        file: &Path,
        args: Vec<OsString>,
        stdin: Option<&[u8]>,
    ) -> Result<process::Output, BackendError> {
        process::run(Call {
            tool: Tool::Sops,
            args,
            stdin,
            env: &self.env,
            cwd: file.parent(),
            timeout: self.config.timeout.unwrap_or(DEFAULT_TOOL_TIMEOUT),
        })
    }

    /// Reads the file's key structure without decrypting (`None` when the file does not exist).
    fn read_tree(&self, file: &Path) -> Result<Option<Value>, BackendError> {
        let text = match fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(BackendError::Corrupt {
                    path: file.to_path_buf(),
                    reason: "is not UTF-8 text, so it is not a sops YAML or JSON file".to_owned(),
                });
            }
            Err(e) => return Err(BackendError::io(file, e)),
        };
        parse_tree(&text, self.format())
            .map(Some)
            .map_err(|reason| BackendError::Corrupt {
                path: file.to_path_buf(),
                reason,
            })
    }

    /// Maps a failed `sops` run on an existing file to the most precise error.
    fn failure(out: &process::Output, file: &Path, key: &KeyPath) -> BackendError {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("not found") && stderr.contains("component") {
            BackendError::not_found(NAME, key)
        } else if stderr.contains("Failed to get the data key")
            || stderr.contains("no master key was able to decrypt")
        {
            BackendError::Corrupt {
                path: file.to_path_buf(),
                reason: format!(
                    "sops cannot decrypt it with the keys available; check that its key is \
                     available to sops (SOPS_AGE_KEY_FILE or ~/.config/sops/age/keys.txt for age, \
                     the gpg key ring for PGP, credentials for a KMS). sops said: {}",
                    out.stderr_excerpt()
                ),
            }
        } else if stderr.contains("sops metadata not found") {
            BackendError::Corrupt {
                path: file.to_path_buf(),
                reason: not_sops_reason(),
            }
        } else {
            out.failure(Tool::Sops)
        }
    }

    /// Creates the file through `sops encrypt` (so `.sops.yaml` creation rules apply) holding
    /// `document`, a JSON document given on stdin.
    fn create(&self, file: &Path, document: &[u8]) -> Result<(), BackendError> {
        let dir = file.parent().unwrap_or(Path::new("/"));
        fsutil::create_private_dir(dir).map_err(|e| BackendError::io(dir, e))?;
        let args = vec![
            "encrypt".into(),
            "--filename-override".into(),
            file.as_os_str().to_owned(),
            "--input-type".into(),
            "json".into(),
            "--output-type".into(),
            self.format().as_str().into(),
        ];
        let out = self.run(file, args, Some(document))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("creation rules") {
                return Err(BackendError::Setup(format!(
                    "sops cannot create {}: no `.sops.yaml` with `creation_rules` matching it \
                     was found in {} or a folder above; create {}/.sops.yaml, e.g. \
                     `creation_rules: [{{age: age1...}}]` with the recipient printed by \
                     `age-keygen -y KEYFILE`",
                    file.display(),
                    dir.display(),
                    dir.display()
                )));
            }
            return Err(out.failure(Tool::Sops));
        }
        fsutil::write_atomic(file, &out.stdout, PRIVATE_FILE_MODE)
            .map_err(|e| BackendError::io(file, e))
    }

    /// Runs `sops ARGS... TEMP INDEX` on a temporary copy of `file` in the same folder, then
    /// renames the copy over `file`. On any error `file` is untouched.
    fn modify(
        &self,
        file: &Path,
        command: &str,
        index: &str,
        stdin: Option<&[u8]>,
        key: &KeyPath,
    ) -> Result<(), BackendError> {
        let io_err = |e| BackendError::io(file, e);
        let (dir, name) = fsutil::split_parent(file).map_err(io_err)?;
        let meta = fs::metadata(file).map_err(io_err)?;
        let original = fs::read(file).map_err(io_err)?;
        let mut tmp = fsutil::temp_file_in(&dir, &name, meta.mode() & 0o777).map_err(io_err)?;
        tmp.as_file_mut().write_all(&original).map_err(io_err)?;
        tmp.as_file().sync_all().map_err(io_err)?;

        let format = self.format().as_str();
        let mut args: Vec<OsString> = vec![
            command.into(),
            "--input-type".into(),
            format.into(),
            "--output-type".into(),
            format.into(),
        ];
        if stdin.is_some() {
            args.push("--value-stdin".into());
        }
        args.push(tmp.path().as_os_str().to_owned());
        args.push(index.into());
        let out = self.run(file, args, stdin)?;
        if !out.status.success() {
            return Err(Self::failure(&out, file, key));
        }
        // sops rewrote the copy by path: sync what it wrote, then swap it in.
        fs::File::open(tmp.path())
            .and_then(|f| f.sync_all())
            .map_err(io_err)?;
        tmp.persist(file).map_err(|e| io_err(e.error))?;
        fsutil::sync_dir(&dir).map_err(io_err)?;
        fsutil::remove_stale_temps(&dir, &name);
        Ok(())
    }
}

/// The sops index expression of a key path: `["a"]["b"]["c"]`. Key path segments only use
/// `[A-Za-z0-9._-]`, so nothing needs escaping.
fn index(key: &KeyPath) -> String {
    key.segments().map(|s| format!("[\"{s}\"]")).collect()
}

fn not_sops_reason() -> String {
    "is not sops-encrypted (it has no top-level `sops` metadata); encrypt it with \
     `sops encrypt --in-place FILE`, or point `secrets.sops.file` at the encrypted file"
        .to_owned()
}

/// Parses a sops file's structure (keys are in clear; values stay encrypted). The error is a
/// reason for [`BackendError::Corrupt`]; it never quotes the file's content.
fn parse_tree(text: &str, format: Format) -> Result<Value, String> {
    let tree: Value = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| {
            format!(
                "is not a valid JSON document (line {}, column {})",
                e.line(),
                e.column()
            )
        })?,
        Format::Yaml => serde_saphyr::from_str(text).map_err(|_| {
            "is not a valid YAML document (or uses YAML features sops does not write)".to_owned()
        })?,
    };
    match tree.get(METADATA_KEY) {
        Some(Value::Object(_)) => Ok(tree),
        _ => Err(not_sops_reason()),
    }
}

/// Where `key` lands in `tree`.
fn lookup(tree: &Value, key: &KeyPath) -> Lookup {
    let segments: Vec<&str> = key.segments().collect();
    let mut node = tree;
    for (i, seg) in segments.iter().enumerate() {
        let Value::Object(map) = node else {
            return Lookup::BlockedBy(segments[..i].join("/"));
        };
        match map.get(*seg) {
            Some(child) => node = child,
            None => return Lookup::Missing,
        }
    }
    match node {
        Value::Object(_) => Lookup::Folder,
        _ => Lookup::Value,
    }
}

/// The key path to `sops unset` to delete `key` without leaving empty maps behind: the highest
/// ancestor whose whole subtree is just `key`'s value.
fn unset_target(tree: &Value, key: &KeyPath) -> String {
    let segments: Vec<&str> = key.segments().collect();
    let mut node = tree;
    let mut cut = segments.len();
    for (i, seg) in segments.iter().enumerate() {
        let Value::Object(map) = node else { break };
        // Below the top level, a map with this key as its only entry becomes empty: cut there.
        if i > 0 && map.len() == 1 && cut == segments.len() {
            cut = i;
        } else if map.len() > 1 {
            cut = segments.len();
        }
        match map.get(*seg) {
            Some(child) => node = child,
            None => break,
        }
    }
    segments[..cut.min(segments.len())]
        .iter()
        .map(|s| format!("[\"{s}\"]"))
        .collect()
}

/// The key paths of the leaves of a sops tree: every value but an array, outside the metadata.
fn leaves(tree: &Value) -> Vec<KeyPath> {
    let mut keys = Vec::new();
    if let Value::Object(map) = tree {
        let entries = map.iter().filter(|(name, _)| *name != METADATA_KEY);
        json_leaves(entries, "", |v| !v.is_array(), &mut keys);
    }
    keys
}

fn json_value(out: &mut Vec<u8>, key: &KeyPath, value: &str, nested: bool) {
    let segments: Vec<&str> = key.segments().collect();
    out.reserve(value.len() * 6 + 64 + key.as_str().len() * 2);
    if nested {
        for seg in &segments {
            out.extend_from_slice(format!("{{\"{seg}\":").as_bytes());
        }
    }
    out.push(b'"');
    for ch in value.chars().chain(std::iter::once('\n')) {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
    if nested {
        out.extend(std::iter::repeat_n(b'}', segments.len()));
    }
}

fn reserved(key: &KeyPath) -> Option<BackendError> {
    (key.segments().next() == Some(METADATA_KEY)).then(|| BackendError::Conflict {
        backend: NAME,
        key: key.clone(),
        reason: "the top-level name `sops` holds sops's own metadata; use another name".to_owned(),
    })
}

impl SecretsBackend for SopsBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn get(&self, key: &KeyPath) -> Result<SecretString, BackendError> {
        let file = self.file()?;
        let Some(tree) = self.read_tree(&file)? else {
            return Err(BackendError::not_found(NAME, key));
        };
        if reserved(key).is_some() || lookup(&tree, key) != Lookup::Value {
            return Err(BackendError::not_found(NAME, key));
        }
        let args = vec![
            "--decrypt".into(),
            "--input-type".into(),
            self.format().as_str().into(),
            "--extract".into(),
            index(key).into(),
            file.as_os_str().to_owned(),
        ];
        let out = self.run(&file, args, None)?;
        if !out.status.success() {
            return Err(Self::failure(&out, &file, key));
        }
        let text = std::str::from_utf8(&out.stdout).map_err(|_| BackendError::Corrupt {
            path: file.clone(),
            reason: format!("the value of `{key}` is not UTF-8 text"),
        })?;
        Ok(SecretString::from(strip_one_newline(text).to_owned()))
    }

    fn set(&self, key: &KeyPath, value: &SecretString) -> Result<(), BackendError> {
        if let Some(err) = reserved(key) {
            return Err(err);
        }
        let file = self.file()?;
        let _lock = FileLock::acquire(&file).map_err(|e| BackendError::io(&file, e))?;
        let Some(tree) = self.read_tree(&file)? else {
            let mut document = Zeroizing::new(Vec::new());
            json_value(&mut document, key, value.expose_secret(), true);
            return self.create(&file, &document);
        };
        match lookup(&tree, key) {
            Lookup::Folder => {
                return Err(BackendError::Conflict {
                    backend: NAME,
                    key: key.clone(),
                    reason: "it is a map of other keys in the sops file".to_owned(),
                });
            }
            Lookup::BlockedBy(parent) => {
                return Err(BackendError::Conflict {
                    backend: NAME,
                    key: key.clone(),
                    reason: format!(
                        "`{parent}` already holds a value, so it cannot also be a map of keys"
                    ),
                });
            }
            Lookup::Value | Lookup::Missing => {}
        }
        let mut encoded = Zeroizing::new(Vec::new());
        json_value(&mut encoded, key, value.expose_secret(), false);
        self.modify(&file, "set", &index(key), Some(&encoded), key)
    }

    fn delete(&self, key: &KeyPath) -> Result<(), BackendError> {
        let file = self.file()?;
        let _lock = FileLock::acquire(&file).map_err(|e| BackendError::io(&file, e))?;
        let Some(tree) = self.read_tree(&file)? else {
            return Err(BackendError::not_found(NAME, key));
        };
        if reserved(key).is_some() || lookup(&tree, key) != Lookup::Value {
            return Err(BackendError::not_found(NAME, key));
        }
        self.modify(&file, "unset", &unset_target(&tree, key), None, key)
    }

    fn list(&self, prefix: Option<&KeyPath>) -> Result<Vec<KeyPath>, BackendError> {
        let file = self.file()?;
        let mut keys = match self.read_tree(&file)? {
            Some(tree) => leaves(&tree),
            None => Vec::new(),
        };
        keys.retain(|k| prefix.is_none_or(|p| k.starts_with(p)));
        keys.sort();
        Ok(keys)
    }

    fn check(&self) -> Result<String, BackendError> {
        let file = self.file()?;
        // `--disable-version-check`: plain `--version` asks GitHub for the latest release.
        let args = vec!["--version".into(), "--disable-version-check".into()];
        let out = process::run(Call {
            tool: Tool::Sops,
            args,
            stdin: None,
            env: &self.env,
            cwd: None,
            timeout: self.config.timeout.unwrap_or(DEFAULT_TOOL_TIMEOUT),
        })?;
        if !out.status.success() {
            return Err(out.failure(Tool::Sops));
        }
        match self.read_tree(&file)? {
            Some(_) => Ok(format!("sops file {}", file.display())),
            None => Ok(format!(
                "sops file {} (created on first write, following the .sops.yaml creation rules)",
                file.display()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> KeyPath {
        KeyPath::new(s).unwrap()
    }

    fn tree() -> Value {
        serde_json::json!({
            "a": {"b": {"c": "ENC[1]", "d": "ENC[2]"}, "only": {"x": {"y": "ENC[3]"}}},
            "top": "ENC[4]",
            "list": ["ENC[5]"],
            "bad name": "ENC[6]",
            "sops": {"mac": "ENC[7]"}
        })
    }

    #[test]
    fn index_quotes_each_segment() {
        assert_eq!(index(&key("a/b.c/d-e")), r#"["a"]["b.c"]["d-e"]"#);
    }

    #[test]
    fn lookup_distinguishes_values_maps_and_blockers() {
        let t = tree();
        assert_eq!(lookup(&t, &key("a/b/c")), Lookup::Value);
        assert_eq!(lookup(&t, &key("a/b")), Lookup::Folder);
        assert_eq!(lookup(&t, &key("a/zz")), Lookup::Missing);
        assert_eq!(lookup(&t, &key("top/x/y")), Lookup::BlockedBy("top".into()));
    }

    #[test]
    fn leaves_skip_metadata_arrays_and_bad_names() {
        let mut keys = leaves(&tree());
        keys.sort();
        let names: Vec<_> = keys.iter().map(KeyPath::as_str).collect();
        assert_eq!(names, ["a/b/c", "a/b/d", "a/only/x/y", "top"]);
    }

    #[test]
    fn unset_cuts_at_the_highest_single_entry_map() {
        let t = tree();
        assert_eq!(unset_target(&t, &key("a/b/c")), r#"["a"]["b"]["c"]"#);
        assert_eq!(unset_target(&t, &key("a/only/x/y")), r#"["a"]["only"]"#);
        assert_eq!(unset_target(&t, &key("top")), r#"["top"]"#);
        let single = serde_json::json!({"p": {"q": "ENC"}, "sops": {}});
        assert_eq!(unset_target(&single, &key("p/q")), r#"["p"]"#);
    }

    #[test]
    fn json_value_is_valid_json() {
        let mut out = Vec::new();
        json_value(&mut out, &key("a/b"), "q\"\\\n\t\u{1}é", true);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, serde_json::json!({"a": {"b": "q\"\\\n\t\u{1}é\n"}}));
        let mut out = Vec::new();
        json_value(&mut out, &key("a/b"), "x", false);
        assert_eq!(out, b"\"x\\n\"");
    }

    #[test]
    fn parse_tree_requires_metadata() {
        assert!(
            parse_tree("a: 1\n", Format::Yaml)
                .unwrap_err()
                .contains("not sops-encrypted")
        );
        assert!(
            parse_tree("{\"a\": 1", Format::Json)
                .unwrap_err()
                .contains("JSON")
        );
        let t = parse_tree("a:\n  b: ENC[x]\nsops:\n  version: 3.11.0\n", Format::Yaml).unwrap();
        assert_eq!(lookup(&t, &key("a/b")), Lookup::Value);
    }
}
