//! A ready OAuth 2.0 refresher over ureq 3, built on the core's codec.

use std::fmt;
use std::time::{Duration, SystemTime};

use silent_refresh::oauth2::{ExchangeContext, RefreshGrant};
use silent_refresh::origin::{self, Origin};
use silent_refresh::{RefreshFailure, Secret, Token};
use ureq::Agent;

use crate::error::Error;
use crate::refresher::Refresher;

/// The longest token-endpoint answer read: token responses are a few kilobytes.
const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

/// The default timeout of one exchange, from connecting to the end of the response:
/// the core's default `refresh_timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Refreshes with the OAuth 2.0 refresh-token grant (or client credentials, when
/// there is no refresh credential), or any other grant of the core's [`RefreshGrant`]
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
/// terminal, `5xx` and `429` transient, with `Retry-After`). Transport errors
/// (connect, TLS, timeout) are transient.
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
            timeout: DEFAULT_TIMEOUT,
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

    /// A transport error as a failure that names no URL: transient, except a URL or a
    /// scheme the agent refuses, which no retry fixes (misconfigured, rule 7).
    fn transport_failure(&self, error: &ureq::Error) -> RefreshFailure {
        match error {
            ureq::Error::Timeout(_) => RefreshGrant::transport_failure(&format!(
                "no answer within the refresh request's timeout of {:?}; raise it with \
                 OAuth2RefresherBuilder::timeout if the server is that slow",
                self.timeout
            )),
            // Their text may repeat the URL, query included.
            ureq::Error::BadUri(_) => RefreshFailure::misconfigured(
                "the token URL is not a valid absolute URL; configure the token endpoint's URL",
            ),
            ureq::Error::RequireHttpsOnly(_) => RefreshFailure::misconfigured(
                "the agent is configured for https only and the token URL is plain http; \
                 configure an https token URL",
            ),
            other => RefreshGrant::transport_failure(other),
        }
    }
}

impl Refresher for OAuth2Refresher {
    fn refresh(&self, refresh_token: Option<Secret>) -> Result<Token, RefreshFailure> {
        let context = exchange_context(&self.grant)?;
        let request = self.grant.request_with(refresh_token.as_ref(), &context)?;
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
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| self.transport_failure(&e))?;
        let (mut parts, _) = response.into_parts();
        if parts.status.is_redirection() {
            silent_refresh::oauth2::redact_location(&mut parts.headers, self.grant.token_url());
        }
        self.grant.parse_response_with(
            &http::Response::from_parts(parts, body),
            refresh_token.as_ref(),
            &context,
        )
    }

    fn token_endpoint(&self) -> Option<&str> {
        Some(self.grant.token_url())
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

    /// Allow a plain `http` token endpoint that is not the loopback interface
    /// (refused by default: the refresh credential and client secret would cross the
    /// network in clear text).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// The timeout of one refresh exchange, from connecting to the end of the
    /// response; when it passes, the refresh fails as transient and is retried with
    /// backoff. Default: 30 s, the core's default `refresh_timeout`.
    ///
    /// Keep it no longer than the configuration's `refresh_timeout`: a blocking
    /// exchange cannot be cancelled, and no other refresh starts before it ends.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the token endpoint and returns the refresher.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] when the token endpoint is not an absolute http(s) URL,
    /// [`Error::InsecureHttp`] when it is plain `http` to a host other than
    /// loopback without [`allow_insecure_http`](Self::allow_insecure_http), and
    /// [`Error::Token`] with [`InvalidConfig`](silent_refresh::Error::InvalidConfig)
    /// for a zero timeout or a grant that can never work ([`RefreshGrant::check`]: a
    /// reserved extra parameter, `private_key_jwt` without a key…).
    pub fn build(self) -> Result<OAuth2Refresher, Error> {
        let url = self.grant.token_url();
        let origin = Origin::of(&origin::parse_url(url)?)?;
        if !origin.is_https() && !origin.is_loopback() && !self.allow_insecure_http {
            return Err(Error::InsecureHttp {
                origin: origin.to_string(),
            });
        }
        if self.timeout.is_zero() {
            return Err(silent_refresh::Error::InvalidConfig(
                "the refresh request's timeout must be greater than zero",
            )
            .into());
        }
        self.grant.check()?;
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

/// What one exchange takes from the world: the wall clock, 32 random bytes (the `jti`
/// of each signed assertion) and, for token exchange, the subject token, read afresh
/// from its source (never kept between exchanges).
fn exchange_context(grant: &RefreshGrant) -> Result<ExchangeContext, RefreshFailure> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| {
        RefreshFailure::transient(format!(
            "the operating system's random generator failed ({e}), so no assertion can be signed"
        ))
    })?;
    let context = ExchangeContext::new(SystemTime::now(), random);
    match grant.subject_token_source() {
        Some(source) => Ok(context.with_subject_token(source.fetch(|path| std::fs::read(path))?)),
        None => Ok(context),
    }
}
