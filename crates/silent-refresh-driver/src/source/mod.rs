//! The token source, written once for every runtime: the handle a program holds, its
//! builder, and the error its calls return.
//!
//! An adapter names it with its runtime (`silent_refresh_tokio::TokenSource` is
//! `TokenSource<Tokio>`, `silent_refresh_ureq::TokenSource` is `TokenSource<Threads>`).
//! Where a call waits, the runtime's [`Caller::Wait`] decides how: an async runtime
//! returns a future to `.await`, a blocking one blocks the calling thread.

mod bearer;
mod builder;
mod wait;

use silent_refresh::time::Instant;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use silent_refresh::{AccessToken, Credentials, Generation, KeyId, Status};
use silent_refresh_oauth2::Target;

use crate::Error;
use crate::kernel::{Command, Kernel, KeySlot, SETTLE_POLL, Snapshot};
use crate::runtime::Caller;
use crate::wake::Doorbell;

#[cfg(feature = "http")]
pub(crate) use self::bearer::bearer_session;
#[cfg(any(feature = "tokio", all(feature = "wasm", target_arch = "wasm32")))]
pub(crate) use self::bearer::bearer_source;
pub use self::builder::TokenSourceBuilder;
pub use self::wait::Answer;

use self::wait::{Answering, Deadline, Signal, first_of};

/// A source of fresh access tokens, driven by one [`Driver`](crate::driver::Driver) on
/// the runtime `Rt`.
///
/// Cheap to clone: every clone shares one token, one refresh at a time, and one driver,
/// which ends when the last clone is dropped (once an exchange on the wire has ended).
///
/// - [`token`](Self::token) hands out the current token at once while it is fresh: an
///   atomic load, no lock, no clock read (the driver withdraws it before its refresh
///   window opens, and at least a second before it stops being usable). Otherwise the
///   call waits for the shared refresh, a sign-in, or its deadline. On an async runtime
///   it returns a future (cancel-safe: dropping it removes its waiting entry); on a
///   blocking one it blocks the calling thread.
/// - [`report_rejected`](Self::report_rejected) after a 401.
/// - [`sign_in`](Self::sign_in) and [`sign_out`](Self::sign_out).
/// - Before the program exits: [`shutdown`](Self::shutdown).
///
/// Refreshes run proactively before the token expires, even when no request comes,
/// with backoff after failures. Getters read a published snapshot: no lock, so they are
/// safe anywhere, also inside the token-change callback.
pub struct TokenSource<Rt: Caller> {
    kernel: Arc<Kernel<Answer>>,
    runtime: Rt,
    /// The key of the session whose token this handle hands out (rule 13).
    key: KeyId,
    /// That key's fast path.
    slot: Arc<KeySlot>,
    /// Shared by the clones: the driver ends when the last one drops.
    alive: Arc<Alive>,
}

/// Held by every clone: its drop (the last clone's) tells the driver to end.
struct Alive {
    bell: Arc<Doorbell>,
    token_endpoint: Option<Arc<str>>,
    /// The refresher asks for the target it is given ([`TokenSource::for_target`]).
    supports_targets: bool,
    /// The session's DPoP state, when its refresher proves its exchanges.
    #[cfg(feature = "dpop")]
    dpop: Option<silent_refresh_oauth2::dpop::DpopSession>,
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.bell.close();
    }
}

impl<Rt: Caller> Clone for TokenSource<Rt> {
    fn clone(&self) -> Self {
        Self {
            kernel: self.kernel.clone(),
            runtime: self.runtime.clone(),
            key: self.key,
            slot: self.slot.clone(),
            alive: self.alive.clone(),
        }
    }
}

impl<Rt: Caller> TokenSource<Rt> {
    /// The access token to send now.
    ///
    /// While the current token is fresh this answers at once, from a published
    /// snapshot: no lock, no task hop, and no clock read. Otherwise the call enters the
    /// token machine and waits: for the refresh in flight (one for all callers), a
    /// sign-in, or its deadline (the configuration's `request_timeout`). It fails with a
    /// clear error when the credentials are dead, the source is signed out, the deadline
    /// passes, or too many calls wait.
    ///
    /// On an async runtime it returns a future, cancel-safe: dropping it removes its
    /// waiting entry, and the shared refresh goes on for the others. On a blocking one
    /// it blocks the calling thread (never busy-waiting).
    ///
    /// # Errors
    ///
    /// The core's reason ([`Error::Token`]), the driver gone ([`Error::DriverStopped`]),
    /// or a call from inside the token-change callback ([`Error::Reentrant`]).
    #[inline(always)]
    pub fn token(&self) -> Rt::Wait<impl Future<Output = Result<Arc<AccessToken>, Error>> + '_> {
        self.runtime.wait(self.answer(Deadline::Default))
    }

    /// As [`token`](Self::token), but a call that has to wait gives up after `limit`
    /// (instead of the configuration's `request_timeout`) with
    /// [`silent_refresh::Error::DeadlineExceeded`].
    ///
    /// # Errors
    ///
    /// As [`token`](Self::token).
    pub fn token_within(
        &self,
        limit: Duration,
    ) -> Rt::Wait<impl Future<Output = Result<Arc<AccessToken>, Error>> + '_> {
        self.runtime.wait(self.answer(Deadline::Within(limit)))
    }

    /// As [`token`](Self::token), but a call that has to wait gives up at `deadline`
    /// (read on the source's clock: the runtime's, unless the builder was given
    /// another).
    ///
    /// # Errors
    ///
    /// As [`token`](Self::token).
    pub fn token_before(
        &self,
        deadline: Instant,
    ) -> Rt::Wait<impl Future<Output = Result<Arc<AccessToken>, Error>> + '_> {
        self.runtime.wait(self.answer(Deadline::At(deadline)))
    }

    /// The fast path, checked before any future is made: the future of a fresh token
    /// holds only the token; a wait for the machine's answer is boxed (a caller that
    /// waits can afford an allocation).
    #[inline(always)]
    fn answer(
        &self,
        deadline: Deadline,
    ) -> impl Future<Output = Result<Arc<AccessToken>, Error>> + '_ {
        match self.slot.token(self.kernel.clock()) {
            Some(token) => Answering::Fresh(Some(token)),
            None => self.wait(deadline),
        }
    }

    /// The wait for the machine's answer, out of the fast path's way.
    #[cold]
    #[inline(never)]
    fn wait(
        &self,
        deadline: Deadline,
    ) -> Answering<impl Future<Output = Result<Arc<AccessToken>, Error>> + '_> {
        Answering::Waiting(Box::pin(async move {
            let deadline = deadline.at(self.kernel.clock());
            wait::wait_for_token(&self.kernel, &self.runtime, self.key, deadline).await
        }))
    }

    /// Prepares the program's exit: starts no refresh exchange from now on, and waits,
    /// at most `limit` (on the runtime's time), for the exchange on the wire (if any)
    /// to end and for the current token to be saved; `true` once nothing is left that
    /// exiting would lose. An exchange cut short by the exit is lost with its answer:
    /// the server has spent the refresh credential sent, the store still holds it, and
    /// the next start presents it again (a server with reuse detection then revokes
    /// the session). Tokens still usable are still granted; no new one will come.
    #[must_use]
    pub fn shutdown(&self, limit: Duration) -> Rt::Wait<impl Future<Output = bool> + '_> {
        self.runtime.wait(async move {
            self.kernel.close();
            let events = Signal::subscribe(&self.kernel);
            let mut deadline = self.runtime.sleep(limit);
            loop {
                if self.kernel.settled() {
                    return true;
                }
                // Any event is a reason to look again; so is a short while (a queued
                // save ends without an event).
                let mut poll = self.runtime.sleep(SETTLE_POLL);
                if first_of(&events, &mut poll, &mut deadline).await {
                    return self.kernel.settled();
                }
            }
        })
    }

    /// Waits until the current token is stored ([`is_durable`](Self::is_durable)), for
    /// at most `limit` (on the runtime's time); `true` if it is. A save still queued
    /// when the program exits is lost, and with a rotating refresh token the next start
    /// would present a spent one: [`shutdown`](Self::shutdown) waits for it too.
    ///
    /// After a sign-in ([`sign_in`](Self::sign_in), or a sign-in flow of
    /// [`signin`](crate::signin)) this is how a program knows the new session is
    /// saved, so that the next start finds it.
    #[must_use]
    pub fn until_durable(&self, limit: Duration) -> Rt::Wait<impl Future<Output = bool> + '_> {
        self.runtime.wait(async move {
            let durable = |snapshot: &Snapshot| snapshot.durable.then_some(());
            wait::until(&self.kernel, &self.runtime, limit, durable)
                .await
                .is_some()
        })
    }

    /// Waits until the source knows whether it holds a session, and says where it
    /// stands: [`Status::SignedIn`] when the store given to the builder held one (or
    /// credentials were given in code), [`Status::AwaitingSignIn`] when there is none
    /// to continue. Waits at most the configuration's `request_timeout`
    /// ([`ready_within`](Self::ready_within) takes a limit of its own).
    ///
    /// The stored session is read in the background (store calls never run on a
    /// caller's thread), so right after `build()` the status is "awaiting sign-in"
    /// even when the store holds a session: a program that signs in when there is no
    /// session asks `ready` first, or it would sign the user in at every start.
    /// Without a store it answers at once.
    ///
    /// ```
    /// use silent_refresh::Config;
    /// use silent_refresh_driver::store::FileStore;
    /// use silent_refresh_driver::{TokenSource, runtime::threads::Threads};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let source = TokenSource::<Threads>::builder(Config::default())
    ///     .store(FileStore::new(dir.path().join("session.json")))
    ///     .build()?;
    /// // Blocks on threads (`.await` on tokio) until the store has been read.
    /// if !source.ready()?.is_signed_in() {
    ///     // No stored session: sign in (a device code, the browser).
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::StoreNotRead`] when the store could not be read in time (unreachable:
    /// the source keeps trying, and whether a session is stored is not known yet),
    /// [`Error::DriverStopped`] when the driver is gone.
    pub fn ready(&self) -> Rt::Wait<impl Future<Output = Result<Status, Error>> + '_> {
        self.ready_within(self.kernel.request_timeout())
    }

    /// As [`ready`](Self::ready), waiting at most `limit` (on the runtime's time).
    ///
    /// # Errors
    ///
    /// As [`ready`](Self::ready).
    pub fn ready_within(
        &self,
        limit: Duration,
    ) -> Rt::Wait<impl Future<Output = Result<Status, Error>> + '_> {
        self.runtime.wait(self.store_read_within(limit))
    }

    /// [`ready_within`](Self::ready_within)'s wait, to await on any runtime.
    pub(crate) async fn store_read_within(&self, limit: Duration) -> Result<Status, Error> {
        let read = |snapshot: &Snapshot| {
            if snapshot.stopped {
                Some(Err(Error::DriverStopped))
            } else {
                snapshot.store_read.then(|| Ok(snapshot.status.clone()))
            }
        };
        wait::until(&self.kernel, &self.runtime, limit, read)
            .await
            .unwrap_or(Err(Error::StoreNotRead { waited: limit }))
    }

    /// A receiver of everything that happens from now on: refreshes started (with their
    /// trigger), failed (with their class), overdue, tokens adopted, saves, status
    /// changes. No event carries a secret. A receiver more than 64 events behind misses
    /// some (tokio's is told how many; a blocking one misses the newest until it catches
    /// up), never the source's memory.
    #[must_use]
    pub fn subscribe(&self) -> Rt::Events {
        let (listener, events) = self.runtime.subscribe();
        self.kernel.subscribe(listener);
        events
    }
}

impl<Rt: Caller> TokenSource<Rt> {
    /// A request sent with the token of `generation` was rejected (HTTP 401). If that
    /// is the current token, the next `token` call waits for a new one (many reports of
    /// one generation cause one refresh); an older generation causes nothing, since the
    /// current token is already newer.
    pub fn report_rejected(&self, generation: Generation) {
        let command = if self.key == KeyId::DEFAULT {
            Command::Rejected(generation)
        } else {
            Command::KeyRejected {
                key: self.key,
                generation,
            }
        };
        self.kernel.command(command);
    }

    /// Signs in with new credentials: replaces the token, forgets any failure, and
    /// releases the calls waiting for a token. An exchange on the wire is cancelled and
    /// its answer dropped. With a store, the new token is handed to it before any call
    /// gets it ([`until_durable`](Self::until_durable) says when it is stored).
    ///
    /// A program that signs its user in only when no session is stored asks
    /// [`ready`](Self::ready) first (the store is read in the background). The flows of
    /// [`signin`](crate::signin) (the device flow, the browser) end with this call.
    pub fn sign_in(&self, credentials: Credentials) {
        self.kernel.command(Command::SignIn(credentials));
    }

    /// Signs out: clears the token, fails every waiting call, and reports
    /// [`TokenChange::Forget`](crate::kernel::TokenChange::Forget) so the program deletes
    /// its stored token (a store given to the builder forgets it by itself). Nothing is
    /// revoked at the server: [`Issuer::sign_out`](crate::signin::Issuer::sign_out)
    /// revokes the session there first (RFC 7009).
    pub fn sign_out(&self) {
        self.kernel.command(Command::SignOut);
    }

    /// Where the source stands with the credentials: signed in, misconfigured, the
    /// token endpoint unreachable (backing off), sign-in required, signed out.
    #[must_use]
    pub fn status(&self) -> Status {
        self.kernel.snapshot().status.clone()
    }

    /// Whether the refresh exchange on the wire passed the configuration's
    /// `refresh_timeout`: it runs on until its refresher's own timeout ends it (its
    /// answer may carry the rotated refresh token the server has already issued), no
    /// other exchange starts meanwhile, and callers are answered by their own deadlines.
    /// The events say it too (`Event::RefreshOverdue`).
    #[must_use]
    pub fn refresh_overdue(&self) -> bool {
        self.kernel.snapshot().overdue
    }

    /// The generation of this handle's key's newest token (0 before the first).
    #[must_use]
    pub fn generation(&self) -> Generation {
        let snapshot = self.kernel.snapshot();
        snapshot
            .generations
            .get(usize::from(self.key.0))
            .copied()
            .unwrap_or(snapshot.generation)
    }

    /// Whether the current token is known to be stored (always `true` without a store
    /// once the token-change callback returned; `false` with no token, or while its
    /// save is pending or failing: a restart now would lose the session).
    #[must_use]
    pub fn is_durable(&self) -> bool {
        self.kernel.snapshot().durable
    }

    /// How many calls are waiting for a token.
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.kernel.snapshot().waiting
    }

    /// The session's DPoP state (feature `dpop`), when its refresher proves its
    /// exchanges: the integrations prove each request with a bound token with it.
    #[cfg(feature = "dpop")]
    #[must_use]
    pub fn dpop(&self) -> Option<&silent_refresh_oauth2::dpop::DpopSession> {
        self.alive.dpop.as_ref()
    }

    /// The token endpoint, as the builder or the refresher named it: the send helpers
    /// never attach the access token to a request for it.
    #[must_use]
    pub fn token_endpoint(&self) -> Option<&str> {
        self.alive.token_endpoint.as_deref()
    }
}

impl<Rt: Caller> TokenSource<Rt> {
    /// A handle of the same session whose tokens are for `target` (rule 13): an API
    /// named by a resource indicator (RFC 8707) or an audience, or a narrower scope.
    /// It shares everything with this one (the sign-in, the refresh credential, the
    /// store, the driver) but its access token, which it gets, refreshes and stores
    /// under `target`'s name; it is only ever handed its own. The same target gives
    /// the same key (and the default target this session's own token). Every exchange
    /// of the session's keys goes on the wire one at a time, and a rotation by any of
    /// them is every key's.
    ///
    /// ```
    /// # fn demo(source: silent_refresh_driver::TokenSource<silent_refresh_driver::runtime::threads::Threads>)
    /// #     -> Result<(), silent_refresh_driver::Error> {
    /// use silent_refresh_oauth2::Target;
    ///
    /// let orders = source.for_target(Target::resource("https://orders.example.com/"))?;
    /// let billing = source.for_target(Target::audience("billing").scope("billing:read"))?;
    /// # let _ = (orders, billing);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::TargetsUnsupported`] when the source's refresher cannot ask for a
    /// target (only an OAuth 2.0 refresher can); [`Error::DriverStopped`] when the
    /// driver is gone; [`Error::Reentrant`] from inside the token-change callback.
    pub fn for_target(&self, target: Target) -> Result<Self, Error> {
        if !target.is_default() && !self.alive.supports_targets {
            return Err(Error::TargetsUnsupported {
                target: target.name(),
            });
        }
        let (key, slot) = self.kernel.register(target).map_err(Error::from)?;
        Ok(Self {
            kernel: self.kernel.clone(),
            runtime: self.runtime.clone(),
            key,
            slot,
            alive: self.alive.clone(),
        })
    }

    /// The key of the session this handle's tokens are for ([`KeyId::DEFAULT`] unless
    /// it came from [`for_target`](Self::for_target)).
    #[must_use]
    pub fn key(&self) -> KeyId {
        self.key
    }

    /// The kernel, for the sign-in flows.
    pub(crate) fn kernel(&self) -> &Arc<Kernel<Answer>> {
        &self.kernel
    }

    /// The runtime, for the sign-in flows.
    pub(crate) fn runtime(&self) -> &Rt {
        &self.runtime
    }

    /// Waits, at most `limit`, until no store I/O is queued or running (a sign-out's
    /// forget has run); whether none is. (Not on wasm32, which has no sign-out yet.)
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) async fn store_idle_within(&self, limit: Duration) -> bool {
        let idle = |snapshot: &Snapshot| snapshot.store_idle.then_some(());
        wait::until(&self.kernel, &self.runtime, limit, idle)
            .await
            .is_some()
    }
}

impl<Rt: Caller> fmt::Debug for TokenSource<Rt> {
    /// No lock: it never blocks, also inside the token-change callback.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.kernel.snapshot();
        f.debug_struct("TokenSource")
            .field("status", &snapshot.status)
            .field("key", &self.key.0)
            .field("generation", &snapshot.generation)
            .field("waiting", &snapshot.waiting)
            .field("refresh_overdue", &snapshot.overdue)
            .field("token_endpoint", &self.alive.token_endpoint)
            .finish_non_exhaustive()
    }
}
