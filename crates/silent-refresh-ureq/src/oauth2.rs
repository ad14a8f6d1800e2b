//! A ready OAuth 2.0 refresher over ureq 3, built on the core's codec.

use std::fmt;
use std::time::Duration;

use silent_refresh::oauth2::RefreshGrant;
use silent_refresh::origin::{self, Origin};
use silent_refresh::{RefreshFailure, Secret, Token};
use ureq::Agent;

use crate::error::Error;
use crate::refresher::Refresher;

/// The longest token-endpoint answer read: token responses are a few kilobytes.
const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

/// The timeout of the default agent, for the whole exchange.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Refreshes with the OAuth 2.0 refresh-token grant (or client credentials, when
/// there is no refresh credential), sending the core's
/// [`RefreshGrant`] request with a ureq 3 agent.
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
/// The agent never follows redirects for the token request (a `POST` that carries
/// the credentials) and hands error statuses to the codec, which classifies them
/// (`invalid_grant` is terminal, `5xx` and `429` transient, with `Retry-After`).
/// Transport errors (connect, TLS, timeout) are transient.
pub struct OAuth2Refresher {
    grant: RefreshGrant,
    agent: Agent,
}

impl OAuth2Refresher {
    /// A builder for a refresher that sends `grant`'s requests.
    pub fn builder(grant: RefreshGrant) -> OAuth2RefresherBuilder {
        OAuth2RefresherBuilder {
            grant,
            agent: None,
            allow_insecure_http: false,
        }
    }
}

impl Refresher for OAuth2Refresher {
    fn refresh(&self, refresh_token: Option<Secret>) -> Result<Token, RefreshFailure> {
        let request = self.grant.request(refresh_token.as_ref())?;
        let request = self
            .agent
            .configure_request(request)
            .http_status_as_error(false)
            .max_redirects(0)
            .build();
        let mut response = self
            .agent
            .run(request)
            .map_err(|e| RefreshGrant::transport_failure(&e))?;
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| RefreshGrant::transport_failure(&e))?;
        let (parts, _) = response.into_parts();
        self.grant.parse_response_for(
            &http::Response::from_parts(parts, body),
            refresh_token.as_ref(),
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
            .finish_non_exhaustive()
    }
}

/// Builds an [`OAuth2Refresher`].
#[must_use]
pub struct OAuth2RefresherBuilder {
    grant: RefreshGrant,
    agent: Option<Agent>,
    allow_insecure_http: bool,
}

impl OAuth2RefresherBuilder {
    /// Send with this agent (its proxy, TLS and timeout settings). Give it a
    /// timeout. Error statuses and redirects are handled per request whatever its
    /// configuration. Do not install the [`crate::BearerAuth`] middleware on it.
    /// Default: an agent with a 30 s overall timeout.
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

    /// Checks the token endpoint and returns the refresher.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] when the token endpoint is not an absolute http(s) URL,
    /// [`Error::InsecureOrigin`] when it is plain `http` to a host other than
    /// loopback without [`allow_insecure_http`](Self::allow_insecure_http).
    pub fn build(self) -> Result<OAuth2Refresher, Error> {
        let url = self.grant.token_url();
        let origin = Origin::of(&origin::parse_url(url)?)?;
        if !origin.is_https() && !origin.is_loopback() && !self.allow_insecure_http {
            return Err(Error::InsecureOrigin {
                origin: origin.to_string(),
            });
        }
        let agent = self.agent.unwrap_or_else(|| {
            Agent::config_builder()
                .timeout_global(Some(DEFAULT_TIMEOUT))
                .http_status_as_error(false)
                .max_redirects(0)
                .build()
                .new_agent()
        });
        Ok(OAuth2Refresher {
            grant: self.grant,
            agent,
        })
    }
}

impl fmt::Debug for OAuth2RefresherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2RefresherBuilder")
            .field("token_url", &self.grant.token_url())
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish_non_exhaustive()
    }
}
