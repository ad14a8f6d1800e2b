//! The HTTP client a runtime sends with: what an adapter brings (reqwest for tokio, a
//! ureq agent for threads, `fetch` in the browser), for its `OAuth2Refresher`'s
//! exchanges and the sign-in flows' requests.

#[cfg(any(feature = "tokio", all(feature = "wasm", target_arch = "wasm32")))]
use std::future::Future;
use std::time::Duration;

use silent_refresh::RefreshFailure;

use crate::Error;

/// An HTTP client an [`OAuth2Refresher`](crate::oauth2_refresher::OAuth2Refresher) sends its exchanges with: what an adapter
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

/// A client that sends one exchange from the browser's event loop (feature `wasm`, on
/// wasm32): `fetch`. Its futures are not `Send`: nothing there runs on another thread.
#[cfg(all(feature = "wasm", target_arch = "wasm32"))]
pub trait LocalHttpClient: HttpClient {
    /// As [`BlockingHttpClient::send`], as a future of this thread.
    fn send(
        &self,
        request: http::Request<Vec<u8>>,
        timeout: Duration,
    ) -> impl Future<Output = Result<http::Response<Vec<u8>>, RefreshFailure>>;
}
