//! The builder of a [`TokenSource`]: the same settings on every runtime.

use std::fmt;
use std::sync::Arc;

use silent_refresh::{Config, Credentials};

use super::{Alive, TokenSource};
use crate::Error;
use crate::clock::Clock;
use crate::driver::{Driver, Spawn};
use crate::kernel::{ChangeCallback, Kernel, TokenChange};
use crate::observe::Observer;
use crate::runtime::{Caller, Exchanger, NoRefresher, RunsRefresher};
use crate::store::TokenStore;
use crate::wake::Doorbell;

/// Builds a [`TokenSource`]: start with [`TokenSource::builder`]. `R` is the refresher
/// given so far ([`NoRefresher`] until [`refresher`](Self::refresher)).
#[must_use]
pub struct TokenSourceBuilder<Rt, R = NoRefresher> {
    runtime: Rt,
    config: Config,
    credentials: Option<Credentials>,
    refresher: R,
    on_change: Option<ChangeCallback>,
    clock: Option<Arc<dyn Clock>>,
    store: Option<Arc<dyn TokenStore>>,
    token_endpoint: Option<Arc<str>>,
}

impl<Rt: Caller + Default> TokenSource<Rt> {
    /// A builder for a source with `config` (the core's; [`Config::default`] has
    /// sensible values).
    pub fn builder(config: Config) -> TokenSourceBuilder<Rt> {
        TokenSourceBuilder {
            runtime: Rt::default(),
            config,
            credentials: None,
            refresher: NoRefresher,
            on_change: None,
            clock: None,
            store: None,
            token_endpoint: None,
        }
    }
}

impl<Rt: Caller, R> TokenSourceBuilder<Rt, R> {
    /// The credentials to start with. Without them (and without a stored session, or a
    /// refresher that needs no refresh credential), `token` calls wait for
    /// [`TokenSource::sign_in`] until their deadline, then fail with
    /// `silent_refresh::Error::AwaitingSignIn`.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// What runs a refresh: the runtime's refresher (an `async` closure
    /// `|refresh_token: Option<Secret>| async move { … }` on tokio, a blocking closure
    /// `|refresh_token: Option<Secret>| -> Result<Token, RefreshFailure> { … }` on
    /// threads), or the adapter's `OAuth2Refresher`.
    pub fn refresher<R2>(self, refresher: R2) -> TokenSourceBuilder<Rt, R2>
    where
        Rt: RunsRefresher<R2>,
    {
        TokenSourceBuilder {
            runtime: self.runtime,
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
    pub fn token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.token_endpoint = Some(Arc::from(url.into()));
        self
    }

    /// Keep the session in `store` (a [`FileStore`](crate::store::FileStore), or your
    /// own): its session is loaded at start and wins over the credentials given here
    /// when it holds one; every new token is saved to it (compare-and-swap: a newer
    /// token saved by another process is adopted, not overwritten); the source signs
    /// out of it on `sign_out`. Store calls never run on a caller's thread nor on an
    /// async runtime's workers (tokio: its blocking pool; threads: a thread of their
    /// own). A failed save is retried and reported (see [`TokenSource::is_durable`]).
    pub fn store(mut self, store: impl TokenStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Read time from `clock` instead of the runtime's monotonic clock and the
    /// system's wall clock (tests: a [`ManualClock`](crate::clock::ManualClock) moves
    /// only when told to; suspends and wall-clock jumps).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Called with each [`TokenChange`], synchronously and in order, before any caller
    /// gets the new token: store the rotated refresh credential here. It runs with the
    /// source locked: it may call `sign_in`, `sign_out`, `report_rejected` and the
    /// getters, but a `token` call there fails with `Error::Reentrant`.
    pub fn on_token_change(
        mut self,
        callback: impl Fn(TokenChange) + Send + Sync + 'static,
    ) -> Self {
        self.on_change = Some(Box::new(callback));
        self
    }

    /// Builds the source, spawns its driver on the runtime, and starts the session
    /// (from the store, or the credentials).
    ///
    /// Signing in with the credentials may already report a
    /// [`TokenChange::Persist`] to the callback.
    ///
    /// # Errors
    ///
    /// The runtime could not start the driver: no tokio runtime on this thread
    /// ([`Error::NoRuntime`]), or no thread to be had ([`Error::Spawn`]).
    pub fn build(self) -> Result<TokenSource<Rt>, Error>
    where
        Rt: RunsRefresher<R> + Spawn,
    {
        let refresher = Rt::hold(self.refresher);
        let bell = Arc::new(Doorbell::default());
        let clock = self.clock.unwrap_or_else(|| self.runtime.default_clock());
        let kernel = Arc::new(Kernel::new(
            self.config,
            clock,
            bell.clone(),
            self.on_change,
            self.store,
            refresher.exchange_timeout(),
        ));
        #[cfg(feature = "dpop")]
        let dpop = refresher.dpop().cloned();
        #[cfg(feature = "dpop")]
        if let Some(session) = dpop.clone() {
            kernel.on_stored(Box::new(move |token| adopt_key(&session, token)));
        }
        let observer = Observer::attach(&kernel);
        let token_endpoint = self
            .token_endpoint
            .or_else(|| refresher.token_endpoint().map(Arc::from));
        let supports_targets = refresher.supports_targets();
        let authenticates_itself = refresher.authenticates_itself();
        let slot = kernel.default_slot().clone();
        let driver = Driver::new(
            kernel.clone(),
            self.runtime.clone(),
            refresher,
            bell.clone(),
            observer,
        );
        Spawn::spawn(&self.runtime, driver)?;
        // A grant that needs no refresh credential implies its credentials.
        let credentials = self.credentials.or_else(|| {
            authenticates_itself.then_some(Credentials::ClientCredentials { token: None })
        });
        kernel.start(credentials);
        Ok(TokenSource {
            kernel,
            runtime: self.runtime,
            key: silent_refresh::KeyId::DEFAULT,
            slot,
            alive: Arc::new(Alive {
                bell,
                token_endpoint,
                supports_targets,
                #[cfg(feature = "dpop")]
                dpop,
            }),
        })
    }
}

impl<Rt, R> fmt::Debug for TokenSourceBuilder<Rt, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSourceBuilder")
            .field("config", &self.config)
            .field("credentials", &self.credentials)
            .field("on_token_change", &self.on_change.is_some())
            .finish_non_exhaustive()
    }
}

/// Rule 15: a stored session's DPoP key is the session's (its tokens are bound to it):
/// adopted, so that every proof from now on is signed with it.
#[cfg(feature = "dpop")]
fn adopt_key(session: &silent_refresh_oauth2::dpop::DpopSession, token: &silent_refresh::Token) {
    let Some(pem) = &token.dpop_key else {
        return;
    };
    match session.adopt_pem(pem) {
        Ok(true) => tracing::info!(
            thumbprint = %session.thumbprint(),
            "adopted the stored session's DPoP key"
        ),
        Ok(false) => {}
        Err(error) => tracing::warn!(
            %error,
            "the stored session's DPoP key cannot be read; proving with this source's own"
        ),
    }
}
