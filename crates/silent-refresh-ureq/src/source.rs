//! The token source: the handle programs share between threads.

use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use silent_refresh::{
    AccessToken, Config, Credentials, Generation, RefreshFailure, Secret, Status, Token,
    TokenMachine,
};

use crate::change::TokenChange;
use crate::driver::{Inner, OnChange};
use crate::error::Error;
use crate::proactive::Proactive;
use crate::refresher::Refresher;

/// Keeps an access token fresh for many threads at once.
///
/// `Send + Sync`: share it by reference (scoped threads) or in an [`Arc`] (the
/// [`crate::BearerAuth`] middleware takes one). Build one with
/// [`TokenSource::builder`].
///
/// - [`token`](Self::token) returns the token at once while it is fresh (one atomic
///   load and one clock reading, no lock). Otherwise the call waits, on a condition
///   variable, until a refresh ends or its deadline passes, and returns the new token
///   or a clear error: no busy-waiting and no sleeping in a loop.
/// - Exactly one refresh runs at a time, on a short-lived thread of its own: a
///   caller never waits for a refresh past its own deadline, and in the default
///   stale-while-refreshing mode a caller that opens the refresh window gets the
///   still-valid token at once instead of waiting for the refresh it started.
/// - A refresher that panics counts as a transient failure; the source keeps working.
/// - Between calls nothing runs, unless [`TokenSourceBuilder::proactive_refresh`]
///   starts a thread that refreshes on schedule while the program is idle.
pub struct TokenSource {
    inner: Arc<Inner>,
    /// The idle refresh thread, if enabled: dropping it stops the thread.
    proactive: Option<Proactive>,
}

impl TokenSource {
    /// A builder with the core's configuration (timing, timeouts, backoff; see
    /// [`silent_refresh::Config`]).
    pub fn builder(config: Config) -> TokenSourceBuilder {
        TokenSourceBuilder {
            config,
            credentials: None,
            refresher: None,
            on_change: None,
            proactive: false,
        }
    }

    /// The access token: at once while it is fresh, otherwise after the refresh,
    /// waiting at most the configured `request_timeout`.
    ///
    /// Fails fast with [`silent_refresh::Error::SignInRequired`] or
    /// [`silent_refresh::Error::SignedOut`] when there are no usable credentials, and
    /// with [`Error::Reentrant`] when called from the source's own token-change
    /// callback with no fresh token to hand out (waiting there would deadlock).
    ///
    /// Report a 401 of a request sent with the token to
    /// [`report_rejected`](Self::report_rejected) with its `generation`.
    pub fn token(&self) -> Result<Arc<AccessToken>, Error> {
        self.token_until(None)
    }

    /// Like [`token`](Self::token), waiting at most until `deadline`.
    pub fn token_before(&self, deadline: Instant) -> Result<Arc<AccessToken>, Error> {
        self.token_until(Some(deadline))
    }

    /// The fast path first (a lock-free load and one clock read); only a call that must
    /// enter the machine checks that it is not made from this source's own callback.
    fn token_until(&self, deadline: Option<Instant>) -> Result<Arc<AccessToken>, Error> {
        if let Some(token) = self.inner.fast_token(Instant::now()) {
            return Ok(token);
        }
        if self.inner.in_own_callback() {
            return Err(Error::Reentrant);
        }
        self.inner.wait_for_token(deadline)
    }

    /// A request sent with the token of `generation` was rejected (401). Only a
    /// rejection of the current token starts a refresh, once however many requests
    /// report it; for an older one, simply ask for the token again.
    pub fn report_rejected(&self, generation: Generation) {
        self.inner.report_rejected(generation);
    }

    /// Signs in with new credentials: forgets any terminal failure and releases the
    /// waiting callers once a token is available.
    pub fn sign_in(&self, credentials: Credentials) {
        self.inner.sign_in(credentials);
    }

    /// Signs out: waiting callers get [`silent_refresh::Error::SignedOut`], later ones
    /// fail fast until the next [`sign_in`](Self::sign_in), and the token-change
    /// callback is told to forget the stored token.
    pub fn sign_out(&self) {
        self.inner.sign_out();
    }

    /// Where the source stands with the credentials.
    pub fn status(&self) -> Status {
        self.inner.status()
    }

    /// The generation of the newest token (0 before the first).
    pub fn generation(&self) -> Generation {
        self.inner.generation()
    }

    /// How many callers are waiting for a token right now (for metrics and tests).
    pub fn waiting(&self) -> usize {
        self.inner.waiting()
    }

    /// The token endpoint the refresher talks to, if it said.
    pub fn token_endpoint(&self) -> Option<&str> {
        self.inner.refresher().token_endpoint()
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("status", &self.status())
            .field("generation", &self.generation())
            .field("proactive_refresh", &self.proactive.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds a [`TokenSource`].
#[must_use]
pub struct TokenSourceBuilder {
    config: Config,
    credentials: Option<Credentials>,
    refresher: Option<Box<dyn Refresher>>,
    on_change: Option<OnChange>,
    proactive: bool,
}

impl TokenSourceBuilder {
    /// The credentials to start with. Without them, callers wait (until their
    /// deadline) for [`TokenSource::sign_in`].
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// What performs a refresh: a closure, or the ready [`crate::OAuth2Refresher`].
    /// Without one, every refresh fails for good with "no refresher configured".
    pub fn refresher(mut self, refresher: impl Refresher) -> Self {
        self.refresher = Some(Box::new(refresher));
        self
    }

    /// Called with each new token to store (before any caller gets it) and at
    /// sign-out; see [`TokenChange`] for what it may and may not do.
    pub fn on_token_change(
        mut self,
        callback: impl Fn(&TokenChange) + Send + Sync + 'static,
    ) -> Self {
        self.on_change = Some(Box::new(callback));
        self
    }

    /// Refresh on schedule while the program is idle, from a thread the source starts
    /// and stops (on drop). Off by default: without it, a refresh window that opened
    /// while nobody asked for a token is noticed at the next call.
    pub fn proactive_refresh(mut self, enabled: bool) -> Self {
        self.proactive = enabled;
        self
    }

    /// The source, signed in with the credentials if any were given.
    pub fn build(self) -> TokenSource {
        let now = Instant::now();
        let machine = TokenMachine::new(self.config, now, SystemTime::now());
        let refresher = self
            .refresher
            .unwrap_or_else(|| Box::new(no_refresher) as Box<dyn Refresher>);
        let inner = Inner::new(machine, refresher, self.on_change);
        if let Some(credentials) = self.credentials {
            inner.sign_in(credentials);
        }
        let proactive = if self.proactive {
            Proactive::spawn(&inner)
        } else {
            None
        };
        TokenSource { inner, proactive }
    }
}

impl fmt::Debug for TokenSourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSourceBuilder")
            .field("config", &self.config)
            .field("has_credentials", &self.credentials.is_some())
            .field("has_refresher", &self.refresher.is_some())
            .field("proactive_refresh", &self.proactive)
            .finish_non_exhaustive()
    }
}

fn no_refresher(_: Option<Secret>) -> Result<Token, RefreshFailure> {
    Err(RefreshFailure::terminal(
        "no refresher configured; give one with `TokenSource::builder(..).refresher(..)`",
    ))
}
