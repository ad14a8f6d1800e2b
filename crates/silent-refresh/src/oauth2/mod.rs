//! OAuth 2.0 refresh grant (RFC 6749 §6) as a sans-IO codec: build the request,
//! read the response.
//!
//! The codec sends nothing and reads no clock. [`RefreshGrant::request`] turns the
//! refresh credential of an [`Action::StartRefresh`](crate::Action::StartRefresh) into
//! an [`http::Request`]; the driver sends it with any HTTP client and hands the answer
//! to [`RefreshGrant::parse_response`], whose result goes straight into
//! [`TokenMachine::handle_refresh_result`](crate::TokenMachine::handle_refresh_result).
//! A request that never got an answer goes through [`RefreshGrant::transport_failure`].
//!
//! ```
//! use silent_refresh::Secret;
//! use silent_refresh::oauth2::{ClientAuth, RefreshGrant};
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
//! # The request
//!
//! A `POST` to the token URL with a form body: `grant_type=refresh_token` and the
//! credential, or `grant_type=client_credentials` when there is none; then `scope` (if
//! set) and the extra parameters, in the order they were added. The client
//! authenticates as [`ClientAuth`] says; without a client secret it is a public client
//! whatever the setting (`client_id` in the body, no `Authorization` header). A grant
//! that can never work (a token URL that is not an absolute `http`/`https` URL, an extra
//! parameter that the codec sets itself, an empty refresh credential) is a *terminal*
//! failure: retrying cannot fix it.
//!
//! # The response
//!
//! A success (`2xx` with an `access_token`, in JSON or, when the server says so, a form
//! body) becomes a [`Token`]: `expires_in` (a number or a numeric
//! string) becomes [`Expiry::In`](crate::Expiry::In), counted from when the request was
//! sent; without it the token never expires by time ([`Expiry::Never`](crate::Expiry::Never)).
//! A missing `token_type` means `Bearer`; a missing or empty `refresh_token` keeps the
//! old credential. Anything else is a classified [`RefreshFailure`]:
//!
//! | answer | kind |
//! |---|---|
//! | `5xx`, `429`, `408`, `425`, whatever the body | transient, with `Retry-After` |
//! | `temporarily_unavailable`, `server_error`, `slow_down` | transient |
//! | any other OAuth `error` code (`invalid_grant`, `invalid_client`, …), even in a `2xx` | terminal |
//! | another `3xx` or `4xx` without an OAuth `error` | terminal |
//! | a `2xx` without a usable token (HTML, truncated JSON, bad fields) | transient |
//!
//! `Retry-After` is read as seconds, or as an HTTP date counted from the response's own
//! `Date` header (the codec has no clock; without `Date` the date form is ignored).
//! Failure messages quote the server's `error_description` after cleaning it: control
//! characters removed, cut to a few hundred characters, the client secret and any long
//! token-like word replaced by `[redacted]`, so that a server echoing a credential does
//! not leak it into errors or logs.

mod classify;
mod request;
mod response;

use crate::failure::RefreshFailure;
use crate::secret::Secret;
use crate::token::Token;

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-urlencoded id and secret (default).
    #[default]
    Basic,
    /// `client_secret_post`: id and secret in the form body.
    Post,
    /// A public client: `client_id` in the body, no secret.
    None,
}

/// The settings of one token endpoint.
///
/// Build it once, then call [`request`](Self::request) for each refresh and
/// [`parse_response`](Self::parse_response) for each answer. `Debug` never shows the
/// client secret.
#[derive(Clone, Debug)]
pub struct RefreshGrant {
    token_url: String,
    client_id: String,
    client_secret: Option<Secret>,
    auth: ClientAuth,
    scope: Option<String>,
    params: Vec<(String, String)>,
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
            params: Vec::new(),
        }
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

    /// The refresh request: `grant_type=refresh_token` with the credential, or
    /// `grant_type=client_credentials` when there is none.
    ///
    /// The request carries secrets (the body, and the `Authorization` header, which is
    /// marked sensitive): send it, never log it. A grant that cannot work is a terminal
    /// failure (see the [module docs](self)).
    pub fn request(
        &self,
        refresh_token: Option<&Secret>,
    ) -> Result<http::Request<Vec<u8>>, RefreshFailure> {
        request::build(self, refresh_token)
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
        self.parse_response_for(response, None)
    }

    /// Like [`parse_response`](Self::parse_response), also redacting `refresh_token`
    /// (the credential the request sent) from failure messages, should the server echo
    /// it (some do: "Invalid refresh token: …").
    pub fn parse_response_for<B: AsRef<[u8]>>(
        &self,
        response: &http::Response<B>,
        refresh_token: Option<&Secret>,
    ) -> Result<Token, RefreshFailure> {
        let secrets: Vec<&Secret> = self.client_secret.iter().chain(refresh_token).collect();
        response::parse(
            response.status(),
            response.headers(),
            response.body().as_ref(),
            &secrets,
        )
    }

    /// A transport failure (connect, TLS, timeout) as a transient refresh failure.
    pub fn transport_failure(error: &dyn std::fmt::Display) -> RefreshFailure {
        RefreshFailure::transient(format!("could not reach the token endpoint: {error}"))
    }
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
        assert!(!failure.is_terminal());
        assert!(
            failure.message.contains("connection refused"),
            "{}",
            failure.message
        );
        assert_eq!(failure.retry_after, None);
    }
}
