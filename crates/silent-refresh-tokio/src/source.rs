//! The handle a program holds: ask it for a token, tell it about a 401, sign in and out.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use silent_refresh::{
    AccessToken, Config, Credentials, Generation, RequestId, Status, TokenMachine,
};
use tokio::sync::oneshot;

use crate::change::TokenChange;
use crate::driver;
use crate::error::Error;
use crate::refresher::Refresher;
use crate::shared::{ChangeCallback, Command, Shared, now};

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
    shared: Arc<Shared>,
    /// Shared by the clones; the background task ends when the last one drops.
    alive: Arc<Alive>,
}

/// Held by every clone: its drop (the last clone's) tells the background task to end.
struct Alive {
    _shutdown: oneshot::Sender<()>,
    token_endpoint: Option<Arc<str>>,
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
        if let Some(token) = self.shared.fresh_token() {
            return Ok(token);
        }
        self.wait_for_token().await
    }

    async fn wait_for_token(&self) -> Result<Arc<AccessToken>, Error> {
        let (request, outcome) = self.shared.enter_request(None)?;
        let mut guard = CancelOnDrop {
            shared: &self.shared,
            request: Some(request),
        };
        let outcome = outcome.await;
        guard.request = None;
        match outcome {
            Ok(outcome) => outcome.map_err(Error::from),
            Err(_closed) => Err(Error::DriverStopped),
        }
    }

    /// A request sent with the token of `generation` was rejected (HTTP 401). If that
    /// is the current token, the next [`token`](Self::token) call waits for a new one
    /// (many reports of one generation cause one refresh); an older generation causes
    /// nothing, since the current token is already newer.
    pub fn report_rejected(&self, generation: Generation) {
        self.shared.command(Command::Rejected(generation));
    }

    /// Signs in with new credentials: replaces the token, forgets any failure, and
    /// releases the calls waiting for a token.
    pub fn sign_in(&self, credentials: Credentials) {
        self.shared
            .command(Command::SignIn(credentials, SystemTime::now()));
    }

    /// Signs out: clears the token, fails every waiting call, and reports
    /// [`TokenChange::Forget`] so the program deletes its stored token.
    pub fn sign_out(&self) {
        self.shared.command(Command::SignOut);
    }

    /// Where the source stands with the credentials.
    ///
    /// # Panics
    ///
    /// If called from this source's token-change callback (the source is locked there;
    /// this would otherwise deadlock). The same holds for the other getters.
    #[must_use]
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// The generation of the newest token (0 before the first). Panics from the
    /// token-change callback, like [`status`](Self::status).
    #[must_use]
    pub fn generation(&self) -> Generation {
        self.shared.generation()
    }

    /// How many [`token`](Self::token) calls are waiting. Panics from the token-change
    /// callback, like [`status`](Self::status).
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.shared.waiting()
    }

    /// The token endpoint, as the refresher gave it.
    pub(crate) fn token_endpoint(&self) -> Option<&str> {
        self.alive.token_endpoint.as_deref()
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No lock here: Debug may run anywhere, even inside the callback.
        f.debug_struct("TokenSource")
            .field("token_endpoint", &self.alive.token_endpoint)
            .finish_non_exhaustive()
    }
}

/// Removes a waiting request from the machine when its future is dropped mid-wait.
struct CancelOnDrop<'a> {
    shared: &'a Shared,
    request: Option<RequestId>,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(request) = self.request.take() {
            self.shared.cancel(request);
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
        }
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
        let machine = TokenMachine::new(self.config, now(), SystemTime::now());
        let shared = Arc::new(Shared::new(machine, self.credentials, self.on_change));
        let token_endpoint = self.refresher.token_endpoint().map(Arc::from);
        let (shutdown, on_shutdown) = oneshot::channel();
        runtime.spawn(driver::run(shared.clone(), self.refresher, on_shutdown));
        Ok(TokenSource {
            shared,
            alive: Arc::new(Alive {
                _shutdown: shutdown,
                token_endpoint,
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
