//! An axum app served on a bound `127.0.0.1` listener, from a tokio runtime of its own on
//! a thread of its own, so blocking clients and other runtimes can talk to it; stopped
//! and joined on drop.

use std::io;
use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use tokio::sync::oneshot;

/// A running server; dropping it stops it (open connections are cut: its clients are
/// done by then).
#[derive(Debug)]
pub struct Served {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Served {
    /// Serves `app` on `listener` (already bound and non-blocking); `name` names the
    /// thread and the error lines.
    ///
    /// # Errors
    ///
    /// When the runtime or the thread cannot start.
    pub fn start(name: &'static str, listener: TcpListener, app: Router) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()?;
        let (shutdown, on_shutdown) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            eprintln!("{name}: cannot listen: {error}");
                            return;
                        }
                    };
                    tokio::select! {
                        served = axum::serve(listener, app) => {
                            if let Err(error) = served {
                                eprintln!("{name} stopped: {error}");
                            }
                        }
                        _ = on_shutdown => {}
                    }
                });
                runtime.shutdown_timeout(Duration::from_millis(100));
            })?;
        Ok(Self {
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
