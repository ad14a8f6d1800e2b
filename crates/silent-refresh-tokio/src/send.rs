//! Sending through any HTTP client with the token attached, and once more after a 401.

use std::future::Future;
use std::sync::Arc;

use http::{HeaderValue, StatusCode, Uri};
use silent_refresh::AccessToken;
use silent_refresh::origin::{self, OriginPolicy, OriginPolicyBuilder};

use crate::error::Error;
use crate::source::TokenSource;

/// A response whose status the send helper can read, to spot a 401.
///
/// Implemented for [`http::Response`], [`http::StatusCode`] and, with the `reqwest`
/// feature, `reqwest::Response`; implement it for another client's response type.
pub trait ResponseStatus {
    /// The HTTP status.
    fn status(&self) -> StatusCode;
}

impl<B> ResponseStatus for http::Response<B> {
    fn status(&self) -> StatusCode {
        http::Response::status(self)
    }
}

impl ResponseStatus for StatusCode {
    fn status(&self) -> StatusCode {
        *self
    }
}

#[cfg(feature = "reqwest")]
impl ResponseStatus for reqwest::Response {
    fn status(&self) -> StatusCode {
        reqwest::Response::status(self)
    }
}

/// Attaches the token to requests for the origins you allow, and retries once after a
/// 401 with the new token.
///
/// Build it with [`AuthorizedClient::builder`]. It refuses (with an error, before
/// sending anything):
/// - an origin (scheme, host, port) not on its allow-list;
/// - the refresher's token endpoint, even on an allowed origin;
/// - plain `http` to anything but loopback, unless you opted in with
///   [`AuthorizedClientBuilder::allow_insecure_http`].
///
/// The rule is the core's [`OriginPolicy`](silent_refresh::origin::OriginPolicy),
/// shared with the blocking adapter.
///
/// ```
/// use std::time::Duration;
/// use http::StatusCode;
/// use silent_refresh_tokio::{AuthorizedClient, TokenSource};
/// use silent_refresh_tokio::silent_refresh::{Config, Credentials, Expiry, RefreshFailure, Secret, Token};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), silent_refresh_tokio::Error> {
/// let source = TokenSource::builder(Config::default())
///     .credentials(Credentials::RefreshToken("rt".into()))
///     .refresher(|_rt: Option<Secret>| async {
///         Ok::<_, RefreshFailure>(Token::bearer("at", Expiry::In(Duration::from_secs(600))))
///     })
///     .build()?;
/// let client = AuthorizedClient::builder(source)
///     .allow_origin("https://api.example.com")
///     .build()?;
/// // Any client: the closure gets the URL and the `Authorization` header value.
/// let status = client
///     .send("https://api.example.com/me", |_uri, authorization| async move {
///         assert_eq!(authorization.to_str().unwrap_or_default(), "Bearer at");
///         Ok::<_, std::io::Error>(StatusCode::OK)
///     })
///     .await?;
/// assert_eq!(status, StatusCode::OK);
/// // Another origin never sees the token.
/// let refused = client
///     .send("https://elsewhere.example/", |_, _| async { Ok::<_, std::io::Error>(StatusCode::OK) })
///     .await;
/// assert!(matches!(refused, Err(silent_refresh_tokio::Error::OriginNotAllowed { .. })));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct AuthorizedClient {
    source: TokenSource,
    policy: Arc<OriginPolicy>,
}

impl AuthorizedClient {
    /// A builder for a client that takes its tokens from `source`.
    pub fn builder(source: TokenSource) -> AuthorizedClientBuilder {
        AuthorizedClientBuilder {
            source,
            policy: OriginPolicy::builder(),
        }
    }

    /// The token source.
    #[must_use]
    pub fn source(&self) -> &TokenSource {
        &self.source
    }

    /// Checks that a token may be sent to `url`, and returns it parsed.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`], [`Error::OriginNotAllowed`] or [`Error::TokenEndpoint`].
    pub fn check(&self, url: &str) -> Result<Uri, Error> {
        let uri = origin::parse_url(url)?;
        self.policy.check(&uri)?;
        Ok(uri)
    }

    /// Sends a request to `url` through `send`, with the token attached.
    ///
    /// `send` gets the checked URL and the `Authorization` header value (marked
    /// sensitive, so well-behaved clients do not log it) and sends the request. If the
    /// answer is 401, the rejected token's generation is reported to the source, and
    /// `send` is called once more with the new token; that second answer is returned
    /// whatever its status.
    ///
    /// # Errors
    ///
    /// The checks of [`check`](Self::check), the source's [`Error::Token`] when no token
    /// can be had, [`Error::InvalidToken`], and [`Error::Send`] with `send`'s error.
    pub async fn send<F, Fut, T, E>(&self, url: &str, mut send: F) -> Result<T, Error>
    where
        F: FnMut(Uri, HeaderValue) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: ResponseStatus,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let uri = self.check(url)?;
        let token = self.source.token().await?;
        let response = send(uri.clone(), authorization(&token)?)
            .await
            .map_err(|e| Error::Send(e.into()))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        self.source.report_rejected(token.generation);
        drop(response);
        let token = self.source.token().await?;
        let response = send(uri, authorization(&token)?)
            .await
            .map_err(|e| Error::Send(e.into()))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            self.source.report_rejected(token.generation);
        }
        Ok(response)
    }

    /// Executes a reqwest request with the token attached, retrying once after a 401.
    ///
    /// The retry needs a copy of the request: one with a streaming body is sent once
    /// (its 401 is still reported, so the next request gets a new token). reqwest
    /// strips the `Authorization` header on redirects to another host.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    #[cfg(feature = "reqwest")]
    pub async fn execute(
        &self,
        client: &reqwest::Client,
        request: reqwest::Request,
    ) -> Result<reqwest::Response, Error> {
        self.check(request.url().as_str())?;
        let retry = request.try_clone();
        let token = self.source.token().await?;
        let response = execute_with(client, request, &token).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        self.source.report_rejected(token.generation);
        let Some(retry) = retry else {
            return Ok(response);
        };
        drop(response);
        let token = self.source.token().await?;
        let response = execute_with(client, retry, &token).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            self.source.report_rejected(token.generation);
        }
        Ok(response)
    }
}

#[cfg(feature = "reqwest")]
async fn execute_with(
    client: &reqwest::Client,
    mut request: reqwest::Request,
    token: &AccessToken,
) -> Result<reqwest::Response, Error> {
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, authorization(token)?);
    client
        .execute(request)
        .await
        .map_err(|e| Error::Send(Box::new(e.without_url())))
}

/// The `Authorization` header value for `token`, marked sensitive.
///
/// # Errors
///
/// [`Error::InvalidToken`] if the token holds characters a header may not.
pub fn authorization(token: &AccessToken) -> Result<HeaderValue, Error> {
    let mut value =
        HeaderValue::from_str(&token.authorization()).map_err(|_| Error::InvalidToken)?;
    value.set_sensitive(true);
    Ok(value)
}

/// Builds an [`AuthorizedClient`].
#[derive(Debug)]
pub struct AuthorizedClientBuilder {
    source: TokenSource,
    policy: OriginPolicyBuilder,
}

impl AuthorizedClientBuilder {
    /// Allows sending the token to this origin: `https://host` or `https://host:port`
    /// (scheme, host and port, nothing else). A path, a query or a user is refused
    /// when the client is built: the token goes to every path of the origin.
    #[must_use]
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.policy = self.policy.allow_origin(&origin.into());
        self
    }

    /// Allows plain `http` origins beyond loopback: the token then crosses the network
    /// unencrypted. Only for trusted networks.
    #[must_use]
    pub fn allow_insecure_http(mut self) -> Self {
        self.policy = self.policy.allow_plain_http(true);
        self
    }

    /// Checks the allow-list and builds the client.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOrigin`] for an origin that is not `scheme://host[:port]`,
    /// [`Error::InvalidUrl`] for a refresher's token endpoint that is not an http(s)
    /// URL, [`Error::NoOrigin`] when no origin was allowed, [`Error::InsecureHttp`]
    /// for a plain-http origin other than loopback without
    /// [`allow_insecure_http`](Self::allow_insecure_http).
    pub fn build(self) -> Result<AuthorizedClient, Error> {
        let mut policy = self.policy;
        if let Some(url) = self.source.token_endpoint() {
            policy = policy.exclude(url);
        }
        Ok(AuthorizedClient {
            policy: Arc::new(policy.build()?),
            source: self.source,
        })
    }
}
