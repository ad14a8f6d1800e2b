//! The kernel: the machine behind a lock, and everything a driver does around it.
//!
//! Every input goes through one settle loop: feed the machine, drain its actions
//! (outcomes to the waiting callers, token changes to the callback, refreshes to start
//! and cancel for the driver), drain its events (to the logs and the subscribers),
//! apply the commands the callback issued meanwhile, publish the lock-free snapshots, and
//! wake the driver when it has new work. An adapter brings only how a caller waits
//! ([`Waiter`]), how its driver loop is woken ([`Wake`]), and how it runs an exchange.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use silent_refresh::{
    AccessToken, Action, AttemptId, Credentials, Error as CoreError, Event, Expiry, FailureKind,
    Generation, Persisted, RefreshFailure, RequestId, Secret, Status, Token, TokenMachine,
};

use crate::Error;
use crate::clock::Clock;
use crate::store::{Saved, StoreLock, TokenStore};

/// How often the driver reads the wall clock, to notice a suspend (the monotonic clock
/// stops while the system sleeps; the wall clock does not).
pub const WALL_CLOCK_CHECK: Duration = Duration::from_secs(2);

/// How late the driver's timer may fire before the fast path hands out a token that is
/// no longer usable. A token whose usable time past its refresh window is shorter than
/// this is checked against the clock on every fast-path call instead.
const TIMER_SLACK: Duration = Duration::from_secs(1);

/// How often a wait for [`Kernel::settled`] looks again between events (a queued save
/// ends without one).
pub const SETTLE_POLL: Duration = Duration::from_millis(20);

/// Why a caller got no token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoToken {
    /// The machine's answer (deadline, sign-in required, misconfigured, …).
    Token(CoreError),
    /// Asked from inside the source's own token-change callback, which runs while the
    /// source is locked: waiting there would deadlock.
    Reentrant,
    /// The driver is gone (its runtime shut down): nothing would answer.
    Stopped,
}

/// What a waiting caller receives.
pub type Outcome = Result<Arc<AccessToken>, NoToken>;

/// How a caller waits for its outcome: a oneshot sender, a slot with a condvar, ….
pub trait Waiter: Send + 'static {
    /// Delivers the outcome. Called once, under the kernel's lock: do not block.
    fn resolve(self, outcome: Outcome);
}

/// How the kernel wakes the adapter's driver loop when it has new work (refreshes to
/// start or cancel) or a new wake-up instant.
pub trait Wake: Send + Sync + 'static {
    /// Wakes the driver loop; called under the kernel's lock: do not block.
    fn wake(&self);
}

/// A token change the program must store: the rotated refresh credential, or none.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TokenChange {
    /// A new token was adopted: store it (it holds the newest refresh credential and a
    /// wall-clock expiry) before relying on it. No caller gets it before this returns.
    Persist {
        /// The generation the machine gave the token.
        generation: Generation,
        /// The token to store.
        token: Token,
    },
    /// Signed out: delete the stored token.
    Forget,
}

/// The token-change callback.
pub type ChangeCallback = Box<dyn Fn(TokenChange) + Send + Sync>;

/// An input that needs no answer.
#[derive(Debug)]
pub enum Command {
    /// New credentials.
    SignIn(Credentials),
    /// Sign out.
    SignOut,
    /// A request with this generation's token was rejected (401).
    Rejected(Generation),
}

/// A refresh exchange to start.
#[derive(Debug)]
pub struct Start {
    /// Report its result with this attempt id.
    pub attempt: AttemptId,
    /// The refresh credential to send (`None` for grants that need none).
    pub refresh_token: Option<Secret>,
}

/// A token to save in the store, off the lock; report with [`Kernel::store_io`].
pub struct Save {
    /// The token's generation.
    pub generation: Generation,
    /// The token.
    pub token: Token,
    /// The refresh credential it was refreshed from (compare-and-swap).
    pub from: Option<Secret>,
    /// The store's lock between processes, held since before the exchange that brought
    /// the token: the save happens under it, then it is released.
    pub lock: Option<Box<dyn StoreLock>>,
    /// Save only if the store holds no session ([`TokenStore::save_if_empty`]): the
    /// session signed in from the credentials given in code after the store was found
    /// empty, which must not overwrite a sibling process's.
    pub only_if_empty: bool,
}

/// What to do before a refresh exchange, decided under the store's lock between
/// processes ([`Kernel::prepare_exchange`]).
pub enum Prepared {
    /// Run the exchange; the lock (if the store coordinates processes) is held until
    /// its token is saved: hand it to [`Kernel::exchange_result`].
    Exchange(Option<Box<dyn StoreLock>>),
    /// Another process refreshed already: this token, from the store, is the result;
    /// no exchange is needed.
    Adopt(Box<Token>, Box<dyn StoreLock>),
    /// The store's lock could not be taken: the exchange fails with this (transient).
    Failed(RefreshFailure),
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prepared::Exchange(lock) => write!(f, "Exchange(locked: {})", lock.is_some()),
            Prepared::Adopt(..) => f.write_str("Adopt(..)"),
            Prepared::Failed(failure) => write!(f, "Failed({failure})"),
        }
    }
}

impl fmt::Debug for Save {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Save")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Store I/O for the driver loop to run off the lock (it may block), then hand to
/// [`Kernel::store_io`]: run by the tokio adapter on a blocking thread.
#[derive(Debug)]
pub enum StoreIo {
    /// Load the stored session, then sign in with it (or with the credentials given in
    /// code when the store holds no usable session).
    Load(Load),
    /// Save a token.
    Save(Save),
    /// Delete the stored token.
    Forget,
    /// Release the store's lock between processes (it may block).
    Release(Release),
}

/// A store lock to release off the kernel's lock ([`StoreIo::Release`]).
pub struct Release(Box<dyn StoreLock>);

impl fmt::Debug for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Release(..)")
    }
}

/// A load of the stored session ([`StoreIo::Load`]).
#[derive(Debug)]
pub struct Load {
    /// The credentials given in code, for when the store holds no session.
    credentials: Option<Credentials>,
    /// How long to wait before loading again if the store cannot be reached.
    retry_delay: Duration,
}

/// What the driver loop is to do next.
#[derive(Debug)]
pub struct Work {
    /// Exchanges to start.
    pub starts: Vec<Start>,
    /// Exchanges to cancel (past their deadline, or superseded).
    pub cancels: Vec<AttemptId>,
    /// Store I/O to run, in order.
    pub store: Vec<StoreIo>,
    /// When to call [`Kernel::timeout`] next (`None`: only when woken).
    pub next: Option<Instant>,
}

/// What the getters read, published after every input: no lock, so they never block or
/// deadlock, not even inside the token-change callback.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Where the session stands.
    pub status: Status,
    /// The generation of the newest token.
    pub generation: Generation,
    /// How many callers wait for a token.
    pub waiting: usize,
    /// The refresh exchange on the wire, if any.
    pub refresh_in_flight: Option<AttemptId>,
    /// When the current backoff ends, if one runs.
    pub backoff_until: Option<Instant>,
    /// The last refresh failure since the last adopted token.
    pub last_failure: Option<Arc<str>>,
    /// The driver is gone.
    pub stopped: bool,
    /// The store confirmed the current token (always `false` without a token).
    pub durable: bool,
}

/// The fast path's token: handed out without the lock until `until` (`None`: until an
/// input changes it). The driver's timer withdraws it at `until`, so no clock is read,
/// unless `check_clock` says a late timer would matter: the token's margin is tight, or
/// the clock can jump past it ([`Clock::jumps`]) before the driver wakes.
struct Fresh {
    token: Arc<AccessToken>,
    until: Option<Instant>,
    check_clock: bool,
}

impl Fresh {
    fn new(token: Arc<AccessToken>, until: Option<Instant>, clock_jumps: bool) -> Self {
        let check_clock = match (until, token.usable_until) {
            (Some(_), _) if clock_jumps => true,
            (Some(until), Some(usable_until)) => {
                usable_until.saturating_duration_since(until) < TIMER_SLACK
            }
            // A window without a known end of usability: be safe.
            (Some(_), None) => true,
            (None, _) => false,
        };
        Self {
            token,
            until,
            check_clock,
        }
    }
}

/// Everything behind the lock.
struct Core<W> {
    machine: TokenMachine,
    /// The callers that entered the machine and have no outcome yet.
    waiters: HashMap<RequestId, W>,
    starts: Vec<Start>,
    cancels: Vec<AttemptId>,
    store_io: Vec<StoreIo>,
    /// Saves are failing (logged at error level once per streak).
    save_failing: bool,
    /// The store's lock between processes, held for the exchange whose result is being
    /// fed: its save takes it (released right after the input otherwise).
    exchange_lock: Option<Box<dyn StoreLock>>,
    /// The store's lock held for a token whose save under it failed: the retried
    /// save of that generation, or the next exchange, takes it, so no sibling
    /// refreshes from the stored (replaced) credential meanwhile.
    unsaved_lock: Option<(Generation, Box<dyn StoreLock>)>,
    /// The access token of the session `prepare_exchange` took from the store, until
    /// its exchange result comes in.
    adopting: Option<Secret>,
    /// The result being fed came from the store: its `Persist` is confirmed at once.
    from_store: bool,
    /// When the wall clock is read next.
    wall_check: Option<Instant>,
    /// The generation signed in from the credentials given in code because the store
    /// was empty at start: saved only if the store is still empty.
    seed: Option<Generation>,
    /// The store could not be reached at start: when to load again, with what, and the
    /// delay after that.
    load_retry: Option<LoadRetry>,
    /// The wake-up the driver loop was last told.
    armed: Option<Instant>,
    /// What the fast path holds.
    published: Option<(Arc<AccessToken>, Option<Instant>)>,
    stopped: bool,
    /// [`Kernel::close`] was called: no refresh exchange starts any more.
    closing: bool,
    listeners: Vec<Listener>,
    /// Outcomes decided in the current settle, delivered once the snapshots are
    /// published (so a woken caller's getters already show what decided its outcome).
    answered: Vec<(W, Outcome)>,
}

/// A load of the store to try again (the store was unreachable).
struct LoadRetry {
    at: Instant,
    credentials: Option<Credentials>,
    delay: Duration,
}

/// The first and the longest pause between loads of an unreachable store.
const LOAD_RETRY_FIRST: Duration = Duration::from_millis(500);
const LOAD_RETRY_MAX: Duration = Duration::from_secs(30);

/// A subscriber to the events.
/// Called with each event; returns whether it wants more (a receiver gone: `false`).
type Listener = Box<dyn Fn(&Event) -> bool + Send + Sync>;

impl<W> Core<W> {
    /// When the driver must wake: for the machine, or to withdraw the fast path's token.
    fn next_wakeup(&self) -> Option<Instant> {
        let machine = self.machine.poll_timeout().map(|wakeup| wakeup.at);
        let snapshot = self.published.as_ref().and_then(|(_, until)| *until);
        let load = self.load_retry.as_ref().map(|retry| retry.at);
        [machine, snapshot, self.wall_check, load]
            .into_iter()
            .flatten()
            .min()
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            status: self.machine.status().clone(),
            generation: self.machine.generation(),
            waiting: self.machine.parked_len(),
            refresh_in_flight: self.machine.refresh_in_flight(),
            backoff_until: self.machine.backoff_until(),
            last_failure: self.machine.last_failure().map(Arc::from),
            stopped: self.stopped,
            durable: self.machine.is_durable(),
        }
    }
}

thread_local! {
    /// The kernels this thread holds locked (by address), innermost last, each with the
    /// commands its token-change callback issued: applied once the callback returns,
    /// instead of deadlocking on the lock.
    static HELD: RefCell<Vec<(usize, Vec<Command>)>> = const { RefCell::new(Vec::new()) };
}

/// Pops this thread's `HELD` entry, also when something panics.
struct Held;

impl Drop for Held {
    fn drop(&mut self) {
        HELD.with(|held| held.borrow_mut().pop());
    }
}

/// The driver kernel, shared by every handle of a token source and its driver loop.
pub struct Kernel<W: Waiter> {
    core: Mutex<Core<W>>,
    fresh: ArcSwapOption<Fresh>,
    snapshot: ArcSwap<Snapshot>,
    clock: Arc<dyn Clock>,
    wake: Arc<dyn Wake>,
    on_change: Option<ChangeCallback>,
    store: Option<Arc<dyn TokenStore>>,
    request_timeout: Duration,
    refresh_timeout: Duration,
    /// Set when the clock moved without real time passing (a test clock); the next
    /// [`take_work`](Kernel::take_work) feeds the machine the time first.
    clock_moved: Arc<ClockMoved>,
}

/// Wakes the driver loop when the clock is moved by hand, and remembers that it was.
struct ClockMoved {
    moved: AtomicBool,
    wake: Arc<dyn Wake>,
}

impl Wake for ClockMoved {
    fn wake(&self) {
        self.moved.store(true, Ordering::SeqCst);
        self.wake.wake();
    }
}

impl<W: Waiter> Kernel<W> {
    /// A kernel around a new machine (created with `config` at the clock's now).
    pub fn new(
        config: silent_refresh::Config,
        clock: Arc<dyn Clock>,
        wake: Arc<dyn Wake>,
        on_change: Option<ChangeCallback>,
        store: Option<Arc<dyn TokenStore>>,
    ) -> Self {
        let request_timeout = config.request_timeout();
        let refresh_timeout = config.refresh_timeout();
        let machine = TokenMachine::new(config, clock.now(), clock.wall());
        let clock_moved = Arc::new(ClockMoved {
            moved: AtomicBool::new(false),
            wake: wake.clone(),
        });
        let as_wake: Arc<dyn Wake> = clock_moved.clone();
        clock.on_advance(Arc::downgrade(&as_wake));
        let core = Core {
            machine,
            waiters: HashMap::new(),
            starts: Vec::new(),
            cancels: Vec::new(),
            store_io: Vec::new(),
            save_failing: false,
            exchange_lock: None,
            unsaved_lock: None,
            adopting: None,
            from_store: false,
            wall_check: None,
            seed: None,
            load_retry: None,
            armed: None,
            published: None,
            stopped: false,
            closing: false,
            listeners: Vec::new(),
            answered: Vec::new(),
        };
        let snapshot = core.snapshot();
        Self {
            core: Mutex::new(core),
            fresh: ArcSwapOption::empty(),
            snapshot: ArcSwap::from_pointee(snapshot),
            clock,
            wake,
            on_change,
            store,
            request_timeout,
            refresh_timeout,
            clock_moved,
        }
    }

    /// Starts the session: with a store, its stored session is loaded first (by the
    /// driver loop, off the lock) and wins over `credentials` when it holds a usable
    /// session; without one, signs in with `credentials` (if any) at once.
    pub fn start(&self, credentials: Option<Credentials>) {
        if self.store.is_some() {
            self.settle(|core, _| {
                core.store_io.push(StoreIo::Load(Load {
                    credentials,
                    retry_delay: LOAD_RETRY_FIRST,
                }));
            });
        } else if let Some(credentials) = credentials {
            self.command(Command::SignIn(credentials));
        }
    }

    /// The store this kernel saves to, if any.
    #[must_use]
    pub fn store(&self) -> Option<&Arc<dyn TokenStore>> {
        self.store.as_ref()
    }

    /// Runs one piece of store I/O (blocking: call it off the runtime's workers) and
    /// feeds its outcome to the machine.
    pub fn store_io(&self, io: StoreIo) {
        let Some(store) = self.store.clone() else {
            return;
        };
        match io {
            StoreIo::Load(Load {
                credentials,
                retry_delay,
            }) => self.load(&*store, credentials, retry_delay),
            StoreIo::Save(Save {
                generation,
                token,
                from,
                lock,
                only_if_empty,
            }) => {
                let saved = catch_unwind(AssertUnwindSafe(|| match &lock {
                    Some(lock) => lock.save(&token, from.as_ref()),
                    None if only_if_empty => store.save_if_empty(&token),
                    None => store.save(&token, from.as_ref()),
                }));
                let outcome = match saved {
                    Ok(Ok(Saved::Stored)) => Persisted::Stored,
                    Ok(Ok(Saved::Conflict(newer))) => Persisted::Conflict(newer),
                    Ok(Err(error)) => Persisted::Failed(error.to_string()),
                    // A panicking store is a failed save, never a swallowed success.
                    Err(_panic) => Persisted::Failed("the token store panicked".to_owned()),
                };
                // A token refreshed under the store's lock keeps it until it is saved:
                // released now, a sibling would re-read the store, find the refresh
                // credential this token replaced, and spend it again.
                let keep = matches!(outcome, Persisted::Failed(_))
                    .then_some(lock)
                    .flatten();
                self.settle(|core, now| {
                    if let Some(lock) = keep {
                        core.unsaved_lock = Some((generation, lock));
                    }
                    core.machine.handle_persisted(now, generation, outcome);
                });
            }
            StoreIo::Release(Release(lock)) => drop(lock),
            StoreIo::Forget => match catch_unwind(AssertUnwindSafe(|| store.forget())) {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(
                    %error,
                    "the token store could not forget the signed-out session"
                ),
                Err(_panic) => tracing::error!("the token store panicked while forgetting"),
            },
        }
    }

    /// Loads the stored session and signs in with it; with the credentials given in
    /// code when the store holds none (saved only if the store is still empty by
    /// then). A store that cannot be reached is loaded again after `delay` (doubling):
    /// starting from the credentials given in code instead could spend a refresh
    /// credential the store's session has replaced already. Meanwhile callers wait
    /// for a sign-in, until their deadlines.
    fn load(&self, store: &dyn TokenStore, given: Option<Credentials>, delay: Duration) {
        let loaded = match catch_unwind(AssertUnwindSafe(|| store.load())) {
            Ok(loaded) => loaded,
            Err(_panic) => {
                tracing::error!("the token store panicked while loading");
                Ok(None)
            }
        };
        let (credentials, seed) = match loaded {
            Ok(Some(token)) if holds_a_session(&token, self.clock.wall()) => {
                tracing::info!("session loaded from the token store");
                (Some(Credentials::Stored(token)), false)
            }
            Ok(_) => (given, true),
            Err(error @ Error::StoreUnavailable { .. }) => {
                tracing::warn!(
                    %error,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "the token store could not be reached at start; loading it again before \
                     signing in"
                );
                self.settle(|core, now| {
                    core.load_retry = Some(LoadRetry {
                        at: later(now, delay),
                        credentials: given,
                        delay: (delay * 2).min(LOAD_RETRY_MAX),
                    });
                });
                return;
            }
            Err(error) => {
                tracing::error!(%error, "the token store could not be read; starting from the credentials given in code");
                (given, false)
            }
        };
        let Some(credentials) = credentials else {
            return;
        };
        let wall = self.clock.wall();
        self.settle(|core, now| {
            apply(&mut core.machine, Command::SignIn(credentials), now, wall);
            // The Persist of this sign-in, dispatched right after, is a seed.
            core.seed = seed.then(|| core.machine.generation());
        });
    }

    /// How long a caller waits by default (the configuration's `request_timeout`).
    #[must_use]
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The clock this kernel reads.
    #[must_use]
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// The fast path: the published token while it may be handed out without asking
    /// the machine. No lock, and no clock read unless the token's margin is tight.
    #[inline]
    #[must_use]
    pub fn fresh_token(&self) -> Option<Arc<AccessToken>> {
        let fresh = self.fresh.load();
        let fresh = fresh.as_ref()?;
        if fresh.check_clock && fresh.until.is_some_and(|until| self.clock.now() >= until) {
            return None;
        }
        Some(fresh.token.clone())
    }

    /// Enters a request with its own deadline (`None`: the configuration's
    /// `request_timeout`); `waiter` receives its outcome, possibly before this returns.
    ///
    /// # Errors
    ///
    /// [`NoToken::Reentrant`] from inside the token-change callback,
    /// [`NoToken::Stopped`] when the driver is gone.
    pub fn enter(&self, deadline: Option<Instant>, waiter: W) -> Result<RequestId, NoToken> {
        if self.held_by_this_thread() {
            return Err(NoToken::Reentrant);
        }
        self.settle(|core, now| {
            if core.stopped {
                return Err(NoToken::Stopped);
            }
            let request = core.machine.handle_request(now, deadline);
            core.waiters.insert(request, waiter);
            Ok(request)
        })
    }

    /// The caller gave up on `request`: it gets no outcome and leaves nothing behind.
    pub fn cancel(&self, request: RequestId) {
        if self.held_by_this_thread() {
            // A waiter dropped inside the callback: it is answered (harmlessly) or
            // rejected at its deadline.
            return;
        }
        self.settle(|core, now| {
            core.waiters.remove(&request);
            core.machine.handle_cancel(now, request);
        });
    }

    /// Applies a command, or, from inside the token-change callback, right after it.
    pub fn command(&self, command: Command) {
        let key = self.key();
        let command = HELD.with(|held| {
            let mut held = held.borrow_mut();
            match held.iter_mut().rev().find(|(k, _)| *k == key) {
                Some((_, deferred)) => {
                    deferred.push(command);
                    None
                }
                None => Some(command),
            }
        });
        if let Some(command) = command {
            let wall = self.clock.wall();
            self.settle(|core, now| apply(&mut core.machine, command, now, wall));
        }
    }

    /// Time passed: the driver's timer fired (early, late or twice is harmless). Also
    /// reads the wall clock, so that a suspend is noticed within
    /// [`WALL_CLOCK_CHECK`] of waking.
    pub fn timeout(&self) {
        let wall = self.clock.wall();
        let load = self.settle(|core, now| {
            core.machine.handle_wall_clock(now, wall);
            core.machine.handle_timeout(now);
            if core
                .load_retry
                .as_ref()
                .is_some_and(|retry| now >= retry.at)
            {
                return core.load_retry.take();
            }
            None
        });
        if let Some(LoadRetry {
            credentials, delay, ..
        }) = load
        {
            // The driver loop runs it off the lock, like the first load.
            self.settle(|core, _| {
                core.store_io.push(StoreIo::Load(Load {
                    credentials,
                    retry_delay: delay,
                }));
            });
        }
    }

    /// The result of a refresh exchange (an answer, a failure, or its cancellation).
    pub fn refresh_result(&self, attempt: AttemptId, result: Result<Token, RefreshFailure>) {
        self.exchange_result(attempt, result, None);
    }

    /// Before a refresh exchange that would send `sent` (blocking: call it off the
    /// runtime's workers, as part of the exchange). With a store that coordinates
    /// processes (a [`FileStore`](crate::store::FileStore)), takes its lock, waiting at
    /// most the exchange's timeout, and re-reads it: if another process refreshed since
    /// this one last saved, its token is adopted instead of spending the credential
    /// again. So processes sharing a store run one exchange at a time between them.
    pub fn prepare_exchange(&self, sent: Option<&Secret>) -> Prepared {
        let Some(store) = self.store.as_ref() else {
            return Prepared::Exchange(None);
        };
        // Still holding the lock because the store is behind: this exchange keeps it
        // (a lease that expired meanwhile is let go, and a new one taken).
        let held = self.lock().unsaved_lock.take().map(|(_, lock)| lock);
        let held = held.filter(|lock| lock.still_held());
        let taken = match held {
            Some(lock) => Ok(Ok(Some(lock))),
            None => catch_unwind(AssertUnwindSafe(|| {
                store.lock_for_refresh(self.refresh_timeout)
            })),
        };
        let lock = match taken {
            Ok(Ok(Some(lock))) => lock,
            Ok(Ok(None)) => return Prepared::Exchange(None),
            // The store's server is down (Redis): the source says so in its status,
            // and callers without a usable token are told at once (as for an
            // unreachable token endpoint) rather than at their deadline.
            Ok(Err(error @ Error::StoreUnavailable { .. })) => {
                return Prepared::Failed(RefreshFailure::unreachable(format!(
                    "the token store's refresh lock could not be taken: {error}"
                )));
            }
            Ok(Err(error)) => {
                return Prepared::Failed(RefreshFailure::transient(format!(
                    "the token store's refresh lock could not be taken: {error}"
                )));
            }
            Err(_panic) => {
                return Prepared::Failed(RefreshFailure::transient(
                    "the token store panicked while locking",
                ));
            }
        };
        // The store holds what this process saved last, unless a sibling saved since.
        // While this process's own save is pending or failing the store is older than
        // its token: then nothing is adopted from it. With no token of its own (signed
        // in with a refresh credential only) the store is never behind it.
        let behind = self.lock().machine.awaits_save();
        let stored = catch_unwind(AssertUnwindSafe(|| lock.load()));
        match stored {
            // The store cannot say whether a sibling rotated the credential: it is not
            // sent on a guess (the lock is released on return).
            Ok(Err(error @ Error::StoreUnavailable { .. })) => {
                Prepared::Failed(RefreshFailure::unreachable(format!(
                    "the token store could not be read under its refresh lock: {error}"
                )))
            }
            // The store lost sessions: the credential held here may be spent.
            Ok(Err(error @ Error::StoreLost { .. })) => {
                Prepared::Failed(RefreshFailure::terminal(error.to_string()))
            }
            Ok(Ok(Some(token)))
                if !behind
                    && sent.is_some()
                    && token.refresh_token.as_ref().map(Secret::expose)
                        != sent.map(Secret::expose)
                    && holds_a_session(&token, self.clock.wall()) =>
            {
                tracing::info!(
                    "another process refreshed already: adopting its token from the store"
                );
                // Fed back through `exchange_result`: that token is the store's
                // already, not one to save again.
                self.lock().adopting = Some(token.access_token.clone());
                Prepared::Adopt(Box::new(token), lock)
            }
            _ => Prepared::Exchange(Some(lock)),
        }
    }

    /// The result of a refresh exchange run under the store's `lock`: the token it
    /// brings is saved under that lock, which is then released (right away when no
    /// token is to be saved).
    pub fn exchange_result(
        &self,
        attempt: AttemptId,
        result: Result<Token, RefreshFailure>,
        lock: Option<Box<dyn StoreLock>>,
    ) {
        self.settle(|core, now| {
            core.exchange_lock = lock;
            let adopted = core.adopting.take();
            core.from_store = match (&result, &adopted) {
                (Ok(token), Some(access)) => secrets_match(&token.access_token, access),
                _ => false,
            };
            core.machine.handle_refresh_result(now, attempt, result);
        });
        // No token to save: release it now (off the kernel's mutex).
        let lock = {
            let mut core = self.lock();
            core.from_store = false;
            core.exchange_lock.take()
        };
        drop(lock);
    }

    /// What the driver loop must do, and when to wake; that wake-up counts as armed.
    pub fn take_work(&self) -> Work {
        if self.clock_moved.moved.swap(false, Ordering::SeqCst) {
            self.timeout();
        }
        // Closing: an exchange the machine asks for now never goes on the wire, so it
        // spends nothing; it ends as a transient failure (and is asked again after the
        // backoff, and refused again).
        let mut core = self.lock();
        if core.closing && !core.starts.is_empty() {
            let refused = std::mem::take(&mut core.starts);
            drop(core);
            for start in refused {
                self.refresh_result(
                    start.attempt,
                    Err(RefreshFailure::transient(
                        "the token source is shutting down: no refresh starts any more",
                    )),
                );
            }
            core = self.lock();
        }
        let next = core.next_wakeup();
        core.armed = next;
        Work {
            starts: std::mem::take(&mut core.starts),
            cancels: std::mem::take(&mut core.cancels),
            store: std::mem::take(&mut core.store_io),
            next,
        }
    }

    /// Starts no refresh exchange from now on (the program is about to exit): the one
    /// on the wire, if any, still ends, and its token is still saved. Tokens still
    /// usable are still granted. [`settled`](Self::settled) says when nothing is left
    /// that exiting would lose.
    pub fn close(&self) {
        tracing::info!("the token source is shutting down: no refresh starts any more");
        self.settle(|core, _| core.closing = true);
    }

    /// No refresh exchange is on the wire (its outcome would be lost with the process:
    /// with rotating refresh credentials, the session too) and the current token is
    /// saved, or its save has stopped mattering (signed out, or no store).
    #[must_use]
    pub fn settled(&self) -> bool {
        let core = self.lock();
        let saving = self.store.is_some()
            && core.machine.awaits_save()
            && matches!(
                core.machine.status(),
                Status::SignedIn | Status::Misconfigured(_) | Status::Unreachable { .. }
            );
        core.machine.refresh_in_flight().is_none()
            && !saving
            && core.store_io.is_empty()
            && core.exchange_lock.is_none()
    }

    /// The driver is gone: every waiting caller is told, new ones are refused, and the
    /// fast path is withdrawn (nothing would withdraw it in time any more).
    pub fn stop(&self) {
        let mut core = self.lock();
        core.stopped = true;
        for (_, waiter) in core.waiters.drain() {
            waiter.resolve(Err(NoToken::Stopped));
        }
        core.published = None;
        self.fresh.store(None);
        self.snapshot.store(Arc::new(core.snapshot()));
    }

    /// Calls `listener` with every event from now on (under the lock: keep it short and
    /// non-blocking, such as a channel send), until it returns `false` (its receiver is
    /// gone): then it is dropped, so subscribers that come and go leave nothing behind.
    pub fn subscribe(&self, listener: impl Fn(&Event) -> bool + Send + Sync + 'static) {
        self.lock().listeners.push(Box::new(listener));
    }

    /// What the getters read: no lock, never blocks.
    #[must_use]
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    // ----- the lock and the settle loop ---------------------------------------------

    fn lock(&self) -> MutexGuard<'_, Core<W>> {
        // A panic under the lock leaves the machine consistent: its inputs are atomic,
        // and undrained actions stay queued.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn key(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    fn held_by_this_thread(&self) -> bool {
        let key = self.key();
        HELD.with(|held| held.borrow().iter().any(|(k, _)| *k == key))
    }

    /// Runs `input` on the core at the clock's now, then settles: drains actions and
    /// events, applies the commands the callback issued, publishes the snapshots, and
    /// wakes the driver loop if it has new work.
    fn settle<T>(&self, input: impl FnOnce(&mut Core<W>, Instant) -> T) -> T {
        let mut core = self.lock();
        HELD.with(|held| held.borrow_mut().push((self.key(), Vec::new())));
        let _held = Held;
        let out = input(&mut core, self.clock.now());
        let mut events = Vec::new();
        loop {
            while let Some(action) = core.machine.poll_action() {
                self.dispatch(&mut core, action);
            }
            while let Some(event) = core.machine.poll_event() {
                log(&event, core.machine.now(), &mut core.save_failing);
                events.push(event);
            }
            let deferred = HELD.with(|held| {
                held.borrow_mut()
                    .last_mut()
                    .map(|(_, deferred)| std::mem::take(deferred))
                    .unwrap_or_default()
            });
            if deferred.is_empty() {
                break;
            }
            let (now, wall) = (self.clock.now(), self.clock.wall());
            for command in deferred {
                apply(&mut core.machine, command, now, wall);
            }
        }
        self.publish(&mut core);
        // After publishing: a caller woken by its outcome, or a subscriber by an event,
        // reads getters that show it.
        for (waiter, outcome) in std::mem::take(&mut core.answered) {
            waiter.resolve(outcome);
        }
        for event in &events {
            core.listeners.retain(|listener| listener(event));
        }
        // While signed in, the wall clock is read every few seconds, so a suspend is
        // noticed whether the token is on the fast path, in its window, or refreshing.
        let now = core.machine.now();
        let signed_in = core.machine.status().is_signed_in();
        core.wall_check = signed_in.then(|| {
            core.wall_check
                .filter(|at| *at > now)
                .unwrap_or_else(|| later(now, WALL_CLOCK_CHECK))
        });
        let next = core.next_wakeup();
        if !core.starts.is_empty()
            || !core.cancels.is_empty()
            || !core.store_io.is_empty()
            || next != core.armed
        {
            self.wake.wake();
        }
        out
    }

    fn dispatch(&self, core: &mut Core<W>, action: Action) {
        match action {
            Action::StartRefresh {
                attempt,
                refresh_token,
            } => core.starts.push(Start {
                attempt,
                refresh_token,
            }),
            Action::CancelRefresh { attempt } => core.cancels.push(attempt),
            Action::Persist {
                generation,
                token,
                from,
            } => {
                let called = self.changed(TokenChange::Persist {
                    generation,
                    token: (*token).clone(),
                });
                if !called {
                    let failure = "the token-change callback panicked".to_owned();
                    let now = self.clock.now();
                    core.machine
                        .handle_persisted(now, generation, Persisted::Failed(failure));
                } else if core.from_store {
                    // The store holds this token already (another process saved it):
                    // saving it again could only fail, and a failure would make this
                    // source believe the store is behind it.
                    let now = self.clock.now();
                    core.machine
                        .handle_persisted(now, generation, Persisted::Stored);
                } else if self.store.is_some() {
                    let only_if_empty = from.is_none() && core.seed == Some(generation);
                    let mut lock = core.exchange_lock.take();
                    match core.unsaved_lock.take() {
                        Some((unsaved, held)) if unsaved == generation && lock.is_none() => {
                            lock = Some(held);
                        }
                        Some((_, stale)) => core.store_io.push(StoreIo::Release(Release(stale))),
                        None => {}
                    }
                    core.store_io.push(StoreIo::Save(Save {
                        generation,
                        token: *token,
                        from,
                        lock,
                        only_if_empty,
                    }));
                } else {
                    // No store: the callback is the store, and it returned.
                    let now = self.clock.now();
                    core.machine
                        .handle_persisted(now, generation, Persisted::Stored);
                }
            }
            Action::Forget => {
                if let Some((_, stale)) = core.unsaved_lock.take() {
                    core.store_io.push(StoreIo::Release(Release(stale)));
                }
                self.changed(TokenChange::Forget);
                if self.store.is_some() {
                    core.store_io.push(StoreIo::Forget);
                }
            }
            Action::Grant { request, token } => {
                if let Some(waiter) = core.waiters.remove(&request) {
                    core.answered.push((waiter, Ok(token)));
                }
            }
            Action::Reject { request, error } => {
                if let Some(waiter) = core.waiters.remove(&request) {
                    core.answered.push((waiter, Err(NoToken::Token(error))));
                }
            }
        }
    }

    /// Runs the token-change callback; `false` if it panicked (a failed save, never a
    /// swallowed success).
    fn changed(&self, change: TokenChange) -> bool {
        let Some(callback) = &self.on_change else {
            return true;
        };
        let persist = matches!(change, TokenChange::Persist { .. });
        if catch_unwind(AssertUnwindSafe(|| callback(change))).is_err() {
            tracing::error!(
                persist,
                "the token-change callback panicked; the change is not stored"
            );
            return false;
        }
        true
    }

    /// Publishes the fast path's token (if it changed) and the getters' snapshot.
    fn publish(&self, core: &mut Core<W>) {
        let fresh = if core.stopped {
            None
        } else {
            core.machine.fresh_token()
        };
        let unchanged = match (&core.published, &fresh) {
            (None, None) => true,
            (Some((old, old_until)), Some((new, new_until))) => {
                Arc::ptr_eq(old, new) && old_until == new_until
            }
            _ => false,
        };
        if !unchanged {
            self.fresh.store(fresh.as_ref().map(|(token, until)| {
                Arc::new(Fresh::new(token.clone(), *until, self.clock.jumps()))
            }));
            core.published = fresh;
        }
        let snapshot = core.snapshot();
        if **self.snapshot.load() != snapshot {
            self.snapshot.store(Arc::new(snapshot));
        }
    }
}

impl<W: Waiter> fmt::Debug for Kernel<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.snapshot();
        f.debug_struct("Kernel")
            .field("status", &snapshot.status)
            .field("generation", &snapshot.generation)
            .field("waiting", &snapshot.waiting)
            .finish_non_exhaustive()
    }
}

fn apply(machine: &mut TokenMachine, command: Command, now: Instant, wall: std::time::SystemTime) {
    match command {
        Command::SignIn(credentials) => machine.handle_sign_in(now, wall, credentials),
        Command::SignOut => machine.handle_sign_out(now),
        Command::Rejected(generation) => machine.handle_rejected(now, generation),
    }
}

/// Whether a stored token still holds a session: a refresh credential, or an access
/// token whose wall-clock expiry has not passed.
fn holds_a_session(token: &Token, wall_now: std::time::SystemTime) -> bool {
    token.refresh_token.is_some()
        || match token.expiry {
            Expiry::Never => true,
            Expiry::At(at) => at > wall_now,
            Expiry::In(_) => false,
        }
}

/// Whether two secrets are equal (in time that depends on their lengths only).
fn secrets_match(a: &Secret, b: &Secret) -> bool {
    crate::store::record::secrets_equal(a, b)
}

/// `now + d`, saturating.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

/// One log line per event, with its ids; never a secret. Failed saves are logged at
/// error level once per streak.
fn log(event: &Event, now: Instant, save_failing: &mut bool) {
    match event {
        Event::RefreshStarted { attempt, trigger } => tracing::info!(
            attempt = attempt.0,
            trigger = trigger.as_str(),
            "token refresh started"
        ),
        Event::RefreshOverdue { attempt } => tracing::warn!(
            attempt = attempt.0,
            "token refresh exchange passed its deadline; cancelling it, and no other \
             starts until it has ended"
        ),
        Event::TokenAdopted {
            generation,
            attempt,
        } => tracing::info!(
            generation = generation.0,
            attempt = attempt.map(|a| a.0),
            "new token adopted"
        ),
        Event::RefreshFailed {
            attempt,
            kind,
            message,
            retry_at,
        } => {
            let retry_in_ms = retry_at.map(|at| {
                u64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX)
            });
            match kind {
                FailureKind::Transient => tracing::warn!(
                    attempt = attempt.0,
                    reason = %message,
                    retry_in_ms,
                    "token refresh failed; backing off"
                ),
                FailureKind::Misconfigured => tracing::error!(
                    attempt = attempt.0,
                    reason = %message,
                    retry_in_ms,
                    "token refresh refused: the client is misconfigured; the refresh \
                     credential is kept"
                ),
                FailureKind::Terminal => tracing::error!(
                    attempt = attempt.0,
                    reason = %message,
                    "token refresh failed for good; sign-in required"
                ),
            }
        }
        Event::ResultDropped { attempt } => tracing::debug!(
            attempt = attempt.0,
            "refresh result dropped: stale, duplicate, or superseded by new credentials"
        ),
        Event::StatusChanged { status } => {
            tracing::info!(status = ?status, "token source status changed");
        }
        Event::Persisted { generation } => {
            if std::mem::take(save_failing) {
                tracing::info!(
                    generation = generation.0,
                    "token stored; the session is durable again"
                );
            } else {
                tracing::debug!(generation = generation.0, "token stored");
            }
        }
        Event::PersistFailed {
            generation,
            message,
            retry_at,
        } => {
            let retry_in_ms = u64::try_from(retry_at.saturating_duration_since(now).as_millis())
                .unwrap_or(u64::MAX);
            if std::mem::replace(save_failing, true) {
                tracing::warn!(generation = generation.0, reason = %message, retry_in_ms, "saving the token failed again");
            } else {
                tracing::error!(generation = generation.0, reason = %message, retry_in_ms, "saving the token failed: the session is not durable (a restart would lose it) until a retry succeeds");
            }
        }
        Event::AdoptedFromStore { generation } => tracing::info!(
            generation = generation.0,
            "the store held a newer session (another process refreshed first): adopted it"
        ),
        Event::RejectionsRepeat {
            generation,
            count,
            retry_at,
        } => tracing::warn!(
            generation = generation.0,
            rejected_in_a_row = count,
            retry_in_ms = u64::try_from(retry_at.saturating_duration_since(now).as_millis())
                .unwrap_or(u64::MAX),
            "the API keeps rejecting fresh tokens (401): refreshing again is held back; \
             check the token's audience and scope, the clocks, and the API's configuration"
        ),
        Event::WallClockJumped { ahead } => tracing::warn!(
            ahead_ms = u64::try_from(ahead.as_millis()).unwrap_or(u64::MAX),
            "the wall clock ran ahead of the monotonic clock (a suspend?): token expiries moved"
        ),
        _ => tracing::debug!(event = ?event, "token source event"),
    }
}
