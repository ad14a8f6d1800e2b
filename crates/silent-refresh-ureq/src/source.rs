//! The token source: the handle programs share between threads.

use std::fmt;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use silent_refresh::{AccessToken, Config, Credentials, Event, RefreshFailure, Secret, Token};
use silent_refresh_driver::clock::{Clock, SystemClock};
use silent_refresh_driver::kernel::ChangeCallback;
use silent_refresh_driver::observe::Observer;
use silent_refresh_driver::store::TokenStore;

use crate::error::Error;
use crate::refresher::Refresher;
use silent_refresh_driver::blocking::{
    self, BlockingKernel, BlockingRefresh, Doorbell, Slot, SlotWaiter,
};

/// How long past its own deadline a caller waits for the timer thread before giving up
/// by itself (the timer thread answers at the deadline; this only bounds a late one).
const LATE_TIMER_GRACE: Duration = Duration::from_millis(250);

/// How many events a [`TokenSource::subscribe`] receiver may lag behind; past that the
/// newest are dropped for it (never memory growth, never a blocked source).
const EVENT_BUFFER: usize = 64;

/// Keeps an access token fresh for many threads at once.
///
/// Cheap to clone (`Send + Sync`): every clone shares one token, one refresh at a time,
/// and one timer thread, which ends when the last clone is dropped. Build one with
/// [`TokenSource::builder`].
///
/// - [`token`](Self::token) returns the token at once while it is fresh (one atomic
///   load, no lock, no clock read unless the token's margin is under a second: the
///   timer thread withdraws it when its refresh window opens). Otherwise the call waits
///   on a condition variable until a refresh ends or its deadline passes, and returns
///   the new token or a clear error: no busy-waiting and no sleeping in a loop.
/// - Exactly one refresh exchange runs at a time, on a short-lived thread of its own: a
///   caller never waits for a refresh past its own deadline, and in the default
///   stale-while-refreshing mode a caller inside the refresh window gets the still-valid
///   token at once.
/// - The timer thread refreshes on schedule while the program is idle, and enforces
///   deadlines and backoffs.
/// - A refresher that panics counts as a transient failure; the source keeps working.
#[derive(Clone)]
pub struct TokenSource {
    kernel: Arc<BlockingKernel>,
    alive: Arc<Alive>,
}

/// Held by every clone: its drop (the last clone's) stops the timer thread.
struct Alive {
    bell: Arc<Doorbell>,
    token_endpoint: Option<Arc<str>>,
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.bell.stop();
    }
}

impl TokenSource {
    /// A builder for a source with `config`.
    pub fn builder(config: Config) -> TokenSourceBuilder {
        TokenSourceBuilder {
            config,
            credentials: None,
            refresher: None,
            on_change: None,
            clock: None,
            store: None,
            token_endpoint: None,
        }
    }

    /// The access token to send now: at once while fresh, otherwise after waiting for
    /// the refresh in flight (or a sign-in) until the configuration's
    /// `request_timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Token`] with the machine's reason (sign-in required, misconfigured,
    /// signed out, deadline, overload), [`Error::Reentrant`] from inside the
    /// token-change callback, [`Error::DriverStopped`] if the timer thread is gone.
    pub fn token(&self) -> Result<Arc<AccessToken>, Error> {
        self.token_until(None)
    }

    /// As [`token`](Self::token), but a call that has to wait gives up after `limit`.
    ///
    /// # Errors
    ///
    /// As [`token`](Self::token).
    pub fn token_within(&self, limit: Duration) -> Result<Arc<AccessToken>, Error> {
        let deadline = silent_refresh_driver::source::deadline_in(self.kernel.clock(), limit);
        self.token_until(Some(deadline))
    }

    /// As [`token`](Self::token), but a call that has to wait gives up at `deadline`
    /// (read on the source's clock: the system's, unless the builder was given another).
    ///
    /// # Errors
    ///
    /// As [`token`](Self::token).
    pub fn token_before(&self, deadline: Instant) -> Result<Arc<AccessToken>, Error> {
        self.token_until(Some(deadline))
    }

    fn token_until(&self, deadline: Option<Instant>) -> Result<Arc<AccessToken>, Error> {
        if let Some(token) = self.kernel.fresh_token() {
            return Ok(token);
        }
        let slot = Arc::new(Slot::default());
        let give_up = silent_refresh_driver::source::wait_bound(
            self.kernel.clock(),
            deadline,
            self.kernel.request_timeout(),
            LATE_TIMER_GRACE,
        );
        let request = self
            .kernel
            .enter(deadline, SlotWaiter(slot.clone()))
            .map_err(Error::from)?;
        match slot.wait(give_up) {
            Some(outcome) => outcome.map_err(Error::from),
            None => {
                self.kernel.cancel(request);
                Err(Error::from(blocking::late(&self.kernel)))
            }
        }
    }

    /// A receiver of everything that happens from now on: refreshes started (with their
    /// trigger), failed (with their class), overdue, tokens adopted, status changes.
    /// No event carries a secret. A receiver more than 64 events behind misses the
    /// newest until it catches up.
    #[must_use]
    pub fn subscribe(&self) -> mpsc::Receiver<Event> {
        let (sender, receiver) = mpsc::sync_channel(EVENT_BUFFER);
        self.kernel.subscribe(move |event| {
            // Full: the subscriber's loss, never the source's. Gone: forgotten.
            !matches!(
                sender.try_send(event.clone()),
                Err(mpsc::TrySendError::Disconnected(_))
            )
        });
        receiver
    }

    /// Prepares the program's exit: starts no refresh exchange from now on, and waits,
    /// at most `limit` (real time), for the exchange on the wire (if any) to end and for the
    /// current token to be saved; `true` once nothing is left that exiting would lose.
    /// An exchange cut short by the exit is lost with its answer: the server has spent
    /// the refresh credential sent, the store still holds it, and the next start
    /// presents it again (a server with reuse detection then revokes the session).
    /// Tokens still usable are still granted; no new one will come.
    #[must_use]
    pub fn shutdown(&self, limit: Duration) -> bool {
        self.kernel.close();
        let events = self.subscribe();
        let deadline = Instant::now().checked_add(limit);
        loop {
            if self.kernel.settled() {
                return true;
            }
            let left = deadline.map_or(silent_refresh_driver::kernel::SETTLE_POLL, |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return false;
            }
            // Any event is a reason to look again; so is a short while (a queued save
            // ends without an event).
            let _ = events.recv_timeout(left.min(silent_refresh_driver::kernel::SETTLE_POLL));
        }
    }

    /// Waits until the current token is stored ([`is_durable`](Self::is_durable)), for
    /// at most `limit` (real time); `true` if it is. Call it before the program exits:
    /// the store runs on a thread of its own, and a save still queued at exit is lost,
    /// so that with a rotating refresh token the next start would present a spent one.
    #[must_use]
    pub fn until_durable(&self, limit: Duration) -> bool {
        let events = self.subscribe();
        let deadline = Instant::now().checked_add(limit);
        loop {
            if self.is_durable() {
                return true;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match left {
                Some(left) if left.is_zero() => return false,
                Some(left) => {
                    // Any event is a reason to look again; a timeout ends the wait.
                    if events.recv_timeout(left).is_err() {
                        return self.is_durable();
                    }
                }
                None => {
                    if events.recv().is_err() {
                        return self.is_durable();
                    }
                }
            }
        }
    }

    silent_refresh_driver::token_source_getters!();
}

silent_refresh_driver::token_source_debug!(TokenSource);

/// Builds a [`TokenSource`]: start with [`TokenSource::builder`].
#[must_use]
pub struct TokenSourceBuilder {
    config: Config,
    credentials: Option<Credentials>,
    refresher: Option<Arc<dyn Refresher>>,
    on_change: Option<ChangeCallback>,
    clock: Option<Arc<dyn Clock>>,
    store: Option<Arc<dyn TokenStore>>,
    token_endpoint: Option<Arc<str>>,
}

impl TokenSourceBuilder {
    silent_refresh_driver::token_source_settings!();

    /// What runs a refresh: a [`Refresher`], such as
    /// `|refresh_token: Option<Secret>| -> Result<Token, RefreshFailure> { … }`.
    pub fn refresher(mut self, refresher: impl Refresher) -> Self {
        self.refresher = Some(Arc::new(refresher));
        self
    }

    /// Builds the source and starts its timer thread.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the timer thread cannot be started.
    pub fn build(self) -> Result<TokenSource, Error> {
        let bell = Arc::new(Doorbell::default());
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let kernel = Arc::new(BlockingKernel::new(
            self.config,
            clock,
            bell.clone(),
            self.on_change,
            self.store,
        ));
        let refresher = self
            .refresher
            .unwrap_or_else(|| Arc::new(no_refresher) as Arc<dyn Refresher>);
        let token_endpoint = self
            .token_endpoint
            .or_else(|| refresher.token_endpoint().map(Arc::from));
        let refresh: Arc<BlockingRefresh> = Arc::new(move |rt| refresher.refresh(rt));
        let (thread_kernel, thread_bell) = (kernel.clone(), bell.clone());
        let observer = Observer::attach(&kernel);
        thread::Builder::new()
            .name("silent-refresh-timer".into())
            .spawn(move || blocking::run(&thread_kernel, &refresh, &observer, &thread_bell))
            .map_err(|error| Error::Spawn {
                reason: error.to_string(),
            })?;
        kernel.start(self.credentials);
        Ok(TokenSource {
            kernel,
            alive: Arc::new(Alive {
                bell,
                token_endpoint,
            }),
        })
    }
}

impl fmt::Debug for TokenSourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSourceBuilder")
            .field("config", &self.config)
            .field("has_credentials", &self.credentials.is_some())
            .field("has_refresher", &self.refresher.is_some())
            .finish_non_exhaustive()
    }
}

fn no_refresher(_: Option<Secret>) -> Result<Token, RefreshFailure> {
    Err(RefreshFailure::misconfigured(
        "no refresher configured; give one with `TokenSource::builder(..).refresher(..)`",
    ))
}
