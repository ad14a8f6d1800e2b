//! A reqwest-middleware middleware that attaches the access token (feature
//! `reqwest-middleware`).

use http::Extensions;
use http::StatusCode;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};
use silent_refresh_oauth2::origin::RequestUrl;

use crate::BearerSource;
use crate::client::{AuthorizedClient, ResponseStatus, Target, dpop_url, with_token};

/// A [`reqwest_middleware::Middleware`] that adds `Authorization: Bearer …` to
/// requests for the origins an [`AuthorizedClient`] allows, with its rules: never to
/// the token endpoint, never to another origin, and once more after a 401. The same
/// name and behaviour as the blocking adapter's ureq middleware.
///
/// ```
/// use silent_refresh_tokio::middleware::BearerAuth;
/// use silent_refresh_tokio::{AuthorizedClient, Config, TokenSource};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), silent_refresh_tokio::Error> {
/// # let source = TokenSource::builder(Config::default())
/// #     .refresher(|_: Option<silent_refresh_tokio::Secret>| async {
/// #         Err(silent_refresh_tokio::RefreshFailure::terminal("not in this example"))
/// #     })
/// #     .build()?;
/// let client = AuthorizedClient::builder(source)
///     .allow_url("https://api.example.com/v1/")
///     .build()?;
/// let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(BearerAuth::new(client))
///     .build();
/// # let _ = http;
/// # Ok(())
/// # }
/// ```
///
/// Request by request:
/// - **Origins.** A request for the token endpoint, and one that already carries an
///   `Authorization` header, are passed on untouched. One whose origin is not allowed
///   goes out without a token too, and a warning names its origin (once per origin:
///   often a typo such as `localhost` for `127.0.0.1`); with
///   [`strict_origins`](crate::AuthorizedClientBuilder::strict_origins) it is refused
///   with the source's `OriginNotAllowed` error instead.
/// - **401.** The rejected token's generation is reported to the
///   token source (only a rejection of the current token
///   starts a refresh) and, if reqwest can copy the request (its body is not a
///   stream), it is sent once more down the chain with the new token. Otherwise the
///   401 is returned: your own retry gets the new token.
/// - **Errors.** When no token can be had the request is not sent, and the error is
///   [`reqwest_middleware::Error::Middleware`] holding the source's error (downcast
///   it to see why). A reqwest error of an authorized request loses its URL, whose
///   query may hold secrets.
///
/// reqwest removes the `Authorization` header when a redirect leads to another host.
#[derive(Clone, Debug)]
pub struct BearerAuth<S> {
    client: AuthorizedClient<S>,
}

impl<S: BearerSource> BearerAuth<S> {
    /// A middleware applying `client`'s allow-list and token source.
    #[must_use]
    pub fn new(client: AuthorizedClient<S>) -> Self {
        Self { client }
    }
}

#[async_trait::async_trait]
impl<S: BearerSource> Middleware for BearerAuth<S> {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        // The source of the key this request's API needs (rule 13).
        // The URL read in place: not written out and parsed again.
        let url = RequestUrl::of_url(request.url()).ok();
        let source = self
            .client
            .attaches(url.as_ref(), request.headers())
            .map_err(reqwest_middleware::Error::middleware)?;
        let Some((_, source)) = source else {
            return next.run(request, extensions).await;
        };
        // Each send gets its own copy of the extensions; those of the answer returned
        // are handed back.
        let again = request.try_clone().map(|r| (r, extensions.clone()));
        let method = request.method().clone();
        let url = dpop_url(source, || request.url().to_string());
        let target = Target {
            method: &method,
            url: url.as_deref(),
        };
        let first = (request, extensions.clone());
        let sent = with_token(
            source,
            target,
            first,
            again,
            |(mut request, mut copy): (Request, Extensions), headers| {
                headers.apply(request.headers_mut());
                let next = next.clone();
                async move {
                    let response = next.run(request, &mut copy).await?;
                    Ok(Answer {
                        response,
                        extensions: copy,
                    })
                }
            },
        )
        .await
        .map_err(reqwest_middleware::Error::middleware)?;
        let answer = sent.map_err(reqwest_middleware::Error::without_url)?;
        *extensions = answer.extensions;
        Ok(answer.response)
    }
}

/// A response and the extensions the chain left with it.
struct Answer {
    response: Response,
    extensions: Extensions,
}

impl ResponseStatus for Answer {
    fn status(&self) -> StatusCode {
        self.response.status()
    }

    fn headers(&self) -> Option<&http::HeaderMap> {
        Some(self.response.headers())
    }
}
