//! A real `pass` store for the tests: a throwaway gpg key without passphrase in a GNUPGHOME
//! of its own (0700), `pass init` with it, and the agent stopped on drop.

use std::path::PathBuf;
use std::process::Command;

pub struct PassStore {
    pub gnupg: PathBuf,
    pub store: PathBuf,
}

impl PassStore {
    /// Creates the key (user id `uid`) in `gnupg` and the store at `store`.
    pub fn create(gnupg: PathBuf, store: PathBuf, uid: &str) -> PassStore {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&gnupg).unwrap();
        std::fs::set_permissions(&gnupg, std::fs::Permissions::from_mode(0o700)).unwrap();
        let p = PassStore { gnupg, store };
        p.run(
            "gpg",
            &[
                "--batch",
                "--passphrase",
                "",
                "--quick-gen-key",
                uid,
                "future-default",
                "default",
                "never",
            ],
        );
        let listing = p.run("gpg", &["--list-keys", "--with-colons"]);
        let fpr = listing
            .lines()
            .find_map(|l| {
                l.strip_prefix("fpr:")
                    .map(|r| r.trim_matches(':').to_owned())
            })
            .unwrap();
        p.run("pass", &["init", &fpr]);
        p
    }

    /// `GNUPGHOME` and `PASSWORD_STORE_DIR` for a process that uses this store.
    pub fn vars(&self) -> [(&'static str, PathBuf); 2] {
        [
            ("GNUPGHOME", self.gnupg.clone()),
            ("PASSWORD_STORE_DIR", self.store.clone()),
        ]
    }

    /// Runs `program` (gpg, pass, gpgconf) on this store, expecting success; returns stdout.
    #[track_caller]
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .args(args)
            .envs(self.vars())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Stops this store's gpg-agent (the next gpg call starts a new one).
    pub fn stop_agent(&self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", &self.gnupg)
            .status();
    }
}

impl Drop for PassStore {
    fn drop(&mut self) {
        self.stop_agent();
    }
}
