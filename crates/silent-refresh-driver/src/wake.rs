//! How a driver is woken: by its kernel when there is new work, by a test clock that
//! jumps, and by the last handle of its source when it goes.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;

/// Wakes a driver: the kernel rings it when it has new work (exchanges to start or
/// cancel, store I/O) or a new wake-up instant; a [`ManualClock`](crate::clock::ManualClock)
/// when it jumps.
pub trait Wake: Send + Sync + 'static {
    /// Wakes the driver. Called under the kernel's lock: do not block.
    fn wake(&self);
}

/// The doorbell of a [`Driver`](crate::driver::Driver): rung by the kernel, closed by
/// the last handle of its source. The driver registers its task's waker before it
/// looks for work, so no ring between the look and the sleep is lost.
#[derive(Debug, Default)]
pub struct Doorbell {
    state: Mutex<Bell>,
}

#[derive(Debug, Default)]
struct Bell {
    rung: bool,
    closed: bool,
    waker: Option<Waker>,
}

/// What the driver finds when it answers the doorbell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rings {
    /// Rung since the last answer: look for work again.
    pub rung: bool,
    /// The source's handles are all gone: start nothing new, end once idle.
    pub closed: bool,
}

impl Doorbell {
    /// Registers the waker of the driver's task and takes the rings so far.
    pub fn answer(&self, waker: &Waker) -> Rings {
        let mut bell = self.lock();
        if !bell.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            bell.waker = Some(waker.clone());
        }
        Rings {
            rung: std::mem::take(&mut bell.rung),
            closed: bell.closed,
        }
    }

    /// The last handle of the source is gone: the driver ends once nothing is left
    /// running.
    pub fn close(&self) {
        let waker = {
            let mut bell = self.lock();
            bell.closed = true;
            bell.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Bell> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Wake for Doorbell {
    fn wake(&self) {
        let waker = {
            let mut bell = self.lock();
            bell.rung = true;
            bell.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}
