//! A tower layer that attaches the access token (feature `tower`).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::BearerSource;
use silent_refresh_oauth2::origin::RequestUrl;

use crate::client::{AuthorizedClient, Target, dpop_url, with_token};

/// The error of a [`BearerAuthService`]: the inner service's error, or the source's
/// error ([`BearerSession::Error`](crate::BearerSession::Error), `silent_refresh_tokio::Error` for the tokio adapter)
/// when no token could be had (downcast it to see why).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A [`tower`](https://docs.rs/tower) layer that adds `Authorization: Bearer …` to
/// requests for the origins an [`AuthorizedClient`] allows, with its rules: never to
/// the token endpoint, never to another origin, and once more after a 401.
///
/// Wrap any `Service<http::Request<B>>`, such as hyper-util's legacy `Client`:
///
/// ```no_run
/// use http_body_util::Empty;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use silent_refresh_tokio::tower::BearerAuthLayer;
/// use silent_refresh_tokio::{AuthorizedClient, Config, TokenSource};
/// use tower_layer::Layer;
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
/// let http = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
/// let service = BearerAuthLayer::new(client).layer(http);
/// # let _ = service;
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
///   with the source's `OriginNotAllowed` error (in the [`BoxError`]) instead.
/// - **401.** The rejected token's generation is reported to the
///   token source (only a rejection of the current token
///   starts a refresh) and, if the body can be sent again ([`ReplayBody`]), the
///   request is sent once more with the new token, through a clone of the inner
///   service. Otherwise the 401 is returned: your own retry gets the new token.
/// - **Errors.** When no token can be had the request is not sent, and the error is the
///   source's error in a [`BoxError`].
///
/// A service that follows redirects would carry the header along: keep redirects to
/// the inner service's caller (hyper-util's client does not follow them).
#[derive(Clone, Debug)]
pub struct BearerAuthLayer<Src> {
    /// Shared by every service the layer makes: cloning a service (as a tower caller
    /// does for each request) counts one reference up, not each of the client's.
    client: Arc<AuthorizedClient<Src>>,
}

impl<Src: BearerSource> BearerAuthLayer<Src> {
    /// A layer applying `client`'s allow-list and token source.
    #[must_use]
    pub fn new(client: AuthorizedClient<Src>) -> Self {
        Self {
            client: Arc::new(client),
        }
    }
}

impl<Src: BearerSource, S> Layer<S> for BearerAuthLayer<Src> {
    type Service = BearerAuthService<Src, S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuthService {
            client: self.client.clone(),
            inner,
        }
    }
}

/// The service of a [`BearerAuthLayer`]: see there.
#[derive(Clone, Debug)]
pub struct BearerAuthService<Src, S> {
    client: Arc<AuthorizedClient<Src>>,
    inner: S,
}

impl<Src, S> BearerAuthService<Src, S> {
    /// The wrapped service.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

/// A request body that can be sent again after a 401: `replay` returns a copy, or
/// `None` when the body is a stream that can be read only once (the request is then
/// sent once, and its 401 returned after being reported).
///
/// Implemented for the in-memory bodies (`String`, `Vec<u8>`, `bytes::Bytes`,
/// `http_body_util::Full` and `Empty`), and, returning `None`, for
/// `http_body_util`'s boxed bodies. Implement it for your own body type.
pub trait ReplayBody: Sized {
    /// A copy of the body, to send the request again, if it can be had.
    fn replay(&self) -> Option<Self>;
}

impl ReplayBody for String {
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl ReplayBody for Vec<u8> {
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl ReplayBody for bytes::Bytes {
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl<D: Clone> ReplayBody for http_body_util::Full<D> {
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl<D> ReplayBody for http_body_util::Empty<D> {
    fn replay(&self) -> Option<Self> {
        Some(Self::new())
    }
}

impl<D, E> ReplayBody for http_body_util::combinators::BoxBody<D, E> {
    fn replay(&self) -> Option<Self> {
        None
    }
}

impl<D, E> ReplayBody for http_body_util::combinators::UnsyncBoxBody<D, E> {
    fn replay(&self) -> Option<Self> {
        None
    }
}

/// A copy of the request (head and body), if its body can be sent again.
fn replay<B: ReplayBody>(request: &Request<B>) -> Option<Request<B>> {
    let body = request.body().replay()?;
    let mut copy = Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

impl<Src, S, B, RB> Service<Request<B>> for BearerAuthService<Src, S>
where
    Src: BearerSource,
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError> + Send,
    B: ReplayBody + Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The inner service that was polled ready goes with the request; a clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let url = RequestUrl::of(request.uri()).ok();
        // The route of the key this request's API needs (rule 13), kept as an index: the
        // future holds the client, not a borrow of it.
        let at = match self.client.attaches(url.as_ref(), request.headers()) {
            Ok(Some((at, _))) => at,
            Ok(None) => {
                let sent = inner.call(request);
                return Box::pin(async move { sent.await.map_err(Into::into) });
            }
            Err(refused) => return Box::pin(async move { Err(refused.into()) }),
        };
        // One reference to the client goes with the request, not a clone of its source.
        let client = Arc::clone(&self.client);
        Box::pin(async move {
            // The routes never change: the index `attaches` found is the source's.
            let Some(source) = client.route_source(at) else {
                return inner.call(request).await.map_err(Into::into);
            };
            let again = replay(&request);
            let method = request.method().clone();
            let url = dpop_url(source, || request.uri().to_string());
            let target = Target {
                method: &method,
                url: url.as_deref(),
            };
            // The first send goes to the service that was polled ready; a second one
            // (after a 401) to a clone of it, polled ready first: only a retry clones.
            let mut first = true;
            let sent = with_token(
                source,
                target,
                request,
                again,
                move |mut request: Request<B>, headers| {
                    headers.apply(request.headers_mut());
                    let send = if std::mem::take(&mut first) {
                        Ok(inner.call(request))
                    } else {
                        Err((inner.clone(), request))
                    };
                    async move {
                        match send {
                            Ok(sent) => sent.await,
                            Err((mut again, request)) => {
                                poll_fn(|cx| again.poll_ready(cx)).await?;
                                again.call(request).await
                            }
                        }
                    }
                },
            )
            .await?;
            sent.map_err(Into::into)
        })
    }
}
