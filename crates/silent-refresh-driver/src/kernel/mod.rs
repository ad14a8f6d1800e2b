//! The kernel: the machine behind a lock, and everything a driver does around it.
//!
//! Every input goes through one settle loop (`settle`): feed the machine, drain its
//! actions (outcomes to the waiting callers, token changes to the callback, refreshes
//! to start and cancel for the driver), drain its events (to the logs and the
//! subscribers), apply the commands the callback issued meanwhile, publish the
//! lock-free snapshots, and wake the driver when it has new work. Around that loop:
//! the store between processes and its lock (`coordination`), the exchange on the wire
//! (`wire`), the lock-free fast path (`fast`) and the log lines (`log`).
//!
//! A runtime brings only how a caller waits ([`Waiter`]), how its driver is woken
//! ([`Wake`]), and how it runs an exchange and store I/O (the
//! [`Driver`](crate::driver::Driver) over a [`Runtime`](crate::runtime::Runtime)).

mod coordination;
mod fast;
mod io;
mod keys;
mod locks;
mod log;
mod settle;
mod state;

pub use state::StoredHook;
mod wire;

use silent_refresh::time::Instant;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use silent_refresh::{
    AccessToken, AttemptId, Credentials, Event, KeyId, RefreshFailure, RequestId, Session, Token,
};
use silent_refresh_oauth2::Target;

use crate::clock::Clock;
use crate::store::TokenStore;
use crate::wake::Wake;

use self::coordination::secrets_match;
use self::keys::Keys;
use self::locks::Locks;
use self::settle::{HELD, apply};
use self::state::{ClockMoved, Core, OWN_TIMEOUT_GRACE, UNBOUNDED_EXCHANGE_FACTOR};

pub use self::fast::KeySlot;

pub use self::io::{
    ChangeCallback, Command, Load, LockId, NoToken, Outcome, Prepared, Revocable, Save, Snapshot,
    Start, StoreIo, TokenChange, Waiter, Work,
};
pub use self::state::{Kernel, WALL_CLOCK_CHECK};

/// How often a wait for [`Kernel::settled`] looks again between events (a queued save
/// ends without one).
pub const SETTLE_POLL: Duration = Duration::from_millis(20);

impl<W: Waiter> Kernel<W> {
    /// Calls `hook` with every session the kernel adopts from the store from now on
    /// (set once; later calls are ignored).
    pub fn on_stored(&self, hook: state::StoredHook) {
        let _ = self.on_stored.set(hook);
    }

    /// A session from the store is about to be adopted.
    pub(super) fn stored(&self, token: &silent_refresh::Token) {
        if let Some(hook) = self.on_stored.get() {
            hook(token);
        }
    }

    /// A kernel around a new machine (created with `config` at the clock's now).
    /// `exchange_timeout` is the timeout the refresher puts on each exchange itself, if
    /// it has one: an overdue exchange is left to it (plus a second); without one the
    /// driver cancels an exchange at twice `refresh_timeout`.
    pub fn new(
        config: silent_refresh::Config,
        clock: Arc<dyn Clock>,
        wake: Arc<dyn Wake>,
        on_change: Option<ChangeCallback>,
        store: Option<Arc<dyn TokenStore>>,
        exchange_timeout: Option<Duration>,
    ) -> Self {
        let request_timeout = config.request_timeout();
        let refresh_timeout = config.refresh_timeout();
        let exchange_limit = match exchange_timeout {
            Some(own) => own.saturating_add(OWN_TIMEOUT_GRACE),
            None => refresh_timeout.saturating_mul(UNBOUNDED_EXCHANGE_FACTOR),
        };
        let session = Session::new(config, clock.now(), clock.wall());
        let fresh = Arc::new(KeySlot::default());
        let clock_moved = Arc::new(ClockMoved {
            moved: AtomicBool::new(false),
            wake: wake.clone(),
        });
        let as_wake: Arc<dyn Wake> = clock_moved.clone();
        clock.on_advance(Arc::downgrade(&as_wake));
        let core = Core {
            session,
            keys: Keys::new(fresh.clone()),
            waiters: HashMap::new(),
            starts: Vec::new(),
            cancels: Vec::new(),
            store_io: Vec::new(),
            save_failing: false,
            locks: Locks::default(),
            feeding: None,
            sent_with: None,
            from_override: None,
            adopting: None,
            from_store: false,
            wire: None,
            wall_check: None,
            seed: None,
            load_retry: None,
            armed: None,
            stopped: false,
            closing: false,
            listeners: Vec::new(),
            watchers: Vec::new(),
            store_read: store.is_none(),
            store_running: 0,
            answered: Vec::new(),
        };
        let snapshot = core.snapshot();
        Self {
            core: Mutex::new(core),
            fresh,
            snapshot: ArcSwap::from_pointee(snapshot),
            clock,
            wake,
            on_change,
            store,
            request_timeout,
            refresh_timeout,
            exchange_limit,
            clock_moved,
            on_stored: std::sync::OnceLock::new(),
        }
    }

    /// Starts the session: with a store, its stored session is loaded first (by the
    /// driver, off the lock) and wins over `credentials` when it holds a usable
    /// session; without one, signs in with `credentials` (if any) at once.
    pub fn start(&self, credentials: Option<Credentials>) {
        if self.store.is_some() {
            self.settle(|core, _| core.store_io.push(StoreIo::Load(Load::first(credentials))));
        } else if let Some(credentials) = credentials {
            self.command(Command::SignIn(credentials));
        }
    }

    /// The store this kernel saves to, if any.
    #[must_use]
    pub fn store(&self) -> Option<&Arc<dyn TokenStore>> {
        self.store.as_ref()
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
    /// the machine. No lock, and no clock read unless the clock can jump.
    #[inline]
    #[must_use]
    pub fn fresh_token(&self) -> Option<Arc<AccessToken>> {
        self.fresh.token(&*self.clock)
    }

    /// The default key's fast path.
    #[must_use]
    pub fn default_slot(&self) -> &Arc<KeySlot> {
        &self.fresh
    }

    /// The key of `target` (the same key for the same target, [`KeyId::DEFAULT`] for
    /// the default one), added to the session the first time, and its fast path. A
    /// key added while a stored session is known takes its token from it.
    ///
    /// # Errors
    ///
    /// [`NoToken::Reentrant`] from inside the token-change callback,
    /// [`NoToken::Stopped`] when the driver is gone.
    pub fn register(&self, target: Target) -> Result<(KeyId, Arc<KeySlot>), NoToken> {
        if self.held_by_this_thread() {
            return Err(NoToken::Reentrant);
        }
        let wall = self.clock.wall();
        self.settle(|core, now| {
            if core.stopped {
                return Err(NoToken::Stopped);
            }
            if let Some(key) = core.keys.find(&target) {
                return Ok((key, core.keys.slot(key)));
            }
            let key = core.session.add_key();
            let slot = core.keys.push(key, target);
            let credential = core.credential().cloned();
            if let Some(entry) = credential
                .as_ref()
                .and_then(|credential| core.keys.entry_read(key, Some(credential)))
            {
                core.session.handle_stored(now, wall, key, entry);
            }
            Ok((key, slot))
        })
    }

    /// Enters a request with its own deadline (`None`: the configuration's
    /// `request_timeout`); `waiter` receives its outcome, possibly before this returns.
    ///
    /// # Errors
    ///
    /// [`NoToken::Reentrant`] from inside the token-change callback,
    /// [`NoToken::Stopped`] when the driver is gone.
    pub fn enter(&self, deadline: Option<Instant>, waiter: W) -> Result<RequestId, NoToken> {
        self.enter_key(KeyId::DEFAULT, deadline, waiter)
    }

    /// As [`enter`](Self::enter), for the token of `key` (from
    /// [`register`](Self::register)): `waiter` is only ever answered with that key's
    /// token.
    ///
    /// # Errors
    ///
    /// As [`enter`](Self::enter).
    pub fn enter_key(
        &self,
        key: KeyId,
        deadline: Option<Instant>,
        waiter: W,
    ) -> Result<RequestId, NoToken> {
        if self.held_by_this_thread() {
            return Err(NoToken::Reentrant);
        }
        self.settle(|core, now| {
            if core.stopped {
                return Err(NoToken::Stopped);
            }
            let request = core.session.handle_request(now, key, deadline);
            core.waiters.insert((key, request), waiter);
            Ok(request)
        })
    }

    /// The caller gave up on `request`: it gets no outcome and leaves nothing behind.
    pub fn cancel(&self, request: RequestId) {
        self.cancel_key(KeyId::DEFAULT, request);
    }

    /// As [`cancel`](Self::cancel), for a request of `key`.
    pub fn cancel_key(&self, key: KeyId, request: RequestId) {
        if self.held_by_this_thread() {
            // A waiter dropped inside the callback: it is answered (harmlessly) or
            // rejected at its deadline.
            return;
        }
        self.settle(|core, now| {
            core.waiters.remove(&(key, request));
            core.session.handle_cancel(now, key, request);
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
            self.settle(|core, now| apply(core, command, now, wall));
        }
    }

    /// What a sign-out would revoke at the server now: the newest refresh credential
    /// and the access token in hand.
    ///
    /// # Errors
    ///
    /// [`NoToken::Reentrant`] from inside the token-change callback (the source is
    /// locked there).
    pub fn revocable(&self) -> Result<Revocable, NoToken> {
        if self.held_by_this_thread() {
            return Err(NoToken::Reentrant);
        }
        Ok(Revocable::of(&self.lock().session))
    }

    /// Signs out ([`Command::SignOut`]) and returns what was revocable at that instant,
    /// under one lock: no refresh rotates the credential in between.
    ///
    /// # Errors
    ///
    /// [`NoToken::Reentrant`] from inside the token-change callback (use
    /// [`command`](Self::command) there).
    pub fn sign_out_taking(&self) -> Result<Revocable, NoToken> {
        if self.held_by_this_thread() {
            return Err(NoToken::Reentrant);
        }
        let wall = self.clock.wall();
        Ok(self.settle(|core, now| {
            let revocable = Revocable::of(&core.session);
            apply(core, Command::SignOut, now, wall);
            revocable
        }))
    }

    /// Time passed: the driver's timer fired (early, late or twice is harmless). Also
    /// reads the wall clock, so that a suspend is noticed within
    /// [`WALL_CLOCK_CHECK`] of waking.
    pub fn timeout(&self) {
        let wall = self.clock.wall();
        let load = self.settle(|core, now| {
            core.session.handle_wall_clock(now, wall);
            core.session.handle_timeout(now);
            core.load_retry
                .take_if(|retry| now >= retry.at)
                .map(|retry| retry.load)
        });
        if let Some(load) = load {
            // The driver runs it off the lock, like the first load.
            self.settle(|core, _| core.store_io.push(StoreIo::Load(load)));
        }
    }

    /// The result of a refresh exchange (an answer, a failure, or its cancellation).
    /// The store's lock it ran under, if any, stays with the kernel: the token it
    /// brings is saved under it, and it is released by the kernel's own store I/O
    /// ([`StoreIo::Release`]), never here (this may run on an async worker).
    pub fn exchange_result(&self, attempt: AttemptId, result: Result<Token, RefreshFailure>) {
        self.exchange_result_for(KeyId::DEFAULT, attempt, result);
    }

    /// As [`exchange_result`](Self::exchange_result), for an exchange of `key`.
    pub fn exchange_result_for(
        &self,
        key: KeyId,
        attempt: AttemptId,
        mut result: Result<Token, RefreshFailure>,
    ) {
        self.settle(|core, now| {
            core.feeding = Some((key, attempt));
            let adopted = core.adopting.take();
            core.from_store = match (&result, &adopted) {
                (Ok(token), Some(access)) => secrets_match(&token.access_token, access),
                _ => false,
            };
            // Sent with the store's newer credential: a token without a new one keeps
            // that one, and its save compares the store with it.
            if let Some((_, sent)) = core.sent_with.take_if(|(of, _)| *of == (key, attempt)) {
                if let Ok(token) = &mut result
                    && token.refresh_token.is_none()
                {
                    token.refresh_token = Some(sent.clone());
                }
                core.from_override = Some(sent);
            }
            core.session
                .handle_refresh_result(now, key, attempt, result);
            core.wire.take_if(|wire| wire.attempt() == (key, attempt));
        });
    }

    /// What the driver must do, and when to wake; that wake-up counts as armed.
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
                self.exchange_result_for(
                    start.key,
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
        // Counted until `store_io` says each is done (the snapshot's `store_idle`).
        core.store_running += core.store_io.len();
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
    /// with rotating refresh credentials, the session too), the current token is saved
    /// or its save has stopped mattering (signed out, or no store), and no store lock
    /// waits for its release.
    #[must_use]
    pub fn settled(&self) -> bool {
        let core = self.lock();
        let saving = self.store.is_some() && core.awaits_save() && core.keeps_saves();
        core.session.refresh_in_flight().is_none()
            && !saving
            && core.store_io.is_empty()
            && !core.locks.releasing()
    }

    /// The driver is gone: every waiting caller is told, new ones are refused, and the
    /// fast path is withdrawn (nothing would withdraw it in time any more).
    pub fn stop(&self) {
        let mut core = self.lock();
        core.stopped = true;
        for (_, waiter) in core.waiters.drain() {
            waiter.resolve(Err(NoToken::Stopped));
        }
        for (_, key) in core.keys.iter_mut() {
            key.published = None;
            key.slot.publish(None);
        }
        self.snapshot.store(Arc::new(core.snapshot()));
        core.watchers.retain(|watcher| watcher());
    }

    /// Calls `listener` with every event from now on (under the lock: keep it short and
    /// non-blocking, such as a channel send), until it returns `false` (its receiver is
    /// gone): then it is dropped, so subscribers that come and go leave nothing behind.
    pub fn subscribe(&self, listener: impl Fn(&Event) -> bool + Send + Sync + 'static) {
        self.lock().listeners.push(Box::new(listener));
    }

    /// Calls `watcher` after every change of the published [`Snapshot`] from now on
    /// (under the lock: keep it short and non-blocking, such as waking a task), until
    /// it returns `false`: for a wait on what the getters say (the store read, the
    /// store idle), which no event announces.
    pub fn watch(&self, watcher: impl Fn() -> bool + Send + Sync + 'static) {
        self.lock().watchers.push(Box::new(watcher));
    }

    /// What the getters read: no lock, never blocks.
    #[must_use]
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }
}

impl<W: Waiter> fmt::Debug for Kernel<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.snapshot();
        f.debug_struct("Kernel")
            .field("status", &snapshot.status)
            .field("generation", &snapshot.generation)
            .field("waiting", &snapshot.waiting)
            .field("overdue", &snapshot.overdue)
            .finish_non_exhaustive()
    }
}
