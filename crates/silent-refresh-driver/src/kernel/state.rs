//! What the kernel is made of: the lock-free snapshots, and the state behind its lock.

use silent_refresh::time::Instant;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use silent_refresh::{AttemptId, Event, Generation, KeyId, RequestId, Secret, Session, Status};

use super::fast::KeySlot;
use super::io::{ChangeCallback, LoadRetry, Outcome, Snapshot, Start, StoreIo, Waiter};
use super::keys::Keys;
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
    /// The default key's fast path (the driver's timer withdraws its token).
    pub(super) fresh: Arc<KeySlot>,
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
    /// One machine per key, one refresh credential for all (rule 13).
    pub(super) session: Session,
    /// What each key's token is for, its fast path, and its newest token for the store.
    pub(super) keys: Keys,
    /// The callers that entered the machine and have no outcome yet, by key.
    pub(super) waiters: HashMap<(KeyId, RequestId), W>,
    pub(super) starts: Vec<Start>,
    pub(super) cancels: Vec<(KeyId, AttemptId)>,
    pub(super) store_io: Vec<StoreIo>,
    /// Saves are failing (logged at error level once per streak).
    pub(super) save_failing: bool,
    /// The store's locks between processes this source holds: they never leave the
    /// kernel.
    pub(super) locks: Locks,
    /// The exchange whose result is being fed: the save of its token takes its lock.
    pub(super) feeding: Option<(KeyId, AttemptId)>,
    /// The exchange `prepare_exchange` sent with the store's newer credential instead
    /// of the one the machine gave (another process rotated it): its result keeps that
    /// credential if the server sends none, and its save compares with it.
    pub(super) sent_with: Option<((KeyId, AttemptId), Secret)>,
    /// The credential the save of the result being fed compares with, in place of the
    /// machine's (see `sent_with`).
    pub(super) from_override: Option<Secret>,
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
    pub(super) seed: Option<Generation>,
    /// The store could not be reached at start: when to load again.
    pub(super) load_retry: Option<LoadRetry>,
    /// The wake-up the driver was last told.
    pub(super) armed: Option<Instant>,
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
        let machine = self.session.poll_timeout().map(|wakeup| wakeup.at);
        let fast_path = self.keys.fast_path_until();
        let load = self.load_retry.as_ref().map(|retry| retry.at);
        let limit = self.wire.as_ref().and_then(Wire::cancel_at);
        [machine, fast_path, self.wall_check, load, limit]
            .into_iter()
            .flatten()
            .min()
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        let session = &self.session;
        let machines = || (0..session.key_count()).map(|at| session.machine(key_at(at)));
        let default = session.machine(KeyId::DEFAULT);
        let with_token = || machines().filter(|m| m.current_token().is_some());
        Snapshot {
            status: session.status().clone(),
            generation: default.generation(),
            generations: machines().map(|m| m.generation()).collect(),
            waiting: machines().map(|m| m.parked_len()).sum(),
            refresh_in_flight: session.refresh_in_flight().map(|(_, attempt)| attempt),
            overdue: self.wire.as_ref().is_some_and(Wire::overdue),
            backoff_until: machines().filter_map(|m| m.backoff_until()).max(),
            last_failure: default
                .last_failure()
                .or_else(|| machines().find_map(|m| m.last_failure()))
                .map(Arc::from),
            stopped: self.stopped,
            durable: with_token().count() > 0 && with_token().all(|m| m.is_durable()),
            store_read: self.store_read,
            store_idle: self.store_io.is_empty() && self.store_running == 0,
        }
    }
}

/// The key at index `at` of the session.
pub(super) fn key_at(at: usize) -> KeyId {
    KeyId(u16::try_from(at).unwrap_or(u16::MAX))
}

impl<W> Core<W> {
    /// Whether the store is behind this process: some key's token awaits its save.
    pub(super) fn awaits_save(&self) -> bool {
        (0..self.session.key_count()).any(|at| self.session.machine(key_at(at)).awaits_save())
    }

    /// The lineage's refresh credential now (every key holds the same).
    pub(super) fn credential(&self) -> Option<&Secret> {
        self.session.machine(KeyId::DEFAULT).refresh_credential()
    }

    /// Whether the session is in a state whose token a save must keep.
    pub(super) fn keeps_saves(&self) -> bool {
        matches!(
            self.session.status(),
            Status::SignedIn | Status::Misconfigured(_) | Status::Unreachable { .. }
        )
    }
}
