//! A ready OAuth 2.0 refresher over reqwest, built on the codec (`silent-refresh-oauth2`).

use std::fmt;
use std::time::{Duration, SystemTime};

use silent_refresh::{RefreshFailure, Secret, Token};
use silent_refresh_oauth2::{
    DEFAULT_EXCHANGE_TIMEOUT, MAX_RESPONSE_BYTES, RefreshGrant, TransportError,
};

use crate::Refresher;
use crate::error::Error;

/// Refreshes against an OAuth 2.0 token endpoint (RFC 6749 §6) with reqwest.
///
/// The request and the reading of the response (including which errors are terminal)
/// come from the codec's [`RefreshGrant`], whatever its grant (refresh token, client
/// credentials, JWT bearer, token exchange) and client authentication. A failure to
/// connect (connection refused, no DNS answer, connect timeout) is
/// [`RefreshFailure::unreachable`]: requests without a usable token fail fast while
/// the backoff runs; any other network failure or a timeout is transient. Before each exchange the refresher reads the
/// system clock, draws 32 bytes from the operating system's random generator (each
/// signed assertion's `jti`) and, for token exchange, reads the subject token afresh
/// from the grant's source (a file is read on this task: it is a small local file).
///
/// The exchange is kept to the configured token URL:
/// - no redirect is ever followed (the request carries the refresh credential and the
///   client secret, and reqwest would send them again on a `307` or `308`). A `3xx`
///   answer goes to the codec, which reports a misconfiguration naming the `Location`
///   (its origin and path: never its query): configure the final token URL;
/// - a plain `http` token URL is refused when the refresher is built, unless its host
///   is loopback or you opted in with
///   [`allow_insecure_http`](OAuth2RefresherBuilder::allow_insecure_http);
/// - every exchange has a timeout ([`timeout`](OAuth2RefresherBuilder::timeout)), covering the
///   connection, the request and the whole response (30 s by default).
///
/// ```no_run
/// use std::time::Duration;
/// use silent_refresh_tokio::{Config, Credentials, OAuth2Refresher, RefreshGrant, TokenSource};
///
/// # async fn run() -> Result<(), silent_refresh_tokio::Error> {
/// let grant = RefreshGrant::new("https://auth.example.com/oauth/token", "my-client")
///     .client_secret("client-secret");
/// let refresher = OAuth2Refresher::builder(grant)
///     .timeout(Duration::from_secs(20))
///     .build()?;
/// let source = TokenSource::builder(Config::default())
///     .credentials(Credentials::RefreshToken("stored-refresh-token".into()))
///     .refresher(refresher)
///     .build()?;
/// let token = source.token().await?;
/// # let _ = token;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct OAuth2Refresher {
    client: reqwest::Client,
    grant: RefreshGrant,
    timeout: Duration,
}

impl OAuth2Refresher {
    /// A builder for a refresher that sends `grant`'s requests.
    pub fn builder(grant: RefreshGrant) -> OAuth2RefresherBuilder {
        OAuth2RefresherBuilder {
            grant,
            client: None,
            allow_insecure_http: false,
            timeout: DEFAULT_EXCHANGE_TIMEOUT,
        }
    }

    /// A refresher for `grant` with its own reqwest client and the default settings:
    /// the shortcut for `OAuth2Refresher::builder(grant).build()`.
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

    async fn send(&self, refresh_token: Option<&Secret>) -> Result<Token, RefreshFailure> {
        let (request, exchange) =
            self.grant
                .start_exchange(refresh_token, SystemTime::now(), random(), |path| {
                    std::fs::read(path)
                })?;
        let mut request = reqwest::Request::try_from(request)
            .map_err(|e| TransportError::Other(&describe(e)).failure())?;
        // Also on a client built from the caller's `ClientBuilder`, whatever its own.
        *request.timeout_mut() = Some(self.timeout);
        let transport = |e: reqwest::Error| self.transport_failure(e);
        let mut response = self.client.execute(request).await.map_err(transport)?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(TransportError::TooLong.failure());
            }
            body.extend_from_slice(&chunk);
        }
        let mut answer = http::Response::new(body);
        *answer.status_mut() = response.status();
        *answer.version_mut() = response.version();
        *answer.headers_mut() = std::mem::take(response.headers_mut());
        exchange.read_response(answer)
    }

    /// A reqwest error as the codec's transport error: a failure to connect, a
    /// timeout, or anything else.
    fn transport_failure(&self, error: reqwest::Error) -> RefreshFailure {
        if error.is_connect() {
            TransportError::Connect(&describe(error)).failure()
        } else if error.is_timeout() {
            TransportError::Timeout(self.timeout).failure()
        } else {
            TransportError::Other(&describe(error)).failure()
        }
    }
}

impl Refresher for OAuth2Refresher {
    async fn refresh(&self, refresh_token: Option<Secret>) -> Result<Token, RefreshFailure> {
        self.send(refresh_token.as_ref()).await
    }

    fn token_endpoint(&self) -> Option<&str> {
        Some(self.grant.token_url())
    }

    fn exchange_timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }
}

impl fmt::Debug for OAuth2Refresher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2Refresher")
            .field("grant", &self.grant)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Builds an [`OAuth2Refresher`]: [`OAuth2Refresher::builder`].
///
/// It takes a [`reqwest::ClientBuilder`], not a built `Client`, because a built
/// client's redirect policy cannot be read or changed, and reqwest's default one
/// follows a `307` or `308` by sending the body (the refresh credential) again to
/// wherever the `Location` points. The refresher sets
/// [`redirect::Policy::none`](reqwest::redirect::Policy::none) on the builder it is
/// given, so no configuration can make it follow a redirect.
#[must_use]
pub struct OAuth2RefresherBuilder {
    grant: RefreshGrant,
    client: Option<reqwest::ClientBuilder>,
    allow_insecure_http: bool,
    timeout: Duration,
}

impl OAuth2RefresherBuilder {
    /// Build the refresher's client from `client` (its proxy, TLS, user agent and
    /// connection settings). Its redirect policy is replaced by
    /// [`Policy::none`](reqwest::redirect::Policy::none), and each exchange gets
    /// [`timeout`](Self::timeout) whatever timeout it sets.
    ///
    /// Default: `reqwest::Client::builder()`.
    pub fn client_builder(mut self, client: reqwest::ClientBuilder) -> Self {
        self.client = Some(client);
        self
    }

    /// Allow a plain `http` token URL whose host is not loopback (refused by default:
    /// the refresh credential and the client secret would cross the network in clear
    /// text). Loopback (`localhost`, `127.0.0.0/8`, `[::1]`) is always allowed.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// The timeout of one refresh exchange, from connecting to the end of the
    /// response; when it passes, the refresh fails as transient and is retried with
    /// backoff. Default: 30 s, the core's default `refresh_timeout`. An exchange past
    /// the configuration's `refresh_timeout` is overdue, not cancelled: this timeout
    /// ends it, so that an answer the server already sent (with a rotated refresh
    /// token) still arrives.
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
    /// never work), and [`Error::HttpClient`] when the client cannot be built (TLS
    /// setup).
    pub fn build(self) -> Result<OAuth2Refresher, Error> {
        self.grant
            .check_refresher(self.allow_insecure_http, self.timeout)?;
        let client = self
            .client
            .unwrap_or_default()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::HttpClient(Box::new(e.without_url())))?;
        Ok(OAuth2Refresher {
            client,
            grant: self.grant,
            timeout: self.timeout,
        })
    }
}

impl fmt::Debug for OAuth2RefresherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2RefresherBuilder")
            .field("grant", &self.grant)
            .field("client_builder", &self.client.is_some())
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A reqwest error and its causes, on one line, without the URL (its query may hold
/// secrets).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// 32 bytes of the operating system's random generator: each signed assertion's `jti`.
fn random() -> Result<[u8; 32], getrandom::Error> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map(|()| random)
}
