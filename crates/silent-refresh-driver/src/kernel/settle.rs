//! Settle and publish: every input goes through one loop under the kernel's lock, and
//! leaves the machine drained, the callers answered, the snapshots published and the
//! driver woken if it has new work.

use silent_refresh::time::{Instant, SystemTime};
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Duration;

use silent_refresh::{Action, Event, KeyId, Persisted};

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
            core.keys.reset();
            core.session.handle_sign_in(now, wall, credentials);
            if let Some(wire) = core.wire.as_mut() {
                wire.supersede();
            }
        }
        Command::SignOut => {
            core.keys.reset();
            core.session.handle_sign_out(now);
            if let Some(wire) = core.wire.as_mut() {
                wire.supersede();
            }
        }
        Command::Rejected(generation) => {
            core.session
                .handle_rejected(now, KeyId::DEFAULT, generation);
        }
        Command::KeyRejected { key, generation } => {
            if usize::from(key.0) < core.session.key_count() {
                core.session.handle_rejected(now, key, generation);
            }
        }
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
            while let Some((key, action)) = core.session.poll_action() {
                self.dispatch(&mut core, key, action);
            }
            while let Some((key, event)) = core.session.poll_event() {
                log(&event, core.session.now(), &mut core.save_failing);
                if let (Event::RefreshOverdue { attempt }, Some(wire)) = (&event, &mut core.wire)
                    && wire.attempt() == (key, *attempt)
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
        core.from_override = None;
        let now = core.session.now();
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
        let signed_in = core.session.status().is_signed_in();
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

    fn dispatch(&self, core: &mut Core<W>, key: KeyId, action: Action) {
        match action {
            Action::StartRefresh {
                attempt,
                refresh_token,
            } => {
                let now = core.session.now();
                core.wire = Some(Wire::new(key, attempt, later(now, self.exchange_limit)));
                core.starts.push(Start {
                    key,
                    target: core.keys.get(key).target.clone(),
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
                // One record for the session: this key's token with every other's.
                let record = core.keys.compose(key, *token);
                // The result being fed was exchanged with the store's newer credential:
                // the store is compared with that one.
                let feeding_this = core.feeding.is_some_and(|(k, _)| k == key);
                let from = match core.from_override.clone() {
                    Some(sent) if feeding_this => Some(sent),
                    _ => from,
                };
                let called = self.changed(TokenChange::Persist {
                    generation,
                    token: record.clone(),
                });
                let now = self.clock.now();
                if !called {
                    let failure = "the token-change callback panicked".to_owned();
                    core.session
                        .handle_persisted(now, key, generation, Persisted::Failed(failure));
                } else if core.from_store && feeding_this {
                    // The store holds this token already (another process saved it):
                    // saving it again could only fail, and a failure would make this
                    // source believe the store is behind it.
                    core.session
                        .handle_persisted(now, key, generation, Persisted::Stored);
                } else if self.store.is_some() {
                    let only_if_empty =
                        from.is_none() && key == KeyId::DEFAULT && core.seed == Some(generation);
                    let feeding = core.feeding;
                    let save = core.locks.save_under(
                        feeding.filter(|(k, _)| *k == key),
                        (key, generation),
                        record,
                        from,
                        only_if_empty,
                        &mut core.store_io,
                    );
                    core.store_io.push(StoreIo::Save(save));
                } else {
                    // No store: the callback is the store, and it returned.
                    let now = self.clock.now();
                    core.session
                        .handle_persisted(now, key, generation, Persisted::Stored);
                }
            }
            // Every key forgets when the session ends: the stored record is forgotten
            // once, for the default key.
            Action::Forget if key != KeyId::DEFAULT => {}
            Action::Forget => {
                core.locks.release_unsaved(&mut core.store_io);
                self.changed(TokenChange::Forget);
                if self.store.is_some() {
                    core.store_io.push(StoreIo::Forget);
                }
            }
            // A waiter of one key is only ever answered with that key's token.
            Action::Grant { request, token } => {
                if let Some(waiter) = core.waiters.remove(&(key, request)) {
                    core.answered.push((waiter, Ok(token)));
                }
            }
            Action::Reject { request, error } => {
                if let Some(waiter) = core.waiters.remove(&(key, request)) {
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
        let now = core.session.now();
        let (session, stopped) = (&core.session, core.stopped);
        for (key, slot) in core.keys.iter_mut() {
            let fresh = if stopped {
                None
            } else {
                session
                    .machine(key)
                    .fresh_token()
                    .and_then(|(token, until)| Fresh::window(token, until, now))
            };
            let unchanged = match (&slot.published, &fresh) {
                (None, None) => true,
                (Some((old, old_until)), Some((new, new_until))) => {
                    Arc::ptr_eq(old, new) && old_until == new_until
                }
                _ => false,
            };
            if !unchanged {
                slot.slot.publish(
                    fresh.as_ref().map(|(token, until)| {
                        Fresh::new(token.clone(), *until, self.clock.jumps())
                    }),
                );
                slot.published = fresh;
            }
        }
        let snapshot = core.snapshot();
        let changed = **self.snapshot.load() != snapshot;
        if changed {
            self.snapshot.store(Arc::new(snapshot));
        }
        changed
    }
}
