//! Running `tessera` in a scratch environment and checking how it ended: what every kind of
//! test home shares.

use assert_cmd::Command;

use super::user::texts;

/// A scratch environment the `tessera` binary runs in.
pub trait Run {
    /// `tessera` with this environment (and nothing else of the test process's).
    fn tessera(&self) -> Command;

    /// Runs tessera with `args` and `stdin` to the end.
    fn output(&self, args: &[&str], stdin: impl Into<Vec<u8>>) -> std::process::Output {
        self.tessera()
            .args(args)
            .write_stdin(stdin)
            .output()
            .unwrap()
    }

    /// Runs tessera with `args`, expecting success; returns (stdout, stderr).
    #[track_caller]
    fn ok(&self, args: &[&str]) -> (String, String) {
        self.ok_with_stdin(args, "")
    }

    /// Runs tessera with `args` and `stdin`, expecting success; returns (stdout, stderr).
    #[track_caller]
    fn ok_with_stdin(&self, args: &[&str], stdin: impl Into<Vec<u8>>) -> (String, String) {
        let out = self.output(args, stdin);
        let (o, e) = texts(&out);
        assert!(out.status.success(), "{args:?} failed: {e}");
        (o, e)
    }

    /// Runs tessera with `args`, expecting success and `needle` in stdout; returns stdout.
    #[track_caller]
    fn prints(&self, args: &[&str], needle: &str) -> String {
        let (o, e) = self.ok(args);
        assert!(o.contains(needle), "{args:?}: `{needle}` not in: {o}\n{e}");
        o
    }

    /// Runs tessera with `args` and `stdin`, expecting exit code `code`; returns stderr.
    #[track_caller]
    fn fails(&self, args: &[&str], stdin: &str, code: i32) -> String {
        let out = self.output(args, stdin);
        let (_, e) = texts(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {e}");
        e
    }

    /// Runs tessera with `args`, expecting exit code `code` and `needle` in stderr; returns
    /// stderr.
    #[track_caller]
    fn refuses(&self, args: &[&str], code: i32, needle: &str) -> String {
        self.refuses_with_stdin(args, "", code, needle)
    }

    /// Runs tessera with `args` and `stdin`, expecting exit code `code` and `needle` in
    /// stderr; returns stderr.
    #[track_caller]
    fn refuses_with_stdin(&self, args: &[&str], stdin: &str, code: i32, needle: &str) -> String {
        let e = self.fails(args, stdin, code);
        assert!(e.contains(needle), "{args:?}: `{needle}` not in: {e}");
        e
    }
}

impl Run for super::Home {
    fn tessera(&self) -> Command {
        self.cmd()
    }
}

impl Run for super::user::User {
    fn tessera(&self) -> Command {
        self.cmd()
    }
}
