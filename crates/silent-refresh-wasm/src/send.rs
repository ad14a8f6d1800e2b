//! Calls to the program's API through `fetch`, with the token attached by the same
//! rules as every other integration (`silent_refresh_http::AuthorizedClient`): only to
//! the origins allowed, never to the token endpoint, and once more after a 401.

use std::future::Future;

use silent_refresh_driver::Error;

use crate::fetch::{Redirects, fetch};
use crate::{AuthorizedClient, TokenHeaders};

/// Sends requests with the page's `fetch` through an [`AuthorizedClient`].
pub trait AuthorizedFetch {
    /// Sends `request` with `fetch`, with the token attached, and reads the whole
    /// answer. The rules are the client's ([`AuthorizedClient::send`]): a refused
    /// origin or the token endpoint is an error before anything is sent; a `401` is
    /// reported and the request sent once more with the new token; a missing scope or a
    /// step-up is a typed error. Redirects are followed as the browser does (it drops
    /// `Authorization` when a redirect leads to another origin).
    ///
    /// # Errors
    ///
    /// As [`AuthorizedClient::send`]; a failure of `fetch` is [`Error::Send`].
    fn fetch(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> impl Future<Output = Result<http::Response<Vec<u8>>, Error>>;
}

impl AuthorizedFetch for AuthorizedClient {
    async fn fetch(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, Error> {
        let (parts, body) = request.into_parts();
        let url = parts.uri.to_string();
        let send = |uri: http::Uri, token: TokenHeaders| {
            let mut request = http::Request::new(body.clone());
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = uri;
            *request.headers_mut() = parts.headers.clone();
            token.apply(request.headers_mut());
            fetch(request, Redirects::Followed, None)
        };
        self.send(&parts.method, &url, send).await
    }
}
