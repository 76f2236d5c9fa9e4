//! Set-up shared by the integration tests that run `tessera serve` as a real process.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts `cmd` (a `tessera` command with its environment set by the caller) as
/// `serve --bind 127.0.0.1:0` with its stderr in the file `log`, and waits for the line
/// "listening on SCHEME://ADDR". Returns the child and ADDR. Panics with the log when the
/// server exits or does not start (a generous bound, not a timing assertion).
pub fn spawn_serve(mut cmd: Command, log: &Path, scheme: &str) -> (Child, String) {
    let file = std::fs::File::create(log).unwrap();
    let mut child = cmd
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    let marker = format!("listening on {scheme}://");
    for _ in 0..600 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split(&marker).nth(1) {
            let addr = rest.split_whitespace().next().unwrap().to_owned();
            return (child, addr);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server exited with {status}: {text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!(
        "server did not start: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}
