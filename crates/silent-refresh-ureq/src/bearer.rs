//! The ureq 3 middleware that attaches the access token to requests.

use std::fmt;
use std::io::{Cursor, Read};

use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use silent_refresh::AccessToken;
use silent_refresh_oauth2::challenge::{ResourceVerdict, resource_verdict};
use silent_refresh_oauth2::origin::{
    Origin, OriginPolicy, OriginPolicyBuilder, Route, UnlistedOrigins, parse_url,
};
use silent_refresh_oauth2::routes::Routes;
use ureq::middleware::{Middleware, MiddlewareNext};
use ureq::{Agent, Body, RequestExt, SendBody};

use crate::error::Error;
use crate::replay::{self, Replay};
use crate::source::TokenSource;

/// Bodies up to this size are kept in memory so a request can be sent again after a
/// 401, unless [`BearerAuthBuilder::replay_limit`] says otherwise.
pub const DEFAULT_REPLAY_LIMIT: usize = 64 * 1024;

/// A ureq 3 [`Middleware`] that adds `Authorization: Bearer …` to requests for the
/// origins you allowed, and handles a 401.
///
/// Install it on the agent you send API requests with:
///
/// ```
/// use std::sync::Arc;
/// use silent_refresh_ureq::{BearerAuth, Config, TokenSource};
///
/// let source = TokenSource::builder(Config::default()).build()?;
/// let auth = BearerAuth::builder(source)
///     .allow_origin("https://api.example.com")
///     .build()?;
/// let agent: ureq::Agent = ureq::Agent::config_builder().middleware(auth).build().into();
/// # let _ = agent;
/// # Ok::<(), silent_refresh_ureq::Error>(())
/// ```
///
/// What it does, request by request:
/// - **Origins.** Only a request whose scheme, host and port equal an allowed origin
///   gets the token, and never one for the token endpoint (the refresher's, see
///   [`crate::Refresher::token_endpoint`], and any given to
///   [`BearerAuthBuilder::exclude`]). A request that already has an `Authorization`
///   header is left alone. A request for an origin that is not allowed passes through
///   without the token, and a warning names its origin, once per origin (often a typo
///   such as `localhost` for `127.0.0.1`); with
///   [`strict_origins`](BearerAuthBuilder::strict_origins) it fails with
///   [`Error::OriginNotAllowed`] instead.
/// - **Redirects.** An authorized request does not follow redirects: ureq runs the
///   redirects of a request inside the transport, out of a middleware's sight, so
///   the only sure way to keep the token from reaching another host is to hand the
///   `3xx` response back to you. Follow it with a new request if you trust the
///   target: the middleware then decides anew whether that origin gets the token.
///   (The rule is the codec's [`OriginPolicy`](crate::oauth2::origin::OriginPolicy),
///   shared with the tokio adapter.)
/// - **401.** It reports the rejected token's generation to the [`TokenSource`]
///   (only a rejection of the current token starts a refresh) and, if the body can
///   be sent again, sends the request once more with the new token. A body can be
///   sent again when it is empty or at most [`replay_limit`](BearerAuthBuilder::replay_limit)
///   bytes long: the middleware reads it into memory before sending it, and sends it
///   with its `Content-Length`. A larger body is streamed on after the bytes already
///   read (with chunked framing, unless the request carried a `Content-Length` or
///   `Transfer-Encoding` header, in which case it is not read at all), and its 401 is
///   returned to you after the rejection was reported: your own retry gets the new
///   token.
/// - **Errors.** When no token can be had, the request is not sent and ureq returns
///   `ureq::Error::Other` holding a [`crate::Error`] (downcast it to see why).
///
/// The second send goes through a private ureq agent with the request's full
/// configuration (timeouts, TLS, proxy, `http_status_as_error`), but with ureq's
/// default connector and its own connection pool, and without the middleware that
/// your agent runs after this one: install this middleware last.
pub struct BearerAuth {
    policy: OriginPolicy,
    /// Which source's token each allowed origin or URL prefix gets (rule 13).
    routes: Routes<TokenSource>,
    replay_limit: usize,
    retry_agent: Agent,
    /// Unlisted origins a request went to without the token (said once each).
    unlisted: UnlistedOrigins,
    /// Refuse requests to unlisted origins instead.
    strict: bool,
}

impl BearerAuth {
    /// A builder for the middleware, taking tokens from `source`.
    pub fn builder(source: TokenSource) -> BearerAuthBuilder {
        BearerAuthBuilder {
            source,
            policy: OriginPolicy::builder(),
            routes: Routes::default(),
            replay_limit: DEFAULT_REPLAY_LIMIT,
            strict: false,
        }
    }

    /// Whether a request for `uri` gets the token.
    #[must_use]
    pub fn authorizes(&self, uri: &http::Uri) -> bool {
        self.policy.authorizes(uri) && self.routes.select(uri).is_some()
    }

    /// The source whose token a request for `uri` gets: the one of the longest origin
    /// or URL prefix given to the builder that `uri` starts with (`None`: none).
    #[must_use]
    pub fn source_for(&self, uri: &http::Uri) -> Option<&TokenSource> {
        self.routes.select(uri)
    }
}

impl BearerAuth {
    /// The source for a request the fast path did not route: `None` when it goes out
    /// untouched (its own `Authorization` header, the token endpoint, an origin not
    /// allowed, said once per origin), the refusal in strict mode.
    fn unrouted(
        &self,
        uri: &http::Uri,
        has_authorization: bool,
    ) -> Result<Option<&TokenSource>, ureq::Error> {
        let origin = match self.policy.route(uri, has_authorization) {
            Route::Attach(origin) => match self.routes.select(uri) {
                Some(source) => return Ok(Some(source)),
                // An allowed origin outside every prefix given for it gets no token.
                None => origin,
            },
            Route::Untouched => return Ok(None),
            Route::Unlisted(origin) => origin,
        };
        if self.strict {
            return Err(into_ureq(Error::OriginNotAllowed {
                origin: origin.to_string(),
            }));
        }
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

/// The first response, and the request head and body to send again, if the body
/// could be kept.
type FirstSend = (Result<Response<Body>, ureq::Error>, Option<(Parts, Replay)>);

impl BearerAuth {
    /// Sends the authorized request down the chain, keeping its body in memory when
    /// it is small enough to be sent again (see [`replay`]).
    fn send_first(
        &self,
        mut parts: Parts,
        body: SendBody<'_>,
        next: MiddlewareNext<'_>,
    ) -> Result<FirstSend, ureq::Error> {
        if !replay::worth_buffering(&parts.headers, self.replay_limit) {
            return Ok((next.handle(Request::from_parts(parts, body)), None));
        }
        let mut reader = body.into_reader();
        let mut read = Vec::new();
        let cap = u64::try_from(self.replay_limit)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        (&mut reader)
            .take(cap)
            .read_to_end(&mut read)
            .map_err(ureq::Error::Io)?;
        if read.len() > self.replay_limit {
            let mut rest = Cursor::new(read).chain(reader);
            let first = next.handle(Request::from_parts(parts, SendBody::from_reader(&mut rest)));
            return Ok((first, None));
        }
        let body = Replay::new(&parts.method, read, &mut parts.headers);
        let copy = parts.clone();
        let first = body.send(|b| next.handle(Request::from_parts(parts, b)));
        Ok((first, Some((copy, body))))
    }
}

impl Middleware for BearerAuth {
    fn handle(
        &self,
        request: Request<SendBody>,
        next: MiddlewareNext,
    ) -> Result<Response<Body>, ureq::Error> {
        let has_authorization = request.headers().contains_key(AUTHORIZATION);
        // The common case, read without building the origin; the others by the policy's
        // route.
        let fast = (!has_authorization && self.policy.permits(request.uri()).is_ok())
            .then(|| self.routes.select(request.uri()))
            .flatten();
        let source = match fast {
            Some(source) => source,
            None => match self.unrouted(request.uri(), has_authorization)? {
                Some(source) => source,
                None => return next.handle(request),
            },
        };
        let token = source.token().map_err(into_ureq)?;
        let request = request
            .middleware_config()
            .ok_or_else(|| into_ureq(Error::NotInAgent))?
            .max_redirects(0)
            .build();
        let (mut parts, body) = request.into_parts();
        // A DPoP proof names the URL and a nonce is kept for it: written out only for a
        // source with a DPoP key (fixed when it is built), the one that needs it.
        #[cfg(feature = "dpop")]
        let url = source.dpop().map(|_| parts.uri.to_string());
        #[cfg(not(feature = "dpop"))]
        let url: Option<String> = None;
        let url = url.as_deref();
        self.attach(source, &mut parts, url, &token)?;
        tracing::debug!(
            generation = token.generation.0,
            host = parts.uri.host().unwrap_or_default(),
            "attaching the access token"
        );

        let (first, again) = self.send_first(parts, body, next)?;
        let step = self.verdict(source, &first, url, &token)?;
        let Some((mut parts, body)) = again else {
            return match step {
                Step::Nonce => Err(into_ureq(Error::NotReplayable)),
                Step::Rejected => {
                    tracing::debug!("not sending the request again: its body cannot be replayed");
                    first
                }
                Step::Done => first,
            };
        };
        let token = match step {
            Step::Done => return first,
            Step::Rejected => {
                drop(first);
                source.token().map_err(into_ureq)?
            }
            Step::Nonce => {
                drop(first);
                token
            }
        };
        self.attach(source, &mut parts, url, &token)?;
        tracing::debug!(
            generation = token.generation.0,
            "sending the request again with the new token"
        );
        let second = body.send(|b| self.retry_agent.run(Request::from_parts(parts, b)));
        if let Step::Rejected = self.verdict(source, &second, url, &token)? {
            tracing::warn!(
                generation = token.generation.0,
                "the server rejected the access token again"
            );
        }
        second
    }
}

/// What an answer means for the request (the codec's one rule, as the other
/// integrations read it): done, or to be sent once more.
enum Step {
    Done,
    /// Rejected (reported): send again with the next token.
    Rejected,
    /// A DPoP nonce challenge (the nonce kept): send again with the same token.
    #[cfg_attr(not(feature = "dpop"), allow(dead_code))]
    Nonce,
}

impl BearerAuth {
    /// Puts `token` in the request's headers: `Authorization`, and for a DPoP-bound
    /// token a proof of the session's key (rule 15: never without it).
    fn attach(
        &self,
        source: &TokenSource,
        parts: &mut Parts,
        url: Option<&str>,
        token: &AccessToken,
    ) -> Result<(), ureq::Error> {
        set_authorization(&mut parts.headers, token)?;
        #[cfg(feature = "dpop")]
        if token.is_dpop_bound() {
            let (Some(dpop), Some(url)) = (source.dpop(), url) else {
                return Err(into_ureq(Error::InvalidToken));
            };
            let proof =
                silent_refresh_driver::dpop::proof(dpop, &parts.method, url, Some(&token.secret))
                    .map_err(|reason| {
                    tracing::warn!(%reason, "no DPoP proof for the request");
                    into_ureq(Error::InvalidToken)
                })?;
            parts
                .headers
                .insert(silent_refresh_oauth2::dpop::DPOP, proof);
        }
        #[cfg(not(feature = "dpop"))]
        let _ = (source, url);
        Ok(())
    }

    /// Reads what `answer` says about `token` with the codec's rule
    /// ([`resource_verdict`]): a rejection is reported here; a missing scope or a step-up
    /// is the adapter's typed error, with no refresh.
    fn verdict(
        &self,
        source: &TokenSource,
        answer: &Result<Response<Body>, ureq::Error>,
        url: Option<&str>,
        token: &AccessToken,
    ) -> Result<Step, ureq::Error> {
        let empty = HeaderMap::new();
        let (status, headers) = match answer {
            Ok(response) => (response.status(), response.headers()),
            Err(ureq::Error::StatusCode(code)) => (
                StatusCode::from_u16(*code).unwrap_or(StatusCode::OK),
                &empty,
            ),
            Err(_) => return Ok(Step::Done),
        };
        #[cfg(feature = "dpop")]
        if let (Some(dpop), Some(url)) = (source.dpop(), url) {
            dpop.observe(url, headers);
        }
        #[cfg(not(feature = "dpop"))]
        let _ = url;
        Ok(match resource_verdict(status, headers) {
            ResourceVerdict::Rejected => {
                tracing::info!(
                    generation = token.generation.0,
                    "the server rejected the access token (401)"
                );
                source.report_rejected(token.generation);
                Step::Rejected
            }
            ResourceVerdict::UseDpopNonce(nonce) => {
                #[cfg(feature = "dpop")]
                if let (Some(dpop), Some(url)) = (source.dpop(), url) {
                    dpop.use_nonce(url, &nonce);
                    return Ok(Step::Nonce);
                }
                let _ = nonce;
                Step::Done
            }
            ResourceVerdict::InsufficientScope { scope } => {
                return Err(into_ureq(Error::InsufficientScope { scope }));
            }
            ResourceVerdict::StepUpRequired {
                acr_values,
                max_age,
            } => {
                return Err(into_ureq(Error::StepUpRequired {
                    acr_values,
                    max_age,
                }));
            }
            _ => Step::Done,
        })
    }
}

impl fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("policy", &self.policy)
            .field("replay_limit", &self.replay_limit)
            .finish_non_exhaustive()
    }
}

/// Builds a [`BearerAuth`].
#[derive(Debug)]
#[must_use]
pub struct BearerAuthBuilder {
    source: TokenSource,
    policy: OriginPolicyBuilder,
    routes: Routes<TokenSource>,
    replay_limit: usize,
    strict: bool,
}

impl BearerAuthBuilder {
    /// Attach the token to requests for this origin: `https://host` or
    /// `https://host:port` (no path, query or user). Call once per origin.
    pub fn allow_origin(self, origin: impl Into<String>) -> Self {
        let source = self.source.clone();
        self.allow_origin_for(origin, source)
    }

    /// Attach a token to requests for this origin, as
    /// [`allow_origin`](Self::allow_origin), and the token is `source`'s: another key
    /// of the session for that API (`source.for_target(..)`, rule 13). One agent so
    /// serves several APIs, each with its own token; a request gets the source of the
    /// longest origin or URL prefix ([`allow_url_for`](Self::allow_url_for)) it
    /// starts with.
    pub fn allow_origin_for(mut self, origin: impl Into<String>, source: TokenSource) -> Self {
        let origin = origin.into();
        self.policy = self.policy.allow_origin(&origin);
        // An invalid origin is the policy's error at `build`.
        let _ = self.routes.add_origin(&origin, source);
        self
    }

    /// Attach a token to requests for the origin of `url`, and the requests whose URL
    /// starts with `url` (its origin, then its path segment by segment) get `source`'s
    /// token: another key of the session, for the API at that prefix (rule 13). The
    /// longest prefix a request starts with wins; a request of that origin under no
    /// prefix given gets no token, unless the whole origin was allowed too. The URL's
    /// query and user information are dropped, and never shown in an error.
    pub fn allow_url_for(mut self, url: impl AsRef<str>, source: TokenSource) -> Self {
        let url = url.as_ref();
        self.policy = self.policy.allow_url(url);
        let _ = self.routes.add_url(url, source);
        self
    }

    /// Never attach the token to requests for this URL: same origin and any spelling
    /// of its path a server could route to it, whatever the query and the fragment
    /// (the full rule, with how paths are normalised, is in the
    /// [`oauth2::origin`](crate::oauth2::origin) module docs). The refresher's token endpoint is
    /// always excluded.
    pub fn exclude(mut self, url: impl Into<String>) -> Self {
        self.policy = self.policy.exclude(&url.into());
        self
    }

    /// Attach the token to requests for the origin (scheme, host and port) of `url`,
    /// such as the API's base URL: `https://api.example.com/v1/` allows
    /// `https://api.example.com`, and the token goes to every path of it. The URL's
    /// path, query and user information are dropped, and never shown in an error.
    pub fn allow_url(mut self, url: impl AsRef<str>) -> Self {
        let url = url.as_ref();
        self.policy = self.policy.allow_url(url);
        if let Ok(origin) = parse_url(url).and_then(|uri| Origin::of(&uri)) {
            let _ = self
                .routes
                .add_origin(&origin.to_string(), self.source.clone());
        }
        self
    }

    /// Allow plain `http` origins that are not the loopback interface (refused by
    /// default: the token would cross the network in clear text).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.policy = self.policy.allow_insecure_http(allow);
        self
    }

    /// Strict mode: a request for an origin that is not allowed fails with
    /// [`Error::OriginNotAllowed`] instead of going out without the token. Off by
    /// default: such a request goes out untouched, and a warning names its origin, once.
    pub fn strict_origins(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Keep request bodies up to this many bytes in memory, so that the request can
    /// be sent again after a 401. `0` replays only empty bodies. Default
    /// [`DEFAULT_REPLAY_LIMIT`].
    pub fn replay_limit(mut self, bytes: usize) -> Self {
        self.replay_limit = bytes;
        self
    }

    /// Checks the origins and returns the middleware.
    ///
    /// # Errors
    ///
    /// The first [`Error::InvalidOrigin`] (from
    /// [`allow_origin`](Self::allow_origin)) or [`Error::InvalidUrl`] (from
    /// [`allow_url`](Self::allow_url), [`exclude`](Self::exclude) or the refresher's
    /// token endpoint), in the order given; [`Error::NoOrigin`] when no origin was allowed;
    /// [`Error::InsecureHttp`] for a plain-http origin other than loopback without
    /// [`allow_insecure_http`](Self::allow_insecure_http).
    pub fn build(self) -> Result<BearerAuth, Error> {
        let mut policy = self.policy;
        // Every source's token endpoint: a source given for a route may be another
        // session's.
        let endpoints = std::iter::once(&self.source).chain(self.routes.values());
        for url in endpoints.filter_map(TokenSource::token_endpoint) {
            policy = policy.exclude(url);
        }
        Ok(BearerAuth {
            policy: policy.build()?,
            routes: self.routes,
            replay_limit: self.replay_limit,
            retry_agent: Agent::new_with_defaults(),
            unlisted: UnlistedOrigins::default(),
            strict: self.strict,
        })
    }
}

fn set_authorization(headers: &mut HeaderMap, token: &AccessToken) -> Result<(), ureq::Error> {
    let mut value =
        HeaderValue::from_str(&token.authorization()).map_err(|e| ureq::Error::Http(e.into()))?;
    value.set_sensitive(true);
    headers.insert(AUTHORIZATION, value);
    Ok(())
}

fn into_ureq(error: Error) -> ureq::Error {
    ureq::Error::Other(Box::new(error))
}
