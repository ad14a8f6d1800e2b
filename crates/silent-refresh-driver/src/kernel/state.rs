//! What the kernel is made of: the lock-free snapshots, and the state behind its lock.

use silent_refresh::time::Instant;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use silent_refresh::{AccessToken, AttemptId, Event, RequestId, Secret, TokenMachine};

use super::fast::Fresh;
use super::io::{ChangeCallback, LoadRetry, Outcome, Snapshot, Start, StoreIo, Waiter};
use super::locks::Locks;
use super::wire::Wire;
use crate::clock::Clock;
use crate::store::TokenStore;
use crate::wake::Wake;

/// How often the driver reads the wall clock, to notice a suspend (the monotonic clock
/// stops while the system sleeps; the wall clock does not).
pub const WALL_CLOCK_CHECK: Duration = Duration::from_secs(2);

/// Wakes the driver, and remembers that the clock moved without real time passing (a
/// test clock): the next `take_work` feeds the machine the time.
pub(super) struct ClockMoved {
    pub(super) moved: AtomicBool,
    pub(super) wake: Arc<dyn Wake>,
}

impl Wake for ClockMoved {
    fn wake(&self) {
        self.moved.store(true, Ordering::SeqCst);
        self.wake.wake();
    }
}

/// How long past `refresh_timeout` an exchange whose refresher has no timeout of its
/// own may run before the driver cancels it: twice `refresh_timeout` in all.
pub(super) const UNBOUNDED_EXCHANGE_FACTOR: u32 = 2;

/// How long past a refresher's own timeout the driver waits for it to end the
/// exchange before cancelling it (a client that does not keep its timeout).
pub(super) const OWN_TIMEOUT_GRACE: Duration = Duration::from_secs(1);

/// The driver kernel, shared by every handle of a token source and its driver.
pub struct Kernel<W: Waiter> {
    pub(super) core: Mutex<Core<W>>,
    /// The fast path's token, handed out as it is (the driver's timer withdraws it).
    pub(super) fresh: ArcSwapOption<AccessToken>,
    /// The fast path's token when the clock must be read on every call (a clock that
    /// jumps): handed out until its instant.
    pub(super) fresh_checked: ArcSwapOption<Fresh>,
    pub(super) snapshot: ArcSwap<Snapshot>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) wake: Arc<dyn Wake>,
    pub(super) on_change: Option<ChangeCallback>,
    pub(super) store: Option<Arc<dyn TokenStore>>,
    pub(super) request_timeout: Duration,
    pub(super) refresh_timeout: Duration,
    /// How long an exchange may run before the driver cancels it (see `wire`).
    pub(super) exchange_limit: Duration,
    pub(super) clock_moved: Arc<ClockMoved>,
    /// Told of every session the kernel adopts from the store (loaded at start, a
    /// save's conflict, a sibling's token read under the store's lock): the source's
    /// DPoP state takes the session's key from it.
    pub(super) on_stored: std::sync::OnceLock<StoredHook>,
}

/// What [`Kernel::on_stored`] calls.
pub type StoredHook = Box<dyn Fn(&silent_refresh::Token) + Send + Sync>;

/// Everything behind the kernel's lock.
pub(super) struct Core<W> {
    pub(super) machine: TokenMachine,
    /// The callers that entered the machine and have no outcome yet.
    pub(super) waiters: HashMap<RequestId, W>,
    pub(super) starts: Vec<Start>,
    pub(super) cancels: Vec<AttemptId>,
    pub(super) store_io: Vec<StoreIo>,
    /// Saves are failing (logged at error level once per streak).
    pub(super) save_failing: bool,
    /// The store's locks between processes this source holds: they never leave the
    /// kernel.
    pub(super) locks: Locks,
    /// The exchange whose result is being fed: the save of its token takes its lock.
    pub(super) feeding: Option<AttemptId>,
    /// The access token of the session `prepare_exchange` took from the store, until
    /// its exchange result comes in.
    pub(super) adopting: Option<Secret>,
    /// The result being fed came from the store: its `Persist` is confirmed at once.
    pub(super) from_store: bool,
    /// The exchange on the wire, as the driver runs it.
    pub(super) wire: Option<Wire>,
    /// When the wall clock is read next.
    pub(super) wall_check: Option<Instant>,
    /// The generation signed in from the credentials given in code because the store
    /// was empty at start: saved only if the store is still empty.
    pub(super) seed: Option<silent_refresh::Generation>,
    /// The store could not be reached at start: when to load again.
    pub(super) load_retry: Option<LoadRetry>,
    /// The wake-up the driver was last told.
    pub(super) armed: Option<Instant>,
    /// What the fast path holds, and until when.
    pub(super) published: Option<(Arc<AccessToken>, Option<Instant>)>,
    pub(super) stopped: bool,
    /// [`Kernel::close`] was called: no refresh exchange starts any more.
    pub(super) closing: bool,
    pub(super) listeners: Vec<Listener>,
    /// Called whenever the published snapshot changes (a wait that looks at the
    /// getters: the store read, the store idle), until one returns `false`.
    pub(super) watchers: Vec<Watcher>,
    /// The stored session was read at start (or there is no store): what the source
    /// says about its session is no longer a guess.
    pub(super) store_read: bool,
    /// Store I/O handed to the driver ([`Kernel::take_work`]) and not finished yet.
    pub(super) store_running: usize,
    /// Outcomes decided in the current settle, delivered once the snapshots are
    /// published (so a woken caller's getters already show what decided its outcome).
    pub(super) answered: Vec<(W, Outcome)>,
}

/// A subscriber to the events: called with each event; returns whether it wants more
/// (a receiver gone: `false`).
pub(super) type Listener = Box<dyn Fn(&Event) -> bool + Send + Sync>;

/// A watcher of the published snapshot: called after each change; returns whether it
/// wants more (its waiter gone: `false`).
pub(super) type Watcher = Box<dyn Fn() -> bool + Send + Sync>;

impl<W> Core<W> {
    /// When the driver must wake: for the machine, to withdraw the fast path's token,
    /// to read the wall clock, to load the store again, or to cancel an exchange past
    /// its hard limit.
    pub(super) fn next_wakeup(&self) -> Option<Instant> {
        let machine = self.machine.poll_timeout().map(|wakeup| wakeup.at);
        let fast_path = self.published.as_ref().and_then(|(_, until)| *until);
        let load = self.load_retry.as_ref().map(|retry| retry.at);
        let limit = self.wire.as_ref().and_then(Wire::cancel_at);
        [machine, fast_path, self.wall_check, load, limit]
            .into_iter()
            .flatten()
            .min()
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            status: self.machine.status().clone(),
            generation: self.machine.generation(),
            waiting: self.machine.parked_len(),
            refresh_in_flight: self.machine.refresh_in_flight(),
            overdue: self.wire.as_ref().is_some_and(Wire::overdue),
            backoff_until: self.machine.backoff_until(),
            last_failure: self.machine.last_failure().map(Arc::from),
            stopped: self.stopped,
            durable: self.machine.is_durable(),
            store_read: self.store_read,
            store_idle: self.store_io.is_empty() && self.store_running == 0,
        }
    }
}
