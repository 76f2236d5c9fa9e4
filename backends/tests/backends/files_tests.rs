//! unsafe (plain files): symlinks, permissions, externally written files, conflicts.

use std::os::unix::fs::{PermissionsExt, symlink};

use tessera_backends::files::UnsafeBackend;
use tessera_backends::{BackendError, ExposeSecret, SecretString, SecretsBackend, UnsafeConfig};

use crate::support::key;

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf, UnsafeBackend) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("secrets");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let b = UnsafeBackend::new(UnsafeConfig { dir: dir.clone() });
    (tmp, dir, b)
}

fn write_private(path: &std::path::Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn files_written_by_hand_lose_one_trailing_newline() {
    let (_tmp, dir, b) = setup();
    write_private(&dir.join("a/echo"), "x\n");
    write_private(&dir.join("a/crlf"), "x\r\n");
    write_private(&dir.join("a/two"), "x\n\n");
    write_private(&dir.join("a/none"), "x");
    assert_eq!(b.get(&key("a/echo")).unwrap().expose_secret(), "x");
    assert_eq!(b.get(&key("a/crlf")).unwrap().expose_secret(), "x");
    assert_eq!(b.get(&key("a/two")).unwrap().expose_secret(), "x\n");
    assert_eq!(b.get(&key("a/none")).unwrap().expose_secret(), "x");
    std::fs::write(dir.join("a/bin"), [0xff, 0xfe]).unwrap();
    std::fs::set_permissions(dir.join("a/bin"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        b.get(&key("a/bin")),
        Err(BackendError::Corrupt { .. })
    ));
}

#[test]
fn readable_by_others_is_refused_like_ssh_does() {
    let (_tmp, dir, b) = setup();
    b.set(&key("app/db"), &secret("v")).unwrap();
    let file = dir.join("app/db");
    for bad in [0o644, 0o640, 0o604, 0o620] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(bad)).unwrap();
        let err = b.get(&key("app/db")).unwrap_err();
        match &err {
            BackendError::Permissions { mode, want, path } => {
                assert_eq!((*mode, *want), (bad, 0o600));
                assert_eq!(path, &file);
            }
            other => panic!("expected Permissions, got {other:?}"),
        }
        assert!(
            err.to_string()
                .contains(&format!("chmod 600 {}", file.display())),
            "{err}"
        );
    }
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert_eq!(b.get(&key("app/db")).unwrap().expose_secret(), "v");
}

#[test]
fn symlinks_below_the_folder_are_never_followed() {
    let (tmp, dir, b) = setup();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    write_private(&outside.join("x"), "outside secret\n");

    // A linked folder: no read through it, no write through it, no listing of it.
    symlink(&outside, dir.join("link")).unwrap();
    let err = b.get(&key("link/x")).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    let err = b.set(&key("link/y"), &secret("v")).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(!outside.join("y").exists());
    assert!(b.delete(&key("link/x")).is_err());
    assert!(outside.join("x").exists());
    assert_eq!(b.list(None).unwrap(), vec![]);

    // A linked file: not read, not replaced.
    symlink(outside.join("x"), dir.join("file")).unwrap();
    let err = b.get(&key("file")).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(b.set(&key("file"), &secret("v")).is_err());
    assert!(b.delete(&key("file")).is_err());
    assert_eq!(
        std::fs::read_to_string(outside.join("x")).unwrap(),
        "outside secret\n"
    );
    assert!(
        std::fs::symlink_metadata(dir.join("file"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_value_and_a_folder_cannot_share_a_name() {
    let (_tmp, _dir, b) = setup();
    b.set(&key("a/b"), &secret("v")).unwrap();
    let err = b.set(&key("a/b/c"), &secret("w")).unwrap_err();
    assert!(matches!(err, BackendError::Conflict { .. }), "{err:?}");
    assert!(
        err.to_string().contains("`a/b` already holds a value"),
        "{err}"
    );
    let err = b.set(&key("a"), &secret("w")).unwrap_err();
    assert!(matches!(err, BackendError::Conflict { .. }), "{err:?}");
    assert!(b.get(&key("a/b/c")).unwrap_err().is_not_found());
    assert!(b.delete(&key("a/b/c")).unwrap_err().is_not_found());
    assert_eq!(b.get(&key("a/b")).unwrap().expose_secret(), "v");
}

#[test]
fn check_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("not-yet");
    let b = UnsafeBackend::new(UnsafeConfig { dir: dir.clone() });
    let msg = b.check().unwrap();
    assert!(
        msg.starts_with(&format!("plain files under {}", dir.display())),
        "{msg}"
    );
    assert!(msg.contains("not encrypted"), "{msg}");
    assert!(!dir.exists());
    assert_eq!(b.list(None).unwrap(), vec![]);
    std::fs::write(&dir, b"a file").unwrap();
    assert!(matches!(b.check(), Err(BackendError::Setup(_))));
}
