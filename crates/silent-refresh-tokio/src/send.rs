//! The HTTP integrations of `silent-refresh-http`, for this crate's [`TokenSource`]:
//! the same types under this crate's names, so a program names no `silent-refresh-http` type (it still
//! depends on the HTTP client it sends with: reqwest, or the tower service it wraps).

use http::HeaderValue;
use silent_refresh::AccessToken;

use crate::{Error, TokenSource};

pub use silent_refresh_http::{ResponseStatus, TokenHeaders};

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
