//! The handle a program holds: ask it for a token, tell it about a 401, sign in and out.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use silent_refresh::{AccessToken, Config, Credentials, Event, Generation, RequestId, Status};
use silent_refresh_driver::clock::Clock;
use silent_refresh_driver::kernel::{ChangeCallback, Command, TokenChange};
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
        let now = self.kernel.clock().now();
        self.wait_for_token(Some(now.checked_add(limit).unwrap_or(now)))
            .await
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

    /// A request sent with the token of `generation` was rejected (HTTP 401). If that
    /// is the current token, the next [`token`](Self::token) call waits for a new one
    /// (many reports of one generation cause one refresh); an older generation causes
    /// nothing, since the current token is already newer.
    pub fn report_rejected(&self, generation: Generation) {
        self.kernel.command(Command::Rejected(generation));
    }

    /// Signs in with new credentials: replaces the token, forgets any failure, and
    /// releases the calls waiting for a token.
    pub fn sign_in(&self, credentials: Credentials) {
        self.kernel.command(Command::SignIn(credentials));
    }

    /// Signs out: clears the token, fails every waiting call, and reports
    /// [`TokenChange::Forget`] so the program deletes its stored token.
    pub fn sign_out(&self) {
        self.kernel.command(Command::SignOut);
    }

    /// Where the source stands with the credentials. Like every getter it reads a
    /// published snapshot: no lock, so it is safe anywhere, also inside the
    /// token-change callback.
    #[must_use]
    pub fn status(&self) -> Status {
        self.kernel.snapshot().status.clone()
    }

    /// The generation of the newest token (0 before the first).
    #[must_use]
    pub fn generation(&self) -> Generation {
        self.kernel.snapshot().generation
    }

    /// Whether the current token is known to be stored (always `true` without a store
    /// once the token-change callback returned; `false` with no token, or while its save
    /// is pending or failing: a restart now would lose the session).
    #[must_use]
    pub fn is_durable(&self) -> bool {
        self.kernel.snapshot().durable
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

    /// How many [`token`](Self::token) calls are waiting.
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.kernel.snapshot().waiting
    }

    /// The token endpoint, as the refresher gave it.
    pub(crate) fn token_endpoint(&self) -> Option<&str> {
        self.alive.token_endpoint.as_deref()
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No lock here: Debug may run anywhere, even inside the callback.
        let snapshot = self.kernel.snapshot();
        f.debug_struct("TokenSource")
            .field("status", &snapshot.status)
            .field("generation", &snapshot.generation)
            .field("waiting", &snapshot.waiting)
            .field("token_endpoint", &self.alive.token_endpoint)
            .finish_non_exhaustive()
    }
}

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
    /// The credentials to start with. Without them, [`TokenSource::token`] calls wait
    /// (until their deadline) for [`TokenSource::sign_in`].
    #[must_use]
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

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

    /// The URL of the token endpoint, for a refresher that cannot name it itself (a
    /// closure): the send helpers never attach the access token to a request for it.
    /// Overrides what the refresher says.
    #[must_use]
    pub fn token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.token_endpoint = Some(Arc::from(url.into()));
        self
    }

    /// Keep the session in `store` (a [`FileStore`](crate::FileStore), or your own):
    /// its session is loaded at start and wins over [`credentials`](Self::credentials)
    /// when it holds one; every new token is saved to it (compare-and-swap: a newer
    /// token saved by another process is adopted, not overwritten); the source signs
    /// out of it on [`TokenSource::sign_out`]. Store calls run on tokio's blocking pool,
    /// never on a runtime worker. A failed save is retried and reported (see
    /// [`TokenSource::is_durable`]).
    #[must_use]
    pub fn store(mut self, store: impl TokenStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Read time from `clock` instead of tokio's clock and the system's wall clock
    /// (tests of suspends and wall-clock jumps).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Called with each [`TokenChange`], synchronously and in order, before any request
    /// gets the new token: store the rotated refresh credential here.
    #[must_use]
    pub fn on_token_change(
        mut self,
        callback: impl Fn(TokenChange) + Send + Sync + 'static,
    ) -> Self {
        self.on_change = Some(Box::new(callback));
        self
    }
}

impl<R: Refresher> TokenSourceBuilder<R> {
    /// Builds the source and spawns its background task on the current tokio runtime.
    ///
    /// Signing in with the credentials may already report a
    /// [`TokenChange::Persist`] to the callback.
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
            // No receiver is fine: nobody subscribed.
            let _ = sender.send(event.clone());
        });
        kernel.start(self.credentials);
        let token_endpoint = self
            .token_endpoint
            .or_else(|| self.refresher.token_endpoint().map(Arc::from));
        let (shutdown, on_shutdown) = oneshot::channel();
        runtime.spawn(driver::run(
            kernel.clone(),
            wake,
            self.refresher,
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
