//! The store's locks between processes this source holds, and what needs each: they
//! never leave the kernel, and one is released once nothing needs it.

use silent_refresh::{AttemptId, Generation, KeyId, Secret, Token};

/// An exchange: its key and attempt.
pub(super) type Attempt = (KeyId, AttemptId);

/// A token's save: its key and generation.
pub(super) type SaveOf = (KeyId, Generation);

use super::io::{LockId, Save, StoreIo};
use crate::store::StoreLock;

/// One lock the kernel holds, and what needs it: it is released once nothing does.
struct Held {
    id: LockId,
    /// `None` while lent to a store call of the kernel (off the kernel's mutex).
    lock: Option<Box<dyn StoreLock>>,
    /// The exchange it was taken for, from before the exchange is sent until its
    /// result is in.
    exchange: Option<Attempt>,
    /// The generation whose save it is kept for: queued under it, or failed (then no
    /// sibling may re-read the credential the token replaced until it is saved).
    save: Option<SaveOf>,
    /// Lent to a store call.
    lent: bool,
    /// A [`StoreIo::Release`] for it is queued.
    releasing: bool,
}

impl Held {
    fn needed(&self) -> bool {
        self.exchange.is_some() || self.save.is_some() || self.lent
    }
}

/// The store's locks between processes this source holds (one, in practice).
#[derive(Default)]
pub(super) struct Locks {
    held: Vec<Held>,
    next: u64,
}

impl Locks {
    fn find(&mut self, id: LockId) -> Option<&mut Held> {
        self.held.iter_mut().find(|h| h.id == id)
    }

    /// Keeps `lock` for the exchange of `attempt`.
    pub(super) fn insert(&mut self, attempt: Attempt, lock: Box<dyn StoreLock>) {
        self.next += 1;
        self.held.push(Held {
            id: LockId(self.next),
            lock: Some(lock),
            exchange: Some(attempt),
            save: None,
            lent: false,
            releasing: false,
        });
    }

    /// Lends the lock `id` to a store call (`None`: gone, releasing, or lent already).
    pub(super) fn lend(&mut self, id: LockId) -> Option<Box<dyn StoreLock>> {
        let held = self.find(id).filter(|h| !h.releasing)?;
        let lock = held.lock.take()?;
        held.lent = true;
        Some(lock)
    }

    /// Lends the lock kept for an unsaved token, for the next exchange to go on under
    /// (it stays kept for that save too).
    pub(super) fn lend_unsaved(&mut self) -> Option<(LockId, Box<dyn StoreLock>)> {
        let id = self
            .held
            .iter()
            .find(|h| h.save.is_some() && h.exchange.is_none() && !h.releasing)?
            .id;
        Some((id, self.lend(id)?))
    }

    /// Takes a lent lock back; `attempt`: now taken for that exchange too. A lock
    /// nothing needs any more is handed back out, for the caller (a store call) to
    /// drop.
    pub(super) fn give_back(
        &mut self,
        id: LockId,
        lock: Box<dyn StoreLock>,
        attempt: Option<Attempt>,
    ) -> Option<Box<dyn StoreLock>> {
        let Some(held) = self.find(id) else {
            return Some(lock);
        };
        held.lock = Some(lock);
        held.lent = false;
        held.exchange = held.exchange.or(attempt);
        if held.needed() || held.releasing {
            return None;
        }
        let at = self.held.iter().position(|h| h.id == id)?;
        self.held.remove(at).lock
    }

    /// Forgets a lent lock that is no longer held (a lease that expired): the caller
    /// drops it.
    pub(super) fn forget(&mut self, id: LockId) {
        self.held.retain(|h| h.id != id);
    }

    fn release(held: &mut Held, store_io: &mut Vec<StoreIo>) {
        if !held.releasing {
            held.releasing = true;
            store_io.push(StoreIo::Release(held.id));
        }
    }

    /// The save of `generation`'s token: under the lock of the exchange being fed
    /// (`feeding`), or, for a save asked again, under the lock kept for it. A lock kept
    /// for another generation's save protects nothing any more: released, unless an
    /// exchange still needs it.
    pub(super) fn save_under(
        &mut self,
        feeding: Option<Attempt>,
        save: SaveOf,
        token: Token,
        from: Option<Secret>,
        only_if_empty: bool,
        store_io: &mut Vec<StoreIo>,
    ) -> Save {
        let mut lock = None;
        for held in &mut self.held {
            if held.releasing {
                continue;
            }
            if feeding.is_some() && held.exchange == feeding {
                held.exchange = None;
                held.save = Some(save);
                lock = Some(held.id);
            } else if held.save == Some(save) && lock.is_none() {
                lock = Some(held.id);
            } else if held.save.is_some() {
                held.save = None;
                if !held.needed() {
                    Self::release(held, store_io);
                }
            }
        }
        Save {
            key: save.0,
            generation: save.1,
            token,
            from,
            lock,
            only_if_empty,
        }
    }

    /// The result of `attempt` is in: its lock is released, unless a save still needs
    /// it.
    pub(super) fn exchange_over(&mut self, attempt: Attempt, store_io: &mut Vec<StoreIo>) {
        for held in &mut self.held {
            if held.exchange == Some(attempt) {
                held.exchange = None;
                if !held.needed() {
                    Self::release(held, store_io);
                }
            }
        }
    }

    /// Signed out: a lock kept for an unsaved token protects nothing any more.
    pub(super) fn release_unsaved(&mut self, store_io: &mut Vec<StoreIo>) {
        for held in &mut self.held {
            held.save = None;
            if !held.needed() {
                Self::release(held, store_io);
            }
        }
    }

    /// Takes back the lock lent to the save of `generation`, which `stored` or not:
    /// kept for it if the save failed; handed back out (to be dropped by the caller)
    /// once nothing needs it.
    pub(super) fn saved(
        &mut self,
        id: LockId,
        lock: Box<dyn StoreLock>,
        save: SaveOf,
        stored: bool,
    ) -> Option<Box<dyn StoreLock>> {
        if let Some(held) = self.find(id)
            && stored
            && held.save == Some(save)
        {
            held.save = None;
        }
        self.give_back(id, lock, None)
    }

    /// Takes the lock `id` out to be released (`None`: gone, or in use).
    pub(super) fn take_released(&mut self, id: LockId) -> Option<Box<dyn StoreLock>> {
        let at = self.held.iter().position(|h| h.id == id && h.releasing)?;
        let lock = self.held[at].lock.take()?;
        self.held.remove(at);
        Some(lock)
    }

    /// A release is queued or running.
    pub(super) fn releasing(&self) -> bool {
        self.held.iter().any(|h| h.releasing)
    }
}
