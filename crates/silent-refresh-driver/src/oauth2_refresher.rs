//! The OAuth 2.0 refresher, written once over the adapter's HTTP client: each adapter
//! brings a [`HttpClient`] (reqwest for tokio, a ureq agent for threads) and names
//! `OAuth2Refresher<ItsClient>` as its own `OAuth2Refresher`.

use std::fmt;
#[cfg(feature = "tokio")]
use std::future::Future;
use std::time::{Duration, SystemTime};

use silent_refresh::{RefreshFailure, Secret, Token};
use silent_refresh_oauth2::{DEFAULT_EXCHANGE_TIMEOUT, Exchange, RefreshGrant};

use crate::Error;

/// An HTTP client an [`OAuth2Refresher`] sends its exchanges with: what an adapter
/// brings.
pub trait HttpClient: Sized + Send + Sync + 'static {
    /// What a program configures the client with (reqwest's `ClientBuilder`, a ureq
    /// `Agent`).
    type Settings;

    /// Builds the client from `settings` (`None`: the defaults). It must never follow
    /// a redirect (the request carries the refresh credential and the client secret),
    /// whatever the settings say.
    ///
    /// # Errors
    ///
    /// The client cannot be built ([`Error::HttpClient`]).
    fn build(settings: Option<Self::Settings>, timeout: Duration) -> Result<Self, Error>;
}

/// A client that sends one exchange and blocks until its whole answer is in.
pub trait BlockingHttpClient: HttpClient {
    /// Sends `request` and reads the whole answer, at most
    /// [`MAX_RESPONSE_BYTES`](silent_refresh_oauth2::MAX_RESPONSE_BYTES), all within
    /// `timeout`; a redirect is returned, never followed. Transport failures are
    /// classified with the codec's `TransportError`.
    ///
    /// # Errors
    ///
    /// A transport failure (unreachable, timed out, too long, other).
    fn send(
        &self,
        request: http::Request<Vec<u8>>,
        timeout: Duration,
    ) -> Result<http::Response<Vec<u8>>, RefreshFailure>;
}

/// A client that sends one exchange asynchronously (feature `tokio`).
#[cfg(feature = "tokio")]
pub trait AsyncHttpClient: HttpClient {
    /// As [`BlockingHttpClient::send`], as a future.
    fn send(
        &self,
        request: http::Request<Vec<u8>>,
        timeout: Duration,
    ) -> impl Future<Output = Result<http::Response<Vec<u8>>, RefreshFailure>> + Send;
}

/// Refreshes against an OAuth 2.0 token endpoint (RFC 6749 §6), sending with the
/// adapter's HTTP client `C`.
///
/// The request and the reading of the answer (including which errors are terminal)
/// come from the codec's [`RefreshGrant`], whatever its grant (refresh token, client
/// credentials, JWT bearer, token exchange) and client authentication. Before each
/// exchange it reads the system clock, draws 32 bytes from the operating system's random
/// generator (each signed assertion's `jti`) and, for token exchange, reads the subject
/// token afresh from the grant's source.
///
/// The exchange is kept to the configured token URL, whatever the client's settings:
/// - no redirect is ever followed (the request is a `POST` that carries the refresh
///   credential and the client secret). A `3xx` answer goes to the codec, which reports
///   a misconfiguration naming the `Location` (its origin and path: never its query):
///   configure the final token URL;
/// - a plain `http` token URL is refused when the refresher is built, unless its host is
///   loopback or you opted in with
///   [`allow_insecure_http`](OAuth2RefresherBuilder::allow_insecure_http);
/// - every exchange has a timeout ([`timeout`](OAuth2RefresherBuilder::timeout), 30 s by
///   default), covering the connection, the request and the whole answer, with your
///   own client settings too.
///
/// Error statuses go to the codec, which classifies them (`invalid_grant` is terminal,
/// `5xx` and `429` transient, with `Retry-After`). A failure to connect (connection
/// refused, no DNS answer, connect timeout) is [`RefreshFailure::unreachable`]:
/// requests without a usable token fail fast while the backoff runs. Other transport
/// failures (TLS, a reset, the timeout) are transient.
pub struct OAuth2Refresher<C> {
    grant: RefreshGrant,
    client: C,
    timeout: Duration,
}

impl<C: HttpClient> OAuth2Refresher<C> {
    /// A builder for a refresher that sends `grant`'s requests.
    pub fn builder(grant: RefreshGrant) -> OAuth2RefresherBuilder<C> {
        OAuth2RefresherBuilder {
            grant,
            client: None,
            allow_insecure_http: false,
            timeout: DEFAULT_EXCHANGE_TIMEOUT,
        }
    }

    /// A refresher for `grant` with its own client and the default settings: the
    /// shortcut for `OAuth2Refresher::builder(grant).build()`.
    ///
    /// # Errors
    ///
    /// As [`OAuth2RefresherBuilder::build`].
    pub fn new(grant: RefreshGrant) -> Result<Self, Error> {
        Self::builder(grant).build()
    }

    /// The grant's settings.
    #[must_use]
    pub fn grant(&self) -> &RefreshGrant {
        &self.grant
    }

    /// The timeout of one refresh exchange.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The request of one exchange, and the reader of its answer.
    fn start<'a>(
        &'a self,
        refresh_token: Option<&'a Secret>,
    ) -> Result<(http::Request<Vec<u8>>, Exchange<'a>), RefreshFailure> {
        self.grant
            .start_exchange(refresh_token, SystemTime::now(), random(), |path| {
                std::fs::read(path)
            })
    }
}

impl<C: BlockingHttpClient> crate::runtime::threads::Refresher for OAuth2Refresher<C> {
    fn refresh(&self, refresh_token: Option<Secret>) -> Result<Token, RefreshFailure> {
        let (request, exchange) = self.start(refresh_token.as_ref())?;
        exchange.read_response(self.client.send(request, self.timeout)?)
    }

    fn token_endpoint(&self) -> Option<&str> {
        Some(self.grant.token_url())
    }

    fn exchange_timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }
}

#[cfg(feature = "tokio")]
impl<C: AsyncHttpClient> crate::runtime::tokio::Refresher for OAuth2Refresher<C> {
    async fn refresh(&self, refresh_token: Option<Secret>) -> Result<Token, RefreshFailure> {
        let (request, exchange) = self.start(refresh_token.as_ref())?;
        exchange.read_response(self.client.send(request, self.timeout).await?)
    }

    fn token_endpoint(&self) -> Option<&str> {
        Some(self.grant.token_url())
    }

    fn exchange_timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }
}

impl<C> fmt::Debug for OAuth2Refresher<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2Refresher")
            .field("grant", &self.grant)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Builds an [`OAuth2Refresher`]: [`OAuth2Refresher::builder`].
#[must_use]
pub struct OAuth2RefresherBuilder<C: HttpClient> {
    grant: RefreshGrant,
    client: Option<C::Settings>,
    allow_insecure_http: bool,
    timeout: Duration,
}

impl<C: HttpClient> OAuth2RefresherBuilder<C> {
    /// Build the refresher's client from `settings`: its proxy, TLS, user agent and
    /// connection settings (tokio: a `reqwest::ClientBuilder`; ureq: an `Agent`).
    /// Whatever they say, redirects are never followed and each exchange gets
    /// [`timeout`](Self::timeout). Default: the client's defaults.
    pub fn client(mut self, settings: C::Settings) -> Self {
        self.client = Some(settings);
        self
    }

    /// Allow a plain `http` token URL whose host is not loopback (refused by default:
    /// the refresh credential and the client secret would cross the network in clear
    /// text). Loopback (`localhost`, `127.0.0.0/8`, `[::1]`) is always allowed.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// The timeout of one refresh exchange, from connecting to the end of the answer;
    /// when it passes, the refresh fails as transient and is retried with backoff.
    /// Default: 30 s, the core's default `refresh_timeout`. An exchange past the
    /// configuration's `refresh_timeout` is overdue, not cancelled: this timeout ends
    /// it, so an answer the server already sent (with a rotated refresh token) still
    /// arrives, and no other exchange starts before then.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the settings and builds the refresher and its client.
    ///
    /// # Errors
    ///
    /// What [`RefreshGrant::check_refresher`] refuses, as [`Error::InvalidUrl`],
    /// [`Error::InsecureHttp`] or [`Error::Token`] (a zero timeout, a grant that can
    /// never work), and [`Error::HttpClient`] when the client cannot be built.
    pub fn build(self) -> Result<OAuth2Refresher<C>, Error> {
        self.grant
            .check_refresher(self.allow_insecure_http, self.timeout)?;
        Ok(OAuth2Refresher {
            client: C::build(self.client, self.timeout)?,
            grant: self.grant,
            timeout: self.timeout,
        })
    }
}

impl<C: HttpClient> fmt::Debug for OAuth2RefresherBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2RefresherBuilder")
            .field("grant", &self.grant)
            .field("client", &self.client.is_some())
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// 32 bytes of the operating system's random generator: each signed assertion's `jti`.
fn random() -> Result<[u8; 32], getrandom::Error> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map(|()| random)
}
