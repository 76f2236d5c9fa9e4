//! `tessera serve` as a real process: started on 127.0.0.1:0 with its log in a file,
//! stopped with SIGTERM (or killed when dropped).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `tessera serve` child process; killed on drop unless stopped.
pub struct BinServer {
    child: Child,
    scheme: &'static str,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl BinServer {
    /// Starts `cmd` (a `tessera` command with its environment set by the caller) as
    /// `serve --bind 127.0.0.1:0` with its stderr in the file `log`, and waits for the line
    /// "listening on SCHEME://ADDR". Panics with the log when the server exits or does not
    /// start (a generous bound, not a timing assertion).
    pub fn start(cmd: Command, log: &Path, scheme: &'static str) -> BinServer {
        Self::start_on(cmd, log, scheme, "127.0.0.1:0")
    }

    /// [`BinServer::start`] with `--bind bind`.
    pub fn start_on(cmd: Command, log: &Path, scheme: &'static str, bind: &str) -> BinServer {
        let (child, addr) = spawn_serve(cmd, log, scheme, bind);
        BinServer {
            child,
            scheme,
            addr: addr.parse().unwrap(),
            log: log.to_owned(),
        }
    }

    /// `http://ADDR` (or `https://`).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The process id (to kill it from a test).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log when the server has exited.
    pub fn alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the server died ({status}): {}", self.log());
        }
    }

    /// SIGTERM, wait, and return the whole log; panics when the server was already gone or
    /// did not exit cleanly.
    pub fn stop(mut self) -> String {
        self.alive();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        let log = self.log();
        assert!(
            status.success(),
            "server did not stop cleanly: {status}\n{log}"
        );
        log
    }
}

impl Drop for BinServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_serve(mut cmd: Command, log: &Path, scheme: &str, bind: &str) -> (Child, String) {
    let file = std::fs::File::create(log).unwrap();
    let mut child = cmd
        .args(["serve", "--bind", bind])
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
    let _ = child.wait();
    panic!(
        "server did not start: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}
