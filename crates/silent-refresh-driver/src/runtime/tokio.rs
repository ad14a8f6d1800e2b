//! The tokio runtime (feature `tokio`): the driver is one task, an exchange is a
//! future it polls, store I/O runs on the blocking pool, timers and the default clock
//! are tokio's (so tests on paused time need no real sleeping), and callers `.await`.
//! Its sources are what the HTTP integrations of `silent-refresh-http` attach tokens
//! from ([`BearerSource`](silent_refresh_http::BearerSource)).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use silent_refresh::{Event, RefreshFailure, Secret, Token};
use silent_refresh_oauth2::Target;
use tokio::sync::broadcast;

use super::{BlockingWork, Caller, Exchanger, RunsRefresher, Runtime, SendsWith};
use crate::Error;
use crate::clock::Clock;
use crate::driver::{Driver, Spawn};
use crate::http_client::AsyncHttpClient;
use crate::kernel::Waiter;

/// How many events a subscriber may lag behind before it misses the oldest (it is told
/// how many it missed).
const EVENT_BUFFER: usize = 64;

/// The tokio runtime: the current runtime when the source is built.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tokio;

/// Runs one refresh: exchanges the newest refresh credential (if any) for a new token.
///
/// The token source runs at most one exchange at a time, on the wire (single flight:
/// the next one starts only once this future has completed or been dropped), from its
/// driver task, never from a caller's. An exchange past the configuration's
/// `refresh_timeout` is overdue, not cancelled: its answer may carry the rotated refresh
/// token the server has already issued, so it runs on until the refresher's own timeout
/// ends it ([`exchange_timeout`](Self::exchange_timeout)); a refresher without one is
/// dropped (cancelled) at twice `refresh_timeout`. Classify failures with
/// [`RefreshFailure::transient`] (network, timeout, 5xx, 429, a 4xx without an OAuth
/// error: retried with backoff), [`RefreshFailure::misconfigured`] (`invalid_client`, a
/// wrong URL, a redirect: fails fast, keeps the credential) or
/// [`RefreshFailure::terminal`] (`invalid_grant`, revoked: sign-in required), and keep
/// secrets out of their messages. The codec's `classify` classifies HTTP answers.
///
/// Implemented for closures `Fn(Option<Secret>) -> impl Future<Output = Result<Token,
/// RefreshFailure>>`, and by the tokio adapter's `OAuth2Refresher`.
///
/// ```
/// use std::time::Duration;
/// use silent_refresh::{Expiry, RefreshFailure, Secret, Token};
/// use silent_refresh_driver::runtime::tokio::Refresher;
///
/// fn check(_: &impl Refresher) {}
/// check(&|refresh_token: Option<Secret>| async move {
///     match refresh_token {
///         Some(_) => Ok(Token::bearer("at", Expiry::In(Duration::from_secs(60)))),
///         None => Err(RefreshFailure::terminal("no refresh credential")),
///     }
/// });
/// ```
pub trait Refresher: Send + Sync + 'static {
    /// Exchanges `refresh_token` (the newest one; `None` for grants that need none,
    /// such as client credentials) for a token.
    ///
    /// A token without a new refresh credential keeps the old one. Return
    /// [`Expiry::In`](silent_refresh::Expiry::In) counted from when the request was
    /// sent. Never follow a redirect with the credential.
    fn refresh(
        &self,
        refresh_token: Option<Secret>,
    ) -> impl Future<Output = Result<Token, RefreshFailure>> + Send;

    /// As [`refresh`](Self::refresh), for a token for `target` (another key of the
    /// session: a resource, an audience, a scope). The default refuses every target
    /// but the default one: override it with [`supports_targets`](Self::supports_targets).
    fn refresh_for(
        &self,
        refresh_token: Option<Secret>,
        target: &Target,
    ) -> impl Future<Output = Result<Token, RefreshFailure>> + Send {
        let default = target.is_default();
        async move {
            if default {
                self.refresh(refresh_token).await
            } else {
                Err(super::targets_unsupported())
            }
        }
    }

    /// Whether [`refresh_for`](Self::refresh_for) asks for the target it is given.
    fn supports_targets(&self) -> bool {
        false
    }

    /// Whether this refresher gets a token with no refresh credential (a
    /// client-credentials, JWT bearer or token-exchange grant): a source built without
    /// credentials then starts as with `Credentials::ClientCredentials { token: None }`.
    fn authenticates_itself(&self) -> bool {
        false
    }

    /// The token endpoint's URL, if the refresher knows it: the send helpers never
    /// attach the access token to a request for it.
    fn token_endpoint(&self) -> Option<&str> {
        None
    }

    /// The timeout this refresher puts on each exchange, if it has one (the shipped
    /// `OAuth2Refresher` always does): an overdue exchange is left to it. `None`: the
    /// source cancels an exchange at twice the configuration's `refresh_timeout`.
    fn exchange_timeout(&self) -> Option<Duration> {
        None
    }

    /// The session's DPoP state, if this refresher proves its exchanges (feature
    /// `dpop`): the source stores its key with the session and adopts a stored
    /// session's key into it, and the integrations prove resource requests with it.
    #[cfg(feature = "dpop")]
    fn dpop(&self) -> Option<&silent_refresh_oauth2::dpop::DpopSession> {
        None
    }
}

impl<F, Fut> Refresher for F
where
    F: Fn(Option<Secret>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, RefreshFailure>> + Send,
{
    fn refresh(
        &self,
        refresh_token: Option<Secret>,
    ) -> impl Future<Output = Result<Token, RefreshFailure>> + Send {
        self(refresh_token)
    }
}

/// An exchange on tokio: the refresher's future, boxed (one allocation a refresh).
pub type TokioExchange = Pin<Box<dyn Future<Output = Result<Token, RefreshFailure>> + Send>>;

/// An `async` refresher, shared with the futures of its exchanges.
struct Async<R>(Arc<R>);

impl<R: Refresher> Exchanger<TokioExchange> for Async<R> {
    fn exchange(&self, refresh_token: Option<Secret>) -> TokioExchange {
        let refresher = self.0.clone();
        Box::pin(async move { refresher.refresh(refresh_token).await })
    }

    fn exchange_for(&self, refresh_token: Option<Secret>, target: &Target) -> TokioExchange {
        let (refresher, target) = (self.0.clone(), target.clone());
        Box::pin(async move { refresher.refresh_for(refresh_token, &target).await })
    }

    fn supports_targets(&self) -> bool {
        self.0.supports_targets()
    }

    fn authenticates_itself(&self) -> bool {
        self.0.authenticates_itself()
    }

    fn token_endpoint(&self) -> Option<&str> {
        self.0.token_endpoint()
    }

    fn exchange_timeout(&self) -> Option<Duration> {
        self.0.exchange_timeout()
    }

    #[cfg(feature = "dpop")]
    fn dpop(&self) -> Option<&silent_refresh_oauth2::dpop::DpopSession> {
        self.0.dpop()
    }
}

impl<R: Refresher> RunsRefresher<R> for Tokio {
    fn hold(refresher: R) -> Arc<Self::Refresher> {
        Arc::new(Async(Arc::new(refresher)))
    }
}

/// Store I/O on tokio's blocking pool; `None` if it panicked.
pub struct OnBlockingPool<T>(tokio::task::JoinHandle<T>);

impl<T> Future for OnBlockingPool<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        Pin::new(&mut self.get_mut().0).poll(cx).map(Result::ok)
    }
}

impl<T> fmt::Debug for OnBlockingPool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnBlockingPool(..)")
    }
}

/// tokio's monotonic clock (paused in tests) and the system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl Runtime for Tokio {
    type Refresher = dyn Exchanger<TokioExchange> + Send + Sync;
    type Exchange = TokioExchange;
    type Blocking<T: Send + 'static> = OnBlockingPool<T>;
    type Sleep = Pin<Box<tokio::time::Sleep>>;
    const CANCELS_EXCHANGES: bool = true;

    fn run_blocking<T, F>(&self, _: BlockingWork, job: F) -> OnBlockingPool<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        OnBlockingPool(tokio::task::spawn_blocking(job))
    }

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        Box::pin(tokio::time::sleep(duration))
    }

    fn default_clock(&self) -> Arc<dyn Clock> {
        Arc::new(TokioClock)
    }
}

impl Spawn for Tokio {
    fn spawn<W: Waiter>(&self, driver: Driver<Self, W>) -> Result<(), Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        runtime.spawn(driver);
        Ok(())
    }
}

impl Caller for Tokio {
    type Wait<F: Future> = F;
    type Events = broadcast::Receiver<Event>;
    const LATE_GRACE: Option<Duration> = None;

    #[inline(always)]
    fn wait<F: Future>(&self, future: F) -> F {
        future
    }

    fn subscribe(
        &self,
    ) -> (
        impl Fn(&Event) -> bool + Send + Sync + 'static,
        Self::Events,
    ) {
        let (sender, receiver) = broadcast::channel(EVENT_BUFFER);
        // An error means the receiver is gone: the kernel forgets this listener.
        let listener = move |event: &Event| sender.send(event.clone()).is_ok();
        (listener, receiver)
    }
}

/// A request of a sign-in step on tokio: the async client's future, boxed.
pub type TokioSending =
    Pin<Box<dyn Future<Output = Result<http::Response<Vec<u8>>, RefreshFailure>> + Send>>;

impl<C: AsyncHttpClient> SendsWith<C> for Tokio {
    type Sending = TokioSending;

    fn send(
        &self,
        client: &Arc<C>,
        request: http::Request<Vec<u8>>,
        timeout: Duration,
    ) -> TokioSending {
        let client = client.clone();
        Box::pin(async move { client.send(request, timeout).await })
    }
}

// What the HTTP integrations attach tokens from.
crate::source::bearer_source!(Tokio);
