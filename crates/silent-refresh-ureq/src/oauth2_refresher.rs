//! A ready OAuth 2.0 refresher over ureq 3, built on the codec (`silent-refresh-oauth2`).

use std::fmt;
use std::io::ErrorKind;
use std::time::{Duration, SystemTime};

use silent_refresh::{RefreshFailure, Secret, Token};
use silent_refresh_oauth2::{
    DEFAULT_EXCHANGE_TIMEOUT, MAX_RESPONSE_BYTES, RefreshGrant, TransportError,
};
use ureq::Agent;

use crate::Refresher;
use crate::error::Error;

/// Refreshes with the OAuth 2.0 refresh-token grant (or client credentials, when
/// there is no refresh credential), or any other grant of the codec's [`RefreshGrant`]
/// (client credentials, JWT bearer, token exchange), sending its request with a ureq 3
/// agent. Before each exchange it reads the system clock, draws 32 bytes from the
/// operating system's random generator (each signed assertion's `jti`) and, for token
/// exchange, reads the subject token afresh from the grant's source.
///
/// ```
/// use silent_refresh_ureq::{OAuth2Refresher, RefreshGrant};
///
/// let refresher = OAuth2Refresher::builder(
///     RefreshGrant::new("https://auth.example.com/oauth/token", "my-app").client_secret("s3cret"),
/// )
/// .build()?;
/// # let _ = refresher;
/// # Ok::<(), silent_refresh_ureq::Error>(())
/// ```
///
/// The exchange is kept to the configured token URL, whatever the agent's settings:
/// - no redirect is ever followed (the request is a `POST` that carries the refresh
///   credential and the client secret). A `3xx` answer goes to the codec, which
///   reports a misconfiguration naming the `Location` (its origin and path: never its
///   query): configure the final token URL;
/// - a plain `http` token URL is refused when the refresher is built, unless its host
///   is loopback or you opted in with
///   [`allow_insecure_http`](OAuth2RefresherBuilder::allow_insecure_http);
/// - every exchange has a timeout ([`timeout`](OAuth2RefresherBuilder::timeout), 30 s
///   by default), set on the request, so it holds with your own agent too.
///
/// Error statuses go to the codec, which classifies them (`invalid_grant` is
/// terminal, `5xx` and `429` transient, with `Retry-After`). A failure to connect
/// (connection refused, no DNS answer, connect timeout) is
/// [`RefreshFailure::unreachable`]: requests without a usable token fail fast while
/// the backoff runs. Other transport errors (TLS, a reset, the timeout) are transient.
pub struct OAuth2Refresher {
    grant: RefreshGrant,
    agent: Agent,
    timeout: Duration,
}

impl OAuth2Refresher {
    /// A builder for a refresher that sends `grant`'s requests.
    pub fn builder(grant: RefreshGrant) -> OAuth2RefresherBuilder {
        OAuth2RefresherBuilder {
            grant,
            agent: None,
            allow_insecure_http: false,
            timeout: DEFAULT_EXCHANGE_TIMEOUT,
        }
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

    /// A transport error as a failure that names no URL: unreachable when no
    /// connection could be made, transient otherwise, except a URL or a scheme the
    /// agent refuses, which no retry fixes (misconfigured, rule 7).
    fn transport_failure(&self, error: &ureq::Error) -> RefreshFailure {
        let transport = match error {
            ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed
            | ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => {
                TransportError::Connect(error)
            }
            // ureq hands the system resolver's failure on as an I/O error.
            ureq::Error::Io(io)
                if matches!(
                    io.kind(),
                    ErrorKind::ConnectionRefused
                        | ErrorKind::HostUnreachable
                        | ErrorKind::NetworkUnreachable
                        | ErrorKind::NetworkDown
                        | ErrorKind::AddrNotAvailable
                ) || io.to_string().starts_with("failed to lookup address") =>
            {
                TransportError::Connect(error)
            }
            ureq::Error::Timeout(_) => TransportError::Timeout(self.timeout),
            ureq::Error::BodyExceedsLimit(_) => TransportError::TooLong,
            // Their text may repeat the URL, query included.
            ureq::Error::BadUri(_) => {
                return RefreshFailure::misconfigured(
                    "the token URL is not a valid absolute URL; configure the token endpoint's URL",
                );
            }
            ureq::Error::RequireHttpsOnly(_) => {
                return RefreshFailure::misconfigured(
                    "the agent is configured for https only and the token URL is plain http; \
                     configure an https token URL",
                );
            }
            other => TransportError::Other(other),
        };
        transport.failure()
    }
}

impl Refresher for OAuth2Refresher {
    fn refresh(&self, refresh_token: Option<Secret>) -> Result<Token, RefreshFailure> {
        let (request, exchange) = self.grant.start_exchange(
            refresh_token.as_ref(),
            SystemTime::now(),
            random(),
            |path| std::fs::read(path),
        )?;
        let request = self
            .agent
            .configure_request(request)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(self.timeout))
            .build();
        let mut response = self
            .agent
            .run(request)
            .map_err(|e| self.transport_failure(&e))?;
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES as u64)
            .read_to_vec()
            .map_err(|e| self.transport_failure(&e))?;
        let (parts, _) = response.into_parts();
        exchange.read_response(http::Response::from_parts(parts, body))
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
            .field("token_url", &self.grant.token_url())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Builds an [`OAuth2Refresher`]: [`OAuth2Refresher::builder`].
#[must_use]
pub struct OAuth2RefresherBuilder {
    grant: RefreshGrant,
    agent: Option<Agent>,
    allow_insecure_http: bool,
    timeout: Duration,
}

impl OAuth2RefresherBuilder {
    /// Send with this agent (its proxy, TLS and connection settings). Whatever its
    /// configuration, each exchange is sent with redirects off, error statuses
    /// handed to the codec, and [`timeout`](Self::timeout) as its overall timeout
    /// (ureq's per-request `timeout_global`). Do not install the
    /// [`crate::BearerAuth`] middleware on it, nor a middleware that sends requests
    /// again. Default: a new agent.
    pub fn agent(mut self, agent: Agent) -> Self {
        self.agent = Some(agent);
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
    /// backoff. Default: 30 s, the core's default `refresh_timeout`. A blocking
    /// exchange cannot be cancelled: this timeout ends it, and no other refresh starts
    /// before then (one past `refresh_timeout` is overdue, and its late answer is still
    /// adopted).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the settings and builds the refresher.
    ///
    /// # Errors
    ///
    /// What [`RefreshGrant::check_refresher`] refuses, as [`Error::InvalidUrl`],
    /// [`Error::InsecureHttp`] or [`Error::Token`] (a zero timeout, a grant that can
    /// never work).
    pub fn build(self) -> Result<OAuth2Refresher, Error> {
        self.grant
            .check_refresher(self.allow_insecure_http, self.timeout)?;
        let agent = self.agent.unwrap_or_else(|| {
            Agent::config_builder()
                .timeout_global(Some(self.timeout))
                .http_status_as_error(false)
                .max_redirects(0)
                .build()
                .new_agent()
        });
        Ok(OAuth2Refresher {
            grant: self.grant,
            agent,
            timeout: self.timeout,
        })
    }
}

impl fmt::Debug for OAuth2RefresherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2RefresherBuilder")
            .field("token_url", &self.grant.token_url())
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// 32 bytes of the operating system's random generator: each signed assertion's `jti`.
fn random() -> Result<[u8; 32], getrandom::Error> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map(|()| random)
}
