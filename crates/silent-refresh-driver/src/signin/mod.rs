//! Starting and ending a session, written once for every runtime: discovery of an
//! authorization server ([`Issuer`]), the device authorization grant ([`DeviceFlow`],
//! RFC 8628), the authorization code grant with PKCE and a loopback redirect
//! ([`BrowserFlow`], RFC 7636, RFC 8252, RFC 9207), and a sign-out that revokes the
//! session at the server ([`Issuer::sign_out`], RFC 7009).
//!
//! The protocol is the sans-IO codec's (`silent_refresh_oauth2`: `Discovery`,
//! `DeviceAuthorizationRequest`, `DevicePoll`, `AuthorizationRequest`,
//! `RevocationRequest`); what is here sends its requests with the adapter's HTTP
//! client (through the runtime's [`SendsWith`]), waits on the runtime's timers and
//! the source's clock, and signs a [`TokenSource`] in with the token a flow brings. A
//! call awaits on tokio and blocks on threads, as the source's own calls do.
//!
//! A command-line tool's whole story:
//! 1. **Configure an issuer**: [`Issuer::discover`] reads its metadata (OpenID
//!    Connect's document, then RFC 8414's; `issuer` checked, no redirect followed,
//!    plain `http` only to loopback unless allowed); [`Issuer::client`] is the
//!    program's client at its token endpoint, for the `OAuth2Refresher` and the flows.
//! 2. **Know whether a session is stored**: [`TokenSource::ready`] waits until the
//!    store has been read.
//! 3. **Sign in once** when there is none: [`DeviceCode`] (show the user a code) or
//!    [`BrowserSignIn`] (open the browser); the token signs the source in, and is
//!    saved to the store before any request uses it
//!    ([`TokenSource::until_durable`] says when it is stored).
//! 4. **Refresh silently** for as long as the server allows.
//! 5. **Log out**: [`Issuer::sign_out`] revokes the refresh token (and the access
//!    token) at the server, then forgets the session in the store.

// The loopback listener's thread, and a store's forget run on a thread of its own:
// not on wasm32 (no threads, no listening socket; a page signs in by redirecting to
// itself, as `examples/browser` does).
#[cfg(not(target_arch = "wasm32"))]
mod browser;
mod cancel;
mod device;
#[cfg(not(target_arch = "wasm32"))]
mod loopback;
#[cfg(not(target_arch = "wasm32"))]
mod sign_out;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use silent_refresh::RefreshFailure;
use silent_refresh_oauth2::origin::Origin;
use silent_refresh_oauth2::{DEFAULT_EXCHANGE_TIMEOUT, Discovery, Metadata, RefreshGrant};

use crate::Error;
use crate::TokenSource;
use crate::oauth2_refresher::HttpClient;
use crate::runtime::{Caller, SendsWith};

#[cfg(not(target_arch = "wasm32"))]
pub use self::browser::{Browser, BrowserFlow, BrowserSignIn, DEFAULT_REDIRECT_PATH};
pub use self::cancel::CancelSignIn;
pub use self::device::{DeviceCode, DeviceFlow};
#[cfg(not(target_arch = "wasm32"))]
pub use self::sign_out::SignedOut;

/// An authorization server, known by its metadata, and the HTTP client this program
/// talks to it with: where the sign-in flows start.
///
/// Cheap to clone (its metadata and client are shared). Every request it sends goes
/// through the adapter's client with redirects off, within
/// [`timeout`](IssuerBuilder::timeout) (30 s by default), and to endpoints the
/// metadata names: `https`, or plain `http` to a loopback host, or anywhere with
/// [`allow_insecure_http`](IssuerBuilder::allow_insecure_http).
pub struct Issuer<Rt, C> {
    http: Http<Rt, C>,
    metadata: Arc<Metadata>,
    allow_insecure_http: bool,
}

impl<Rt: Clone, C> Clone for Issuer<Rt, C> {
    fn clone(&self) -> Self {
        Self {
            http: self.http.clone(),
            metadata: self.metadata.clone(),
            allow_insecure_http: self.allow_insecure_http,
        }
    }
}

impl<Rt, C> fmt::Debug for Issuer<Rt, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.metadata.issuer())
            .field("timeout", &self.http.timeout)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish_non_exhaustive()
    }
}

impl<Rt, C> Issuer<Rt, C>
where
    Rt: SendsWith<C> + Default,
    C: HttpClient,
{
    /// A builder for the issuer `issuer` (its URL, as the server's documentation gives
    /// it: `https://login.example.com`, `https://host/realms/name`).
    pub fn builder(issuer: impl Into<String>) -> IssuerBuilder<Rt, C> {
        IssuerBuilder {
            runtime: Rt::default(),
            issuer: issuer.into(),
            settings: None,
            timeout: DEFAULT_EXCHANGE_TIMEOUT,
            allow_insecure_http: false,
        }
    }

    /// Reads the metadata of `issuer` with the default client settings: the shortcut
    /// for `Issuer::builder(issuer).discover()`.
    ///
    /// # Errors
    ///
    /// As [`IssuerBuilder::discover`].
    pub fn discover(
        issuer: &str,
    ) -> Rt::Wait<impl Future<Output = Result<Self, Error>> + use<Rt, C>> {
        Self::builder(issuer).discover()
    }
}

impl<Rt, C> Issuer<Rt, C>
where
    Rt: SendsWith<C>,
    C: HttpClient,
{
    /// The server's metadata (its endpoints, the client authentication methods and
    /// the DPoP algorithms it lists, any other field).
    #[must_use]
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The program's client `client_id` at this server's token endpoint, as a public
    /// client (no secret: its id in the body): the grant of the source's
    /// `OAuth2Refresher`, and the client of the flows. A confidential client adds its
    /// secret and the authentication the server lists:
    /// `issuer.client(id).client_secret(secret).auth(issuer.metadata().client_auth(true))`.
    #[must_use]
    pub fn client(&self, client_id: impl Into<String>) -> RefreshGrant {
        self.metadata.grant(client_id)
    }

    /// Sends `request` (to the endpoint named `endpoint` in errors) and reads the whole
    /// answer.
    pub(crate) async fn send(
        &self,
        endpoint: &'static str,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, Error> {
        self.http.send(endpoint, request).await
    }

    /// Sends a flow's token request (the device code's poll, the authorization code's
    /// exchange). When the source's refresher proves with a DPoP key (feature `dpop`),
    /// the request carries a proof, so the session starts bound to that key as every
    /// refresh after it will be: a `use_dpop_nonce` refusal is sent again once, at
    /// once, with the server's nonce (rule 15), and every answer's nonce is kept.
    #[cfg_attr(not(feature = "dpop"), allow(unused_variables))]
    pub(crate) async fn send_token_request(
        &self,
        source: &TokenSource<Rt>,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, Error> {
        const ENDPOINT: &str = "the token endpoint";
        #[cfg(feature = "dpop")]
        if let Some(dpop) = source.dpop() {
            let url = request.uri().to_string();
            let again = copy_request(&request);
            let answer = self.send(ENDPOINT, proven(dpop, request)?).await?;
            dpop.observe(&url, answer.headers());
            let Some(nonce) = silent_refresh_oauth2::dpop::token_nonce_challenge(
                answer.status(),
                answer.headers(),
                answer.body(),
            ) else {
                return Ok(answer);
            };
            dpop.use_nonce(&url, &nonce);
            let answer = self.send(ENDPOINT, proven(dpop, again)?).await?;
            dpop.observe(&url, answer.headers());
            return Ok(answer);
        }
        self.send(ENDPOINT, request).await
    }

    /// Whether plain `http` is allowed beyond loopback.
    pub(crate) fn allow_insecure_http(&self) -> bool {
        self.allow_insecure_http
    }

    /// The runtime.
    pub(crate) fn runtime(&self) -> &Rt {
        &self.http.runtime
    }

    /// The timeout of one request.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn timeout(&self) -> Duration {
        self.http.timeout
    }
}

/// Builds an [`Issuer`]: [`Issuer::builder`].
#[must_use]
pub struct IssuerBuilder<Rt, C: HttpClient> {
    runtime: Rt,
    issuer: String,
    settings: Option<C::Settings>,
    timeout: Duration,
    allow_insecure_http: bool,
}

impl<Rt, C: HttpClient> fmt::Debug for IssuerBuilder<Rt, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerBuilder")
            .field("issuer", &self.issuer)
            .field("client", &self.settings.is_some())
            .field("timeout", &self.timeout)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish()
    }
}

impl<Rt, C> IssuerBuilder<Rt, C>
where
    Rt: SendsWith<C>,
    C: HttpClient,
{
    /// Build the HTTP client from `settings` (tokio: a `reqwest::ClientBuilder`; ureq:
    /// an `Agent`): its proxy, TLS and connection settings. Whatever they say, no
    /// redirect is followed and each request gets [`timeout`](Self::timeout).
    pub fn client(mut self, settings: C::Settings) -> Self {
        self.settings = Some(settings);
        self
    }

    /// The timeout of each request (discovery, the device flow's, the code exchange,
    /// revocation), from connecting to the end of the answer. Default: 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Allow plain `http` to hosts that are not loopback, for the metadata and the
    /// endpoints it names (refused by default: credentials and codes would cross the
    /// network in clear text). Loopback is always allowed.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Reads the issuer's metadata (OpenID Connect's document, then RFC 8414's) with
    /// the adapter's HTTP client, and checks it: its `issuer` is the one asked for,
    /// its endpoints may carry credentials. Awaited on tokio, blocking on threads.
    ///
    /// # Errors
    ///
    /// The issuer is not a URL ([`Error::InvalidUrl`]) or plain `http` beyond loopback
    /// ([`Error::InsecureHttp`]); no document, a wrong one, or one for another issuer
    /// ([`Error::OAuth2`], naming the URL and what is wrong); no answer
    /// ([`Error::NoAnswer`]); a zero timeout, or a client that cannot be built
    /// ([`Error::Token`], [`Error::HttpClient`]).
    pub fn discover(
        self,
    ) -> Rt::Wait<impl Future<Output = Result<Issuer<Rt, C>, Error>> + 'static> {
        let runtime = self.runtime.clone();
        runtime.wait(async move {
            let allow = self.allow_insecure_http;
            let mut discovery = Discovery::new(self.issuer.clone())?.allow_insecure_http(allow);
            let http = self.http()?;
            loop {
                let answer = http.send("the metadata document", discovery.request()?);
                if let Some(metadata) = discovery.handle_response(&answer.await?)? {
                    return Ok(Issuer {
                        http,
                        metadata: Arc::new(metadata),
                        allow_insecure_http: allow,
                    });
                }
            }
        })
    }

    /// An issuer of `metadata` read earlier (a cached document), without fetching it
    /// again.
    ///
    /// # Errors
    ///
    /// A zero timeout, or a client that cannot be built ([`Error::Token`],
    /// [`Error::HttpClient`]).
    pub fn with_metadata(self, metadata: Metadata) -> Result<Issuer<Rt, C>, Error> {
        let allow_insecure_http = self.allow_insecure_http;
        Ok(Issuer {
            http: self.http()?,
            metadata: Arc::new(metadata),
            allow_insecure_http,
        })
    }

    /// The HTTP client, built and checked.
    fn http(self) -> Result<Http<Rt, C>, Error> {
        if self.timeout.is_zero() {
            return Err(silent_refresh_oauth2::Error::InvalidConfig(
                "the sign-in requests' timeout must be greater than zero",
            )
            .into());
        }
        Ok(Http {
            client: Arc::new(C::build(self.settings, self.timeout)?),
            runtime: self.runtime,
            timeout: self.timeout,
        })
    }
}

/// The adapter's HTTP client on its runtime, with the timeout of each request.
struct Http<Rt, C> {
    runtime: Rt,
    client: Arc<C>,
    timeout: Duration,
}

impl<Rt: Clone, C> Clone for Http<Rt, C> {
    fn clone(&self) -> Self {
        Self {
            runtime: self.runtime.clone(),
            client: self.client.clone(),
            timeout: self.timeout,
        }
    }
}

impl<Rt: SendsWith<C>, C> Http<Rt, C> {
    /// Sends `request` to `endpoint` (its name, for errors) and reads the whole answer.
    async fn send(
        &self,
        endpoint: &'static str,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, Error> {
        let origin = Origin::of(request.uri()).map_or_else(|_| String::new(), |o| o.to_string());
        self.runtime
            .send(&self.client, request, self.timeout)
            .await
            .map_err(|failure| no_answer(endpoint, origin, &failure))
    }
}

/// A request that got no answer, in the words of the step that sent it: the HTTP
/// clients word their failures for the token endpoint of a refresh.
fn no_answer(endpoint: &'static str, origin: String, failure: &RefreshFailure) -> Error {
    let reason = failure
        .message
        .replace("the token endpoint", endpoint)
        .replace("the refresh request's timeout", "the request's timeout")
        .replace("OAuth2RefresherBuilder::timeout", "IssuerBuilder::timeout")
        .replace("the token URL", "the URL");
    Error::NoAnswer {
        origin,
        reason,
        unreachable: failure.unreachable,
    }
}

/// `request` with a DPoP proof of `dpop`'s key.
#[cfg(feature = "dpop")]
fn proven(
    dpop: &silent_refresh_oauth2::dpop::DpopSession,
    mut request: http::Request<Vec<u8>>,
) -> Result<http::Request<Vec<u8>>, Error> {
    crate::dpop::prove(dpop, &mut request, None).map_err(|reason| Error::DpopProof { reason })?;
    Ok(request)
}

/// A copy of `request` (method, URL, headers, body), to send again with a new proof.
#[cfg(feature = "dpop")]
fn copy_request(request: &http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    let mut copy = http::Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// The token a flow brought, carrying the source's DPoP key when it proves with one
/// (stored with the session, as a refreshed token carries it).
#[cfg_attr(not(feature = "dpop"), allow(unused_variables, unused_mut))]
pub(crate) fn with_session_key<Rt: Caller>(
    source: &TokenSource<Rt>,
    mut token: silent_refresh::Token,
) -> silent_refresh::Token {
    #[cfg(feature = "dpop")]
    if let Some(dpop) = source.dpop() {
        token.dpop_key = dpop.key_pem().ok();
    }
    token
}
