//! The HTTP integrations of `silent-refresh-http`, for this crate's [`TokenSource`]:
//! the same types under this crate's names, so a program needs no other crate.

use std::future::Future;
use std::sync::Arc;

use http::HeaderValue;
use silent_refresh::{AccessToken, Generation};
use silent_refresh_http::BearerSource;

use crate::error::Error;
use crate::source::TokenSource;

pub use silent_refresh_http::ResponseStatus;

/// Attaches the token to requests for the origins you allow, and retries once after a
/// 401 with the new token: `silent_refresh_http::AuthorizedClient` over this crate's
/// [`TokenSource`] (see there for the rules and an example).
pub type AuthorizedClient = silent_refresh_http::AuthorizedClient<TokenSource>;

/// Builds an [`AuthorizedClient`]: `AuthorizedClient::builder(source)`.
pub type AuthorizedClientBuilder = silent_refresh_http::AuthorizedClientBuilder<TokenSource>;

/// The `Authorization` header value for `token`, marked sensitive.
///
/// # Errors
///
/// [`Error::InvalidToken`] if the token holds characters a header may not.
pub fn authorization(token: &AccessToken) -> Result<HeaderValue, Error> {
    silent_refresh_http::authorization::<TokenSource>(token)
}

impl BearerSource for TokenSource {
    type Error = Error;

    fn token(&self) -> impl Future<Output = Result<Arc<AccessToken>, Error>> + Send {
        TokenSource::token(self)
    }

    fn report_rejected(&self, generation: Generation) {
        TokenSource::report_rejected(self, generation);
    }

    fn token_endpoint(&self) -> Option<&str> {
        TokenSource::token_endpoint(self)
    }

    fn invalid_token() -> Error {
        Error::InvalidToken
    }

    fn send_failed(error: Box<dyn std::error::Error + Send + Sync>) -> Error {
        Error::Send(error)
    }
}
