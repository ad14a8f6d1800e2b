//! The OAuth 2.0 codec of silent-refresh, sans-IO: it builds the request of a grant
//! (RFC 6749 §6 and the others below) and reads the token endpoint's answer into a
//! [`Token`] or a [`RefreshFailure`] of one of the three classes. Its [`origin`] module
//! says which requests may carry the access token.
//!
//! ```
//! use silent_refresh::Secret;
//! use silent_refresh_oauth2::{ClientAuth, RefreshGrant};
//!
//! let grant = RefreshGrant::new("https://auth.example.com/token", "my-app")
//!     .client_secret("s3cret")
//!     .auth(ClientAuth::Post);
//! let request = grant.request(Some(&Secret::new("rt-1"))).expect("a valid grant");
//! assert_eq!(request.method(), "POST");
//!
//! let response = http::Response::builder()
//!     .status(200)
//!     .header("content-type", "application/json")
//!     .body(r#"{"access_token":"at-2","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-2"}"#)
//!     .expect("a valid response");
//! let token = grant.parse_response(&response).expect("a token");
//! assert_eq!(token.access_token.expose(), "at-2");
//! assert_eq!(token.refresh_token.expect("rotated").expose(), "rt-2");
//! ```
//!
//! The codec sends nothing and reads no clock. [`RefreshGrant::request`] turns the
//! refresh credential of an
//! [`Action::StartRefresh`](silent_refresh::Action::StartRefresh) into an
//! [`http::Request`]; the driver sends it with any HTTP client and hands the answer to
//! [`RefreshGrant::parse_response`], whose result goes straight into
//! [`TokenMachine::handle_refresh_result`](silent_refresh::TokenMachine::handle_refresh_result).
//! A request that never got an answer goes through [`RefreshGrant::transport_failure`].
//! A refresher over an HTTP client gets all of that in two calls:
//! [`RefreshGrant::start_exchange`] (the request) and [`Exchange::read_response`] (the
//! answer, with redirects refused), or [`TransportError::failure`] when the client got
//! none (a failure to connect is [`RefreshFailure::unreachable`]); its builder calls
//! [`RefreshGrant::check_refresher`] (the token URL's scheme, the timeout, the grant).
//!
//! The adapters (`silent-refresh-tokio`, `silent-refresh-ureq`) send its requests and
//! re-export this crate as their `oauth2` module; the state machine it feeds is the
//! core's (`silent-refresh`).
//!
//! # The request
//!
//! A `POST` to the token URL with a form body: `grant_type=refresh_token` and the
//! credential, or `grant_type=client_credentials` when there is none; then `scope` (if
//! set) and the extra parameters, in the order they were added. The client
//! authenticates as [`ClientAuth`] says; without a client secret it is a public client
//! whatever the setting (`client_id` in the body, no `Authorization` header). A grant
//! that can never work is refused before anything is sent: a token URL that is not an
//! absolute `http`/`https` URL, or an extra parameter that the codec sets itself, is a
//! *misconfigured* failure; an empty refresh credential is a *terminal* one.
//!
//! # The response
//!
//! A success (`2xx` with an `access_token`, in JSON or, when the server says so, a form
//! body) becomes a [`Token`]: `expires_in` (a number or a numeric
//! string) becomes [`Expiry::In`](silent_refresh::Expiry::In), counted from when the request was
//! sent; without it the token never expires by time ([`Expiry::Never`](silent_refresh::Expiry::Never)).
//! A missing `token_type` means `Bearer`; a missing or empty `refresh_token` keeps the
//! old credential. Anything else is a [`RefreshFailure`] in one of the three classes of
//! [`FailureKind`](silent_refresh::FailureKind), checked in this order:
//!
//! | answer | class |
//! |---|---|
//! | `5xx`, `429`, `408`, `425`, whatever the body | transient, with `Retry-After` |
//! | any `3xx` | misconfigured: names the `Location` (origin and path only) and says to configure the final token URL |
//! | OAuth error `temporarily_unavailable`, `server_error`, `slow_down` | transient, with `Retry-After` |
//! | OAuth error `invalid_grant`, and the codes servers use for a dead or revoked grant (`bad_refresh_token`, `expired_token`, `invalid_token`) or a needed sign-in (`interaction_required`, `login_required`, `consent_required`), even in a `2xx` | terminal: credentials dead, sign in again |
//! | any other OAuth error (`invalid_client`, `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`, `invalid_request`, a code this library does not know) | misconfigured: names the setting to fix |
//! | `404`, `405`, `410` without an OAuth error | misconfigured: the token URL |
//! | `401` with a `WWW-Authenticate` challenge, without an OAuth error | misconfigured: the client id, secret or authentication method |
//! | any other `4xx` without an OAuth error (a firewall's HTML `403`, a proxy's `407`, a `401` without a challenge) | transient, with `Retry-After` |
//! | a `1xx`, or a `2xx` without a usable token (HTML, truncated JSON, bad fields) | transient |
//!
//! Why a bare `401` splits in two: RFC 6749 §5.2 has a server answer a failed client
//! authentication with `401`, a `WWW-Authenticate` challenge and `invalid_client`; a
//! `401` with the challenge but no OAuth body is, most often, the same mistake (a wrong
//! client secret, or `Basic` where the server wants `Post`), while a `401` without a
//! challenge is more often a gateway in front of the server than the server's verdict.
//! An OAuth error code this library does not know is a deliberate refusal that retrying
//! will not change, but not proof that the credential is dead, so it is kept.
//!
//! Only a terminal failure's message says to sign in again; a misconfigured one names
//! what to fix (client id or secret, client authentication method, token URL, scope,
//! grant type). A refresh never follows a redirect: a redirect of a `POST` carrying a
//! credential would hand it to wherever the `Location` points. The message names the
//! `Location` by origin and path only: never its user information, query or fragment.
//! Its path is shown segment by segment when the secrets sent are known
//! ([`RefreshGrant::parse_response_for`], or [`classify`] given them), since they are
//! then redacted exactly; otherwise a run of token characters long enough
//! to be a credential (base64 has `/`) is redacted whole, path and all. A `Location`
//! that holds one of the secrets given is not shown at all.
//!
//! `Retry-After` is read as seconds, or as an HTTP date counted from the response's own
//! `Date` header (the codec has no clock; without `Date` the date form is ignored).
//! Failure messages are the library's words, then what the server said in parentheses:
//! `(HTTP 400, error `invalid_grant`: description)`. The server's text is cleaned first:
//! control characters removed, cut to a few hundred characters, the client secret, the
//! refresh credential sent (when given) and any long token-like word replaced by
//! `[redacted]`, so that a server echoing a credential does not leak it into errors or
//! logs.
//!
//! # Other token endpoints
//!
//! [`classify`] applies the same table to the answer of any refresh endpoint, OAuth 2.0
//! or not (the browser pattern's `POST /auth/refresh`), so that its refresher reports
//! failures in the same three classes.
//!
//! # Other grants and client authentication
//!
//! The same codec builds the other ways to get a token; every one goes through the same
//! machine, so every rule (single flight, exactly once, classes of failure, proactive
//! window) holds unchanged:
//!
//! | constructor | `grant_type` | what each exchange sends |
//! |---|---|---|
//! | [`RefreshGrant::new`] | `refresh_token` (`client_credentials` without a credential) | the newest refresh credential |
//! | [`RefreshGrant::client_credentials`] | `client_credentials` | only the client's own credentials; a refresh credential is never sent, and one in the answer is dropped |
//! | [`RefreshGrant::jwt_bearer`] (feature `jwt`) | `urn:ietf:params:oauth:grant-type:jwt-bearer` | a newly signed `assertion` (RFC 7523 §2.1) |
//! | [`RefreshGrant::token_exchange`] | `urn:ietf:params:oauth:grant-type:token-exchange` | the subject token, read afresh from its [`SubjectTokenSource`] (RFC 8693) |
//!
//! After the grant's own parameters come `scope`, then each `resource` (RFC 8707) and
//! `audience`, then the client authentication, then the extra parameters. Only the
//! refresh-token grant keeps a refresh credential: the others drop one the server
//! sends, so none is ever stored, and each exchange authenticates afresh.
//!
//! The client authenticates with [`ClientAuth`]: `client_secret_basic` (default),
//! `client_secret_post`, none (a public client), and with feature `jwt`
//! `client_secret_jwt` (an HS256 assertion keyed with the client secret) and
//! `private_key_jwt` ([`RefreshGrant::private_key_jwt`], RS256 or ES256): the last two
//! send `client_assertion_type` and a `client_assertion` signed for this exchange, with a
//! unique `jti`, `iss` and `sub` the client id, `aud` the token URL, `iat` the exchange's
//! time and `exp` a minute later.
//!
//! Signed assertions and token exchange take what the codec cannot know, the wall-clock
//! time, randomness for the `jti` and the subject token, from an [`ExchangeContext`]
//! given to [`RefreshGrant::request_with`]; the adapters make one per exchange.
//! [`RefreshGrant::request`] builds only the grants that need none. A subject token
//! that is a JWT whose `exp` has passed is never sent: the exchange fails as transient
//! until its source holds a new one.
//!
//! # DPoP
//!
//! With feature `dpop` (or `dpop-rustcrypto`, pure Rust for wasm32), the [`dpop`]
//! module makes the proofs of sender-constrained tokens (RFC 9449): the key, the
//! proof JWTs, the server nonces and their challenges, sans-IO like the rest.
//!
//! # What is wiped
//!
//! See [`Secret`] for what the codec wipes from memory and what it cannot.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod authorization;
pub mod challenge;
mod classify;
mod client;
pub mod device;
pub mod discovery;
#[cfg(any(feature = "dpop", feature = "dpop-rustcrypto"))]
pub mod dpop;
mod endpoint;
mod error;
mod exchange;
#[cfg(feature = "jwt")]
mod jwt;
mod location;
pub mod origin;
pub mod pkce;
mod request;
mod response;
pub mod revocation;
mod target;

pub use authorization::{
    AuthorizationCode, AuthorizationRequest, SIGN_IN_FAILED_PAGE, SIGNED_IN_PAGE,
};
pub use client::{DEFAULT_EXCHANGE_TIMEOUT, Exchange, MAX_RESPONSE_BYTES, TransportError};
pub use device::{
    DEFAULT_DEVICE_INTERVAL, DEVICE_CODE_GRANT, DeviceAuthorization, DeviceAuthorizationRequest,
    DevicePoll, SLOW_DOWN_STEP,
};
pub use discovery::{Discovery, Metadata, WellKnown};
pub use error::Error;
pub use exchange::{
    ExchangeContext, SubjectTokenSource, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT, TokenExchange,
};
#[cfg(feature = "jwt")]
pub use jwt::{
    DEFAULT_ASSERTION_LIFETIME, JwtAssertion, MAX_ASSERTION_LIFETIME, RESERVED_CLAIMS,
    SigningAlgorithm, SigningKey,
};
pub use location::redact_location;
pub use pkce::Pkce;
pub use revocation::{RevocationRequest, TokenTypeHint};
pub use target::Target;

use std::time::Duration;

use silent_refresh::{RefreshFailure, Secret, Token};

/// The default lifetime of a client assertion (`private_key_jwt`, `client_secret_jwt`).
const CLIENT_ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1, RFC 7523 §2.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-urlencoded id and secret (default).
    #[default]
    Basic,
    /// `client_secret_post`: id and secret in the form body.
    Post,
    /// A public client: `client_id` in the body, no secret.
    None,
    /// `client_secret_jwt`: an HS256 assertion keyed with the client secret, signed for
    /// each exchange (feature `jwt`).
    #[cfg(feature = "jwt")]
    SecretJwt,
    /// `private_key_jwt`: an RS256 or ES256 assertion signed for each exchange with the
    /// key given to [`RefreshGrant::private_key_jwt`] (feature `jwt`).
    #[cfg(feature = "jwt")]
    PrivateKeyJwt,
}

/// Which grant a [`RefreshGrant`] sends.
#[derive(Clone, Debug)]
enum GrantKind {
    /// `refresh_token`, or `client_credentials` when there is no refresh credential.
    Refresh,
    /// Always `client_credentials`.
    ClientCredentials,
    /// The JWT bearer grant.
    #[cfg(feature = "jwt")]
    JwtBearer(Box<JwtAssertion>),
    /// Token exchange.
    TokenExchange(Box<TokenExchange>),
}

/// The settings of one token endpoint and of the grant sent to it.
///
/// Build it once, then call [`request_with`](Self::request_with) (or
/// [`request`](Self::request)) for each exchange and
/// [`parse_response`](Self::parse_response) for each answer. `Debug` never shows the
/// client secret, the signing key or a subject token.
#[derive(Clone, Debug)]
pub struct RefreshGrant {
    token_url: String,
    client_id: String,
    client_secret: Option<Secret>,
    auth: ClientAuth,
    scope: Option<String>,
    resources: Vec<String>,
    audiences: Vec<String>,
    params: Vec<(String, String)>,
    kind: GrantKind,
    #[cfg(feature = "jwt")]
    client_key: Option<SigningKey>,
    client_assertion_lifetime: Duration,
}

impl RefreshGrant {
    /// A grant against `token_url` for `client_id`.
    ///
    /// Without a [`client_secret`](Self::client_secret) it is a public client. The URL
    /// is checked when a request is built.
    pub fn new(token_url: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret: None,
            auth: ClientAuth::default(),
            scope: None,
            resources: Vec::new(),
            audiences: Vec::new(),
            params: Vec::new(),
            kind: GrantKind::Refresh,
            #[cfg(feature = "jwt")]
            client_key: None,
            client_assertion_lifetime: CLIENT_ASSERTION_LIFETIME,
        }
    }

    /// The client-credentials grant (RFC 6749 §4.4) against `token_url` for
    /// `client_id`: the client gets a token of its own with its own credentials
    /// ([`client_secret`](Self::client_secret) or, with feature `jwt`,
    /// [`private_key_jwt`](Self::private_key_jwt)). No refresh credential is ever sent,
    /// and one in an answer is dropped, so none is ever stored; give the token source
    /// `Credentials::ClientCredentials`.
    ///
    /// ```
    /// use silent_refresh_oauth2::RefreshGrant;
    ///
    /// let grant = RefreshGrant::client_credentials("https://auth.example.com/token", "svc")
    ///     .client_secret("s3cret")
    ///     .scope("orders:read")
    ///     .resource("https://orders.example.com/")
    ///     .audience("orders-api");
    /// let request = grant.request(None).expect("a valid grant");
    /// assert_eq!(
    ///     request.body().as_slice(),
    ///     b"grant_type=client_credentials&scope=orders%3Aread\
    ///       &resource=https%3A%2F%2Forders.example.com%2F&audience=orders-api"
    ///         .iter().copied().filter(|b| !b.is_ascii_whitespace()).collect::<Vec<_>>()
    /// );
    /// ```
    pub fn client_credentials(token_url: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            kind: GrantKind::ClientCredentials,
            ..Self::new(token_url, client_id)
        }
    }

    /// The JWT bearer grant (RFC 7523 §2.1): each exchange sends `assertion`, signed
    /// anew, as the `assertion` parameter (the service-account flow). The client does
    /// not authenticate unless told to (a client id and secret, or a client assertion,
    /// are added as set). Feature `jwt`.
    #[cfg(feature = "jwt")]
    pub fn jwt_bearer(token_url: impl Into<String>, assertion: JwtAssertion) -> Self {
        Self {
            kind: GrantKind::JwtBearer(Box::new(assertion)),
            ..Self::new(token_url, "")
        }
    }

    /// Token exchange (RFC 8693): each exchange sends the subject token read afresh
    /// from the exchange's [`SubjectTokenSource`] (the adapters read it and put it in
    /// the [`ExchangeContext`]). A subject token is never kept between exchanges, and
    /// a JWT one whose `exp` has passed is not sent.
    pub fn token_exchange(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        exchange: TokenExchange,
    ) -> Self {
        Self {
            kind: GrantKind::TokenExchange(Box::new(exchange)),
            ..Self::new(token_url, client_id)
        }
    }

    /// The client id: for the JWT bearer grant, which has none of its own, when the
    /// server also wants the client to authenticate (a secret, or `private_key_jwt`).
    #[must_use]
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// `private_key_jwt` client authentication (RFC 7523 §2.2): each exchange carries a
    /// client assertion signed with `key`, with a unique `jti`, `iss` and `sub` the
    /// client id, `aud` the token URL and a one-minute `exp`. Feature `jwt`.
    #[cfg(feature = "jwt")]
    #[must_use]
    pub fn private_key_jwt(mut self, key: SigningKey) -> Self {
        self.client_key = Some(key);
        self.auth = ClientAuth::PrivateKeyJwt;
        self
    }

    /// How long each client assertion is valid (`exp` − `iat`); default 60 s, at most
    /// an hour.
    #[must_use]
    pub fn client_assertion_lifetime(mut self, lifetime: Duration) -> Self {
        self.client_assertion_lifetime = lifetime;
        self
    }

    /// A resource indicator (RFC 8707 `resource`, an absolute URI of the API the token
    /// is for). May be repeated.
    #[must_use]
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// An `audience` (Auth0, RFC 8693: the logical name of the API the token is for).
    /// May be repeated.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The subject token source of a token exchange, for the driver to read before each
    /// exchange (see [`SubjectTokenSource::fetch`]).
    #[must_use]
    pub fn subject_token_source(&self) -> Option<&SubjectTokenSource> {
        match &self.kind {
            GrantKind::TokenExchange(exchange) => Some(&exchange.source),
            _ => None,
        }
    }

    /// Whether this grant sends and keeps a refresh credential (only the refresh-token
    /// grant does).
    #[must_use]
    pub fn uses_refresh_token(&self) -> bool {
        matches!(self.kind, GrantKind::Refresh)
    }

    /// The `grant_type` each exchange sends (for [`RefreshGrant::new`], the one it sends
    /// with a refresh credential).
    #[must_use]
    pub fn grant_type(&self) -> &'static str {
        match &self.kind {
            GrantKind::Refresh => "refresh_token",
            GrantKind::ClientCredentials => "client_credentials",
            #[cfg(feature = "jwt")]
            GrantKind::JwtBearer(_) => request::JWT_BEARER,
            GrantKind::TokenExchange(_) => request::TOKEN_EXCHANGE,
        }
    }

    /// Checks, once, what can be checked without an exchange: the adapters call it when
    /// they build their refresher, so that a grant that can never work is refused at
    /// start, not at the first refresh.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the setting: a token
    /// URL that is not absolute http(s), an extra parameter the codec sets itself,
    /// `private_key_jwt` without a key, `client_secret_jwt` without a secret, an
    /// assertion lifetime out of range, a JWT bearer assertion that can never be signed.
    pub fn check(&self) -> Result<(), Error> {
        request::check(self).map_err(Error::InvalidConfig)
    }

    /// The client secret (for `Basic` and `Post`; a `None` client never sends it).
    #[must_use]
    pub fn client_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.client_secret = Some(secret.into());
        self
    }

    /// How the client authenticates.
    #[must_use]
    pub fn auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// The scope to ask for (space-separated). For a refresh it must not exceed the
    /// scope first granted (RFC 6749 §6); without it the server keeps that scope.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// An extra form parameter (e.g. `resource`, `audience`). May be repeated, also with
    /// the same name. The names the codec sets itself (`grant_type`, `refresh_token`,
    /// `client_id`, `client_secret`, `scope`) are refused when the request is built:
    /// use the dedicated settings.
    #[must_use]
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// The token endpoint.
    #[must_use]
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// The client id the grant authenticates as (the `client_id` of a browser
    /// sign-in's authorization URL, too).
    #[must_use]
    pub fn client_identifier(&self) -> &str {
        &self.client_id
    }

    /// The request of a grant that needs no [`ExchangeContext`] (no signed assertion,
    /// no subject token): for [`RefreshGrant::new`], `grant_type=refresh_token` with the
    /// credential, or `grant_type=client_credentials` when there is none. Other grants
    /// are refused as misconfigured: use [`request_with`](Self::request_with).
    ///
    /// The request carries secrets (the body, and the `Authorization` header, which is
    /// marked sensitive): send it, never log it, and do not let the HTTP client follow
    /// a redirect with it. The body was built without leaving copies behind, but the
    /// `Vec` you get is yours: wipe it once sent if your client lets you
    /// (`zeroize::Zeroize::zeroize(request.body_mut())`). A grant that cannot work is a
    /// misconfigured failure, an empty refresh credential a terminal one (see the
    /// [module docs](self)).
    pub fn request(
        &self,
        refresh_token: Option<&Secret>,
    ) -> Result<http::Request<Vec<u8>>, RefreshFailure> {
        request::build(self, refresh_token, None)
    }

    /// The request of any grant, with what the exchange takes from outside the codec:
    /// the wall-clock time and randomness of `context` (signed assertions) and its
    /// subject token (token exchange). The same caveats as [`request`](Self::request)
    /// hold: the request carries secrets.
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request); also a token exchange without a subject token in
    /// the context (misconfigured), or with one that is a JWT past its `exp`
    /// (transient).
    pub fn request_with(
        &self,
        refresh_token: Option<&Secret>,
        context: &ExchangeContext,
    ) -> Result<http::Request<Vec<u8>>, RefreshFailure> {
        request::build(self, refresh_token, Some(context))
    }

    /// Reads the token endpoint's response into a token (`Expiry::In`, counted from when
    /// the request was sent) or a classified failure (see the [module docs](self)).
    ///
    /// Prefer [`parse_response_for`](Self::parse_response_for) when you have the refresh
    /// credential that was sent: a server that echoes it in an error is then redacted
    /// whatever its length.
    pub fn parse_response<B: AsRef<[u8]>>(
        &self,
        response: &http::Response<B>,
    ) -> Result<Token, RefreshFailure> {
        // Not told what was sent: a refresh credential may have been.
        self.read(response, None, false)
    }

    /// Like [`parse_response`](Self::parse_response), also redacting `refresh_token`
    /// (the credential the request sent: `None` for the client-credentials grant) from
    /// failure messages, should the server echo it (some do: "Invalid refresh token:
    /// …").
    pub fn parse_response_for<B: AsRef<[u8]>>(
        &self,
        response: &http::Response<B>,
        refresh_token: Option<&Secret>,
    ) -> Result<Token, RefreshFailure> {
        self.read(response, refresh_token, true)
    }

    /// Like [`parse_response_for`](Self::parse_response_for), also redacting the
    /// exchange's subject token, should the server echo it.
    pub fn parse_response_with<B: AsRef<[u8]>>(
        &self,
        response: &http::Response<B>,
        refresh_token: Option<&Secret>,
        context: &ExchangeContext,
    ) -> Result<Token, RefreshFailure> {
        let secrets: Vec<&Secret> = self
            .client_secret
            .iter()
            .chain(refresh_token)
            .chain(context.subject_token())
            .collect();
        self.finish(response::parse(
            response.status(),
            response.headers(),
            response.body().as_ref(),
            &secrets,
            true,
        ))
    }

    /// Reads an answer; `told`: whether `refresh_token` is what the request sent.
    fn read<B: AsRef<[u8]>>(
        &self,
        response: &http::Response<B>,
        refresh_token: Option<&Secret>,
        told: bool,
    ) -> Result<Token, RefreshFailure> {
        let secrets: Vec<&Secret> = self.client_secret.iter().chain(refresh_token).collect();
        self.finish(response::parse(
            response.status(),
            response.headers(),
            response.body().as_ref(),
            &secrets,
            told,
        ))
    }

    /// Drops a refresh credential from the answer of a grant that keeps none.
    fn finish(&self, token: Result<Token, RefreshFailure>) -> Result<Token, RefreshFailure> {
        token.map(|mut token| {
            if !self.uses_refresh_token() {
                token.refresh_token = None;
            }
            token
        })
    }

    /// A transport failure (connect, TLS, timeout) as a transient refresh failure.
    pub fn transport_failure(error: &dyn std::fmt::Display) -> RefreshFailure {
        RefreshFailure::transient(format!("could not reach the token endpoint: {error}"))
    }
}

/// Classifies the answer of a refresh endpoint, OAuth 2.0 or not: `Ok(())` when it is
/// a success to read the token from, otherwise the [`RefreshFailure`] to hand to
/// [`TokenMachine::handle_refresh_result`](silent_refresh::TokenMachine::handle_refresh_result),
/// in one of the three classes of the table in the [module docs](self).
///
/// A success is a `2xx` whose body is not an OAuth error (a JSON or form body with an
/// `error` and no `access_token`); its body is left for the caller to read, whatever
/// its shape. When that body holds no usable token, report a
/// [`RefreshFailure::transient`], as the codec does. Everything else is classified as
/// for [`RefreshGrant::parse_response`]: a redirect is misconfigured and names its
/// `Location` without query or user information, a `404` is misconfigured, a
/// firewall's HTML `403` is transient with its `Retry-After`, and so on.
///
/// `secrets` are the credentials the request sent (a refresh credential, a client
/// secret): a server that echoes one in its answer is redacted from the message,
/// whatever its length; long token-like words are redacted anyway. Nothing here is
/// kept, logged or copied outside buffers that are wiped.
///
/// An endpoint of your own that says "this session is over" with a status the table
/// reads otherwise (many answer a dead refresh cookie with a bare `401`, which the
/// table calls transient) is yours to map first, as below.
///
/// ```
/// use silent_refresh_oauth2::classify;
/// use silent_refresh::{Expiry, FailureKind, RefreshFailure, Secret, Token};
/// use std::time::Duration;
///
/// /// Reads the answer of the app's own `POST /auth/refresh`, which sends
/// /// `{"accessToken": "...", "expiresIn": 900}` and ends a session with a bare 401.
/// fn read_refresh(answer: &http::Response<Vec<u8>>, sent: &Secret) -> Result<Token, RefreshFailure> {
///     if answer.status() == http::StatusCode::UNAUTHORIZED {
///         return Err(RefreshFailure::terminal("the session has ended; sign in again"));
///     }
///     classify(answer.status(), answer.headers(), answer.body(), &[sent])?;
///     let unusable = || RefreshFailure::transient("the refresh answer holds no token");
///     let body: serde_json::Value = serde_json::from_slice(answer.body()).map_err(|_| unusable())?;
///     let access = body["accessToken"].as_str().ok_or_else(unusable)?;
///     let lifetime = body["expiresIn"].as_u64().ok_or_else(unusable)?;
///     Ok(Token::bearer(access, Expiry::In(Duration::from_secs(lifetime))))
/// }
///
/// let sent = Secret::new("refresh-cookie-value");
/// let answer = |status: u16, headers: &[(&str, &str)], body: &str| {
///     let mut answer = http::Response::builder().status(status);
///     for (name, value) in headers {
///         answer = answer.header(*name, *value);
///     }
///     answer.body(body.as_bytes().to_vec()).expect("a valid response")
/// };
///
/// let ok = read_refresh(&answer(200, &[], r#"{"accessToken":"at-1","expiresIn":900}"#), &sent);
/// assert_eq!(ok.expect("a token").access_token.expose(), "at-1");
///
/// // A web application firewall's page: retried, after its Retry-After.
/// let waf = answer(403, &[("content-type", "text/html"), ("retry-after", "30")], "<html>Blocked</html>");
/// let failure = read_refresh(&waf, &sent).expect_err("refused");
/// assert_eq!(failure.kind, FailureKind::Transient);
/// assert_eq!(failure.retry_after, Some(Duration::from_secs(30)));
///
/// // A redirect: never followed; the message names where to, without the query.
/// let moved = answer(308, &[("location", "https://auth.example.com/v2/refresh?sid=abc")], "");
/// let failure = read_refresh(&moved, &sent).expect_err("refused");
/// assert_eq!(failure.kind, FailureKind::Misconfigured);
/// assert!(failure.message.contains("Location https://auth.example.com/v2/refresh)"));
/// assert!(!failure.message.contains("sid=abc"));
///
/// // A server that echoes the credential it refused: not quoted.
/// let echo = answer(400, &[("content-type", "application/json")],
///     r#"{"error":"invalid_grant","error_description":"unknown refresh-cookie-value"}"#);
/// let failure = read_refresh(&echo, &sent).expect_err("refused");
/// assert_eq!(failure.kind, FailureKind::Terminal);
/// assert!(!failure.message.contains("refresh-cookie-value"), "{}", failure.message);
/// ```
///
/// # Errors
///
/// The failure the answer stands for, when it is not a success.
pub fn classify(
    status: http::StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
    secrets: &[&Secret],
) -> Result<(), RefreshFailure> {
    response::classify(status, headers, body, secrets, !secrets.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_keeps_every_setting() {
        let grant = RefreshGrant::new("https://auth.example.com/token", "app")
            .client_secret("s3cret")
            .auth(ClientAuth::Post)
            .scope("read write")
            .param("audience", "api")
            .param("resource", "a")
            .param("resource", "b");
        assert_eq!(grant.token_url(), "https://auth.example.com/token");
        assert_eq!(grant.client_id, "app");
        assert_eq!(
            grant.client_secret.as_ref().map(Secret::expose),
            Some("s3cret")
        );
        assert_eq!(grant.auth, ClientAuth::Post);
        assert_eq!(grant.scope.as_deref(), Some("read write"));
        assert_eq!(grant.params.len(), 3);
    }

    #[test]
    fn debug_hides_the_client_secret() {
        let grant = RefreshGrant::new("https://auth.example.com/token", "app")
            .client_secret("s3cret-value");
        let printed = format!("{grant:?}");
        assert!(!printed.contains("s3cret-value"), "{printed}");
        assert!(printed.contains("[redacted]"), "{printed}");
    }

    #[test]
    fn transport_failure_is_transient_and_says_what_happened() {
        let failure = RefreshGrant::transport_failure(&"connection refused");
        assert_eq!(failure.kind, silent_refresh::FailureKind::Transient);
        assert!(
            failure.message.contains("connection refused"),
            "{}",
            failure.message
        );
        assert_eq!(failure.retry_after, None);
    }
}
