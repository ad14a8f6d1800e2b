//! Attaches the access token of a silent-refresh token source to HTTP requests, in any
//! runtime: only to the origins you allow, never to the token endpoint, and once more
//! after a 401 with the new token.
//!
//! - [`AuthorizedClient`] sends through any HTTP client (a closure, or reqwest with the
//!   `reqwest` feature);
//! - [`tower::BearerAuthLayer`] (feature `tower`) wraps any `tower` service;
//! - [`middleware::BearerAuth`] (feature `reqwest-middleware`) plugs into
//!   reqwest-middleware;
//! - [`ureq::BearerAuth`] (feature `ureq`) is a ureq 3 middleware, for blocking threads.
//!
//! They are generic over a [`BearerSource`] (the ureq middleware: a
//! [`BlockingBearerSource`]): what they need of a token source (a token, a way to
//! report a 401, the token endpoint to keep the token from). The tokio adapter
//! (`silent-refresh-tokio`) implements it for its `TokenSource` and re-exports all of
//! this crate under its own names (`silent_refresh_tokio::AuthorizedClient`, its
//! `tower` and `reqwest-middleware` features); the blocking adapter
//! (`silent-refresh-ureq`) does the same for the ureq middleware, so most programs
//! never name this crate.
//!
//! Every integration reads which request gets the token with the codec's
//! [`OriginPolicy`](silent_refresh_oauth2::origin::OriginPolicy) (crate
//! `silent-refresh-oauth2`), and what an answer says about the token with one rule
//! (attach, send, read the answer, send once more after a 401), written once here.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::future::Future;
use std::sync::Arc;

use silent_refresh::{AccessToken, Generation};
use silent_refresh_oauth2::origin::Refusal;

mod client;
#[cfg(feature = "dpop")]
mod dpop;
#[cfg(feature = "reqwest-middleware")]
pub mod middleware;
mod redact;
#[cfg(feature = "tower")]
pub mod tower;
#[cfg(feature = "ureq")]
pub mod ureq;

pub use client::{
    AuthorizedClient, AuthorizedClientBuilder, ResponseStatus, TokenHeaders, authorization,
};

/// What the integrations need of a token source besides its token: where its token
/// endpoint is, how to report a rejected token, its DPoP key, and its error. A source
/// implements it and one of [`BearerSource`] (its token is awaited) or
/// [`BlockingBearerSource`] (its token blocks the thread).
pub trait BearerSession: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The source's error: every failure of the helpers is one, so that a program
    /// matches on one error type. It is built from the origin policy's refusals and
    /// errors (crate `silent-refresh-oauth2`), and from
    /// [`invalid_token`](Self::invalid_token) and [`send_failed`](Self::send_failed).
    type Error: From<Refusal>
        + From<silent_refresh_oauth2::Error>
        + std::error::Error
        + Send
        + Sync
        + 'static;

    /// A request sent with the token of `generation` was rejected (401).
    fn report_rejected(&self, generation: Generation);

    /// The token endpoint's URL, if known: the helpers never attach the access token
    /// to a request for it.
    fn token_endpoint(&self) -> Option<&str>;

    /// The error for an access token that cannot be put in a header.
    fn invalid_token() -> Self::Error;

    /// The error for a request the HTTP client failed to send, or whose response it
    /// failed to read (with its URLs already cut to origin and path).
    fn send_failed(error: Box<dyn std::error::Error + Send + Sync>) -> Self::Error;

    /// The error for a resource that answered `insufficient_scope` (RFC 6750 §3): no
    /// refresh gives the token that scope; `scope` is the one the server asked for.
    fn insufficient_scope(scope: Option<String>) -> Self::Error;

    /// The error for a resource that asks for a stronger or fresher sign-in (RFC 9470
    /// `insufficient_user_authentication`): the program must start a new sign-in.
    fn step_up_required(acr_values: Option<String>, max_age: Option<u64>) -> Self::Error;

    /// The error for a DPoP nonce challenge to a request whose body cannot be sent
    /// again: it was not resent.
    fn not_replayable() -> Self::Error;

    /// The session's DPoP state (feature `dpop`), if its tokens may be bound to a key:
    /// a request with a bound token carries a proof of it (rule 15).
    #[cfg(feature = "dpop")]
    fn dpop(&self) -> Option<&silent_refresh_oauth2::dpop::DpopSession> {
        None
    }
}

/// A token source whose token is awaited: what [`AuthorizedClient`], the tower layer
/// and the reqwest middleware take tokens from. The tokio adapter's `TokenSource`
/// implements it; implement it for a source of your own (an `async` wrapper around a
/// blocking one, a fixed token in tests).
pub trait BearerSource: BearerSession {
    /// The access token to send now (waiting for a refresh if need be).
    fn token(&self) -> impl Future<Output = Result<Arc<AccessToken>, Self::Error>> + Send;
}

/// A token source whose token blocks the calling thread: what the ureq middleware
/// ([`ureq::BearerAuth`], feature `ureq`) takes tokens from. The blocking adapter's
/// `TokenSource` implements it.
pub trait BlockingBearerSource: BearerSession {
    /// The access token to send now (blocking until a refresh ends if need be).
    ///
    /// # Errors
    ///
    /// The source's error when no token can be had.
    fn token(&self) -> Result<Arc<AccessToken>, Self::Error>;

    /// The error for a ureq middleware called by something other than a ureq agent.
    fn not_in_agent() -> Self::Error;
}
