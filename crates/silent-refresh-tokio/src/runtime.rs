//! What the tokio adapter brings to the driver kernel: how a caller waits (a oneshot),
//! how the background task is woken (a `Notify`), and tokio's clock (so that tests on
//! paused time need no real sleeping).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use silent_refresh_driver::clock::Clock;
use silent_refresh_driver::kernel::{Kernel, Outcome, Waiter, Wake};
use tokio::sync::{Notify, oneshot};

/// The kernel as this adapter uses it.
pub(crate) type TokioKernel = Kernel<OneshotWaiter>;

/// A waiting caller: the sending half of its oneshot.
pub(crate) struct OneshotWaiter(pub(crate) oneshot::Sender<Outcome>);

impl Waiter for OneshotWaiter {
    fn resolve(self, outcome: Outcome) {
        // The receiver may be gone (its future dropped): nothing to do.
        let _ = self.0.send(outcome);
    }
}

/// Wakes the background task.
#[derive(Default)]
pub(crate) struct NotifyWake(pub(crate) Notify);

impl Wake for NotifyWake {
    fn wake(&self) {
        self.0.notify_one();
    }
}

/// tokio's monotonic clock (paused in tests) and the system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The clock to use when the program gave none.
pub(crate) fn default_clock() -> Arc<dyn Clock> {
    Arc::new(TokioClock)
}
