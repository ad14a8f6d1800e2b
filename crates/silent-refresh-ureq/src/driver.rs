//! The driver: feeds the core's machine with inputs and `Instant::now()`, drains its
//! actions, runs each refresh on a thread of its own, and wakes waiting threads.
//!
//! One `Mutex` guards the machine; one `Condvar` wakes the threads that wait for an
//! outcome or for the machine's next deadline. The lock is never held across user
//! code that may block for long (the refresher) and the scope it guards never
//! unwinds (the token-change callback is run under `catch_unwind`), so it is never
//! left poisoned; should it be anyway, the state is recovered, since every update of
//! it is complete before any user code runs.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use silent_refresh::{
    AccessToken, Action, AttemptId, Credentials, Error as CoreError, FailureKind, Generation,
    RefreshFailure, RequestId, Secret, Status, TokenMachine, Wakeup,
};

use crate::change::TokenChange;
use crate::error::Error;
use crate::refresher::Refresher;

/// The token-change callback.
pub(crate) type OnChange = Box<dyn Fn(&TokenChange) + Send + Sync>;

thread_local! {
    /// The sources whose token-change callback this thread is running (it holds their
    /// lock), innermost last, with the commands the callback issued to them.
    static IN_CALLBACK: RefCell<Vec<(usize, Vec<Command>)>> = const { RefCell::new(Vec::new()) };
}

/// An input the token-change callback gave its own source: applied when the
/// callback returns, since the source is locked while it runs.
enum Command {
    SignIn(Credentials),
    SignOut,
    Rejected(Generation),
}

/// A snapshot of the machine's fresh token, read without the lock.
struct Fresh {
    token: Arc<AccessToken>,
    /// Hand it out strictly before this instant (`None`: until an input changes it).
    until: Option<Instant>,
}

/// Everything the lock guards.
pub(crate) struct State {
    machine: TokenMachine,
    /// Requests whose thread is waiting for an outcome.
    waiting: HashSet<RequestId>,
    /// Outcomes not yet picked up by their waiting thread. Only ids in `waiting`
    /// get one, so both stay as small as the number of waiting threads.
    outcomes: HashMap<RequestId, Result<Arc<AccessToken>, CoreError>>,
    /// The proactive refresh thread should stop.
    pub(crate) stopping: bool,
}

/// The shared part of a [`crate::TokenSource`]; refresh threads hold it too.
pub(crate) struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    fresh: ArcSwapOption<Fresh>,
    refresher: Box<dyn Refresher>,
    on_change: Option<OnChange>,
}

impl Inner {
    pub(crate) fn new(
        machine: TokenMachine,
        refresher: Box<dyn Refresher>,
        on_change: Option<OnChange>,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                machine,
                waiting: HashSet::new(),
                outcomes: HashMap::new(),
                stopping: false,
            }),
            changed: Condvar::new(),
            fresh: ArcSwapOption::empty(),
            refresher,
            on_change,
        })
    }

    pub(crate) fn refresher(&self) -> &dyn Refresher {
        &*self.refresher
    }

    /// The lock, recovered if a panic ever poisoned it (see the module docs).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        assert!(
            !self.in_own_callback(),
            "a TokenSource getter was called from its own on_token_change callback, which runs \
             while the source is locked; read it after the callback returns"
        );
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this thread is running this source's token-change callback.
    pub(crate) fn in_own_callback(&self) -> bool {
        let key = self.key();
        IN_CALLBACK.with(|stack| stack.borrow().iter().any(|(k, _)| *k == key))
    }

    /// Identifies this source in `IN_CALLBACK`.
    fn key(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Applies `command`, or keeps it for when the callback returns if this thread is
    /// running this source's callback.
    fn command(self: &Arc<Self>, command: Command) {
        let key = self.key();
        let command = IN_CALLBACK.with(|stack| {
            let mut stack = stack.borrow_mut();
            match stack.iter_mut().rev().find(|(k, _)| *k == key) {
                Some((_, deferred)) => {
                    deferred.push(command);
                    None
                }
                None => Some(command),
            }
        });
        if let Some(command) = command {
            let mut st = self.lock();
            let before = st.machine.poll_timeout();
            apply(&mut st.machine, command);
            self.drain(&mut st, before);
        }
    }

    /// Waits for a change for at most `timeout` (`None`: until notified).
    pub(crate) fn wait<'a>(
        &self,
        guard: MutexGuard<'a, State>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, State> {
        match timeout {
            Some(timeout) => {
                self.changed
                    .wait_timeout(guard, timeout)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => self
                .changed
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// Wakes every waiting thread (used to stop the proactive thread).
    pub(crate) fn notify_all(&self) {
        self.changed.notify_all();
    }

    /// The fast path: the fresh token, if `now` is before the snapshot's limit.
    pub(crate) fn fast_token(&self, now: Instant) -> Option<Arc<AccessToken>> {
        let guard = self.fresh.load();
        let fresh = guard.as_ref()?;
        fresh
            .until
            .is_none_or(|until| now < until)
            .then(|| fresh.token.clone())
    }

    /// The slow path: park a request in the machine and wait for its outcome, waking
    /// at the machine's deadlines to feed it the time.
    pub(crate) fn wait_for_token(
        self: &Arc<Self>,
        deadline: Option<Instant>,
    ) -> Result<Arc<AccessToken>, Error> {
        if self.in_own_callback() {
            return Err(Error::Reentrant);
        }
        let mut st = self.lock();
        let now = Instant::now();
        let own_deadline = deadline.unwrap_or_else(|| {
            now.checked_add(st.machine.config().request_timeout())
                .unwrap_or(now)
        });
        let before = st.machine.poll_timeout();
        let id = st.machine.handle_request(now, deadline);
        st.waiting.insert(id);
        self.drain(&mut st, before);
        loop {
            if let Some(outcome) = st.outcomes.remove(&id) {
                st.waiting.remove(&id);
                return outcome.map_err(Error::from);
            }
            let now = Instant::now();
            if now >= own_deadline {
                // The machine rejects a request at its deadline; this only guards
                // against it not doing so, so that no caller ever waits past it.
                st.waiting.remove(&id);
                let before = st.machine.poll_timeout();
                st.machine.handle_cancel(now, id);
                let last_failure = st.machine.last_failure().map(Arc::from);
                self.drain(&mut st, before);
                return Err(Error::Token(CoreError::DeadlineExceeded { last_failure }));
            }
            let wake = st
                .machine
                .poll_timeout()
                .map_or(own_deadline, |w| w.at.min(own_deadline));
            if wake > now {
                st = self.wait(st, Some(wake - now));
            }
            let before = st.machine.poll_timeout();
            st.machine.handle_timeout(Instant::now());
            self.drain(&mut st, before);
        }
    }

    /// Feeds the machine the time and drains what comes due (the proactive thread).
    pub(crate) fn tick(self: &Arc<Self>, st: &mut State) -> Option<Wakeup> {
        let before = st.machine.poll_timeout();
        st.machine.handle_timeout(Instant::now());
        self.drain(st, before);
        st.machine.poll_timeout()
    }

    pub(crate) fn report_rejected(self: &Arc<Self>, generation: Generation) {
        self.command(Command::Rejected(generation));
    }

    pub(crate) fn sign_in(self: &Arc<Self>, credentials: Credentials) {
        self.command(Command::SignIn(credentials));
    }

    pub(crate) fn sign_out(self: &Arc<Self>) {
        self.command(Command::SignOut);
    }

    pub(crate) fn status(&self) -> Status {
        self.lock().machine.status().clone()
    }

    pub(crate) fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    pub(crate) fn generation(&self) -> Generation {
        self.lock().machine.generation()
    }

    /// Drains the machine's actions (`before`: its wake-up before the input), then
    /// refreshes the fast-path snapshot and wakes the waiting threads if anything
    /// changed for them. Waking only on a change keeps threads that wake each other
    /// from looping.
    fn drain(self: &Arc<Self>, st: &mut State, before: Option<Wakeup>) {
        let mut acted = false;
        while let Some(action) = st.machine.poll_action() {
            acted = true;
            match action {
                Action::StartRefresh {
                    attempt,
                    refresh_token,
                } => self.start_refresh(st, attempt, refresh_token),
                Action::CancelRefresh { attempt } => {
                    // A blocking call cannot be cut short: the refresher's own timeout
                    // ends it, and its result ends the exchange.
                    tracing::warn!(
                        attempt = attempt.0,
                        "the token refresh exchange is past its deadline; no other starts \
                         until it returns"
                    );
                }
                Action::Persist { generation, token } => {
                    tracing::info!(generation = generation.0, "new token adopted");
                    let change = TokenChange::Persist {
                        generation,
                        token: *token,
                    };
                    for command in self.notify_change(&change) {
                        apply(&mut st.machine, command);
                    }
                }
                Action::Forget => {
                    for command in self.notify_change(&TokenChange::Forget) {
                        apply(&mut st.machine, command);
                    }
                }
                Action::Grant { request, token } => {
                    if st.waiting.contains(&request) {
                        st.outcomes.insert(request, Ok(token));
                    }
                }
                Action::Reject { request, error } => {
                    tracing::debug!(request = request.0, %error, "token request rejected");
                    if st.waiting.contains(&request) {
                        st.outcomes.insert(request, Err(error));
                    }
                }
            }
        }
        // After the callback ran: no thread sees a new token before it was persisted.
        self.fresh.store(
            st.machine
                .fresh_token()
                .map(|(token, until)| Arc::new(Fresh { token, until })),
        );
        if acted || st.machine.poll_timeout() != before {
            self.changed.notify_all();
        }
    }

    /// Runs the refresh on a thread of its own, so that no caller waits for it
    /// longer than its own deadline, and a caller granted the still-valid token
    /// while the refresh window is open is not held up by the refresh.
    fn start_refresh(
        self: &Arc<Self>,
        st: &mut State,
        attempt: AttemptId,
        refresh_token: Option<Secret>,
    ) {
        tracing::info!(attempt = attempt.0, "refresh started");
        let inner = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name("silent-refresh".into())
            .spawn(move || inner.run_refresh(attempt, refresh_token));
        if let Err(error) = spawned {
            tracing::warn!(attempt = attempt.0, %error, "could not start a refresh thread");
            let failure =
                RefreshFailure::transient(format!("could not start a refresh thread: {error}"));
            st.machine
                .handle_refresh_result(Instant::now(), attempt, Err(failure));
            // The drain loop that called us picks up the actions this queued.
        }
    }

    /// The body of a refresh thread.
    fn run_refresh(self: Arc<Self>, attempt: AttemptId, refresh_token: Option<Secret>) {
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| self.refresher.refresh(refresh_token)))
            .unwrap_or_else(|_| Err(RefreshFailure::transient("the refresher panicked")));
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &result {
            Ok(_) => tracing::info!(attempt = attempt.0, elapsed_ms, "refresh succeeded"),
            Err(failure) => match failure.kind {
                FailureKind::Terminal => tracing::error!(
                    attempt = attempt.0,
                    elapsed_ms,
                    reason = %failure.message,
                    "refresh failed for good: sign-in required"
                ),
                FailureKind::Misconfigured => tracing::error!(
                    attempt = attempt.0,
                    elapsed_ms,
                    reason = %failure.message,
                    "refresh refused: the client is misconfigured; the refresh credential is kept"
                ),
                _ => tracing::warn!(
                    attempt = attempt.0,
                    elapsed_ms,
                    reason = %failure.message,
                    "refresh failed"
                ),
            },
        }
        let failed = result.is_err();
        let mut st = self.lock();
        let before = st.machine.poll_timeout();
        let now = Instant::now();
        st.machine.handle_refresh_result(now, attempt, result);
        if failed {
            if let Some(until) = st.machine.backoff_until() {
                let retry_in_ms = u64::try_from(until.saturating_duration_since(now).as_millis())
                    .unwrap_or(u64::MAX);
                tracing::info!(attempt = attempt.0, retry_in_ms, "refresh backing off");
            }
        }
        self.drain(&mut st, before);
    }

    /// Runs the token-change callback; returns the commands it gave this source.
    fn notify_change(&self, change: &TokenChange) -> Vec<Command> {
        let Some(callback) = &self.on_change else {
            return Vec::new();
        };
        IN_CALLBACK.with(|stack| stack.borrow_mut().push((self.key(), Vec::new())));
        let outcome = catch_unwind(AssertUnwindSafe(|| callback(change)));
        let deferred = IN_CALLBACK
            .with(|stack| stack.borrow_mut().pop())
            .map(|(_, deferred)| deferred)
            .unwrap_or_default();
        if outcome.is_err() {
            tracing::error!("the token-change callback panicked; the change may not be stored");
        }
        deferred
    }
}

fn apply(machine: &mut TokenMachine, command: Command) {
    let now = Instant::now();
    match command {
        Command::SignIn(credentials) => {
            tracing::info!("signed in");
            machine.handle_sign_in(now, SystemTime::now(), credentials);
        }
        Command::SignOut => {
            tracing::info!("signed out");
            machine.handle_sign_out(now);
        }
        Command::Rejected(generation) => machine.handle_rejected(now, generation),
    }
}
