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

use std::panic::{AssertUnwindSafe, catch_unwind};

use silent_refresh::{
    AttemptId, Credentials, Expiry, KeyId, Persisted, RefreshFailure, Secret, Token,
};

use super::io::{Command, LOAD_RETRY_MAX, Load, LoadRetry, Prepared, Save, StoreIo, Waiter};
use super::keys::{placeholder, split, usable};
use super::settle::{apply, later};
use super::state::Kernel;
use crate::Error;
use crate::store::{Saved, TokenStore};

/// Whether a stored token still holds a session: a refresh credential, or an access
/// token whose wall-clock expiry has not passed.
fn holds_a_session(token: &Token, wall_now: silent_refresh::time::SystemTime) -> bool {
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
        // However it ends: one less piece of store I/O running (`Snapshot::store_idle`).
        let _done = StoreIoDone(self);
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
            key,
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
            Ok(Ok(Saved::Conflict(newer))) => {
                self.stored(&newer);
                Persisted::Conflict(newer)
            }
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
                release = core.locks.saved(id, lock, (key, generation), stored);
            }
            // Another process saved a newer session: the key takes its own token from
            // it (or, with none there, only its credential); the session hands the
            // credential to every other key.
            let outcome = match outcome {
                Persisted::Conflict(newer) => {
                    core.keys.read(&newer);
                    let name = &core.keys.get(key).name;
                    let own = split(&newer, name).unwrap_or_else(|| {
                        let mut token = placeholder();
                        token.refresh_token.clone_from(&newer.refresh_token);
                        token.dpop_key.clone_from(&newer.dpop_key);
                        token
                    });
                    Persisted::Conflict(Box::new(own))
                }
                outcome => outcome,
            };
            core.session.handle_persisted(now, key, generation, outcome);
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
        let mut record = None;
        let (credentials, seed) = match loaded {
            Ok(Some(token)) if holds_a_session(&token, self.clock.wall()) => {
                tracing::info!("session loaded from the token store");
                self.stored(&token);
                let default = split(&token, "").unwrap_or_else(placeholder);
                record = Some(token);
                (Some(Credentials::Stored(default)), false)
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
            // Read, and nothing to sign in with: `ready` says so.
            self.settle(|core, _| core.store_read = true);
            return;
        };
        let wall = self.clock.wall();
        self.settle(|core, now| {
            core.store_read = true;
            apply(core, Command::SignIn(credentials), now, wall);
            // Every other key known here takes its own token from the stored session.
            if let Some(record) = &record {
                for (key, token) in core.keys.read(record) {
                    if key != KeyId::DEFAULT {
                        core.session.handle_stored(now, wall, key, token);
                    }
                }
            }
            // The Persist of this sign-in, dispatched right after, is a seed.
            core.seed = seed.then(|| core.session.machine(KeyId::DEFAULT).generation());
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
        self.prepare_exchange_for(KeyId::DEFAULT, attempt, sent)
    }

    /// As [`prepare_exchange`](Self::prepare_exchange), for an exchange of `key`. If
    /// another process rotated the session's credential, `key` adopts its own token
    /// from the store when it is usable; otherwise the exchange is sent with the
    /// store's credential ([`Prepared::ExchangeWith`]).
    pub fn prepare_exchange_for(
        &self,
        key: KeyId,
        attempt: AttemptId,
        sent: Option<&Secret>,
    ) -> Prepared {
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
        let behind = self.lock().awaits_save();
        let wall = self.clock.wall();
        let stored = catch_unwind(AssertUnwindSafe(|| lock.load()));
        let mut newer = None;
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
            Ok(Ok(Some(record)))
                if !behind
                    && sent.is_some()
                    && record.refresh_token.as_ref().map(Secret::expose)
                        != sent.map(Secret::expose)
                    && holds_a_session(&record, wall) =>
            {
                self.stored(&record);
                let own = split(&record, &self.lock().keys.get(key).name);
                let prepared = match (own, record.refresh_token.clone()) {
                    (Some(token), _)
                        if usable(&token, wall)
                            || (key == KeyId::DEFAULT
                                && !token.access_token.expose().is_empty()) =>
                    {
                        Prepared::Adopt(Box::new(token))
                    }
                    (_, Some(credential)) => Prepared::ExchangeWith(credential),
                    (own, None) => Prepared::Adopt(Box::new(own.unwrap_or_else(placeholder))),
                };
                newer = Some(record);
                prepared
            }
            _ => Prepared::Exchange,
        };
        let mut core = self.lock();
        // Its result came while it waited for the lock (cancelled, or the source shut
        // down): nothing goes on the wire.
        let ended = core.session.refresh_in_flight() != Some((key, attempt));
        let go = !ended && !matches!(prepared, Prepared::Failed(_));
        let unused = match kept {
            // A lock kept for an unsaved token stays kept for it.
            Some(id) => core.locks.give_back(id, lock, go.then_some((key, attempt))),
            None if go => {
                core.locks.insert((key, attempt), lock);
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
        // The store's session is newer than this one: its tokens are the keys' newest.
        if let Some(record) = &newer {
            core.keys.read(record);
        }
        match &prepared {
            Prepared::Adopt(token) => {
                tracing::info!(
                    "another process refreshed already: adopting its token from the store"
                );
                // Fed back through `exchange_result`: that token is the store's already,
                // not one to save again.
                core.adopting = Some(token.access_token.clone());
            }
            Prepared::ExchangeWith(credential) => {
                tracing::info!(
                    "another process rotated the refresh token: refreshing with the store's"
                );
                core.sent_with = Some(((key, attempt), credential.clone()));
            }
            _ => {}
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

/// Counts a piece of store I/O as finished when dropped, also when it panicked.
struct StoreIoDone<'a, W: Waiter>(&'a Kernel<W>);

impl<W: Waiter> Drop for StoreIoDone<'_, W> {
    fn drop(&mut self) {
        self.0.settle(|core, _| {
            core.store_running = core.store_running.saturating_sub(1);
        });
    }
}
