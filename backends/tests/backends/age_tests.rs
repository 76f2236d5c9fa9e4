//! age: interop with the real `age`/`age-keygen`, identities, and files we cannot read.

use std::os::unix::fs::PermissionsExt;

use tessera_backends::age::{AgeBackend, generate_identity, recipient_of};
use tessera_backends::{AgeConfig, BackendError, ExposeSecret, SecretString, SecretsBackend};

use crate::support::{AgeHome, key, mode, os, require_tool, run_tool};

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

#[test]
fn generated_identity_looks_like_age_keygen_output_and_is_never_overwritten() {
    let home = AgeHome::new();
    assert_eq!(mode(&home.identity), 0o600);
    assert_eq!(mode(home.identity.parent().unwrap()), 0o700);
    let text = std::fs::read_to_string(&home.identity).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{}", lines.len());
    assert!(lines[0].starts_with("# created: 20") && lines[0].ends_with('Z'));
    assert_eq!(lines[1], format!("# public key: {}", home.recipient));
    assert!(lines[2].starts_with("AGE-SECRET-KEY-1"));
    assert!(home.recipient.starts_with("age1"));
    assert_eq!(recipient_of(&home.identity).unwrap(), home.recipient);

    let err = generate_identity(&home.identity).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&home.identity).unwrap(), text);

    if require_tool("age-keygen") {
        let out = run_tool(
            "age-keygen",
            &[os("-y"), home.identity.as_os_str()],
            &[],
            None,
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            home.recipient
        );
    }
}

#[test]
fn values_interoperate_with_age_both_ways() {
    if !(require_tool("age") && require_tool("age-keygen")) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // An identity written by age-keygen (with its comments) works as is.
    let identity = tmp.path().join("id.txt");
    run_tool("age-keygen", &[os("-o"), identity.as_os_str()], &[], None);
    let file = tmp.path().join("secrets.age");
    let b = AgeBackend::new(AgeConfig {
        file: file.clone(),
        identity: identity.clone(),
    });
    b.set(&key("tessera/auth/token_secret"), &secret("from tessera"))
        .unwrap();

    let out = run_tool(
        "age",
        &[os("-d"), os("-i"), identity.as_os_str(), file.as_os_str()],
        &[],
        None,
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc,
        serde_json::json!({"tessera": {"auth": {"token_secret": "from tessera\n"}}})
    );

    // A document encrypted by `age` (binary, not armored) is read by tessera.
    let recipient = recipient_of(&identity).unwrap();
    run_tool(
        "age",
        &[os("-r"), os(&recipient), os("-o"), file.as_os_str()],
        &[],
        Some(br#"{"ext": {"one": "from age\n", "pem": "a\nb\n"}}"#),
    );
    assert_eq!(b.get(&key("ext/one")).unwrap().expose_secret(), "from age");
    assert_eq!(b.get(&key("ext/pem")).unwrap().expose_secret(), "a\nb");
    assert_eq!(b.list(None).unwrap(), vec![key("ext/one"), key("ext/pem")]);
}

#[test]
fn missing_identity_says_how_to_create_one() {
    let tmp = tempfile::tempdir().unwrap();
    let identity = tmp.path().join("nope/identity.txt");
    let b = AgeBackend::new(AgeConfig {
        file: tmp.path().join("s.age"),
        identity: identity.clone(),
    });
    for err in [
        b.get(&key("a")).unwrap_err(),
        b.set(&key("a"), &secret("v")).unwrap_err(),
        b.check().unwrap_err(),
    ] {
        assert!(matches!(err, BackendError::Setup(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("tessera init --backend age"), "{msg}");
        assert!(
            msg.contains(&format!("age-keygen -o {}", identity.display())),
            "{msg}"
        );
    }
    assert!(!tmp.path().join("s.age").exists());
}

#[test]
fn wrong_identity_cannot_decrypt() {
    let home = AgeHome::new();
    home.backend().set(&key("a"), &secret("v")).unwrap();
    let other = home.dir.path().join("other.txt");
    generate_identity(&other).unwrap();
    let b = AgeBackend::new(AgeConfig {
        file: home.file(),
        identity: other.clone(),
    });
    let err = b.get(&key("a")).unwrap_err();
    assert!(matches!(err, BackendError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("cannot decrypt") && msg.contains(&other.display().to_string()),
        "{msg}"
    );
    // A set with the wrong identity must not replace the document.
    let before = std::fs::read(home.file()).unwrap();
    assert!(b.set(&key("b"), &secret("w")).is_err());
    assert_eq!(std::fs::read(home.file()).unwrap(), before);
}

#[test]
fn corrupt_files_and_identities_are_clear_errors() {
    let home = AgeHome::new();
    let b = home.backend();
    std::fs::create_dir_all(home.file().parent().unwrap()).unwrap();
    std::fs::write(home.file(), b"this is not an age file\n").unwrap();
    let err = b.get(&key("a")).unwrap_err();
    assert!(matches!(err, BackendError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("not a valid age file"), "{err}");
    assert!(b.set(&key("a"), &secret("v")).is_err());
    assert_eq!(
        std::fs::read(home.file()).unwrap(),
        b"this is not an age file\n"
    );

    // Valid age, but not our document shape.
    let ciphertext = {
        let id = tessera_backends::age::load_identity(&home.identity).unwrap();
        age::encrypt(&id.to_public(), b"[1, 2]").unwrap()
    };
    std::fs::write(home.file(), ciphertext).unwrap();
    let err = b.list(None).unwrap_err();
    assert!(err.to_string().contains("JSON object"), "{err}");

    // An identity file that is not one, and one that others may read.
    let bad = home.dir.path().join("bad.txt");
    std::fs::write(&bad, "# just a comment\nAGE-SECRET-KEY-1NOTVALID\n").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = AgeBackend::new(AgeConfig {
        file: home.file(),
        identity: bad.clone(),
    })
    .check()
    .unwrap_err();
    assert!(matches!(err, BackendError::Corrupt { .. }), "{err:?}");
    assert!(!err.to_string().contains("NOTVALID"), "{err}");
    std::fs::set_permissions(&home.identity, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = b.check().unwrap_err();
    assert!(
        matches!(err, BackendError::Permissions { mode: 0o644, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("chmod 600"), "{err}");
}
