//! Sending through any HTTP client with the token attached, and once more after a 401.

use std::future::Future;
use std::sync::Arc;

use http::{HeaderValue, StatusCode, Uri};
use silent_refresh::AccessToken;
use silent_refresh_oauth2::challenge::{ResourceVerdict, resource_verdict};
#[cfg(any(feature = "tower", feature = "reqwest-middleware", feature = "ureq"))]
use silent_refresh_oauth2::origin::Route;
use silent_refresh_oauth2::origin::{
    self, Origin, OriginPolicy, OriginPolicyBuilder, Refusal, RequestUrl, UnlistedOrigins,
};
use silent_refresh_oauth2::routes::Routes;

use crate::redact::send_error;
use crate::{BearerSession, BearerSource};

/// A response whose status the send helper can read, to spot a 401.
///
/// Implemented for [`http::Response`], [`http::StatusCode`] and, with the `reqwest`
/// feature, `reqwest::Response`; implement it for another client's response type.
pub trait ResponseStatus {
    /// The HTTP status.
    fn status(&self) -> StatusCode;

    /// The response's headers, if there are any to read: the `WWW-Authenticate`
    /// challenges (what a `401` or `403` says about the token) and a DPoP server's
    /// `DPoP-Nonce`. `None` (the default) reads a `401` as a plain rejection.
    fn headers(&self) -> Option<&http::HeaderMap> {
        None
    }
}

impl<B> ResponseStatus for http::Response<B> {
    fn status(&self) -> StatusCode {
        http::Response::status(self)
    }

    fn headers(&self) -> Option<&http::HeaderMap> {
        Some(http::Response::headers(self))
    }
}

impl<T: ResponseStatus + ?Sized> ResponseStatus for &T {
    fn status(&self) -> StatusCode {
        (**self).status()
    }

    fn headers(&self) -> Option<&http::HeaderMap> {
        (**self).headers()
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

    fn headers(&self) -> Option<&http::HeaderMap> {
        Some(reqwest::Response::headers(self))
    }
}

/// The headers a request carries its token in: `Authorization` (marked sensitive, so
/// well-behaved clients do not log it) and, for a DPoP-bound token, the proof of the
/// session's key for this one request (`DPoP`).
#[derive(Clone, Debug)]
pub struct TokenHeaders {
    /// `Bearer …`, or `DPoP …` for a bound token.
    pub authorization: HeaderValue,
    /// The `DPoP` proof, for a bound token.
    pub dpop: Option<HeaderValue>,
}

impl TokenHeaders {
    /// Puts the headers into `headers` (replacing any of the same name).
    pub fn apply(self, headers: &mut http::HeaderMap) {
        headers.insert(http::header::AUTHORIZATION, self.authorization);
        if let Some(proof) = self.dpop {
            headers.insert(http::HeaderName::from_static("dpop"), proof);
        }
    }
}

/// A request as the token rule needs to know it: its method and URL (a DPoP proof
/// names them; a nonce is kept per origin).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "dpop"), allow(dead_code))]
pub(crate) struct Target<'a> {
    pub(crate) method: &'a http::Method,
    /// The URL, from [`dpop_url`]: only for a source with a DPoP key.
    pub(crate) url: Option<&'a str>,
}

/// The request's URL for its [`Target`], written out only when `source` has a DPoP
/// key (which is fixed when the source is built): no other request needs it, so no
/// other request pays for a copy of it.
pub(crate) fn dpop_url<S: BearerSession>(
    source: &S,
    url: impl FnOnce() -> String,
) -> Option<String> {
    #[cfg(feature = "dpop")]
    if source.dpop().is_some() {
        return Some(url());
    }
    #[cfg(not(feature = "dpop"))]
    let _ = (source, url);
    None
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
/// The rule is the codec's [`OriginPolicy`](silent_refresh_oauth2::origin::OriginPolicy),
/// shared with the blocking adapter. Every error is the source's
/// ([`BearerSession::Error`]; `silent_refresh_tokio::Error` for the tokio adapter).
///
/// ```
/// use std::time::Duration;
/// use http::StatusCode;
/// use silent_refresh_tokio::{
///     AuthorizedClient, Config, Credentials, Expiry, RefreshFailure, Secret, Token, TokenSource,
/// };
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
/// // Any client: the closure gets the URL and the headers to set.
/// let status = client
///     .send(&http::Method::GET, "https://api.example.com/me", |_uri, headers| async move {
///         assert_eq!(headers.authorization.to_str().unwrap_or_default(), "Bearer at");
///         assert!(headers.dpop.is_none());
///         Ok::<_, std::io::Error>(StatusCode::OK)
///     })
///     .await?;
/// assert_eq!(status, StatusCode::OK);
/// // Another origin never sees the token.
/// let refused = client
///     .send(&http::Method::GET, "https://elsewhere.example/", |_, _| async { Ok::<_, std::io::Error>(StatusCode::OK) })
///     .await;
/// assert!(matches!(refused, Err(silent_refresh_tokio::Error::OriginNotAllowed { .. })));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct AuthorizedClient<S> {
    source: S,
    policy: Arc<OriginPolicy>,
    /// Which source's token each allowed origin or URL prefix gets (rule 13).
    routes: Arc<Routes<S>>,
    /// The unlisted origins a middleware sent a request to without the token (said
    /// once each).
    #[cfg_attr(
        not(any(feature = "tower", feature = "reqwest-middleware", feature = "ureq")),
        allow(dead_code)
    )]
    unlisted: Arc<UnlistedOrigins>,
    /// Refuse requests to unlisted origins instead of sending them without the token.
    #[cfg_attr(
        not(any(feature = "tower", feature = "reqwest-middleware", feature = "ureq")),
        allow(dead_code)
    )]
    strict: bool,
}

impl<S: BearerSession> AuthorizedClient<S> {
    /// A builder for a client that takes its tokens from `source`.
    pub fn builder(source: S) -> AuthorizedClientBuilder<S> {
        AuthorizedClientBuilder {
            source,
            policy: OriginPolicy::builder(),
            routes: Routes::default(),
            strict: false,
        }
    }

    /// The source whose token a request for `uri` gets: the one of the longest origin
    /// or URL prefix given to the builder that `uri` starts with (`None`: none).
    #[must_use]
    pub fn source_for(&self, uri: &Uri) -> Option<&S> {
        self.routes.select(uri)
    }

    /// The source whose token a request for `url` gets, or why it gets none: the
    /// policy's refusal, or an allowed origin outside every prefix given for it.
    fn authorize(&self, url: &RequestUrl<'_>) -> Result<&S, S::Error> {
        self.policy.permits_url(url)?;
        match self.routes.select_url(url) {
            Some(source) => Ok(source),
            None => Err(Refusal::NotAllowed {
                origin: url.origin(),
            }
            .into()),
        }
    }

    /// The source kept at `at` by the routes (an index [`attaches`](Self::attaches)
    /// gave).
    #[cfg(feature = "tower")]
    pub(crate) fn route_source(&self, at: usize) -> Option<&S> {
        self.routes.get(at)
    }

    /// The token source the client was built with (see [`source_for`](Self::source_for)
    /// for the one a request gets).
    #[must_use]
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Checks that a token may be sent to `url`, and returns it parsed.
    ///
    /// # Errors
    ///
    /// The source's error for a URL that is not an absolute http(s) URL, an origin not
    /// allowed, or the token endpoint (`InvalidUrl`, `OriginNotAllowed`,
    /// `TokenEndpoint` in the tokio adapter).
    pub fn check(&self, url: &str) -> Result<Uri, S::Error> {
        let uri = origin::parse_url(url)?;
        self.policy.permits(&uri)?;
        Ok(uri)
    }

    /// As [`check`](Self::check), for a parsed URL.
    #[cfg_attr(not(feature = "ureq"), allow(dead_code))]
    pub(crate) fn check_uri(&self, uri: &Uri) -> Result<(), Refusal> {
        self.policy.permits(uri)
    }

    /// Sends a `method` request to `url` through `send`, with the token attached.
    ///
    /// `send` gets the checked URL and the token's headers ([`TokenHeaders`]: the
    /// `Authorization` value, and for a DPoP-bound token its proof) and sends the
    /// request. What a `401` or `403` says is read with the codec's one rule
    /// ([`resource_verdict`](silent_refresh_oauth2::challenge::resource_verdict)): a
    /// rejection is reported to the source and `send` is called once more with the new
    /// token (that second answer is returned whatever its status); a DPoP nonce
    /// challenge is answered by calling `send` once more with a proof carrying the
    /// nonce, reporting nothing; a missing scope or a step-up is the source's typed
    /// error, with no refresh.
    ///
    /// # Errors
    ///
    /// The checks of [`check`](Self::check), the source's error when no token can be
    /// had, [`BearerSession::invalid_token`], and [`BearerSession::send_failed`] with
    /// `send`'s error.
    /// That error is passed on as it is when its text (`Display` of it and its sources,
    /// and `Debug`) names no URL; otherwise it is replaced by that text with every URL
    /// cut to its origin and path (no user, query or fragment, which may hold secrets),
    /// and the request's query removed wherever it still shows. A `reqwest::Error`
    /// (feature `reqwest`) loses its URL.
    pub async fn send<F, Fut, T, E>(
        &self,
        method: &http::Method,
        url: &str,
        mut send: F,
    ) -> Result<T, S::Error>
    where
        S: BearerSource,
        F: FnMut(Uri, TokenHeaders) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: ResponseStatus,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let uri = origin::parse_url(url)?;
        let source = self.authorize(&RequestUrl::of(&uri)?)?;
        let again = Some(uri.clone());
        let text = dpop_url(source, || uri.to_string());
        let target = Target {
            method,
            url: text.as_deref(),
        };
        let sent = with_token(source, target, uri.clone(), again, &mut send).await?;
        sent.map_err(|e| S::send_failed(send_error(e.into(), &uri)))
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
    ) -> Result<reqwest::Response, S::Error>
    where
        S: BearerSource,
    {
        // Read in place: the URL is not written out and parsed again.
        let source = self.authorize(&RequestUrl::of_url(request.url())?)?;
        let again = request.try_clone();
        let method = request.method().clone();
        let url = dpop_url(source, || request.url().to_string());
        let target = Target {
            method: &method,
            url: url.as_deref(),
        };
        with_token(source, target, request, again, |request, headers| {
            execute_with(client, request, headers)
        })
        .await?
        .map_err(|e| S::send_failed(Box::new(e.without_url())))
    }

    /// Whether a request for `url` (`None`: not an absolute http(s) URL) with these
    /// headers gets the token: its origin is allowed, it is not for the token endpoint,
    /// and it carries no `Authorization` header of its own. Then the route it takes:
    /// its index (for [`route_source`](Self::route_source)) and the source of the key
    /// its API needs (rule 13). The rule of the tower layer and the middlewares: other
    /// requests pass untouched (`Ok(None)`), except one for an origin not on the
    /// allow-list, which is said once per origin (a warning) and, with
    /// [`strict_origins`](AuthorizedClientBuilder::strict_origins), refused.
    ///
    /// # Errors
    ///
    /// In strict mode, the source's error for a request to an unlisted origin
    /// (`OriginNotAllowed` in the tokio adapter).
    #[cfg(any(feature = "tower", feature = "reqwest-middleware", feature = "ureq"))]
    pub(crate) fn attaches(
        &self,
        url: Option<&RequestUrl<'_>>,
        headers: &http::HeaderMap,
    ) -> Result<Option<(usize, &S)>, S::Error> {
        // Not an http(s) URL: the HTTP client says so.
        let Some(url) = url else {
            return Ok(None);
        };
        let has_authorization = headers.contains_key(http::header::AUTHORIZATION);
        let routed = || {
            let at = self.routes.position(url)?;
            Some((at, self.routes.get(at)?))
        };
        // The common case, read without building the origin.
        if !has_authorization
            && self.policy.permits_url(url).is_ok()
            && let Some(route) = routed()
        {
            return Ok(Some(route));
        }
        let route = match self.policy.route_url(url, has_authorization) {
            // An allowed origin outside every prefix given for it gets no token.
            Route::Attach(origin) => match routed() {
                Some(route) => return Ok(Some(route)),
                None => Route::Unlisted(origin),
            },
            other => other,
        };
        match route {
            Route::Attach(_) | Route::Untouched => Ok(None),
            Route::Unlisted(origin) if self.strict => {
                Err(origin::Refusal::NotAllowed { origin }.into())
            }
            Route::Unlisted(origin) => {
                if self.unlisted.first_time(&origin) {
                    tracing::warn!(
                        %origin,
                        "a request went out without the access token: its origin is not allowed \
                         (allow it if it is the API's, or turn on strict_origins to refuse such requests)"
                    );
                }
                Ok(None)
            }
        }
    }
}

/// The token rule, written once for every way this crate sends: attach the token (and
/// a DPoP proof for a bound one), send, and read what the answer says about the token
/// with the codec's one rule
/// ([`resource_verdict`](silent_refresh_oauth2::challenge::resource_verdict)):
/// - a rejection (`401`): report the token's generation to the source (only a rejection
///   of the current generation starts a refresh, so a late 401 of an older token costs
///   nothing) and, with a copy of the request (`again`), send it once more with the new
///   token, reporting a second rejection too;
/// - a DPoP nonce challenge: send the copy once more with a proof carrying the nonce,
///   with no refresh and nothing reported (rule 15); without a copy, the source's
///   `not_replayable` error;
/// - a missing scope or a step-up: the source's typed error, with no refresh.
///
/// With DPoP, every answer's `DPoP-Nonce` is kept for its origin. The inner `Result` is
/// `send`'s.
///
/// # Errors
///
/// The source's error when no token can be had, [`BearerSession::invalid_token`], and
/// the typed errors above.
pub(crate) async fn with_token<S, R, F, Fut, T, E>(
    source: &S,
    target: Target<'_>,
    request: R,
    again: Option<R>,
    mut send: F,
) -> Result<Result<T, E>, S::Error>
where
    S: BearerSource,
    F: FnMut(R, TokenHeaders) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    T: ResponseStatus,
{
    let token = source.token().await?;
    let first = send(request, token_headers(source, target, &token)?).await;
    let next = verdict(source, target, &first, &token)?;
    let Some(request) = again else {
        return match next {
            Verdict::Nonce => Err(S::not_replayable()),
            Verdict::Rejected => {
                tracing::debug!("not sending the request again: it cannot be replayed");
                Ok(first)
            }
            Verdict::Done => Ok(first),
        };
    };
    let token = match next {
        Verdict::Done => return Ok(first),
        Verdict::Rejected => {
            drop(first);
            source.token().await?
        }
        Verdict::Nonce => {
            drop(first);
            token
        }
    };
    let second = send(request, token_headers(source, target, &token)?).await;
    if let Verdict::Rejected = verdict(source, target, &second, &token)? {
        tracing::warn!(
            generation = token.generation.0,
            "the server rejected the access token again"
        );
    }
    Ok(second)
}

/// What an answer means for the request: done, or to be sent once more.
pub(crate) enum Verdict {
    Done,
    /// Rejected (reported): send again with the next token.
    Rejected,
    /// A DPoP nonce challenge (the nonce kept): send again with the same token.
    #[cfg_attr(not(feature = "dpop"), allow(dead_code))]
    Nonce,
}

/// Reads what `answer` says about `token` (see [`with_token`]); a rejection is reported
/// here.
pub(crate) fn verdict<S: BearerSession, T: ResponseStatus, E>(
    source: &S,
    target: Target<'_>,
    answer: &Result<T, E>,
    token: &AccessToken,
) -> Result<Verdict, S::Error> {
    let Ok(response) = answer else {
        return Ok(Verdict::Done);
    };
    // An answer without headers reads as one with none (made only then).
    let empty;
    let headers = match response.headers() {
        Some(headers) => headers,
        None => {
            empty = http::HeaderMap::new();
            &empty
        }
    };
    #[cfg(feature = "dpop")]
    if let (Some(dpop), Some(url)) = (source.dpop(), target.url) {
        dpop.observe(url, headers);
    }
    #[cfg(not(feature = "dpop"))]
    let _ = target;
    Ok(match resource_verdict(response.status(), headers) {
        ResourceVerdict::Rejected => {
            tracing::info!(
                generation = token.generation.0,
                "the server rejected the access token (401)"
            );
            source.report_rejected(token.generation);
            Verdict::Rejected
        }
        ResourceVerdict::UseDpopNonce(nonce) => {
            #[cfg(feature = "dpop")]
            if let (Some(dpop), Some(url)) = (source.dpop(), target.url) {
                dpop.use_nonce(url, &nonce);
                return Ok(Verdict::Nonce);
            }
            let _ = nonce;
            Verdict::Done
        }
        ResourceVerdict::InsufficientScope { scope } => {
            return Err(S::insufficient_scope(scope));
        }
        ResourceVerdict::StepUpRequired {
            acr_values,
            max_age,
        } => return Err(S::step_up_required(acr_values, max_age)),
        _ => Verdict::Done,
    })
}

/// The headers of `token` for `target`: `Authorization`, and a proof for a bound token.
pub(crate) fn token_headers<S: BearerSession>(
    source: &S,
    target: Target<'_>,
    token: &AccessToken,
) -> Result<TokenHeaders, S::Error> {
    let authorization = authorization::<S>(token)?;
    #[cfg(feature = "dpop")]
    if token.is_dpop_bound() {
        // Rule 15: a bound token never goes without its proof.
        let Some(dpop) = source.dpop() else {
            return Err(S::invalid_token());
        };
        let proof = crate::dpop::proof(dpop, target.method, target.url, token)
            .map_err(|_| S::invalid_token())?;
        return Ok(TokenHeaders {
            authorization,
            dpop: Some(proof),
        });
    }
    #[cfg(not(feature = "dpop"))]
    let _ = (source, target);
    Ok(TokenHeaders {
        authorization,
        dpop: None,
    })
}

#[cfg(feature = "reqwest")]
async fn execute_with(
    client: &reqwest::Client,
    mut request: reqwest::Request,
    headers: TokenHeaders,
) -> Result<reqwest::Response, reqwest::Error> {
    headers.apply(request.headers_mut());
    client.execute(request).await
}

/// The `Authorization` header value for `token`, marked sensitive.
///
/// Written once, straight into the buffer the header value keeps (no intermediate
/// copy of the secret is left behind to wipe).
///
/// # Errors
///
/// [`BearerSession::invalid_token`] if the token holds characters a header may not.
pub fn authorization<S: BearerSession>(token: &AccessToken) -> Result<HeaderValue, S::Error> {
    let scheme = token.scheme();
    let secret = token.secret.expose();
    let mut bytes = Vec::with_capacity(scheme.len() + 1 + secret.len());
    bytes.extend_from_slice(scheme.as_bytes());
    bytes.push(b' ');
    bytes.extend_from_slice(secret.as_bytes());
    // Visible ASCII only, as `HeaderValue::from_str` takes: the value refuses control
    // characters, and would take bytes past ASCII as opaque.
    if !bytes.is_ascii() {
        return Err(S::invalid_token());
    }
    let mut value = HeaderValue::try_from(bytes).map_err(|_| S::invalid_token())?;
    value.set_sensitive(true);
    Ok(value)
}

/// Builds an [`AuthorizedClient`].
#[derive(Debug)]
pub struct AuthorizedClientBuilder<S> {
    source: S,
    policy: OriginPolicyBuilder,
    routes: Routes<S>,
    strict: bool,
}

impl<S: BearerSession> AuthorizedClientBuilder<S> {
    /// Allows sending the token to this origin: `https://host` or `https://host:port`
    /// (scheme, host and port, nothing else). A path, a query or a user is refused
    /// when the client is built: the token goes to every path of the origin.
    #[must_use]
    pub fn allow_origin(self, origin: impl Into<String>) -> Self {
        let source = self.source.clone();
        self.allow_origin_for(origin, source)
    }

    /// Allows sending a token to this origin, as [`allow_origin`](Self::allow_origin),
    /// and the token is `source`'s: another key of the session for that API
    /// (`source.for_target(..)`, rule 13). One client so serves several APIs, each
    /// with its own token; a request gets the source of the longest origin or URL
    /// prefix ([`allow_url_for`](Self::allow_url_for)) it starts with.
    #[must_use]
    pub fn allow_origin_for(mut self, origin: impl Into<String>, source: S) -> Self {
        let origin = origin.into();
        self.policy = self.policy.allow_origin(&origin);
        // An invalid origin is the policy's error at `build`.
        let _ = self.routes.add_origin(&origin, source);
        self
    }

    /// Allows sending a token to the origin of `url`, and the requests whose URL
    /// starts with `url` (its origin, then its path segment by segment) get `source`'s
    /// token: another key of the session, for the API at that prefix (rule 13). The
    /// longest prefix a request starts with wins; a request of that origin under no
    /// prefix given gets no token, unless the whole origin was allowed too
    /// ([`allow_origin`](Self::allow_origin), [`allow_url`](Self::allow_url)). The
    /// URL's query and user information are dropped, and never shown in an error.
    #[must_use]
    pub fn allow_url_for(mut self, url: impl AsRef<str>, source: S) -> Self {
        let url = url.as_ref();
        self.policy = self.policy.allow_url(url);
        let _ = self.routes.add_url(url, source);
        self
    }

    /// Allows sending the token to the origin (scheme, host and port) of `url`, such
    /// as the API's base URL: `https://api.example.com/v1/` allows
    /// `https://api.example.com`, and the token goes to every path of it. The URL's
    /// path, query and user information are dropped, and never shown in an error.
    #[must_use]
    pub fn allow_url(mut self, url: impl AsRef<str>) -> Self {
        let url = url.as_ref();
        self.policy = self.policy.allow_url(url);
        if let Ok(origin) = origin::parse_url(url).and_then(|uri| Origin::of(&uri)) {
            let _ = self
                .routes
                .add_origin(&origin.to_string(), self.source.clone());
        }
        self
    }

    /// Never attaches the token to requests for this URL: same origin and any spelling
    /// of its path a server could route to it, whatever the query and the fragment (the
    /// full rule, with how paths are normalised, is in the
    /// [`origin`](silent_refresh_oauth2::origin) module docs of `silent-refresh-oauth2`).
    /// The source's token endpoint is always excluded.
    #[must_use]
    pub fn exclude(mut self, url: impl AsRef<str>) -> Self {
        self.policy = self.policy.exclude(url.as_ref());
        self
    }

    /// Allow plain `http` origins that are not the loopback interface (refused by
    /// default: the token would cross the network in clear text). Only for trusted
    /// networks.
    #[must_use]
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.policy = self.policy.allow_insecure_http(allow);
        self
    }

    /// Strict mode for the middlewares (tower, reqwest-middleware, ureq): a request for an
    /// origin that is not allowed fails (`OriginNotAllowed` in the tokio adapter)
    /// instead of going out without the token. Off by default: such a request goes out
    /// untouched, and a warning names its origin, once. ([`AuthorizedClient::send`] and
    /// `execute` always refuse it.)
    #[must_use]
    pub fn strict_origins(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Checks the allow-list and builds the client.
    ///
    /// # Errors
    ///
    /// The source's error (converted from the codec's) for an origin that is not
    /// `scheme://host[:port]` (`InvalidOrigin`), a URL given to
    /// [`allow_url`](Self::allow_url) or a refresher's token endpoint that is not an
    /// http(s) URL (`InvalidUrl`), no origin allowed (`NoOrigin`), or a plain-http
    /// origin other than loopback without
    /// [`allow_insecure_http`](Self::allow_insecure_http) (`InsecureHttp`).
    pub fn build(self) -> Result<AuthorizedClient<S>, S::Error> {
        let mut policy = self.policy;
        // Every source's token endpoint: a source given for a route may be another
        // session's.
        let endpoints = std::iter::once(&self.source).chain(self.routes.values());
        for url in endpoints.filter_map(S::token_endpoint) {
            policy = policy.exclude(url);
        }
        Ok(AuthorizedClient {
            policy: Arc::new(policy.build()?),
            routes: Arc::new(self.routes),
            source: self.source,
            unlisted: Arc::default(),
            strict: self.strict,
        })
    }
}
