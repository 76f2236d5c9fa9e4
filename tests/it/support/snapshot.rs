//! What the tests pin as `insta` snapshots: the words a user reads (errors, hints, help),
//! with every volatile part (scratch folders, token ids) replaced by a fixed name.

use std::process::Output;

use assert_cmd::Command;

use super::Run;
use super::user::texts;

/// Commands and what they printed, with volatile values redacted, for one snapshot.
#[derive(Default)]
pub struct Transcript {
    text: String,
    redactions: Vec<(String, String)>,
}

impl Transcript {
    pub fn new() -> Transcript {
        Transcript::default()
    }

    /// From now on, `value` reads `[name]` in the snapshot.
    pub fn redact(&mut self, value: impl Into<String>, name: &str) -> &mut Transcript {
        let value = value.into();
        assert!(!value.is_empty(), "an empty redaction for [{name}]");
        self.redactions.push((value, format!("[{name}]")));
        // The longest first, so that a value containing another is replaced whole.
        self.redactions
            .sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        self
    }

    /// Appends `$ what`, the exit code, and stdout and stderr (where not empty).
    pub fn record(&mut self, what: &str, out: &Output) -> &mut Transcript {
        self.text.push_str(&format!(
            "$ {what}\n[exit {}]\n",
            out.status
                .code()
                .map_or_else(|| "by signal".to_owned(), |c| c.to_string())
        ));
        for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            if !bytes.is_empty() {
                self.text
                    .push_str(&format!("{name}:\n{}", String::from_utf8_lossy(bytes)));
                if !self.text.ends_with('\n') {
                    self.text.push('\n');
                }
            }
        }
        self.text.push('\n');
        self
    }

    /// Runs `tessera ARGS` in `home`, expects exit `code` and records it as `$ tessera ARGS`
    /// (redacted like the rest); returns stderr.
    #[track_caller]
    pub fn run(&mut self, home: &impl Run, args: &[&str], code: i32) -> String {
        let what = format!("tessera {}", args.join(" "));
        self.run_as(&what, home.tessera().args(args), code)
    }

    /// `run`, expecting `needle` in stderr too.
    #[track_caller]
    pub fn run_says(&mut self, home: &impl Run, args: &[&str], code: i32, needle: &str) -> String {
        let e = self.run(home, args, code);
        assert!(e.contains(needle), "{args:?}: `{needle}` not in: {e}");
        e
    }

    /// Runs `cmd` (a `tessera` command the caller made ready) to the end, records it as
    /// `$ what` and expects exit `code`; returns stderr.
    #[track_caller]
    pub fn run_as(&mut self, what: &str, cmd: &mut Command, code: i32) -> String {
        let out = cmd.output().unwrap();
        self.record(what, &out);
        let (_, e) = texts(&out);
        assert_eq!(out.status.code(), Some(code), "{what}: {e}");
        e
    }

    /// `run_as`, expecting `needle` in stderr too.
    #[track_caller]
    pub fn refused(&mut self, what: &str, cmd: &mut Command, code: i32, needle: &str) -> String {
        let e = self.run_as(what, cmd, code);
        assert!(e.contains(needle), "{what}: `{needle}` not in: {e}");
        e
    }

    /// The transcript with every redaction applied.
    pub fn text(&self) -> String {
        redact(&self.text, &self.redactions)
    }
}

/// `text` with each `(value, replacement)` applied in order.
pub fn redact(text: &str, redactions: &[(String, String)]) -> String {
    redactions
        .iter()
        .fold(text.to_owned(), |t, (value, name)| t.replace(value, name))
}
