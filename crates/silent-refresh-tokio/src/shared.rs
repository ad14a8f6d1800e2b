//! The state the handles and the background task share: the core machine behind a
//! lock, the requests waiting for an outcome, and the fast-path snapshot.
//!
//! Every input goes through [`Shared::with_core`], which feeds the machine, drains its
//! actions (outcomes to the waiting requests, token changes to the callback), publishes
//! the fresh token for the fast path, and wakes the background task when it has new
//! work. The lock is a `std::sync::Mutex`, never held across an `.await`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use silent_refresh::{
    AccessToken, Action, AttemptId, Credentials, Generation, RefreshFailure, RequestId, Secret,
    Status, Token, TokenMachine,
};
use tokio::sync::{Notify, oneshot};

use crate::change::TokenChange;

/// What a waiting request receives.
pub(crate) type Outcome = Result<Arc<AccessToken>, silent_refresh::Error>;

/// The callback that stores token changes.
pub(crate) type ChangeCallback = Box<dyn Fn(TokenChange) + Send + Sync>;

/// The instant to feed the machine: tokio's clock, so that paused-time tests work.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// How late the background task's timer may fire before the fast path hands out a token
/// that is no longer usable. A token whose usable time past its refresh window is shorter
/// than this is checked against the clock on every fast-path call instead.
const TIMER_SLACK: Duration = Duration::from_secs(1);

/// The fast path's snapshot: a token that may be handed out without asking the machine
/// until `until` (`None`: until something changes it).
///
/// The background task withdraws it at `until` (its timer wakes it then), so the fast
/// path reads no clock, unless `check_clock` says the token would not survive a late
/// timer (see [`TIMER_SLACK`]).
struct Fresh {
    token: Arc<AccessToken>,
    until: Option<Instant>,
    check_clock: bool,
}

impl Fresh {
    fn new(token: Arc<AccessToken>, until: Option<Instant>) -> Self {
        let check_clock = match (until, token.usable_until) {
            // The timer withdraws it in time, unless it is later than the slack.
            (Some(until), Some(usable_until)) => {
                usable_until.saturating_duration_since(until) < TIMER_SLACK
            }
            // A window without a known end of usability: be safe.
            (Some(_), None) => true,
            // No window: it serves until an input changes it.
            (None, _) => false,
        };
        Self {
            token,
            until,
            check_clock,
        }
    }
}

/// A refresh the machine asked for, for the background task to run.
pub(crate) struct Start {
    pub(crate) attempt: AttemptId,
    pub(crate) refresh_token: Option<Secret>,
}

/// What the background task is to do next.
pub(crate) struct Work {
    /// Refreshes to start.
    pub(crate) starts: Vec<Start>,
    /// Exchanges to cancel.
    pub(crate) cancels: Vec<AttemptId>,
    /// When to wake.
    pub(crate) next: Option<Instant>,
}

/// An input from a handle that needs no answer.
pub(crate) enum Command {
    SignIn(Credentials, SystemTime),
    SignOut,
    Rejected(Generation),
}

impl Command {
    fn apply(self, machine: &mut TokenMachine, now: Instant) {
        match self {
            Self::SignIn(credentials, wall_now) => {
                machine.handle_sign_in(now, wall_now, credentials);
            }
            Self::SignOut => machine.handle_sign_out(now),
            Self::Rejected(generation) => machine.handle_rejected(now, generation),
        }
    }
}

/// Everything behind the lock.
struct Core {
    machine: TokenMachine,
    /// The requests that entered the machine and have no outcome yet.
    waiters: HashMap<RequestId, oneshot::Sender<Outcome>>,
    /// Refreshes to start, for the background task.
    starts: Vec<Start>,
    /// Exchanges to cancel (past their deadline, or superseded), for the background task.
    cancels: Vec<AttemptId>,
    /// The wake-up the background task has armed; it is woken when this changes.
    armed: Option<Instant>,
    /// What the fast-path snapshot holds.
    published: Option<(Arc<AccessToken>, Option<Instant>)>,
    /// The background task is gone: nothing would answer a waiting request.
    driver_stopped: bool,
}

impl Core {
    /// When the background task must wake: for the machine, or to withdraw the
    /// fast-path snapshot when its time is up.
    fn next_wakeup(&self) -> Option<Instant> {
        let machine = self.machine.poll_timeout().map(|wakeup| wakeup.at);
        let snapshot = self.published.as_ref().and_then(|(_, until)| *until);
        match (machine, snapshot) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

thread_local! {
    /// The shared states this thread holds locked (by address), each with the commands
    /// its token-change callback issued: they are applied once the callback returns,
    /// instead of deadlocking on the lock.
    static HELD: RefCell<Vec<(usize, Vec<Command>)>> = const { RefCell::new(Vec::new()) };
}

/// Pops this thread's `HELD` entry, also when a callback panics.
struct Held;

impl Drop for Held {
    fn drop(&mut self) {
        HELD.with(|held| held.borrow_mut().pop());
    }
}

/// The state shared by every handle and the background task.
pub(crate) struct Shared {
    core: Mutex<Core>,
    fresh: ArcSwapOption<Fresh>,
    wake_driver: Notify,
    on_change: Option<ChangeCallback>,
}

impl Shared {
    /// A machine with `credentials` (if any) signed in, its first actions drained.
    pub(crate) fn new(
        machine: TokenMachine,
        credentials: Option<Credentials>,
        on_change: Option<ChangeCallback>,
    ) -> Self {
        let shared = Self {
            core: Mutex::new(Core {
                machine,
                waiters: HashMap::new(),
                starts: Vec::new(),
                cancels: Vec::new(),
                armed: None,
                published: None,
                driver_stopped: false,
            }),
            fresh: ArcSwapOption::empty(),
            wake_driver: Notify::new(),
            on_change,
        };
        if let Some(credentials) = credentials {
            shared.command(Command::SignIn(credentials, SystemTime::now()));
        }
        shared
    }

    /// The fast path: the published token, while it may be handed out without asking
    /// the machine. No lock, and no clock read unless the token's margin is tight.
    #[inline]
    pub(crate) fn fresh_token(&self) -> Option<Arc<AccessToken>> {
        let fresh = self.fresh.load();
        let fresh = fresh.as_ref()?;
        if fresh.check_clock && fresh.until.is_some_and(|until| now() >= until) {
            return None;
        }
        Some(fresh.token.clone())
    }

    /// Enters a request into the machine. `None` when called from inside the
    /// token-change callback (it would deadlock) or with the background task gone.
    pub(crate) fn enter_request(
        &self,
        deadline: Option<Instant>,
    ) -> Result<(RequestId, oneshot::Receiver<Outcome>), crate::Error> {
        if self.held_by_this_thread() {
            return Err(crate::Error::Reentrant);
        }
        let (sender, receiver) = oneshot::channel();
        self.with_core(|core| {
            if core.driver_stopped {
                return Err(crate::Error::DriverStopped);
            }
            let request = core.machine.handle_request(now(), deadline);
            core.waiters.insert(request, sender);
            Ok((request, receiver))
        })
    }

    /// The caller gave up on `request`: it leaves nothing behind.
    pub(crate) fn cancel(&self, request: RequestId) {
        if self.held_by_this_thread() {
            // Only a future dropped inside the callback gets here; the waiter's sender
            // fails harmlessly and the machine drops the request at its deadline.
            return;
        }
        self.with_core(|core| {
            core.waiters.remove(&request);
            core.machine.handle_cancel(now(), request);
        });
    }

    /// Applies a command, or defers it if the token-change callback issued it.
    pub(crate) fn command(&self, command: Command) {
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
            self.with_core(|core| command.apply(&mut core.machine, now()));
        }
    }

    /// Time passed: the background task's timer fired.
    pub(crate) fn timeout(&self) {
        self.with_core(|core| core.machine.handle_timeout(now()));
    }

    /// The result of a refresh attempt.
    pub(crate) fn refresh_result(&self, attempt: AttemptId, result: Result<Token, RefreshFailure>) {
        self.with_core(|core| {
            let generation = core.machine.generation();
            let backoff = core.machine.backoff_until();
            let failure = result.as_ref().err().cloned();
            core.machine.handle_refresh_result(now(), attempt, result);
            let adopted = core.machine.generation();
            if adopted != generation {
                tracing::info!(
                    attempt = attempt.0,
                    generation = adopted.0,
                    "token refreshed"
                );
                return;
            }
            if let Some(failure) = &failure {
                match core.machine.status() {
                    Status::SignInRequired(_) if failure.is_terminal() => tracing::error!(
                        attempt = attempt.0,
                        reason = %failure.message,
                        "token refresh failed for good; sign-in required"
                    ),
                    Status::Misconfigured(_) => tracing::error!(
                        attempt = attempt.0,
                        reason = %failure.message,
                        "token refresh refused: the client is misconfigured; the refresh \
                         credential is kept"
                    ),
                    _ => tracing::warn!(
                        attempt = attempt.0,
                        kind = ?failure.kind,
                        reason = %failure.message,
                        "token refresh failed"
                    ),
                }
            }
            if core.machine.backoff_until() != backoff {
                log_backoff(&core.machine, attempt);
            } else if failure.is_none() {
                tracing::debug!(
                    attempt = attempt.0,
                    "refresh result dropped: the attempt is stale or was superseded"
                );
            }
        });
    }

    /// What the background task must do: the refreshes to start, the exchanges to
    /// cancel, and when to wake. Records that wake-up as armed.
    pub(crate) fn take_work(&self) -> Work {
        let mut core = self.lock();
        let starts = std::mem::take(&mut core.starts);
        let cancels = std::mem::take(&mut core.cancels);
        let next = core.next_wakeup();
        core.armed = next;
        Work {
            starts,
            cancels,
            next,
        }
    }

    /// Waits until the background task has new work.
    pub(crate) async fn work_changed(&self) {
        self.wake_driver.notified().await;
    }

    /// The background task is gone: every waiting request fails (their senders drop)
    /// and new ones fail fast.
    pub(crate) fn driver_stopped(&self) {
        let mut core = self.lock();
        core.driver_stopped = true;
        core.waiters.clear();
        // Nothing withdraws the snapshot any more: withdraw it now.
        core.published = None;
        self.fresh.store(None);
    }

    /// Where the machine stands with the credentials.
    pub(crate) fn status(&self) -> Status {
        self.lock().machine.status().clone()
    }

    /// The generation of the newest token.
    pub(crate) fn generation(&self) -> Generation {
        self.lock().machine.generation()
    }

    /// How many requests wait for a token.
    pub(crate) fn waiting(&self) -> usize {
        let core = self.lock();
        debug_assert_eq!(
            core.machine.parked_len(),
            core.waiters.len(),
            "every parked request has a waiter, and only those"
        );
        core.machine.parked_len()
    }

    // ----- the lock and what follows each input -------------------------------------

    fn lock(&self) -> MutexGuard<'_, Core> {
        // Locking again from the token-change callback would deadlock: fail loudly.
        assert!(
            !self.held_by_this_thread(),
            "a TokenSource getter was called from its own token-change callback, which runs \
             while the source is locked; only sign_in, sign_out and report_rejected may be"
        );
        // A panic under the lock (a callback's is caught) leaves the machine consistent:
        // its inputs are atomic, and undrained actions stay queued.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn key(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    fn held_by_this_thread(&self) -> bool {
        let key = self.key();
        HELD.with(|held| held.borrow().iter().any(|(k, _)| *k == key))
    }

    /// Runs `input` on the core, then settles: drains the actions, applies commands
    /// the callback issued, publishes the fast-path token, and wakes the background
    /// task if it has new work.
    fn with_core<T>(&self, input: impl FnOnce(&mut Core) -> T) -> T {
        let mut core = self.lock();
        HELD.with(|held| held.borrow_mut().push((self.key(), Vec::new())));
        let _held = Held;
        let out = input(&mut core);
        loop {
            while let Some(action) = core.machine.poll_action() {
                self.dispatch(&mut core, action);
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
            let now = now();
            for command in deferred {
                command.apply(&mut core.machine, now);
            }
        }
        self.publish(&mut core);
        let next = core.next_wakeup();
        if !core.starts.is_empty() || !core.cancels.is_empty() || next != core.armed {
            self.wake_driver.notify_one();
        }
        out
    }

    fn dispatch(&self, core: &mut Core, action: Action) {
        match action {
            Action::StartRefresh {
                attempt,
                refresh_token,
            } => core.starts.push(Start {
                attempt,
                refresh_token,
            }),
            Action::CancelRefresh { attempt } => {
                tracing::warn!(
                    attempt = attempt.0,
                    "cancelling the token refresh exchange (past its deadline, or superseded); \
                     no other starts until it has ended"
                );
                core.cancels.push(attempt);
            }
            Action::Persist { generation, token } => {
                self.token_changed(TokenChange::Persist {
                    generation,
                    token: *token,
                });
            }
            Action::Forget => self.token_changed(TokenChange::Forget),
            Action::Grant { request, token } => {
                if let Some(waiter) = core.waiters.remove(&request) {
                    // The receiver may be gone (its future dropped): nothing to do.
                    let _ = waiter.send(Ok(token));
                }
            }
            Action::Reject { request, error } => {
                if let Some(waiter) = core.waiters.remove(&request) {
                    let _ = waiter.send(Err(error));
                }
            }
        }
    }

    fn token_changed(&self, change: TokenChange) {
        let Some(callback) = &self.on_change else {
            return;
        };
        let persist = matches!(change, TokenChange::Persist { .. });
        if catch_unwind(AssertUnwindSafe(|| callback(change))).is_err() {
            tracing::error!(
                persist,
                "the token-change callback panicked; the change may not be stored"
            );
        }
    }

    /// Publishes the machine's fresh token for the fast path, if it changed.
    fn publish(&self, core: &mut Core) {
        let fresh = if core.driver_stopped {
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
        if unchanged {
            return;
        }
        self.fresh.store(
            fresh
                .as_ref()
                .map(|(token, until)| Arc::new(Fresh::new(token.clone(), *until))),
        );
        core.published = fresh;
    }
}

fn log_backoff(machine: &TokenMachine, attempt: AttemptId) {
    if let Some(until) = machine.backoff_until() {
        let delay = until.saturating_duration_since(machine.now());
        tracing::info!(
            attempt = attempt.0,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "token refresh backing off"
        );
    }
}

#[cfg(test)]
mod tests {
    use silent_refresh::{Config, Secret};

    use super::*;

    fn token(usable_until: Option<Instant>) -> Arc<AccessToken> {
        Arc::new(AccessToken {
            generation: Generation(1),
            secret: Secret::new("at"),
            token_type: "Bearer".to_owned(),
            scope: None,
            usable_until,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_fast_path_reads_the_clock_only_when_a_late_timer_would_matter() {
        let start = now();
        let machine = TokenMachine::new(Config::default(), start, SystemTime::now());
        let shared = Shared::new(machine, None, None);
        let window = start + Duration::from_secs(1);

        // 500 ms between the window and the end of usability: checked on every call.
        let tight = Fresh::new(
            token(Some(window + Duration::from_millis(500))),
            Some(window),
        );
        assert!(tight.check_clock);
        shared.fresh.store(Some(Arc::new(tight)));
        assert!(shared.fresh_token().is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            shared.fresh_token().is_none(),
            "past the window the clock refuses it, whatever the timer does"
        );

        // A roomy margin: the background task's timer withdraws it, no clock read.
        let roomy = Fresh::new(token(Some(window + Duration::from_secs(60))), Some(window));
        assert!(!roomy.check_clock);
        shared.fresh.store(Some(Arc::new(roomy)));
        assert!(shared.fresh_token().is_some());

        // No expiry: until something changes it.
        let forever = Fresh::new(token(None), None);
        assert!(!forever.check_clock);
        shared.fresh.store(Some(Arc::new(forever)));
        tokio::time::advance(Duration::from_secs(86_400)).await;
        assert!(shared.fresh_token().is_some());
    }
}
