//! The store the processes share, as [`LockKind`](super::LockKind) says it behaves: a
//! file store's flock, or a Redis store's lease with fencing.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use silent_refresh::{Secret, Token};
use silent_refresh_driver::Error as StoreError;
use silent_refresh_driver::clock::{Clock, ManualClock};
use silent_refresh_driver::store::{Saved, StoreLock, TokenStore};

#[derive(Debug)]
pub(super) struct Lease {
    pub(super) id: u64,
    pub(super) owner: usize,
    /// When it expires (`None`: a flock).
    pub(super) expires: Option<Instant>,
    /// Its owner died: dropping its handle does not release it (a Redis lease).
    pub(super) owner_dead: bool,
}

/// One write that landed: what it replaced, what it wrote, whether it was a refresh save.
#[derive(Debug)]
pub(super) struct Write {
    pub(super) writer: usize,
    pub(super) old: Option<String>,
    pub(super) new: Option<String>,
    pub(super) refreshed: bool,
}

#[derive(Debug, Default)]
pub(super) struct StoreState {
    pub(super) token: Option<Token>,
    pub(super) lease: Option<Lease>,
    pub(super) next_lease: u64,
    pub(super) fail_writes: u8,
    pub(super) writes: Vec<Write>,
    pub(super) conflicts: usize,
    /// Saves answered with a conflict by a store older than their `from` (K2).
    pub(super) behind: Vec<String>,
    /// The `from` of saves under a lease that failed (see `checks`).
    pub(super) unsaved_under_lock: Vec<String>,
    /// Locks let go by a live process while their last save had failed (K3).
    pub(super) released_unsaved: usize,
}

/// The (grant, position) a credential's name says (`rt-<grant>-<position>`).
pub(super) fn parse_rank(refresh: &str) -> Option<(usize, usize)> {
    let mut parts = refresh.strip_prefix("rt-")?.split('-');
    let grant = parts.next()?.parse().ok()?;
    let position = parts.next()?.parse().ok()?;
    Some((grant, position))
}

/// The in-memory store the processes share, as [`LockKind`] says it behaves.
pub(super) struct SimStore {
    pub(super) state: Mutex<StoreState>,
    pub(super) clock: ManualClock,
    pub(super) lease_ttl: Option<Duration>,
    /// What the processes did with it, for the run's log.
    pub(super) trail: Mutex<Vec<String>>,
}

impl SimStore {
    pub(super) fn lock(&self) -> MutexGuard<'_, StoreState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `lease` is live now.
    pub(super) fn live(&self, lease: &Lease) -> bool {
        lease.expires.is_none_or(|at| self.clock.now() < at)
    }

    /// The id of the live lease, if any.
    pub(super) fn live_lease(&self) -> Option<(u64, usize)> {
        let state = self.lock();
        state
            .lease
            .as_ref()
            .filter(|l| self.live(l))
            .map(|l| (l.id, l.owner))
    }

    /// Whether `me` could take the lock now: no live lease, or one `me` (its living
    /// incarnation) holds.
    pub(super) fn free_for(&self, me: usize) -> bool {
        let state = self.lock();
        state
            .lease
            .as_ref()
            .filter(|l| self.live(l))
            .is_none_or(|l| l.owner == me && !l.owner_dead)
    }

    /// Notes a save in the trail.
    pub(super) fn note(
        &self,
        me: usize,
        how: &str,
        token: &Token,
        from: Option<&Secret>,
        saved: &Result<Saved, StoreError>,
    ) {
        let name = |s: Option<&Secret>| s.map_or("-", Secret::expose).to_owned();
        let outcome = match saved {
            Ok(Saved::Stored) => "stored".to_owned(),
            Ok(Saved::Conflict(held)) => {
                format!("conflict with {}", name(held.refresh_token.as_ref()))
            }
            Err(error) => format!("failed: {error}"),
        };
        let line = format!(
            "process {me} {how} {} from {}: {outcome}",
            name(token.refresh_token.as_ref()),
            name(from)
        );
        self.trail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }

    /// Whether another process than `me` holds a live lock.
    pub(super) fn held_by_other(&self, state: &StoreState, me: usize) -> bool {
        state
            .lease
            .as_ref()
            .is_some_and(|l| l.owner != me && self.live(l))
    }

    pub(super) fn locked_error(&self) -> StoreError {
        StoreError::StoreLocked {
            path: "sim".to_owned(),
            waited: Duration::ZERO,
        }
    }

    pub(super) fn injected(&self, state: &mut StoreState) -> Option<StoreError> {
        if state.fail_writes == 0 {
            return None;
        }
        state.fail_writes -= 1;
        Some(StoreError::StoreIo {
            action: "written",
            path: "sim".to_owned(),
            source: std::io::Error::other("injected write failure"),
        })
    }

    /// Compare-and-swap, as the file store's; `fenced` (the lease was taken by another)
    /// never writes.
    pub(super) fn cas(
        &self,
        state: &mut StoreState,
        writer: usize,
        token: &Token,
        from: Option<&Secret>,
        fenced: bool,
    ) -> Result<Saved, StoreError> {
        if let Some(error) = self.injected(state) {
            return Err(error);
        }
        let expose = |t: &Token| t.refresh_token.as_ref().map(|s| s.expose().to_owned());
        let conflict = match (from, &state.token) {
            (Some(from), Some(stored)) => {
                let holds = stored
                    .refresh_token
                    .as_ref()
                    .is_some_and(|s| s.expose() == from.expose());
                let same = (stored.refresh_token.is_some()
                    && stored.refresh_token == token.refresh_token)
                    || stored.access_token == token.access_token;
                !holds && !same
            }
            _ => false,
        };
        if conflict {
            state.conflicts += 1;
            // Known bug K2: the store is behind the saver (older than `from`).
            let stored = state.token.as_ref().and_then(expose);
            if let (Some(stored), Some(from)) = (stored.as_deref().and_then(parse_rank), from)
                && parse_rank(from.expose()).is_some_and(|from| stored < from)
            {
                state.behind.push(from.expose().to_owned());
            }
            let stored = state.token.clone();
            return Ok(match stored {
                Some(stored) => Saved::Conflict(Box::new(stored)),
                None => Saved::Stored,
            });
        }
        if fenced {
            return Err(self.locked_error());
        }
        let old = state.token.as_ref().and_then(expose);
        state.writes.push(Write {
            writer,
            old,
            new: expose(token),
            refreshed: from.is_some(),
        });
        state.token = Some(token.clone());
        Ok(Saved::Stored)
    }
}

/// One process's handle on the shared store (the store knows who calls).
pub(super) struct ProcStore {
    pub(super) shared: Arc<SimStore>,
    pub(super) me: usize,
}

impl TokenStore for ProcStore {
    fn load(&self) -> Result<Option<Token>, StoreError> {
        Ok(self.shared.lock().token.clone())
    }

    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, StoreError> {
        let saved = {
            let mut state = self.shared.lock();
            if self.shared.held_by_other(&state, self.me) {
                Err(self.shared.locked_error())
            } else {
                self.shared.cas(&mut state, self.me, token, from, false)
            }
        };
        self.shared.note(self.me, "saves", token, from, &saved);
        saved
    }

    fn forget(&self) -> Result<(), StoreError> {
        let mut state = self.shared.lock();
        if self.shared.held_by_other(&state, self.me) {
            return Err(self.shared.locked_error());
        }
        if let Some(error) = self.shared.injected(&mut state) {
            return Err(error);
        }
        state.token = None;
        Ok(())
    }

    fn lock_for_refresh(
        &self,
        timeout: Duration,
    ) -> Result<Option<Box<dyn StoreLock>>, StoreError> {
        let mut state = self.shared.lock();
        let busy = state.lease.as_ref().is_some_and(|l| self.shared.live(l));
        if busy {
            return Err(StoreError::StoreLocked {
                path: "sim".to_owned(),
                waited: timeout,
            });
        }
        state.next_lease += 1;
        let id = state.next_lease;
        let expires = self
            .shared
            .lease_ttl
            .map(|ttl| self.shared.clock.now() + ttl);
        state.lease = Some(Lease {
            id,
            owner: self.me,
            expires,
            owner_dead: false,
        });
        Ok(Some(Box::new(SimLock {
            shared: self.shared.clone(),
            me: self.me,
            id,
            unsaved: std::sync::atomic::AtomicBool::new(false),
        })))
    }
}

/// A held lock (lease `id`).
pub(super) struct SimLock {
    pub(super) shared: Arc<SimStore>,
    pub(super) me: usize,
    pub(super) id: u64,
    /// Whether the last save under this lock failed (K3 if it is let go so).
    pub(super) unsaved: std::sync::atomic::AtomicBool,
}

impl StoreLock for SimLock {
    fn load(&self) -> Result<Option<Token>, StoreError> {
        Ok(self.shared.lock().token.clone())
    }

    fn still_held(&self) -> bool {
        let state = self.shared.lock();
        state
            .lease
            .as_ref()
            .is_some_and(|l| l.id == self.id && self.shared.live(l))
    }

    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, StoreError> {
        let saved = self.save_under_lock(token, from);
        self.shared
            .note(self.me, "saves under its lock", token, from, &saved);
        saved
    }
}

impl SimLock {
    fn save_under_lock(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, StoreError> {
        let mut state = self.shared.lock();
        // Fenced: another holder took the lease after ours expired.
        let fenced = state.lease.as_ref().is_some_and(|l| l.id != self.id);
        let saved = self.shared.cas(&mut state, self.me, token, from, fenced);
        self.unsaved.store(
            saved.is_err() && !fenced,
            std::sync::atomic::Ordering::Relaxed,
        );
        // K3 (fixed): after a failed save the kernel keeps this lock for the retried
        // save, so no sibling re-reads the spent credential meanwhile. A lease, though,
        // may expire before the retry succeeds (Redis down longer than the lease): then
        // a sibling may spend it again, the limit of any lease (README, "Many
        // processes"). Such credentials are excused, for leases only.
        if saved.is_err()
            && !fenced
            && self.shared.lease_ttl.is_some()
            && let Some(from) = from
        {
            state.unsaved_under_lock.push(from.expose().to_owned());
        }
        saved
    }
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if state
            .lease
            .as_ref()
            .is_some_and(|l| l.id == self.id && !l.owner_dead)
        {
            state.lease = None;
            if self.unsaved.load(std::sync::atomic::Ordering::Relaxed) {
                state.released_unsaved += 1;
            }
        }
    }
}
