//! OAuth 2.0 refresh grant (RFC 6749 §6) as a sans-IO codec: build the request,
//! read the response. (Scaffold: the signatures are fixed, the bodies are being written.)

use crate::failure::RefreshFailure;
use crate::secret::Secret;
use crate::token::Token;

/// How the client authenticates to the token endpoint.
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
#[derive(Clone, Debug)]
pub struct RefreshGrant {
    _private: (),
}

impl RefreshGrant {
    /// A grant against `token_url` for `client_id`.
    pub fn new(token_url: impl Into<String>, client_id: impl Into<String>) -> Self {
        let _ = (token_url.into(), client_id.into());
        todo!()
    }

    /// The client secret (for `Basic` and `Post`).
    #[must_use]
    pub fn client_secret(self, secret: impl Into<Secret>) -> Self {
        let _ = secret.into();
        todo!()
    }

    /// How the client authenticates.
    #[must_use]
    pub fn auth(self, auth: ClientAuth) -> Self {
        let _ = auth;
        todo!()
    }

    /// The scope to ask for.
    #[must_use]
    pub fn scope(self, scope: impl Into<String>) -> Self {
        let _ = scope.into();
        todo!()
    }

    /// An extra form parameter (e.g. `resource`, `audience`).
    #[must_use]
    pub fn param(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let _ = (name.into(), value.into());
        todo!()
    }

    /// The token endpoint.
    #[must_use]
    pub fn token_url(&self) -> &str {
        todo!()
    }

    /// The refresh request: `grant_type=refresh_token` with the credential, or
    /// `grant_type=client_credentials` when there is none.
    pub fn request(&self, refresh_token: Option<&Secret>) -> Result<http::Request<Vec<u8>>, RefreshFailure> {
        let _ = refresh_token;
        todo!()
    }

    /// Reads the token endpoint's response into a token (`Expiry::In`, counted from when
    /// the request was sent) or a classified failure.
    pub fn parse_response<B: AsRef<[u8]>>(&self, response: &http::Response<B>) -> Result<Token, RefreshFailure> {
        let _ = response;
        todo!()
    }

    /// A transport failure (connect, TLS, timeout) as a transient refresh failure.
    pub fn transport_failure(error: &dyn std::fmt::Display) -> RefreshFailure {
        RefreshFailure::transient(format!("could not reach the token endpoint: {error}"))
    }
}
