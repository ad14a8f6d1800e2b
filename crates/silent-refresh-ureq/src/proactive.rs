//! The opt-in idle refresh thread.
//!
//! Without it the machine is only fed the time when some thread asks for a token
//! (or waits for one), so a refresh window that opens while the program is idle is
//! noticed at the next call, which then gets the still-valid token at once while the
//! refresh runs, or waits for it if the token stopped being usable meanwhile. With
//! it, one thread sleeps until the machine's next deadline and feeds it the time, so
//! the refresh starts on schedule even when nobody asks.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crate::driver::Inner;

/// The running idle refresh thread; stopped and joined on drop.
pub(crate) struct Proactive {
    inner: Arc<Inner>,
    handle: Option<JoinHandle<()>>,
}

impl Proactive {
    /// Starts the thread, or logs why it could not.
    pub(crate) fn spawn(inner: &Arc<Inner>) -> Option<Self> {
        let thread_inner = Arc::clone(inner);
        match thread::Builder::new()
            .name("silent-refresh-proactive".into())
            .spawn(move || run(&thread_inner))
        {
            Ok(handle) => Some(Self {
                inner: Arc::clone(inner),
                handle: Some(handle),
            }),
            Err(error) => {
                tracing::error!(%error, "could not start the proactive refresh thread; tokens will be refreshed when asked for");
                None
            }
        }
    }
}

impl Drop for Proactive {
    fn drop(&mut self) {
        self.inner.lock().stopping = true;
        self.inner.notify_all();
        if let Some(handle) = self.handle.take() {
            // Never join ourselves (the source dropped from the thread itself).
            if handle.thread().id() != thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

fn run(inner: &Arc<Inner>) {
    let mut st = inner.lock();
    while !st.stopping {
        let timeout = inner
            .tick(&mut st)
            .map(|wakeup| wakeup.at.saturating_duration_since(Instant::now()));
        if timeout.is_some_and(|t| t.is_zero()) {
            continue;
        }
        st = inner.wait(st, timeout);
    }
}
