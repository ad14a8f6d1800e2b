//! Settle and publish: every input goes through one loop under the kernel's lock, and
//! leaves the machine drained, the callers answered, the snapshots published and the
//! driver woken if it has new work.

use silent_refresh::time::{Instant, SystemTime};
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Duration;

use silent_refresh::{Action, Event, Persisted};

use super::fast::Fresh;
use super::io::{Command, NoToken, Start, StoreIo, TokenChange, Waiter};
use super::log::log;
use super::state::{Core, Kernel, WALL_CLOCK_CHECK};
use super::wire::Wire;

thread_local! {
    /// The kernels this thread holds locked (by address), innermost last, each with the
    /// commands its token-change callback issued: applied once the callback returns,
    /// instead of deadlocking on the lock.
    pub(super) static HELD: RefCell<Vec<(usize, Vec<Command>)>> = const { RefCell::new(Vec::new()) };
}

/// Pops this thread's `HELD` entry, also when something panics.
struct Held;

impl Drop for Held {
    fn drop(&mut self) {
        HELD.with(|held| held.borrow_mut().pop());
    }
}

/// Applies a command to the machine. New credentials supersede the exchange on the
/// wire: its result will be dropped, so the driver may cancel it.
pub(super) fn apply<W>(core: &mut Core<W>, command: Command, now: Instant, wall: SystemTime) {
    match command {
        Command::SignIn(credentials) => {
            core.machine.handle_sign_in(now, wall, credentials);
            if let Some(wire) = core.wire.as_mut() {
                wire.supersede();
            }
        }
        Command::SignOut => {
            core.machine.handle_sign_out(now);
            if let Some(wire) = core.wire.as_mut() {
                wire.supersede();
            }
        }
        Command::Rejected(generation) => core.machine.handle_rejected(now, generation),
    }
}

/// `now + d`, saturating.
pub(super) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

impl<W: Waiter> Kernel<W> {
    pub(super) fn lock(&self) -> MutexGuard<'_, Core<W>> {
        // A panic under the lock leaves the machine consistent: its inputs are atomic,
        // and undrained actions stay queued.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn key(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    pub(super) fn held_by_this_thread(&self) -> bool {
        let key = self.key();
        HELD.with(|held| held.borrow().iter().any(|(k, _)| *k == key))
    }

    /// Runs `input` on the core at the clock's now, then settles: drains actions and
    /// events, applies the commands the callback issued, hands the lock of a finished
    /// exchange on, publishes the snapshots, answers the callers, tells the
    /// subscribers, and wakes the driver if it has new work.
    pub(super) fn settle<T>(&self, input: impl FnOnce(&mut Core<W>, Instant) -> T) -> T {
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
                if let (Event::RefreshOverdue { attempt }, Some(wire)) = (&event, &mut core.wire)
                    && wire.attempt() == *attempt
                {
                    wire.mark_overdue();
                }
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
                apply(&mut core, command, now, wall);
            }
        }
        // The result fed is in: a lock its save did not take is released, by the
        // driver's store I/O (never here: this may be an async worker).
        if let Some(attempt) = core.feeding.take() {
            let core = &mut *core;
            core.locks.exchange_over(attempt, &mut core.store_io);
        }
        core.from_store = false;
        let now = core.machine.now();
        if let Some(wire) = core.wire.as_mut()
            && let Some(attempt) = wire.due_cancel(now)
        {
            core.cancels.push(attempt);
        }
        let changed = self.publish(&mut core);
        // After publishing: a caller woken by its outcome, or a subscriber by an event,
        // reads getters that show it.
        for (waiter, outcome) in std::mem::take(&mut core.answered) {
            waiter.resolve(outcome);
        }
        for event in &events {
            core.listeners.retain(|listener| listener(event));
        }
        if changed {
            core.watchers.retain(|watcher| watcher());
        }
        // While signed in, the wall clock is read every few seconds, so a suspend is
        // noticed whether the token is on the fast path, in its window, or refreshing.
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
            } => {
                let now = core.machine.now();
                core.wire = Some(Wire::new(attempt, later(now, self.exchange_limit)));
                core.starts.push(Start {
                    attempt,
                    refresh_token,
                });
            }
            // Rule 8: an exchange past its deadline is not thrown away while its answer
            // can still come; `Wire` decides what the driver cancels.
            Action::CancelRefresh { attempt } => {
                tracing::debug!(
                    attempt = attempt.0,
                    "the machine asks to cancel an exchange"
                );
            }
            Action::Persist {
                generation,
                token,
                from,
            } => {
                let called = self.changed(TokenChange::Persist {
                    generation,
                    token: (*token).clone(),
                });
                let now = self.clock.now();
                if !called {
                    let failure = "the token-change callback panicked".to_owned();
                    core.machine
                        .handle_persisted(now, generation, Persisted::Failed(failure));
                } else if core.from_store {
                    // The store holds this token already (another process saved it):
                    // saving it again could only fail, and a failure would make this
                    // source believe the store is behind it.
                    core.machine
                        .handle_persisted(now, generation, Persisted::Stored);
                } else if self.store.is_some() {
                    let only_if_empty = from.is_none() && core.seed == Some(generation);
                    let feeding = core.feeding;
                    let save = core.locks.save_under(
                        feeding,
                        generation,
                        *token,
                        from,
                        only_if_empty,
                        &mut core.store_io,
                    );
                    core.store_io.push(StoreIo::Save(save));
                } else {
                    // No store: the callback is the store, and it returned.
                    let now = self.clock.now();
                    core.machine
                        .handle_persisted(now, generation, Persisted::Stored);
                }
            }
            Action::Forget => {
                core.locks.release_unsaved(&mut core.store_io);
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

    /// Publishes the fast path's token (if it changed) and the getters' snapshot;
    /// whether the snapshot changed.
    fn publish(&self, core: &mut Core<W>) -> bool {
        let now = core.machine.now();
        let fresh = if core.stopped {
            None
        } else {
            core.machine
                .fresh_token()
                .and_then(|(token, until)| Fresh::window(token, until, now))
        };
        let unchanged = match (&core.published, &fresh) {
            (None, None) => true,
            (Some((old, old_until)), Some((new, new_until))) => {
                Arc::ptr_eq(old, new) && old_until == new_until
            }
            _ => false,
        };
        if !unchanged {
            let fresh_now = fresh
                .as_ref()
                .map(|(token, until)| Fresh::new(token.clone(), *until, self.clock.jumps()));
            match fresh_now {
                Some(fresh) if fresh.check_clock() => {
                    self.fresh.store(None);
                    self.fresh_checked.store(Some(Arc::new(fresh)));
                }
                Some(fresh) => {
                    self.fresh_checked.store(None);
                    self.fresh.store(Some(fresh.into_token()));
                }
                None => {
                    self.fresh.store(None);
                    self.fresh_checked.store(None);
                }
            }
            core.published = fresh;
        }
        let snapshot = core.snapshot();
        let changed = **self.snapshot.load() != snapshot;
        if changed {
            self.snapshot.store(Arc::new(snapshot));
        }
        changed
    }
}
