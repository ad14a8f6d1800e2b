//! The one place the drivers read time: a monotonic and a wall clock, injectable.

use silent_refresh::time::{Instant, SystemTime};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use crate::wake::Wake;

/// Where a driver reads the time. The machine takes both readings as input; nothing in
/// the drivers calls `Instant::now()` or `SystemTime::now()` but through this.
pub trait Clock: Send + Sync + 'static {
    /// The monotonic clock (it stops while the system is suspended).
    fn now(&self) -> Instant;

    /// The wall clock (it keeps running during a suspend, and may be set).
    fn wall(&self) -> SystemTime;

    /// Registers a driver to wake when this clock jumps without real time passing (a
    /// test clock advanced by hand). Real clocks ignore it.
    fn on_advance(&self, wake: Weak<dyn Wake>) {
        let _ = wake;
    }

    /// Whether this clock can jump ahead faster than real time passes (a test clock
    /// advanced by hand). The drivers' lock-free fast path then reads it on every call:
    /// after a jump, no driver timer could withdraw a token before a caller sees it.
    fn jumps(&self) -> bool {
        false
    }
}

/// The operating system's clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to, for tests: [`advance`](Self::advance) moves
/// both clocks, [`advance_wall`](Self::advance_wall) only the wall clock (a suspend, as
/// the monotonic clock sees it). Every driver using it is woken after each move.
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

struct ManualInner {
    start: Instant,
    wall_start: SystemTime,
    state: Mutex<ManualState>,
}

struct ManualState {
    elapsed: Duration,
    wall_ahead: Duration,
    wakes: Vec<Weak<dyn Wake>>,
}

impl ManualClock {
    /// A clock standing at the real current instant and wall time, until moved.
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: Arc::new(ManualInner {
                start: Instant::now(),
                wall_start: SystemTime::now(),
                state: Mutex::new(ManualState {
                    elapsed: Duration::ZERO,
                    wall_ahead: Duration::ZERO,
                    wakes: Vec::new(),
                }),
            }),
        }
    }

    /// Moves both clocks forward by `by`, then wakes the drivers.
    pub fn advance(&self, by: Duration) {
        self.moved(|state| state.elapsed += by);
    }

    /// Moves only the wall clock forward by `by` (what a suspend looks like to a
    /// program: the monotonic clock stood still), then wakes the drivers.
    pub fn advance_wall(&self, by: Duration) {
        self.moved(|state| state.wall_ahead += by);
    }

    fn moved(&self, change: impl FnOnce(&mut ManualState)) {
        let wakes: Vec<Arc<dyn Wake>> = {
            let mut state = self.lock();
            change(&mut state);
            state.wakes.retain(|w| w.strong_count() > 0);
            state.wakes.iter().filter_map(Weak::upgrade).collect()
        };
        for wake in wakes {
            wake.wake();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ManualState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("ManualClock")
            .field("elapsed", &state.elapsed)
            .field("wall_ahead", &state.wall_ahead)
            .finish_non_exhaustive()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.inner.start + self.lock().elapsed
    }

    fn wall(&self) -> SystemTime {
        let state = self.lock();
        self.inner.wall_start + state.elapsed + state.wall_ahead
    }

    fn on_advance(&self, wake: Weak<dyn Wake>) {
        self.lock().wakes.push(wake);
    }

    fn jumps(&self) -> bool {
        true
    }
}
