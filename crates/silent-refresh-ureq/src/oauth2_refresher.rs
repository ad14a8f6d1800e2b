//! The ureq agent the blocking adapter's `OAuth2Refresher` sends with.

use std::io::ErrorKind;
use std::time::Duration;

use silent_refresh::RefreshFailure;
use silent_refresh_driver::oauth2_refresher::{BlockingHttpClient, HttpClient};
use silent_refresh_oauth2::{MAX_RESPONSE_BYTES, TransportError};

use crate::Error;

/// Refreshes against an OAuth 2.0 token endpoint with a ureq 3 agent: the driver's
/// refresher over [`UreqAgent`] (see there for what it sends and how failures are
/// classified). A blocking exchange cannot be cancelled: its timeout ends it.
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
pub type OAuth2Refresher = silent_refresh_driver::oauth2_refresher::OAuth2Refresher<UreqAgent>;

/// Builds an [`OAuth2Refresher`]: `OAuth2Refresher::builder(grant)`; its client settings
/// are a ureq [`Agent`](ureq::Agent).
pub type OAuth2RefresherBuilder =
    silent_refresh_driver::oauth2_refresher::OAuth2RefresherBuilder<UreqAgent>;

/// The ureq agent of an [`OAuth2Refresher`]: the one given as its client settings (its
/// proxy, TLS and connection settings), or a new one. Whatever its configuration, each
/// exchange is sent with redirects off, error statuses handed to the codec, and the
/// refresher's timeout as its overall timeout (ureq's per-request `timeout_global`). Do
/// not install the [`BearerAuth`](crate::BearerAuth) middleware on it, nor a
/// middleware that sends requests again.
#[derive(Clone, Debug)]
pub struct UreqAgent(ureq::Agent);

impl HttpClient for UreqAgent {
    type Settings = ureq::Agent;

    fn build(settings: Option<ureq::Agent>, timeout: Duration) -> Result<Self, Error> {
        Ok(Self(settings.unwrap_or_else(|| {
            ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .http_status_as_error(false)
                .max_redirects(0)
                .build()
                .new_agent()
        })))
    }
}

impl BlockingHttpClient for UreqAgent {
    fn send(
        &self,
        request: http::Request<Vec<u8>>,
        timeout: Duration,
    ) -> Result<http::Response<Vec<u8>>, RefreshFailure> {
        let request = self
            .0
            .configure_request(request)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .build();
        let failure = |e: ureq::Error| transport_failure(&e, timeout);
        let mut response = self.0.run(request).map_err(failure)?;
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES as u64)
            .read_to_vec()
            .map_err(failure)?;
        let (parts, _) = response.into_parts();
        Ok(http::Response::from_parts(parts, body))
    }
}

/// A transport error as a failure that names no URL: unreachable when no connection
/// could be made, transient otherwise, except a URL or a scheme the agent refuses,
/// which no retry fixes (misconfigured, rule 7).
fn transport_failure(error: &ureq::Error, timeout: Duration) -> RefreshFailure {
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
        ureq::Error::Timeout(_) => TransportError::Timeout(timeout),
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
