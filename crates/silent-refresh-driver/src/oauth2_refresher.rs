//! The OAuth 2.0 refresher, written once over the adapter's HTTP client: each adapter
//! brings a [`HttpClient`] (reqwest for tokio, a ureq agent for threads) and names
//! `OAuth2Refresher<ItsClient>` as its own `OAuth2Refresher`.

use silent_refresh::time::{Instant, SystemTime};
use std::fmt;
#[cfg(any(feature = "tokio", all(feature = "wasm", target_arch = "wasm32")))]
use std::future::Future;
use std::time::Duration;

use silent_refresh::{RefreshFailure, Secret, Token};
use silent_refresh_oauth2::{DEFAULT_EXCHANGE_TIMEOUT, Exchange, RefreshGrant, Target};

use crate::Error;
#[cfg(feature = "dpop")]
use silent_refresh_oauth2::dpop::DpopSession;

#[cfg(feature = "tokio")]
pub use crate::http_client::AsyncHttpClient;
#[cfg(all(feature = "wasm", target_arch = "wasm32"))]
pub use crate::http_client::LocalHttpClient;
pub use crate::http_client::{BlockingHttpClient, HttpClient};

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
    #[cfg(feature = "dpop")]
    dpop: Option<DpopSession>,
}

/// What one answer of the token endpoint means for the exchange.
enum Step {
    /// A DPoP nonce challenge to the first request: send it again at once, with the
    /// nonce (the same exchange, the same credential; rule 15).
    #[cfg_attr(not(feature = "dpop"), allow(dead_code))]
    Resend,
    /// The exchange is over.
    Done(Result<Token, RefreshFailure>),
}

impl<C: HttpClient> OAuth2Refresher<C> {
    /// A builder for a refresher that sends `grant`'s requests.
    pub fn builder(grant: RefreshGrant) -> OAuth2RefresherBuilder<C> {
        OAuth2RefresherBuilder {
            grant,
            client: None,
            allow_insecure_http: false,
            timeout: DEFAULT_EXCHANGE_TIMEOUT,
            #[cfg(feature = "dpop")]
            dpop: None,
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

    /// The request of one try of the exchange (with a DPoP proof when the session is
    /// sender-constrained), and the reader of its answer.
    fn start<'a>(
        &'a self,
        grant: &'a RefreshGrant,
        refresh_token: Option<&'a Secret>,
    ) -> Result<(http::Request<Vec<u8>>, Exchange<'a>), RefreshFailure> {
        #[cfg_attr(not(feature = "dpop"), allow(unused_mut))]
        let (mut request, exchange) = grant.start_exchange(
            refresh_token,
            std_wall(SystemTime::now()),
            random(),
            |path| std::fs::read(path),
        )?;
        #[cfg(feature = "dpop")]
        if let Some(dpop) = &self.dpop {
            crate::dpop::prove(dpop, &mut request, None)
                .map_err(|e| RefreshFailure::misconfigured(format!("no DPoP proof: {e}")))?;
        }
        Ok((request, exchange))
    }

    /// What the answer to a try means: a nonce challenge to the first try is sent again
    /// (rule 15); anything else is read by the codec. With DPoP, every answer's nonce is
    /// kept, a token carries the session's key (stored with it), and a dead credential
    /// says which key the session proves with.
    #[cfg_attr(not(feature = "dpop"), allow(unused_variables))]
    fn answer(
        &self,
        first_try: bool,
        exchange: &Exchange<'_>,
        response: http::Response<Vec<u8>>,
    ) -> Step {
        #[cfg(feature = "dpop")]
        if let Some(dpop) = &self.dpop {
            let url = self.grant.token_url();
            dpop.observe(url, response.headers());
            if first_try
                && let Some(nonce) = silent_refresh_oauth2::dpop::token_nonce_challenge(
                    response.status(),
                    response.headers(),
                    response.body(),
                )
            {
                dpop.use_nonce(url, &nonce);
                return Step::Resend;
            }
            let mut result = exchange.read_response(response);
            match &mut result {
                Ok(token) => token.dpop_key = dpop.key_pem().ok(),
                Err(failure) if failure.is_terminal() => {
                    failure.message.push_str(&format!(
                        "; this session proves with the DPoP key {}, and a refresh token \
                         bound to another key is refused",
                        dpop.thumbprint()
                    ));
                }
                Err(_) => {}
            }
            return Step::Done(result);
        }
        Step::Done(exchange.read_response(response))
    }

    /// The time left of the exchange's timeout, started at `started`.
    fn left(&self, started: Instant) -> Duration {
        self.timeout.saturating_sub(started.elapsed())
    }
}

/// An exchange that ended with two nonce challenges in a row cannot happen (the second
/// is read as any answer); this is its failure, for the type's sake.
fn nonce_loop() -> RefreshFailure {
    RefreshFailure::transient("the token endpoint asked for a DPoP nonce twice in a row")
}

#[cfg(not(target_arch = "wasm32"))]
impl<C: BlockingHttpClient> OAuth2Refresher<C> {
    /// One exchange of `grant`'s request, blocking.
    fn refresh_blocking(
        &self,
        grant: &RefreshGrant,
        refresh_token: Option<&Secret>,
    ) -> Result<Token, RefreshFailure> {
        let started = Instant::now();
        for first_try in [true, false] {
            let (request, exchange) = self.start(grant, refresh_token)?;
            let response = self.client.send(request, self.left(started))?;
            match self.answer(first_try, &exchange, response) {
                Step::Resend => {}
                Step::Done(result) => return result,
            }
        }
        Err(nonce_loop())
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl<C: BlockingHttpClient> crate::runtime::threads::Refresher for OAuth2Refresher<C> {
    fn refresh(&self, refresh_token: Option<Secret>) -> Result<Token, RefreshFailure> {
        self.refresh_blocking(&self.grant, refresh_token.as_ref())
    }

    fn refresh_for(
        &self,
        refresh_token: Option<Secret>,
        target: &Target,
    ) -> Result<Token, RefreshFailure> {
        self.refresh_blocking(&self.grant.for_target(target), refresh_token.as_ref())
    }

    fn supports_targets(&self) -> bool {
        true
    }

    fn authenticates_itself(&self) -> bool {
        !self.grant().uses_refresh_token()
    }

    fn token_endpoint(&self) -> Option<&str> {
        Some(self.grant.token_url())
    }

    fn exchange_timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    #[cfg(feature = "dpop")]
    fn dpop(&self) -> Option<&DpopSession> {
        self.dpop.as_ref()
    }
}

impl<C: HttpClient> OAuth2Refresher<C> {
    /// One exchange whose tries `send` sends asynchronously (the tokio and the browser
    /// runtimes).
    #[cfg(any(feature = "tokio", all(feature = "wasm", target_arch = "wasm32")))]
    async fn refresh_with<S, F>(
        &self,
        grant: &RefreshGrant,
        refresh_token: Option<Secret>,
        send: S,
    ) -> Result<Token, RefreshFailure>
    where
        S: Fn(http::Request<Vec<u8>>, Duration) -> F,
        F: Future<Output = Result<http::Response<Vec<u8>>, RefreshFailure>>,
    {
        let started = Instant::now();
        for first_try in [true, false] {
            let (request, exchange) = self.start(grant, refresh_token.as_ref())?;
            let response = send(request, self.left(started)).await?;
            match self.answer(first_try, &exchange, response) {
                Step::Resend => {}
                Step::Done(result) => return result,
            }
        }
        Err(nonce_loop())
    }
}

#[cfg(feature = "tokio")]
impl<C: AsyncHttpClient> crate::runtime::tokio::Refresher for OAuth2Refresher<C> {
    async fn refresh(&self, refresh_token: Option<Secret>) -> Result<Token, RefreshFailure> {
        let send = |request, timeout| AsyncHttpClient::send(&self.client, request, timeout);
        self.refresh_with(&self.grant, refresh_token, send).await
    }

    async fn refresh_for(
        &self,
        refresh_token: Option<Secret>,
        target: &Target,
    ) -> Result<Token, RefreshFailure> {
        let grant = self.grant.for_target(target);
        let send = |request, timeout| AsyncHttpClient::send(&self.client, request, timeout);
        self.refresh_with(&grant, refresh_token, send).await
    }

    fn supports_targets(&self) -> bool {
        true
    }

    fn authenticates_itself(&self) -> bool {
        !self.grant().uses_refresh_token()
    }

    fn token_endpoint(&self) -> Option<&str> {
        Some(self.grant.token_url())
    }

    fn exchange_timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    #[cfg(feature = "dpop")]
    fn dpop(&self) -> Option<&DpopSession> {
        self.dpop.as_ref()
    }
}

/// The browser's refresher: as tokio's, but its future stays on the page's thread.
#[cfg(all(feature = "wasm", target_arch = "wasm32"))]
impl<C: LocalHttpClient> crate::runtime::wasm::Refresher for OAuth2Refresher<C> {
    async fn refresh(&self, refresh_token: Option<Secret>) -> Result<Token, RefreshFailure> {
        let send = |request, timeout| LocalHttpClient::send(&self.client, request, timeout);
        self.refresh_with(&self.grant, refresh_token, send).await
    }

    async fn refresh_for(
        &self,
        refresh_token: Option<Secret>,
        target: &Target,
    ) -> Result<Token, RefreshFailure> {
        let grant = self.grant.for_target(target);
        let send = |request, timeout| LocalHttpClient::send(&self.client, request, timeout);
        self.refresh_with(&grant, refresh_token, send).await
    }

    fn supports_targets(&self) -> bool {
        true
    }

    fn authenticates_itself(&self) -> bool {
        !self.grant().uses_refresh_token()
    }

    fn token_endpoint(&self) -> Option<&str> {
        Some(self.grant.token_url())
    }

    fn exchange_timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    #[cfg(feature = "dpop")]
    fn dpop(&self) -> Option<&DpopSession> {
        self.dpop.as_ref()
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
    #[cfg(feature = "dpop")]
    dpop: Option<DpopSession>,
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

    /// Sender-constrained tokens (DPoP, RFC 9449; feature `dpop`): every exchange
    /// carries a proof of `session`'s key, a nonce challenge is answered by sending the
    /// request once more with the nonce (the same exchange), every token carries the
    /// key so that the store keeps it with the session, and the source adopts the key
    /// of a session it loads or takes over from another process.
    #[cfg(feature = "dpop")]
    pub fn dpop(mut self, session: DpopSession) -> Self {
        self.dpop = Some(session);
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
            #[cfg(feature = "dpop")]
            dpop: self.dpop,
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

/// `wall` as std's `SystemTime`, which the codec takes: the same value on native targets;
/// on wasm32, where std's cannot be read, the browser's wall clock carried over.
fn std_wall(wall: SystemTime) -> std::time::SystemTime {
    let since_epoch = wall
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    std::time::UNIX_EPOCH + since_epoch
}

/// 32 bytes of the operating system's random generator: each signed assertion's `jti`.
fn random() -> Result<[u8; 32], getrandom::Error> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map(|()| random)
}
