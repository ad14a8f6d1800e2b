//! The handle a program holds: ask it for a token, tell it about a 401, sign in and out.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use silent_refresh::{AccessToken, Config, Credentials, Event, RequestId};
use silent_refresh_driver::clock::Clock;
use silent_refresh_driver::kernel::ChangeCallback;
use silent_refresh_driver::observe::Observer;
use silent_refresh_driver::store::TokenStore;
use tokio::sync::{broadcast, oneshot};

use crate::driver;
use crate::error::Error;
use crate::refresher::Refresher;
use crate::runtime::{NotifyWake, OneshotWaiter, TokioKernel, default_clock};

/// How many events a [`TokenSource::subscribe`] receiver may lag behind before it
/// misses the oldest (it is told how many it missed).
const EVENT_BUFFER: usize = 64;

/// A source of fresh access tokens, driven by one background task.
///
/// Cheap to clone (`Send + Sync + 'static`): every clone shares one token, one refresh
/// at a time, and one background task, which ends when the last clone is dropped.
///
/// - [`token`](Self::token) hands out the current token at once while it is fresh,
///   without a lock; otherwise the call waits (cancel-safe) for the shared refresh.
/// - [`report_rejected`](Self::report_rejected) after a 401; or let
///   [`AuthorizedClient`](crate::AuthorizedClient) attach the token and retry for you.
/// - [`sign_in`](Self::sign_in) and [`sign_out`](Self::sign_out).
///
/// Refreshes run proactively before the token expires, even when no request comes,
/// with backoff after failures; see the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct TokenSource {
    kernel: Arc<TokioKernel>,
    /// Shared by the clones; the background task ends when the last one drops.
    alive: Arc<Alive>,
}

/// Held by every clone: its drop (the last clone's) tells the background task to end.
struct Alive {
    _shutdown: oneshot::Sender<()>,
    token_endpoint: Option<Arc<str>>,
    events: broadcast::Sender<Event>,
}

impl TokenSource {
    /// A builder for a source with `config` (the core's; [`Config::default`] has
    /// sensible values).
    pub fn builder(config: Config) -> TokenSourceBuilder<NoRefresher> {
        TokenSourceBuilder {
            config,
            credentials: None,
            refresher: NoRefresher,
            on_change: None,
            clock: None,
            store: None,
            token_endpoint: None,
        }
    }

    /// The access token to send now.
    ///
    /// While the current token is fresh this returns at once: it loads a published
    /// snapshot, with no lock, no task hop, and (unless the token's margin is under a
    /// second) no clock read, since the background task withdraws the snapshot when the
    /// refresh window opens. Otherwise the call enters the token machine and waits: for the refresh in
    /// flight (one for all callers), a sign-in, or its deadline (the configuration's
    /// `request_timeout`). It fails with a clear error when the credentials are dead,
    /// the source is signed out, the deadline passes, or too many calls wait.
    ///
    /// Cancel-safe: dropping the future removes its waiting entry; the shared refresh
    /// goes on for the others.
    ///
    /// # Errors
    ///
    /// [`Error::Token`] with the machine's reason, [`Error::DriverStopped`] if the
    /// background task is gone, [`Error::Reentrant`] from inside the token-change
    /// callback.
    #[inline]
    pub async fn token(&self) -> Result<Arc<AccessToken>, Error> {
        if let Some(token) = self.kernel.fresh_token() {
            return Ok(token);
        }
        self.wait_for_token(None).await
    }

    /// As [`token`](Self::token), but a call that has to wait gives up after `limit`
    /// (instead of the configuration's `request_timeout`) with
    /// [`silent_refresh::Error::DeadlineExceeded`].
    ///
    /// # Errors
    ///
    /// As [`token`](Self::token).
    pub async fn token_within(&self, limit: Duration) -> Result<Arc<AccessToken>, Error> {
        if let Some(token) = self.kernel.fresh_token() {
            return Ok(token);
        }
        let deadline = silent_refresh_driver::source::deadline_in(self.kernel.clock(), limit);
        self.wait_for_token(Some(deadline)).await
    }

    /// As [`token`](Self::token), but a call that has to wait gives up at `deadline`
    /// (read on the source's clock: tokio's, unless the builder was given another).
    ///
    /// # Errors
    ///
    /// As [`token`](Self::token).
    pub async fn token_before(&self, deadline: Instant) -> Result<Arc<AccessToken>, Error> {
        if let Some(token) = self.kernel.fresh_token() {
            return Ok(token);
        }
        self.wait_for_token(Some(deadline)).await
    }

    async fn wait_for_token(&self, deadline: Option<Instant>) -> Result<Arc<AccessToken>, Error> {
        let (sender, outcome) = oneshot::channel();
        let request = self
            .kernel
            .enter(deadline, OneshotWaiter(sender))
            .map_err(Error::from)?;
        let mut guard = CancelOnDrop {
            kernel: &self.kernel,
            request: Some(request),
        };
        let outcome = outcome.await;
        guard.request = None;
        match outcome {
            Ok(outcome) => outcome.map_err(Error::from),
            Err(_closed) => Err(Error::DriverStopped),
        }
    }

    /// A receiver of everything that happens from now on: refreshes started (with their
    /// trigger), failed (with their class), overdue, tokens adopted, status changes.
    /// No event carries a secret. A receiver that lags more than 64 events behind
    /// misses the oldest, and is told so.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.alive.events.subscribe()
    }

    /// Prepares the program's exit: starts no refresh exchange from now on, and waits,
    /// at most `limit`, for the exchange on the wire (if any) to end and for the
    /// current token to be saved; `true` once nothing is left that exiting would lose.
    /// An exchange cut short by the exit is lost with its answer: the server has spent
    /// the refresh credential sent, the store still holds it, and the next start
    /// presents it again (a server with reuse detection then revokes the session).
    /// Tokens still usable are still granted; no new one will come.
    #[must_use]
    pub async fn shutdown(&self, limit: Duration) -> bool {
        self.kernel.close();
        let mut events = self.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.kernel.settled() {
                return true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            // Any event is a reason to look again; so is a short while (a queued save
            // ends without an event).
            let look = deadline.min(now + silent_refresh_driver::kernel::SETTLE_POLL);
            if let Ok(Err(broadcast::error::RecvError::Closed)) =
                tokio::time::timeout_at(look, events.recv()).await
            {
                tokio::time::sleep_until(look).await;
            }
        }
    }

    /// Waits until the current token is stored ([`is_durable`](Self::is_durable)), for
    /// at most `limit`; `true` if it is. Call it before the program exits: a save
    /// still queued when the runtime shuts down is lost, and with a rotating refresh
    /// token the next start would present a spent one.
    pub async fn until_durable(&self, limit: Duration) -> bool {
        let mut events = self.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.is_durable() {
                return true;
            }
            match tokio::time::timeout_at(deadline, events.recv()).await {
                // Any event (or a lag, or the source gone) is a reason to look again.
                Ok(Ok(_) | Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => {
                    return self.is_durable();
                }
            }
        }
    }

    silent_refresh_driver::token_source_getters!();
}

silent_refresh_driver::token_source_debug!(TokenSource);

/// Removes a waiting request from the machine when its future is dropped mid-wait.
struct CancelOnDrop<'a> {
    kernel: &'a TokioKernel,
    request: Option<RequestId>,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(request) = self.request.take() {
            self.kernel.cancel(request);
        }
    }
}

/// The builder's refresher before one is given: [`TokenSourceBuilder::build`] needs a
/// [`Refresher`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRefresher;

/// Builds a [`TokenSource`]: start with [`TokenSource::builder`].
pub struct TokenSourceBuilder<R> {
    config: Config,
    credentials: Option<Credentials>,
    refresher: R,
    on_change: Option<ChangeCallback>,
    clock: Option<Arc<dyn Clock>>,
    store: Option<Arc<dyn TokenStore>>,
    token_endpoint: Option<Arc<str>>,
}

impl<R> TokenSourceBuilder<R> {
    silent_refresh_driver::token_source_settings!();

    /// What runs a refresh: a [`Refresher`], such as an async closure
    /// `|refresh_token: Option<Secret>| async move { … }`.
    pub fn refresher<R2: Refresher>(self, refresher: R2) -> TokenSourceBuilder<R2> {
        TokenSourceBuilder {
            config: self.config,
            credentials: self.credentials,
            refresher,
            on_change: self.on_change,
            clock: self.clock,
            store: self.store,
            token_endpoint: self.token_endpoint,
        }
    }
}

impl<R: Refresher> TokenSourceBuilder<R> {
    /// Builds the source and spawns its background task on the current tokio runtime.
    ///
    /// Signing in with the credentials may already report a
    /// [`TokenChange::Persist`](crate::TokenChange::Persist) to the callback.
    ///
    /// # Errors
    ///
    /// [`Error::NoRuntime`] outside a tokio runtime.
    pub fn build(self) -> Result<TokenSource, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let wake = Arc::new(NotifyWake::default());
        let clock = self.clock.unwrap_or_else(default_clock);
        let kernel = Arc::new(TokioKernel::new(
            self.config,
            clock,
            wake.clone(),
            self.on_change,
            self.store,
        ));
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let sender = events.clone();
        kernel.subscribe(move |event| {
            // No receiver is fine: nobody subscribed (yet).
            let _ = sender.send(event.clone());
            true
        });
        let observer = Observer::attach(&kernel);
        kernel.start(self.credentials);
        let token_endpoint = self
            .token_endpoint
            .or_else(|| self.refresher.token_endpoint().map(Arc::from));
        let (shutdown, on_shutdown) = oneshot::channel();
        runtime.spawn(driver::run(
            kernel.clone(),
            wake,
            self.refresher,
            observer,
            on_shutdown,
        ));
        Ok(TokenSource {
            kernel,
            alive: Arc::new(Alive {
                _shutdown: shutdown,
                token_endpoint,
                events,
            }),
        })
    }
}

impl<R> fmt::Debug for TokenSourceBuilder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSourceBuilder")
            .field("config", &self.config)
            .field("credentials", &self.credentials)
            .field("on_token_change", &self.on_change.is_some())
            .finish_non_exhaustive()
    }
}
