//! A real `redis-server` for tests (feature `testing`): started on 127.0.0.1 at a free
//! port with its own data folder and append-only persistence, killed when dropped.
//!
//! Where `redis-server` is missing, [`RedisServer::start`] says so and returns `None`
//! (the caller skips its test), unless the environment requires Redis (`CI` or
//! `SILENT_REFRESH_REQUIRE_REDIS` set): then a missing server fails the test.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Whether this binary said already that the Redis tests are skipped.
static SKIP_SAID: AtomicBool = AtomicBool::new(false);

/// How long a server may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A running `redis-server`, owned by a test.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server, or `None` when `redis-server` is not installed and Redis is not
    /// required here (the reason and how to install it are printed).
    ///
    /// # Panics
    ///
    /// When the server cannot be started or does not get ready, or when it is missing
    /// and Redis is required (`CI` or `SILENT_REFRESH_REQUIRE_REDIS` is set).
    #[must_use]
    pub fn start() -> Option<Self> {
        if !installed() {
            let required = std::env::var_os("CI").is_some()
                || std::env::var_os("SILENT_REFRESH_REQUIRE_REDIS").is_some();
            assert!(
                !required,
                "redis-server is not installed, and this environment requires the Redis \
                 tests (CI or SILENT_REFRESH_REQUIRE_REDIS is set): install it with \
                 `apt-get install redis-server`"
            );
            // Written to the terminal's stderr itself, not through `eprintln!`, which the
            // test harness captures (and shows only for failing tests); once per binary.
            if !SKIP_SAID.swap(true, Ordering::Relaxed) {
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "SKIPPED: redis-server is not installed, so the Redis tests of this test \
                     binary did not run. Install it (`sudo apt-get install redis-server`) and \
                     run `cargo test --workspace` again; `.ci/run` installs it and fails \
                     without it."
                );
            }
            return None;
        }
        let dir = tempfile::tempdir().expect("a data folder for redis-server");
        let port = free_port();
        let mut server = Self {
            child: None,
            port,
            dir,
        };
        server.launch();
        Some(server)
    }

    /// `redis://127.0.0.1:<port>/`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data folder (the append-only files live here).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (`SIGKILL`: a crash, not a shutdown) and waits for it to end.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same port and data folder: what
    /// it had written to its append-only file is back.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    fn launch(&mut self) {
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(["--save", "", "--daemonize", "no", "--logfile", ""])
            .args(["--protected-mode", "yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready_tx, ready_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("Ready to accept connections")
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(());
                }
            }
        });
        self.child = Some(child);
        if ready_rx.recv_timeout(READY_WITHIN).is_err() {
            self.kill();
            panic!(
                "redis-server on port {} did not get ready within {READY_WITHIN:?}",
                self.port
            );
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `redis-server` can be run.
fn installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port on 127.0.0.1")
}
