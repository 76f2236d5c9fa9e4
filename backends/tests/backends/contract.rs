//! The one contract every backend keeps, run against each of them (with the real tools).

use std::path::Path;

use tessera_backends::files::UnsafeBackend;
use tessera_backends::{
    BackendConfig, BackendError, ExposeSecret, KeyPath, SecretString, SecretsBackend, UnsafeConfig,
};

use crate::support::{AgeHome, PassHome, SopsHome, key, mode};

const PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgevZzL1gdAFr88hb2\n\
OF/2NxApJCzGCEDdfSp6VQO30hyhRANCAAQRWz+jn65BtOMvdyHKcvjBeBSDZH2r\n\
1RTwjmYSi9R/zpBnuQ4EiMnCqfMPWiZqB4QdbAd0E7oH50VpuZ1P087G\n\
-----END PRIVATE KEY-----\n";

fn get(b: &dyn SecretsBackend, k: &str) -> String {
    b.get(&key(k))
        .unwrap_or_else(|e| panic!("{}: get {k}: {e}", b.name()))
        .expose_secret()
        .to_owned()
}

fn set(b: &dyn SecretsBackend, k: &str, v: &str) {
    b.set(&key(k), &SecretString::from(v.to_owned()))
        .unwrap_or_else(|e| panic!("{}: set {k}: {e}", b.name()));
}

fn names(keys: Vec<KeyPath>) -> Vec<String> {
    keys.into_iter().map(|k| k.as_str().to_owned()).collect()
}

/// The contract. `check_files` asserts the modes of whatever the backend wrote on disk.
pub fn contract(b: &dyn SecretsBackend, check_files: &dyn Fn()) {
    let name = b.name();
    let missing = key("tessera/missing");

    // An empty store: nothing listed, NotFound for get and delete.
    assert_eq!(b.list(None).unwrap(), Vec::<KeyPath>::new(), "{name}");
    assert!(
        matches!(b.get(&missing), Err(BackendError::NotFound { .. })),
        "{name}"
    );
    assert!(b.delete(&missing).unwrap_err().is_not_found(), "{name}");

    // Roundtrip and overwrite.
    set(b, "tessera/auth/token_secret", "hunter2");
    assert_eq!(get(b, "tessera/auth/token_secret"), "hunter2", "{name}");
    set(b, "tessera/auth/token_secret", "second value");
    assert_eq!(
        get(b, "tessera/auth/token_secret"),
        "second value",
        "{name}"
    );

    // Values survive exactly: multi-line PEM (with its final newline), quotes, backslashes,
    // unicode, a value that itself ends in a newline, an empty value.
    set(b, "tessera/registry/signing_key", PEM);
    assert_eq!(get(b, "tessera/registry/signing_key"), PEM, "{name}");
    let odd = "q\"uo'te \\ back\ttab ünï €\r\nline";
    set(b, "odd", odd);
    assert_eq!(get(b, "odd"), odd, "{name}");
    set(b, "nl", "ends with two\n\n");
    assert_eq!(get(b, "nl"), "ends with two\n\n", "{name}");
    set(b, "empty", "");
    assert_eq!(get(b, "empty"), "", "{name}");

    // Listing: sorted, segment-wise prefixes, names only.
    set(b, "app/db", "1");
    set(b, "app/db2", "2");
    set(b, "apple/x", "3");
    set(b, "app/nested/deep/key", "4");
    assert_eq!(
        names(b.list(None).unwrap()),
        [
            "app/db",
            "app/db2",
            "app/nested/deep/key",
            "apple/x",
            "empty",
            "nl",
            "odd",
            "tessera/auth/token_secret",
            "tessera/registry/signing_key"
        ],
        "{name}"
    );
    assert_eq!(
        names(b.list(Some(&key("app"))).unwrap()),
        ["app/db", "app/db2", "app/nested/deep/key"],
        "{name}"
    );
    assert_eq!(
        names(b.list(Some(&key("app/db"))).unwrap()),
        ["app/db"],
        "{name}"
    );
    assert_eq!(
        names(b.list(Some(&key("ap"))).unwrap()),
        Vec::<String>::new(),
        "{name}"
    );
    assert_eq!(
        names(b.list(Some(&key("tessera"))).unwrap()),
        ["tessera/auth/token_secret", "tessera/registry/signing_key"],
        "{name}"
    );

    // A folder of keys is not a value.
    assert!(
        b.get(&key("app/nested")).unwrap_err().is_not_found(),
        "{name}"
    );

    check_files();

    // Delete: gone from get and list, a second delete is NotFound, siblings stay.
    b.delete(&key("app/nested/deep/key")).unwrap();
    assert!(
        b.get(&key("app/nested/deep/key"))
            .unwrap_err()
            .is_not_found(),
        "{name}"
    );
    assert!(
        b.delete(&key("app/nested/deep/key"))
            .unwrap_err()
            .is_not_found(),
        "{name}"
    );
    assert_eq!(
        names(b.list(Some(&key("app"))).unwrap()),
        ["app/db", "app/db2"],
        "{name}"
    );
    assert_eq!(
        names(b.list(Some(&key("app/nested"))).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(get(b, "app/db"), "1", "{name}");

    // The value never shows in an error.
    let err = b.get(&key("app/nested/deep/key")).unwrap_err().to_string();
    assert!(
        !err.contains("hunter2") && err.contains("app/nested/deep/key"),
        "{name}: {err}"
    );

    check_files();
    b.check().unwrap_or_else(|e| panic!("{name}: check: {e}"));
}

/// Every file below `dir` is 0600 and every folder 0700 (hidden files and temp files must
/// not be left around either).
pub fn assert_private_tree(dir: &Path, file_suffix: &str) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name().into_string().unwrap();
        assert!(
            !name.contains('~'),
            "temp file left behind: {}",
            path.display()
        );
        if entry.file_type().unwrap().is_dir() {
            if name == ".git" {
                continue;
            }
            assert_eq!(mode(&path), 0o700, "{}", path.display());
            assert_private_tree(&path, file_suffix);
        } else if name.ends_with(file_suffix) {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
}

#[test]
fn key_paths_are_validated_before_any_backend_sees_them() {
    for bad in [
        "",
        "/a",
        "a/",
        "a//b",
        "../etc/passwd",
        "a/../b",
        "-rf",
        "a b",
        "a/./b",
        "a\\b",
    ] {
        assert!(KeyPath::new(bad).is_err(), "{bad:?} must be refused");
    }
}

#[test]
fn memory_backend_keeps_the_contract() {
    let b = tessera_backends::open(BackendConfig::Memory).unwrap();
    contract(b.as_ref(), &|| {});
}

#[test]
fn unsafe_backend_keeps_the_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("secrets");
    let b =
        tessera_backends::open(BackendConfig::Unsafe(UnsafeConfig { dir: dir.clone() })).unwrap();
    assert_eq!(b.name(), "unsafe");
    contract(b.as_ref(), &|| {
        assert_eq!(mode(&dir), 0o700);
        assert_private_tree(&dir, "");
        // The layout users rely on: one file per key, value plus newline.
        assert_eq!(
            std::fs::read_to_string(dir.join("tessera/auth/token_secret")).unwrap(),
            "second value\n"
        );
    });
    // Emptied folders are removed.
    assert!(!dir.join("app/nested").exists());
    assert!(b.check().unwrap().contains("(not encrypted)"));
}

#[test]
fn pass_backend_keeps_the_contract() {
    let Some(home) = PassHome::new() else { return };
    let b = home.backend();
    contract(&b, &|| {
        assert_private_tree(&home.store, ".gpg");
        assert!(home.store.join("tessera/auth/token_secret.gpg").is_file());
    });
    // pass rm removes the emptied folders too.
    assert!(!home.store.join("app/nested").exists());
    assert_eq!(
        b.check().unwrap(),
        format!("pass store at {}", home.store.display())
    );
}

#[test]
fn sops_backend_keeps_the_contract() {
    let Some(home) = SopsHome::new() else { return };
    for name in ["secrets.enc.yaml", "secrets.enc.json"] {
        let b = home.backend(name);
        let file = home.file(name);
        contract(&b, &|| {
            assert_eq!(mode(&file), 0o600);
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(
                !text.contains("hunter2") && !text.contains("second value"),
                "{name} holds plaintext"
            );
            assert!(
                !text.contains("BEGIN PRIVATE KEY"),
                "{name} holds plaintext"
            );
            if name.ends_with(".json") {
                assert!(text.trim_start().starts_with('{'), "{name} is not JSON");
            }
        });
        // No empty map is left where the deleted key was.
        let out = crate::support::run_tool(
            "sops",
            &[
                std::ffi::OsStr::new("--decrypt"),
                std::ffi::OsStr::new("--output-type"),
                std::ffi::OsStr::new("json"),
                file.as_os_str(),
            ],
            &home.env(),
            None,
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(doc["app"].get("nested").is_none(), "{name}: {doc:?}");
        assert!(b.check().unwrap().starts_with("sops file "));
    }
}

#[test]
fn age_backend_keeps_the_contract() {
    let home = AgeHome::new();
    let b = home.backend();
    let file = home.file();
    contract(&b, &|| {
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(file.parent().unwrap()), 0o700);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!text.contains("hunter2"));
    });
    assert!(b.check().unwrap().starts_with("age file "));
}

/// Parallel `set`s of different keys lose no update.
fn no_lost_updates(b: &dyn SecretsBackend, threads: usize, per_thread: usize) {
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in 0..per_thread {
                    set(b, &format!("par/t{t}/k{i}"), &format!("v{t}-{i}"));
                }
            });
        }
    });
    let listed = b.list(Some(&key("par"))).unwrap();
    assert_eq!(
        listed.len(),
        threads * per_thread,
        "{}: {listed:?}",
        b.name()
    );
    for t in 0..threads {
        for i in 0..per_thread {
            assert_eq!(get(b, &format!("par/t{t}/k{i}")), format!("v{t}-{i}"));
        }
    }
}

#[test]
fn unsafe_parallel_sets_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let b = UnsafeBackend::new(UnsafeConfig {
        dir: tmp.path().join("s"),
    });
    no_lost_updates(&b, 6, 10);
    // A delete that empties a folder races with sets into that folder: the sets must not fail.
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..30 {
                set(&b, "race/a/seed", "x");
                b.delete(&key("race/a/seed")).unwrap();
            }
        });
        s.spawn(|| {
            for i in 0..30 {
                set(&b, &format!("race/a/k{i:02}"), "y");
            }
        });
    });
    assert_eq!(b.list(Some(&key("race"))).unwrap().len(), 30);
}

#[test]
fn age_parallel_sets_lose_nothing() {
    let home = AgeHome::new();
    no_lost_updates(&home.backend(), 6, 5);
}

#[test]
fn sops_parallel_sets_lose_nothing() {
    let Some(home) = SopsHome::new() else { return };
    let b = home.backend("par.yaml");
    set(&b, "seed", "x");
    no_lost_updates(&b, 4, 3);
}
