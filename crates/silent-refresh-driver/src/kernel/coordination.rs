//! Store coordination: loading the session at start, saving every new token, and the
//! store's lock between processes.
//!
//! The lock never leaves the kernel. [`Kernel::prepare_exchange`] takes it (off the
//! callers and the async workers, as part of the exchange) and keeps it for that
//! attempt; the result of the exchange hands it to the save of the token it brings,
//! which keeps it while the save fails (so no sibling re-reads the credential the token
//! replaced and spends it again; the next exchange goes on under it too) and lets it go
//! once the token is saved. A lock nothing needs any more is released by a
//! [`StoreIo::Release`]: every release, like every other store call, runs in
//! [`Kernel::store_io`], which the driver runs off the async workers (a lease's release
//! is a network call).

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use silent_refresh::{
    AttemptId, Credentials, Expiry, Generation, Persisted, RefreshFailure, Secret, Token,
};

use super::settle::{apply, later};
use super::{Command, Kernel, Waiter};
use crate::Error;
use crate::store::{Saved, StoreLock, TokenStore};

/// The first and the longest pause between loads of an unreachable store.
const LOAD_RETRY_FIRST: Duration = Duration::from_millis(500);
const LOAD_RETRY_MAX: Duration = Duration::from_secs(30);

/// Store I/O for the driver to run off the callers and the async workers (it may
/// block), one at a time and in order: hand each to [`Kernel::store_io`].
#[derive(Debug)]
pub enum StoreIo {
    /// Load the stored session, then sign in with it (or with the credentials given in
    /// code when the store holds no usable session).
    Load(Load),
    /// Save a token.
    Save(Save),
    /// Delete the stored token.
    Forget,
    /// Release a store's lock between processes nothing needs any more.
    Release(LockId),
}

/// A load of the stored session ([`StoreIo::Load`]).
#[derive(Debug)]
pub struct Load {
    /// The credentials given in code, for when the store holds no session.
    credentials: Option<Credentials>,
    /// How long to wait before loading again if the store cannot be reached.
    retry_delay: Duration,
}

impl Load {
    pub(super) fn first(credentials: Option<Credentials>) -> Self {
        Self {
            credentials,
            retry_delay: LOAD_RETRY_FIRST,
        }
    }
}

/// A load of the store to try again (the store was unreachable at start).
pub(super) struct LoadRetry {
    pub(super) at: Instant,
    pub(super) load: Load,
}

/// A token to save in the store ([`StoreIo::Save`]).
pub struct Save {
    generation: Generation,
    token: Token,
    /// The refresh credential it was refreshed from (compare-and-swap).
    from: Option<Secret>,
    /// Saved through this store's lock between processes.
    lock: Option<LockId>,
    /// Save only if the store holds no session ([`TokenStore::save_if_empty`]): the
    /// session signed in from the credentials given in code after the store was found
    /// empty, which must not overwrite a sibling process's.
    only_if_empty: bool,
}

impl fmt::Debug for Save {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Save")
            .field("generation", &self.generation)
            .field("locked", &self.lock.is_some())
            .finish_non_exhaustive()
    }
}

/// A store's lock between processes the kernel holds ([`StoreIo::Release`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockId(u64);

/// What to do before a refresh exchange, decided under the store's lock between
/// processes ([`Kernel::prepare_exchange`]). The lock itself stays in the kernel.
pub enum Prepared {
    /// Run the exchange.
    Exchange,
    /// Another process refreshed already: this token, from the store, is the result;
    /// no exchange is needed.
    Adopt(Box<Token>),
    /// The store's lock could not be taken (or the store read under it): the exchange
    /// fails with this.
    Failed(RefreshFailure),
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prepared::Exchange => f.write_str("Exchange"),
            Prepared::Adopt(..) => f.write_str("Adopt(..)"),
            Prepared::Failed(failure) => write!(f, "Failed({failure})"),
        }
    }
}

/// One lock the kernel holds, and what needs it: it is released once nothing does.
struct Held {
    id: LockId,
    /// `None` while lent to a store call of the kernel (off the kernel's mutex).
    lock: Option<Box<dyn StoreLock>>,
    /// The exchange it was taken for, from before the exchange is sent until its
    /// result is in.
    exchange: Option<AttemptId>,
    /// The generation whose save it is kept for: queued under it, or failed (then no
    /// sibling may re-read the credential the token replaced until it is saved).
    save: Option<Generation>,
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
    fn insert(&mut self, attempt: AttemptId, lock: Box<dyn StoreLock>) {
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
    fn lend(&mut self, id: LockId) -> Option<Box<dyn StoreLock>> {
        let held = self.find(id).filter(|h| !h.releasing)?;
        let lock = held.lock.take()?;
        held.lent = true;
        Some(lock)
    }

    /// Lends the lock kept for an unsaved token, for the next exchange to go on under
    /// (it stays kept for that save too).
    fn lend_unsaved(&mut self) -> Option<(LockId, Box<dyn StoreLock>)> {
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
    fn give_back(
        &mut self,
        id: LockId,
        lock: Box<dyn StoreLock>,
        attempt: Option<AttemptId>,
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
    fn forget(&mut self, id: LockId) {
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
        feeding: Option<AttemptId>,
        generation: Generation,
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
                held.save = Some(generation);
                lock = Some(held.id);
            } else if held.save == Some(generation) && lock.is_none() {
                lock = Some(held.id);
            } else if held.save.is_some() {
                held.save = None;
                if !held.needed() {
                    Self::release(held, store_io);
                }
            }
        }
        Save {
            generation,
            token,
            from,
            lock,
            only_if_empty,
        }
    }

    /// The result of `attempt` is in: its lock is released, unless a save still needs
    /// it.
    pub(super) fn exchange_over(&mut self, attempt: AttemptId, store_io: &mut Vec<StoreIo>) {
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
    fn saved(
        &mut self,
        id: LockId,
        lock: Box<dyn StoreLock>,
        generation: Generation,
        stored: bool,
    ) -> Option<Box<dyn StoreLock>> {
        if let Some(held) = self.find(id)
            && stored
            && held.save == Some(generation)
        {
            held.save = None;
        }
        self.give_back(id, lock, None)
    }

    /// Takes the lock `id` out to be released (`None`: gone, or in use).
    fn take_released(&mut self, id: LockId) -> Option<Box<dyn StoreLock>> {
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
pub(super) fn secrets_match(a: &Secret, b: &Secret) -> bool {
    crate::store::record::secrets_equal(a, b)
}

impl<W: Waiter> Kernel<W> {
    /// Runs one piece of store I/O and feeds its outcome to the machine. It blocks
    /// (file or network I/O): call it off the callers and the async workers.
    pub fn store_io(&self, io: StoreIo) {
        let Some(store) = self.store.clone() else {
            return;
        };
        match io {
            StoreIo::Load(load) => self.load(&*store, load),
            StoreIo::Save(save) => self.save(&*store, save),
            StoreIo::Release(id) => {
                let lock = self.lock().locks.take_released(id);
                // Dropped here, off the kernel's mutex: a lease's release is a call.
                drop(lock);
            }
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

    fn save(&self, store: &dyn TokenStore, save: Save) {
        let Save {
            generation,
            token,
            from,
            lock: id,
            only_if_empty,
        } = save;
        let lock = id.and_then(|id| self.lock().locks.lend(id));
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
        // A token refreshed under the store's lock keeps it until it is saved: released
        // now, a sibling would re-read the store, find the refresh credential this
        // token replaced, and spend it again.
        let stored = !matches!(outcome, Persisted::Failed(_));
        let mut release = None;
        self.settle(|core, now| {
            if let (Some(id), Some(lock)) = (id, lock) {
                release = core.locks.saved(id, lock, generation, stored);
            }
            core.machine.handle_persisted(now, generation, outcome);
        });
        // Released here, off the kernel's mutex.
        drop(release);
    }

    /// Loads the stored session and signs in with it; with the credentials given in
    /// code when the store holds none (saved only if the store is still empty by
    /// then). A store that cannot be reached is loaded again after a pause (doubling):
    /// starting from the credentials given in code instead could spend a refresh
    /// credential the store's session has replaced already. Meanwhile callers wait
    /// for a sign-in, until their deadlines.
    fn load(&self, store: &dyn TokenStore, load: Load) {
        let Load {
            credentials: given,
            retry_delay: delay,
        } = load;
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
                        load: Load {
                            credentials: given,
                            retry_delay: (delay * 2).min(LOAD_RETRY_MAX),
                        },
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
            apply(core, Command::SignIn(credentials), now, wall);
            // The Persist of this sign-in, dispatched right after, is a seed.
            core.seed = seed.then(|| core.machine.generation());
        });
    }

    /// Before the exchange of `attempt`, which would send `sent`. It blocks: run it off
    /// the callers and the async workers, as part of the exchange. With a store that
    /// coordinates processes (a [`FileStore`](crate::store::FileStore), Redis), takes
    /// its lock, waiting at most `refresh_timeout`, and re-reads it: if another process
    /// refreshed since this one last saved, its token is adopted instead of spending
    /// the credential again. So processes sharing a store run one exchange at a time
    /// between them. The lock stays in the kernel until the exchange's token is saved
    /// (or the exchange ends without one).
    pub fn prepare_exchange(&self, attempt: AttemptId, sent: Option<&Secret>) -> Prepared {
        let Some(store) = self.store.as_ref() else {
            return Prepared::Exchange;
        };
        // Still holding the lock because the store is behind: this exchange goes on
        // under it (a lease that expired meanwhile is let go, and a new one taken).
        let lent = self.lock().locks.lend_unsaved();
        let (kept, held) = match lent {
            Some((id, lock)) if lock.still_held() => (Some(id), Some(lock)),
            Some((id, expired)) => {
                self.lock().locks.forget(id);
                drop(expired);
                (None, None)
            }
            None => (None, None),
        };
        let taken = match held {
            Some(lock) => Ok(Ok(Some(lock))),
            None => catch_unwind(AssertUnwindSafe(|| {
                store.lock_for_refresh(self.refresh_timeout)
            })),
        };
        let lock = match taken {
            Ok(Ok(Some(lock))) => lock,
            Ok(Ok(None)) => return Prepared::Exchange,
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
        let prepared = match stored {
            // The store cannot say whether a sibling rotated the credential: it is not
            // sent on a guess.
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
                Prepared::Adopt(Box::new(token))
            }
            _ => Prepared::Exchange,
        };
        let mut core = self.lock();
        // Its result came while it waited for the lock (cancelled, or the source shut
        // down): nothing goes on the wire.
        let ended = core.machine.refresh_in_flight() != Some(attempt);
        let go = !ended && !matches!(prepared, Prepared::Failed(_));
        let unused = match kept {
            // A lock kept for an unsaved token stays kept for it.
            Some(id) => core.locks.give_back(id, lock, go.then_some(attempt)),
            None if go => {
                core.locks.insert(attempt, lock);
                None
            }
            None => Some(lock),
        };
        if !go {
            // A lock this exchange will not use, and nothing else needs: released
            // here, off the async workers like every store call.
            drop(core);
            drop(unused);
            return self.not_sent(prepared, ended);
        }
        if let Prepared::Adopt(token) = &prepared {
            tracing::info!("another process refreshed already: adopting its token from the store");
            // Fed back through `exchange_result`: that token is the store's already,
            // not one to save again.
            core.adopting = Some(token.access_token.clone());
        }
        prepared
    }

    fn not_sent(&self, prepared: Prepared, ended: bool) -> Prepared {
        if ended {
            return Prepared::Failed(RefreshFailure::transient(
                "the exchange ended while it waited for the token store's lock",
            ));
        }
        prepared
    }
}
