//! The reqwest client the tokio adapter's `OAuth2Refresher` sends with.

use std::time::Duration;

use silent_refresh::RefreshFailure;
use silent_refresh_driver::oauth2_refresher::{AsyncHttpClient, HttpClient};
use silent_refresh_oauth2::{MAX_RESPONSE_BYTES, TransportError};

use crate::Error;

/// Refreshes against an OAuth 2.0 token endpoint with reqwest (feature `reqwest`): the
/// driver's refresher over [`Reqwest`] (see there for what it sends and how failures
/// are classified).
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
pub type OAuth2Refresher = silent_refresh_driver::oauth2_refresher::OAuth2Refresher<Reqwest>;

/// Builds an [`OAuth2Refresher`]: `OAuth2Refresher::builder(grant)`; its client settings
/// are a [`reqwest::ClientBuilder`].
pub type OAuth2RefresherBuilder =
    silent_refresh_driver::oauth2_refresher::OAuth2RefresherBuilder<Reqwest>;

/// The reqwest client of an [`OAuth2Refresher`].
///
/// It is built from a [`reqwest::ClientBuilder`], not a built `Client`, because a built
/// client's redirect policy cannot be read or changed, and reqwest's default one
/// follows a `307` or `308` by sending the body (the refresh credential) again to
/// wherever the `Location` points. It sets
/// [`redirect::Policy::none`](reqwest::redirect::Policy::none) on the builder it is
/// given, so no settings can make it follow a redirect, and puts the refresher's
/// timeout on every request, whatever the builder's own.
#[derive(Clone, Debug)]
pub struct Reqwest(reqwest::Client);

impl HttpClient for Reqwest {
    type Settings = reqwest::ClientBuilder;

    fn build(settings: Option<reqwest::ClientBuilder>, _: Duration) -> Result<Self, Error> {
        let client = settings
            .unwrap_or_default()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::HttpClient(Box::new(e.without_url())))?;
        Ok(Self(client))
    }
}

impl AsyncHttpClient for Reqwest {
    async fn send(
        &self,
        request: http::Request<Vec<u8>>,
        timeout: Duration,
    ) -> Result<http::Response<Vec<u8>>, RefreshFailure> {
        let mut request = reqwest::Request::try_from(request)
            .map_err(|e| TransportError::Other(&describe(e)).failure())?;
        *request.timeout_mut() = Some(timeout);
        let transport = |e: reqwest::Error| transport_failure(e, timeout);
        let mut response = self.0.execute(request).await.map_err(transport)?;
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
        Ok(answer)
    }
}

/// A reqwest error as the codec's transport error: a failure to connect, a timeout, or
/// anything else.
fn transport_failure(error: reqwest::Error, timeout: Duration) -> RefreshFailure {
    if error.is_connect() {
        TransportError::Connect(&describe(error)).failure()
    } else if error.is_timeout() {
        TransportError::Timeout(timeout).failure()
    } else {
        TransportError::Other(&describe(error)).failure()
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
