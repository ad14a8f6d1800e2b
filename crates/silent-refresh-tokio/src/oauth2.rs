//! A ready OAuth 2.0 refresher over reqwest, built on the core's codec.

use silent_refresh::oauth2::RefreshGrant;
use silent_refresh::{RefreshFailure, Secret, Token};

use crate::error::Error;
use crate::refresher::Refresher;

/// The most of a token endpoint's response that is read; a longer one is a failure.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Refreshes against an OAuth 2.0 token endpoint (RFC 6749 §6) with reqwest.
///
/// The request and the reading of the response (including which errors are terminal)
/// come from the core's [`RefreshGrant`]; a network failure is transient.
///
/// ```no_run
/// use silent_refresh_tokio::{OAuth2Refresher, TokenSource};
/// use silent_refresh_tokio::silent_refresh::{Config, Credentials};
/// use silent_refresh_tokio::silent_refresh::oauth2::RefreshGrant;
///
/// # async fn run() -> Result<(), silent_refresh_tokio::Error> {
/// let grant = RefreshGrant::new("https://auth.example.com/oauth/token", "my-client")
///     .client_secret("client-secret");
/// let source = TokenSource::builder(Config::default())
///     .credentials(Credentials::RefreshToken("stored-refresh-token".into()))
///     .refresher(OAuth2Refresher::new(grant)?)
///     .build()?;
/// let token = source.token().await?;
/// # let _ = token;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct OAuth2Refresher {
    client: reqwest::Client,
    grant: RefreshGrant,
}

impl OAuth2Refresher {
    /// A refresher for `grant` with its own reqwest client.
    ///
    /// # Errors
    ///
    /// [`Error::HttpClient`] if the client cannot be built (TLS setup).
    pub fn new(grant: RefreshGrant) -> Result<Self, Error> {
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| Error::HttpClient(Box::new(e)))?;
        Ok(Self::with_client(client, grant))
    }

    /// A refresher for `grant` that sends with `client`.
    pub fn with_client(client: reqwest::Client, grant: RefreshGrant) -> Self {
        Self { client, grant }
    }

    /// The grant's settings.
    #[must_use]
    pub fn grant(&self) -> &RefreshGrant {
        &self.grant
    }

    async fn send(&self, refresh_token: Option<&Secret>) -> Result<Token, RefreshFailure> {
        let request = self.grant.request(refresh_token)?;
        let request = reqwest::Request::try_from(request)
            .map_err(|e| RefreshGrant::transport_failure(&e.without_url()))?;
        let mut response = self
            .client
            .execute(request)
            .await
            .map_err(|e| RefreshGrant::transport_failure(&e.without_url()))?;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| RefreshGrant::transport_failure(&e.without_url()))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(RefreshFailure::transient(format!(
                    "the token endpoint's response is longer than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let mut parsed = http::Response::new(body);
        *parsed.status_mut() = response.status();
        *parsed.version_mut() = response.version();
        *parsed.headers_mut() = std::mem::take(response.headers_mut());
        self.grant.parse_response_for(&parsed, refresh_token)
    }
}

impl Refresher for OAuth2Refresher {
    async fn refresh(&self, refresh_token: Option<Secret>) -> Result<Token, RefreshFailure> {
        self.send(refresh_token.as_ref()).await
    }

    fn token_endpoint(&self) -> Option<&str> {
        Some(self.grant.token_url())
    }
}
