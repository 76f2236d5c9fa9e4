//! The remotes file (`$XDG_CONFIG_HOME/tessera/remotes.toml`, described for users in
//! docs/remotes.md): the active remote and, per remote, its URL, whether TLS checks are off,
//! and its token or where the token lives.
//!
//! ```toml
//! active = "prod"
//!
//! [remotes.prod]
//! url = "https://tessera.example.com"
//! insecure = false
//! token_backend = "pass"     # the token is in the pass backend at tessera/remotes/prod/token
//!
//! [remotes.dev]
//! url = "http://127.0.0.1:7390"
//! token = "eyJ..."           # unsafe backend: the token is kept here, in this 0600 file
//! ```
//!
//! Every change is a read-modify-write under an exclusive lock on a sidecar file
//! (`.remotes.toml.lock`), written atomically (temp file, fsync, rename; 0600 in a 0700
//! folder), so two logins at once lose nothing. A file that does not parse is reported with
//! its line and column and never overwritten. Comments and layout written by hand are kept:
//! only the values change (`toml_edit`).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tessera_backends::KeyPath;
use tessera_backends::fsutil::{self, FileLock, PRIVATE_FILE_MODE};

/// Longest remote name.
pub const MAX_NAME_LEN: usize = 64;

/// Why the remotes file or a remote could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemotesError {
    /// The file exists but is not valid.
    #[error(
        "{}:{line}:{column}: {message}; fix or remove the file (tessera does not overwrite a file it cannot read)",
        path.display()
    )]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// Reading, locking or writing failed.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// A remote name outside the grammar.
    #[error(
        "invalid remote name `{0}`: use 1 to {MAX_NAME_LEN} letters, digits, `.`, `_` or `-`, starting with a letter or digit (no `/` or `..`)"
    )]
    InvalidName(String),
    /// A URL tessera will not use.
    #[error("invalid remote URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// No remote of that name.
    #[error("there is no remote `{name}`{}", known_list(.known))]
    Unknown { name: String, known: Vec<String> },
    /// A remote of that name exists already.
    #[error(
        "a remote named `{0}` already exists; remove it first with `tessera remotes remove {0}`"
    )]
    Exists(String),
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "; there are none yet: add one with `tessera remotes add NAME URL`".to_owned()
    } else {
        format!("; known remotes: {}", known.join(", "))
    }
}

/// Checks a remote name: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most [`MAX_NAME_LEN`] characters,
/// no `..`.
pub fn validate_name(name: &str) -> Result<(), RemotesError> {
    let mut chars = name.chars();
    let ok = name.len() <= MAX_NAME_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(RemotesError::InvalidName(
            name.chars().take(MAX_NAME_LEN + 8).collect(),
        ))
    }
}

/// Whether a URL host is this machine (`localhost`, `127.0.0.0/8`, `::1`).
fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Checks and normalises a remote URL: `http` or `https`, a host, no user, query or
/// fragment, no trailing `/`. Plain `http` is accepted for loopback hosts, and elsewhere
/// only with `insecure` (tokens and passwords would cross the network in clear text).
pub fn normalize_url(raw: &str, insecure: bool) -> Result<String, RemotesError> {
    let bad = |reason: &str| RemotesError::InvalidUrl {
        url: raw.chars().take(200).collect(),
        reason: reason.to_owned(),
    };
    let url = url::Url::parse(raw.trim())
        .map_err(|e| bad(&format!("{e}; give a URL like https://tessera.example.com")))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            let local = url.host().is_some_and(|h| is_loopback_host(&h));
            if !local && !insecure {
                return Err(bad(
                    "plain http is only accepted for loopback addresses; use https, or pass --insecure to send tokens in clear text anyway",
                ));
            }
        }
        _ => return Err(bad("the scheme must be https (or http for loopback)")),
    }
    if url.host().is_none() {
        return Err(bad("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "it contains a user name or password; log in with `tessera auth login` instead",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it has a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The backend key holding a remote's token: `tessera/remotes/NAME/token`.
pub fn token_key(name: &str) -> Result<KeyPath, RemotesError> {
    validate_name(name)?;
    KeyPath::new(&format!("tessera/remotes/{name}/token"))
        .map_err(|_| RemotesError::InvalidName(name.to_owned()))
}

/// A token kept in `remotes.toml`: a secret in memory, written out only into that file.
#[derive(Clone)]
pub struct StoredToken(pub SecretString);

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredToken(..)")
    }
}

impl Serialize for StoredToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose_secret())
    }
}

impl<'de> Deserialize<'de> for StoredToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| StoredToken(SecretString::from(s)))
    }
}

/// One remote.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remote {
    /// Base URL, normalised (no trailing `/`).
    pub url: String,
    /// Accept invalid TLS certificates (and plain http to non-loopback hosts).
    #[serde(default)]
    pub insecure: bool,
    /// When the token is in a secrets backend: its name (`pass`, `sops`, `age`); the key is
    /// [`token_key`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_backend: Option<String>,
    /// When the token is kept in this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<StoredToken>,
}

impl Remote {
    /// A remote without a token.
    pub fn new(url: String, insecure: bool) -> Self {
        Remote {
            url,
            insecure,
            token_backend: None,
            token: None,
        }
    }

    /// Whether a token is stored for it (in the file or a backend).
    pub fn has_token(&self) -> bool {
        self.token.is_some() || self.token_backend.is_some()
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemotesFile {
    /// The remote used when neither `--remote` nor `TESSERA_REMOTE` names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
    /// Remotes by name.
    #[serde(default)]
    pub remotes: BTreeMap<String, Remote>,
}

impl RemotesFile {
    /// The remote called `name`, or an error listing the known ones.
    pub fn get(&self, name: &str) -> Result<&Remote, RemotesError> {
        self.remotes.get(name).ok_or_else(|| self.unknown(name))
    }

    /// The remote called `name`, mutable.
    pub fn get_mut(&mut self, name: &str) -> Result<&mut Remote, RemotesError> {
        let err = self.unknown(name);
        self.remotes.get_mut(name).ok_or(err)
    }

    fn unknown(&self, name: &str) -> RemotesError {
        RemotesError::Unknown {
            name: name.chars().take(MAX_NAME_LEN + 8).collect(),
            known: self.remotes.keys().cloned().collect(),
        }
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The remotes file at a path.
#[derive(Debug, Clone)]
pub struct RemotesStore {
    path: PathBuf,
}

impl RemotesStore {
    /// The store at `path` (usually `Config::remotes_path()`).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RemotesStore { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: io::Error) -> RemotesError {
        RemotesError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Reads the file; a missing file is an empty one.
    pub fn load(&self) -> Result<RemotesFile, RemotesError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(RemotesFile::default()),
            Err(e) => return Err(self.io(e)),
        };
        self.parse(&text)
    }

    /// Parses and checks `text` as the contents of this store's file (what [`Self::load`]
    /// does after reading it); public for the fuzz targets and property tests.
    #[doc(hidden)]
    pub fn parse(&self, text: &str) -> Result<RemotesFile, RemotesError> {
        let parse_err = |span: Option<std::ops::Range<usize>>, message: String| {
            let (line, column) = span.map_or((1, 1), |s| line_col(text, s.start));
            RemotesError::Parse {
                path: self.path.clone(),
                line,
                column,
                message,
            }
        };
        let file: RemotesFile = toml::from_str(text)
            .map_err(|e| parse_err(e.span(), e.message().trim_end().to_owned()))?;
        for name in file.remotes.keys() {
            validate_name(name).map_err(|e| {
                let at = text.find(&format!("remotes.{name}")).map(|i| i..i + 1);
                parse_err(at, e.to_string())
            })?;
        }
        if let Some(active) = &file.active
            && !file.remotes.contains_key(active)
        {
            let at = text.find("active").map(|i| i..i + 1);
            return Err(parse_err(
                at,
                format!("`active` names `{active}`, which is not a remote in this file"),
            ));
        }
        Ok(file)
    }

    /// Reads, changes and writes the file under the lock, so concurrent updates lose
    /// nothing. Nothing is written when `change` fails or the file cannot be parsed.
    pub fn update<R, E: From<RemotesError>>(
        &self,
        change: impl FnOnce(&mut RemotesFile) -> Result<R, E>,
    ) -> Result<R, E> {
        let _lock = FileLock::acquire(&self.path).map_err(|e| self.io(e))?;
        let mut file = self.load()?;
        let result = change(&mut file)?;
        self.save(&file)?;
        Ok(result)
    }

    fn save(&self, file: &RemotesFile) -> Result<(), RemotesError> {
        let body = toml::to_string(file).map_err(|e| self.io(io::Error::other(e.to_string())))?;
        // A file that exists keeps what its owner wrote around the values: comments, blank
        // lines, the order of remotes and keys. Only the values change.
        let text = match std::fs::read_to_string(&self.path) {
            Ok(old) if !old.trim().is_empty() => merge_into(&old, &body)
                .ok_or_else(|| self.io(io::Error::other("cannot re-read the file to update it")))?,
            _ => format!(
                "# tessera remotes: written by `tessera remotes` and `tessera auth login`.\n# Tokens may be stored here: keep this file private (mode 0600).\n\n{body}"
            ),
        };
        fsutil::write_atomic(&self.path, text.as_bytes(), PRIVATE_FILE_MODE).map_err(|e| self.io(e))
    }
}

/// `old` (the file as it is) with the values of `new` (the file as it should be, freshly
/// serialised): keys and remotes that `new` lacks are removed, new ones are appended, and the
/// comments and layout of `old` stay. A removed remote takes with it the comment lines directly
/// above it; comments further up (before a blank line), and those above `active`, stay. `None`
/// when either does not parse (`old` was parsed before the change, so that means a concurrent
/// writer bypassed the lock).
fn merge_into(old: &str, new: &str) -> Option<String> {
    use toml_edit::{DocumentMut, Item};
    let mut doc: DocumentMut = old.parse().ok()?;
    let want: DocumentMut = new.parse().ok()?;
    // Comments to put back after removing the item below them: those from the top of the file
    // (above `active` or the remotes table) go back to the top, the others to the end.
    let mut top = String::new();
    let mut orphans = String::new();
    match want.get("active") {
        Some(v) => match doc.get_mut("active") {
            Some(Item::Value(old_v)) => set_value(old_v, v.as_value()?),
            _ => {
                doc.insert("active", v.clone());
            }
        },
        None => {
            let above = doc.key("active").and_then(|k| prefix_text(k.leaf_decor()));
            // Comments above `active`, the file's first key, are most often about the file.
            if doc.remove("active").is_some() {
                top.push_str(above.as_deref().unwrap_or(""));
            }
        }
    }
    let want_remotes = want
        .get("remotes")
        .and_then(Item::as_table)
        .filter(|t| !t.is_empty());
    match (
        want_remotes,
        doc.get_mut("remotes").and_then(Item::as_table_mut),
    ) {
        (None, Some(have)) => {
            // Each remote's own comments go with it; the ones above the first stay.
            let above = have
                .iter()
                .find_map(|(_, v)| v.as_table())
                .and_then(|t| prefix_text(t.decor()));
            let above_table = prefix_text(have.decor());
            top.push_str(kept_part(above_table.as_deref()));
            top.push_str(kept_part(above.as_deref()));
            doc.remove("remotes");
        }
        (None, None) => {}
        (Some(_), None) => {
            doc.insert("remotes", want.get("remotes")?.clone());
        }
        (Some(want_remotes), Some(remotes)) => {
            for name in keys_not_in(remotes, want_remotes) {
                let above = remotes
                    .get(&name)
                    .and_then(Item::as_table)
                    .and_then(|t| prefix_text(t.decor()));
                remotes.remove(&name);
                orphans.push_str(kept_part(above.as_deref()));
            }
            for (name, item) in want_remotes.iter() {
                let want_remote = item.as_table()?;
                let Some(have) = remotes.get_mut(name).and_then(Item::as_table_mut) else {
                    remotes.insert(name, item.clone());
                    continue;
                };
                for k in keys_not_in(have, want_remote) {
                    have.remove(&k);
                }
                for (k, v) in want_remote.iter() {
                    match (have.get_mut(k), v.as_value()) {
                        (Some(Item::Value(old_v)), Some(v)) => set_value(old_v, v),
                        _ => {
                            have.insert(k, v.clone());
                        }
                    }
                }
            }
        }
    }
    if !top.is_empty() {
        let first = doc
            .get_mut("remotes")
            .and_then(Item::as_table_mut)
            .map(|t| {
                if t.is_implicit() {
                    t.iter_mut().find_map(|(_, v)| v.as_table_mut())
                } else {
                    Some(t)
                }
            });
        match first.flatten() {
            Some(t) => {
                let rest = t.decor().prefix().and_then(|p| p.as_str()).unwrap_or("");
                let joined = format!("{top}{rest}");
                t.decor_mut().set_prefix(joined);
            }
            None => orphans.insert_str(0, &top),
        }
    }
    if !orphans.is_empty() {
        let rest = doc.trailing().as_str().unwrap_or("").to_owned();
        doc.set_trailing(format!("{rest}{orphans}"));
    }
    Some(doc.to_string())
}

/// Replaces a value, keeping the spaces and the comment around it.
fn set_value(old: &mut toml_edit::Value, new: &toml_edit::Value) {
    let decor = old.decor().clone();
    *old = new.clone();
    *old.decor_mut() = decor;
}

/// The text (comments, blank lines) written above an item.
fn prefix_text(decor: &toml_edit::Decor) -> Option<String> {
    decor.prefix().and_then(|p| p.as_str()).map(str::to_owned)
}

/// The keys of `have` that `want` does not have.
fn keys_not_in(have: &toml_edit::Table, want: &toml_edit::Table) -> Vec<String> {
    have.iter()
        .map(|(k, _)| k.to_owned())
        .filter(|k| !want.contains_key(k))
        .collect()
}

/// Of the comment lines above an item that is removed, those that stay: everything up to the
/// last blank line (the lines right above belonged to the item).
fn kept_part(above: Option<&str>) -> &str {
    let above = above.unwrap_or("");
    match above.rfind("\n\n") {
        Some(i) => &above[..i + 2],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_keep_the_comments_and_layout_of_a_hand_edited_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = RemotesStore::new(dir.path().join("remotes.toml"));
        let hand = "# my remotes, edited by hand\n\
                    active = \"prod\"   # the default\n\
                    \n\
                    # production: ask ops before changing\n\
                    [remotes.prod]\n\
                    url = \"https://tessera.example.com\" # behind the VPN\n\
                    insecure = false\n\
                    \n\
                    # a local one\n\
                    [remotes.dev]\n\
                    url = \"http://127.0.0.1:7390\"\n\
                    token = \"eyJ.old.token\"\n";
        std::fs::write(store.path(), hand).unwrap();
        store
            .update(|f| -> Result<(), RemotesError> {
                f.active = Some("dev".to_owned());
                let dev = f.remotes.get_mut("dev").unwrap();
                dev.token = None;
                dev.token_backend = Some("pass".to_owned());
                f.remotes.get_mut("prod").unwrap().url = "https://tessera2.example.com".to_owned();
                f.remotes.insert(
                    "ci".to_owned(),
                    Remote {
                        url: "https://ci.example.com".to_owned(),
                        insecure: false,
                        token_backend: None,
                        token: None,
                    },
                );
                Ok(())
            })
            .unwrap();
        let text = std::fs::read_to_string(store.path()).unwrap();
        for kept in [
            "# my remotes, edited by hand",
            "# the default",
            "# production: ask ops before changing",
            "# behind the VPN",
            "# a local one",
        ] {
            assert!(text.contains(kept), "lost {kept:?}:\n{text}");
        }
        assert!(!text.contains("eyJ.old.token"), "{text}");
        // The values are the new ones, read back exactly.
        let f = store.load().unwrap();
        assert_eq!(f.active.as_deref(), Some("dev"));
        assert_eq!(f.remotes["prod"].url, "https://tessera2.example.com");
        assert_eq!(f.remotes["dev"].token_backend.as_deref(), Some("pass"));
        assert!(f.remotes["dev"].token.is_none());
        assert_eq!(f.remotes["ci"].url, "https://ci.example.com");
        // prod is still before dev, as the owner wrote them.
        assert!(text.find("[remotes.prod]").unwrap() < text.find("[remotes.dev]").unwrap());

        store
            .update(|f| -> Result<(), RemotesError> {
                f.remotes.remove("dev");
                f.active = None;
                Ok(())
            })
            .unwrap();
        let f = store.load().unwrap();
        assert!(f.active.is_none() && !f.remotes.contains_key("dev"));
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert!(
            text.contains("# production: ask ops before changing"),
            "{text}"
        );
    }

    #[test]
    fn names() {
        for ok in ["prod", "a", "team.prod-1", "A_b", &"x".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            ".x",
            "a/b",
            "..",
            "a..b",
            "a b",
            "é",
            &"x".repeat(65),
            "x\n",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            normalize_url("https://t.example.com/", false).unwrap(),
            "https://t.example.com"
        );
        assert_eq!(
            normalize_url("https://t.example.com/base/", false).unwrap(),
            "https://t.example.com/base"
        );
        assert!(normalize_url("http://127.0.0.1:7390", false).is_ok());
        assert!(normalize_url("http://localhost:7390", false).is_ok());
        assert!(normalize_url("http://[::1]:7390", false).is_ok());
        assert!(normalize_url("http://t.example.com", false).is_err());
        assert!(normalize_url("http://t.example.com", true).is_ok());
        assert!(normalize_url("ftp://t.example.com", true).is_err());
        assert!(normalize_url("https://u:p@t.example.com", false).is_err());
        assert!(normalize_url("https://t.example.com/?a=b", false).is_err());
        assert!(normalize_url("t.example.com", false).is_err());
    }

    #[test]
    fn round_trip_and_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = RemotesStore::new(dir.path().join("cfg/remotes.toml"));
        store
            .update(|f| {
                f.remotes
                    .insert("a".into(), Remote::new("https://a.example".into(), false));
                f.active = Some("a".into());
                Ok::<_, RemotesError>(())
            })
            .unwrap();
        let f = store.load().unwrap();
        assert_eq!(f.active.as_deref(), Some("a"));
        assert_eq!(f.get("a").unwrap().url, "https://a.example");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn invalid_file_names_line_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("remotes.toml");
        let text = "active = \"a\"\n[remotes.a]\nurl = 5\n";
        std::fs::write(&path, text).unwrap();
        let store = RemotesStore::new(&path);
        let e = store
            .update(|_| Ok::<_, RemotesError>(()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("remotes.toml:3:"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn bad_names_in_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("remotes.toml");
        std::fs::write(&path, "[remotes.\"a/b\"]\nurl = \"https://x\"\n").unwrap();
        let e = RemotesStore::new(&path).load().unwrap_err().to_string();
        assert!(e.contains("invalid remote name"), "{e}");
    }

    #[test]
    fn debug_hides_tokens() {
        let mut r = Remote::new("https://x".into(), false);
        r.token = Some(StoredToken(SecretString::from("s3cr3t".to_owned())));
        assert!(!format!("{r:?}").contains("s3cr3t"));
    }
}
