//! The ureq 3 middleware that attaches the access token to requests (feature `ureq`),
//! for a [`BlockingBearerSource`]: the blocking adapter's `TokenSource`, re-exported
//! there as `silent_refresh_ureq::BearerAuth`.

mod replay;

use std::fmt;
use std::io::{Cursor, Read};

use http::request::Parts;
use http::{Request, Response, StatusCode};
use silent_refresh::AccessToken;
use silent_refresh_oauth2::origin::RequestUrl;
use ureq::middleware::{Middleware, MiddlewareNext};
use ureq::{Agent, Body, RequestExt, SendBody};

use self::replay::Replay;
use crate::BlockingBearerSource;
use crate::client::{Target, Verdict, dpop_url, token_headers, verdict};
use crate::{AuthorizedClient, AuthorizedClientBuilder};

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
///   gets the token, and never one for the token endpoint (the source's, see
///   [`BearerSession::token_endpoint`](crate::BearerSession::token_endpoint), and any
///   given to [`BearerAuthBuilder::exclude`]). A request that already has an `Authorization`
///   header is left alone. A request for an origin that is not allowed passes through
///   without the token, and a warning names its origin, once per origin (often a typo
///   such as `localhost` for `127.0.0.1`); with
///   [`strict_origins`](BearerAuthBuilder::strict_origins) it fails with the source's
///   error for the refusal instead (`Error::OriginNotAllowed` in the blocking adapter).
/// - **Redirects.** An authorized request does not follow redirects: ureq runs the
///   redirects of a request inside the transport, out of a middleware's sight, so
///   the only sure way to keep the token from reaching another host is to hand the
///   `3xx` response back to you. Follow it with a new request if you trust the
///   target: the middleware then decides anew whether that origin gets the token.
///   (The rule is the codec's [`OriginPolicy`](silent_refresh_oauth2::origin::OriginPolicy), shared with the other integrations.)
/// - **401.** It reports the rejected token's generation to the source
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
///   `ureq::Error::Other` holding the source's error (the blocking adapter's `Error`:
///   downcast it to see why).
///
/// The second send goes through a private ureq agent with the request's full
/// configuration (timeouts, TLS, proxy, `http_status_as_error`), but with ureq's
/// default connector and its own connection pool, and without the middleware that
/// your agent runs after this one: install this middleware last.
///
/// [`BearerAuthBuilder::build_agent`] builds an agent that does both for you: the
/// middleware installed last, and no redirect followed by the agent itself, so that a
/// request needs no configuration of its own to keep redirects off (ureq copies the
/// agent's whole configuration into a request that gets one: about 1% of a loopback
/// request).
pub struct BearerAuth<S> {
    /// The origin policy, the routes of the keys and strict mode: the same rule as the
    /// other integrations'.
    client: AuthorizedClient<S>,
    replay_limit: usize,
    retry_agent: Agent,
    /// Installed by [`BearerAuthBuilder::build_agent`] in an agent that follows no
    /// redirect: a request without a configuration of its own needs none.
    in_agent_without_redirects: bool,
}

impl<S: BlockingBearerSource> BearerAuth<S> {
    /// A builder for the middleware, taking tokens from `source`.
    pub fn builder(source: S) -> BearerAuthBuilder<S> {
        BearerAuthBuilder {
            client: AuthorizedClient::builder(source),
            replay_limit: DEFAULT_REPLAY_LIMIT,
        }
    }

    /// Whether a request for `uri` gets the token.
    #[must_use]
    pub fn authorizes(&self, uri: &http::Uri) -> bool {
        self.client.check_uri(uri).is_ok() && self.client.source_for(uri).is_some()
    }

    /// The source whose token a request for `uri` gets: the one of the longest origin
    /// or URL prefix given to the builder that `uri` starts with (`None`: none).
    #[must_use]
    pub fn source_for(&self, uri: &http::Uri) -> Option<&S> {
        self.client.source_for(uri)
    }
}

/// The first response, and the request head and body to send again, if the body
/// could be kept.
type FirstSend = (Result<Response<Body>, ureq::Error>, Option<(Parts, Replay)>);

impl<S: BlockingBearerSource> BearerAuth<S> {
    /// Sends the authorized request down the chain (`attach` puts the token in it),
    /// keeping its body in memory when it is small enough to be sent again (see
    /// [`replay`]), and a copy of its head, made before the token and the request's own
    /// configuration are put in: cheaper to make and to drop, and a retry puts both in
    /// again.
    fn send_first(
        &self,
        mut parts: Parts,
        body: SendBody<'_>,
        next: MiddlewareNext<'_>,
        attach: impl FnOnce(&mut Parts) -> Result<(), ureq::Error>,
    ) -> Result<FirstSend, ureq::Error> {
        if !replay::worth_buffering(&parts.headers, self.replay_limit) {
            attach(&mut parts)?;
            let request = self.without_redirects(Request::from_parts(parts, body))?;
            return Ok((next.handle(request), None));
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
            attach(&mut parts)?;
            let mut rest = Cursor::new(read).chain(reader);
            let body = SendBody::from_reader(&mut rest);
            let first = next.handle(self.without_redirects(Request::from_parts(parts, body))?);
            return Ok((first, None));
        }
        let body = Replay::new(&parts.method, read, &mut parts.headers);
        let copy = parts.clone();
        attach(&mut parts)?;
        let first = body.send(|b| {
            self.without_redirects(Request::from_parts(parts, b))
                .map(|request| next.handle(request))
        })?;
        Ok((first, Some((copy, body))))
    }
}

impl<S: BlockingBearerSource> Middleware for BearerAuth<S> {
    fn handle(
        &self,
        request: Request<SendBody>,
        next: MiddlewareNext,
    ) -> Result<Response<Body>, ureq::Error> {
        // The source of the key this request's API needs (rule 13), or none: the request
        // goes out untouched (its own `Authorization`, the token endpoint, an origin not
        // allowed, said once), unless strict mode refuses it.
        let url = RequestUrl::of(request.uri()).ok();
        let attaches = self.client.attaches(url.as_ref(), request.headers());
        let Some((_, source)) = attaches.map_err(into_ureq)? else {
            return next.handle(request);
        };
        let token = source.token().map_err(into_ureq)?;
        let (parts, body) = request.into_parts();
        // A DPoP proof names the URL and a nonce is kept for it: written out only for a
        // source with a DPoP key (fixed when it is built), the one that needs it.
        let url = dpop_url(source, || parts.uri.to_string());
        let method = parts.method.clone();
        let target = Target {
            method: &method,
            url: url.as_deref(),
        };
        tracing::debug!(
            generation = token.generation.0,
            host = parts.uri.host().unwrap_or_default(),
            "attaching the access token"
        );
        let (first, again) = self.send_first(parts, body, next, |parts| {
            attach(source, target, parts, &token)
        })?;
        let step = read(source, target, &first, &token)?;
        let Some((mut parts, body)) = again else {
            return match step {
                Verdict::Nonce => Err(into_ureq(S::not_replayable())),
                Verdict::Rejected => {
                    tracing::debug!("not sending the request again: its body cannot be replayed");
                    first
                }
                Verdict::Done => first,
            };
        };
        let token = match step {
            Verdict::Done => return first,
            Verdict::Rejected => {
                drop(first);
                source.token().map_err(into_ureq)?
            }
            Verdict::Nonce => {
                drop(first);
                token
            }
        };
        attach(source, target, &mut parts, &token)?;
        tracing::debug!(
            generation = token.generation.0,
            "sending the request again with the new token"
        );
        let second = body.send(|b| {
            // The retry goes through a private agent that would follow redirects: always
            // configured.
            configured_without_redirects::<S>(Request::from_parts(parts, b))
                .and_then(|request| self.retry_agent.run(request))
        });
        if let Verdict::Rejected = read(source, target, &second, &token)? {
            tracing::warn!(
                generation = token.generation.0,
                "the server rejected the access token again"
            );
        }
        second
    }
}

/// Puts `token` in the request's headers: `Authorization`, and for a DPoP-bound token a
/// proof of the session's key (rule 15: never without it).
fn attach<S: BlockingBearerSource>(
    source: &S,
    target: Target<'_>,
    parts: &mut Parts,
    token: &AccessToken,
) -> Result<(), ureq::Error> {
    token_headers(source, target, token)
        .map_err(into_ureq)?
        .apply(&mut parts.headers);
    Ok(())
}

/// Reads what `answer` says about `token` with the one rule of every integration
/// ([`verdict`]): a rejection is reported; a missing scope or a step-up is the
/// source's typed error, with no refresh. A status ureq turned into an error
/// (`http_status_as_error`) is read as an answer without headers.
fn read<S: BlockingBearerSource>(
    source: &S,
    target: Target<'_>,
    answer: &Result<Response<Body>, ureq::Error>,
    token: &AccessToken,
) -> Result<Verdict, ureq::Error> {
    let read = match answer {
        Ok(response) => verdict(source, target, &Ok::<_, ()>(response), token),
        Err(ureq::Error::StatusCode(code)) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::OK);
            verdict(source, target, &Ok::<_, ()>(status), token)
        }
        Err(_) => Ok(Verdict::Done),
    };
    read.map_err(into_ureq)
}

impl<S: fmt::Debug> fmt::Debug for BearerAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("client", &self.client)
            .field("replay_limit", &self.replay_limit)
            .finish_non_exhaustive()
    }
}

/// Builds a [`BearerAuth`]: the allow-list and the routes as
/// [`AuthorizedClientBuilder`]'s (whose docs say each rule), and the replay limit.
#[derive(Debug)]
#[must_use]
pub struct BearerAuthBuilder<S> {
    client: AuthorizedClientBuilder<S>,
    replay_limit: usize,
}

impl<S: BlockingBearerSource> BearerAuthBuilder<S> {
    /// Attach the token to requests for this origin: `https://host` or
    /// `https://host:port` (no path, query or user). Call once per origin.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.client = self.client.allow_origin(origin);
        self
    }

    /// Attach a token to requests for this origin, and the token is `source`'s: another
    /// key of the session for that API (`source.for_target(..)`, rule 13); see
    /// [`AuthorizedClientBuilder::allow_origin_for`].
    pub fn allow_origin_for(mut self, origin: impl Into<String>, source: S) -> Self {
        self.client = self.client.allow_origin_for(origin, source);
        self
    }

    /// Requests whose URL starts with `url` get `source`'s token (the longest prefix
    /// wins, rule 13); see [`AuthorizedClientBuilder::allow_url_for`].
    pub fn allow_url_for(mut self, url: impl AsRef<str>, source: S) -> Self {
        self.client = self.client.allow_url_for(url, source);
        self
    }

    /// Never attach the token to requests for this URL, however its path is spelled;
    /// see [`AuthorizedClientBuilder::exclude`]. The source's token endpoint is always
    /// excluded.
    pub fn exclude(mut self, url: impl Into<String>) -> Self {
        self.client = self.client.exclude(url.into());
        self
    }

    /// Attach the token to requests for the origin (scheme, host and port) of `url`,
    /// such as the API's base URL; see [`AuthorizedClientBuilder::allow_url`].
    pub fn allow_url(mut self, url: impl AsRef<str>) -> Self {
        self.client = self.client.allow_url(url);
        self
    }

    /// Allow plain `http` origins that are not the loopback interface (refused by
    /// default: the token would cross the network in clear text).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.client = self.client.allow_insecure_http(allow);
        self
    }

    /// Strict mode: a request for an origin that is not allowed fails with the source's
    /// error for the refusal (`Error::OriginNotAllowed` in the blocking adapter) instead
    /// of going out without the token. Off by default: such a request goes out
    /// untouched, and a warning names its origin, once.
    pub fn strict_origins(mut self, strict: bool) -> Self {
        self.client = self.client.strict_origins(strict);
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
    /// As [`AuthorizedClientBuilder::build`]: the source's error made from the origin
    /// policy's (an invalid origin or URL, the first in the order given; no origin
    /// allowed; a plain-http origin other than loopback without
    /// [`allow_insecure_http`](Self::allow_insecure_http)).
    pub fn build(self) -> Result<BearerAuth<S>, S::Error> {
        Ok(BearerAuth {
            client: self.client.build()?,
            replay_limit: self.replay_limit,
            retry_agent: Agent::new_with_defaults(),
            in_agent_without_redirects: false,
        })
    }

    /// Builds the middleware and an agent for it from `config` (timeouts, TLS, proxy,
    /// your own middleware…): the middleware installed last, and the agent set to
    /// follow no redirect (`max_redirects(0)`), for every request, authorized or not.
    /// The middleware then need not give each authorized request a configuration of its
    /// own to keep redirects off, as it does on an agent it did not build (ureq copies
    /// the agent's whole configuration into it); a request you configure yourself still
    /// gets one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use silent_refresh_ureq::{BearerAuth, Config, TokenSource};
    ///
    /// let source = TokenSource::builder(Config::default()).build()?;
    /// let agent = BearerAuth::builder(source)
    ///     .allow_origin("https://api.example.com")
    ///     .build_agent(ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(30))))?;
    /// # let _ = agent;
    /// # Ok::<(), silent_refresh_ureq::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn build_agent(
        self,
        config: ureq::config::ConfigBuilder<ureq::typestate::AgentScope>,
    ) -> Result<Agent, S::Error> {
        let mut auth = self.build()?;
        auth.in_agent_without_redirects = true;
        Ok(config.max_redirects(0).middleware(auth).build().new_agent())
    }
}

impl<S: BlockingBearerSource> BearerAuth<S> {
    /// The request, set not to follow redirects ([`configured_without_redirects`]), unless it
    /// follows none already: in an agent that follows none
    /// ([`BearerAuthBuilder::build_agent`]), a request that carries nothing but its
    /// agent (`extensions().len() == 1`: ureq puts the agent in every request it runs
    /// through middleware) has no configuration of its own that could turn redirects
    /// on. Anything more, such as its own configuration, and it gets one.
    fn without_redirects<'a>(
        &self,
        request: Request<SendBody<'a>>,
    ) -> Result<Request<SendBody<'a>>, ureq::Error> {
        if self.in_agent_without_redirects && request.extensions().len() == 1 {
            return Ok(request);
        }
        configured_without_redirects::<S>(request)
    }
}

/// The request, configured not to follow redirects: ureq follows them inside the
/// transport, out of the middleware's sight (see [`BearerAuth`]). The rest of its
/// configuration is its agent's, or what the caller set for this request.
fn configured_without_redirects<S: BlockingBearerSource>(
    request: Request<SendBody<'_>>,
) -> Result<Request<SendBody<'_>>, ureq::Error> {
    let config = request.middleware_config();
    Ok(config
        .ok_or_else(|| into_ureq(S::not_in_agent()))?
        .max_redirects(0)
        .build())
}

/// The source's error as ureq carries a middleware's.
fn into_ureq<E: std::error::Error + Send + Sync + 'static>(error: E) -> ureq::Error {
    ureq::Error::Other(Box::new(error))
}
