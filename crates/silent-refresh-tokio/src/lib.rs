//! Fresh OAuth access tokens for tokio programs: one call gets a valid token, and ten
//! thousand tasks asking at once cost one refresh.
//!
//! The recipe: an OAuth 2.0 refresher, a file that keeps the session (each rotated
//! refresh token is saved before the new access token is used), a client that attaches
//! the token to your API's origin only, and a shutdown that lets the last refresh be
//! saved. Here it runs against the test kit's server on 127.0.0.1; give it your
//! provider's token URL, client and refresh token.
//!
#![cfg_attr(feature = "reqwest", doc = "```")]
#![cfg_attr(not(feature = "reqwest"), doc = "```ignore")]
//! use std::time::Duration;
//! use silent_refresh_tokio::{
//!     AuthorizedClient, Config, Credentials, FileStore, OAuth2Refresher, RefreshGrant, TokenSource,
//! };
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! #   let server = silent_refresh_testkit::server::AuthServer::start(Default::default())?;
//! #   let (token_url, api, me) = (server.token_url(), server.origin(), server.resource_url());
//! #   let (client_secret, refresh_token) = ("demo-client-secret", server.sign_in(None).refresh_token);
//! #   let dir = tempfile::tempdir()?;
//! #   let session_file = dir.path().join("session.json");
//!     let grant = RefreshGrant::new(token_url, "demo-client").client_secret(client_secret);
//!     let source = TokenSource::builder(Config::default())
//!         // The stored session wins; the refresh token is needed only the first time.
//!         .store(FileStore::new(session_file))
//!         .credentials(Credentials::RefreshToken(refresh_token.into()))
//!         .refresher(OAuth2Refresher::builder(grant).build()?)
//!         .build()?;
//!     // Attaches the token to this origin only, and sends once more after a 401.
//!     let client = AuthorizedClient::builder(source.clone()).allow_origin(api).build()?;
//!     let http = reqwest::Client::new();
//!     let response = client.execute(&http, http.get(me).build()?).await?;
//!     assert!(response.status().is_success());
//!     // Before exiting: let a refresh on the wire end and its rotated token be saved.
//!     source.shutdown(Duration::from_secs(35)).await;
//!     Ok(())
//! }
//! ```
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `reqwest` | `OAuth2Refresher` over reqwest (rustls), `AuthorizedClient::execute` for reqwest requests, the sign-in flows (`Issuer`, module `signin`) |
//! | `tower` | `tower::BearerAuthLayer`, for any tower service (hyper, axum clients) |
//! | `reqwest-middleware` | `middleware::BearerAuth`, for `reqwest_middleware::ClientWithMiddleware` (turns `reqwest` on) |
//! | `jwt` | signed client assertions (`private_key_jwt`, `client_secret_jwt`) and the JWT bearer grant (turns `reqwest` on) |
//! | `dpop` | DPoP-bound sessions (RFC 9449): the key stored with the session, a proof on every request with a bound token |
//! | `metrics` | refresh durations, refreshes by trigger, callers waiting and failed saves, through the `metrics` facade |
//!
//! Keeping the session: give the builder a [`TokenStore`] ([`FileStore`], or
//! `silent-refresh-redis` for many hosts) and call [`TokenSource::shutdown`] before the
//! program exits. The token-change callback ([`TokenChange`]), `Credentials::Stored`
//! and [`TokenSource::until_durable`] are for programs that keep the session
//! themselves.
//!
//! # A refresher of your own
//!
//! Any `async` closure from the refresh credential to a [`Token`] is a refresher: call
//! your own refresh endpoint there (read its failures with
//! [`oauth2::classify`]).
//!
//! ```
//! use std::time::Duration;
//! use silent_refresh_tokio::{
//!     Config, Credentials, Expiry, RefreshFailure, Secret, Token, TokenChange, TokenSource,
//! };
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), silent_refresh_tokio::Error> {
//!     let source = TokenSource::builder(Config::default())
//!         // A refresh credential from the program's store (or a whole stored token).
//!         .credentials(Credentials::RefreshToken("rt-1".into()))
//!         // Exchange it for a token: call your token endpoint here, or use
//!         // `OAuth2Refresher` (feature `reqwest`).
//!         .refresher(|refresh_token: Option<Secret>| async move {
//!             match refresh_token.as_ref().map(Secret::expose) {
//!                 Some("rt-1") => Ok(Token::bearer("at-1", Expiry::In(Duration::from_secs(3600)))
//!                     .with_refresh_token("rt-2")),
//!                 _ => Err(RefreshFailure::terminal("unknown refresh credential")),
//!             }
//!         })
//!         // Store the rotated refresh credential before any request uses the new token.
//!         .on_token_change(|change| {
//!             if let TokenChange::Persist { token, .. } = change {
//!                 assert_eq!(token.refresh_token.as_ref().map(Secret::expose), Some("rt-2"));
//!             }
//!         })
//!         .build()?;
//!
//!     // The first call refreshes; the next ones get the same token at once, until it
//!     // is refreshed in the background shortly before it expires.
//!     let token = source.token().await?;
//!     assert_eq!(token.authorization().as_str(), "Bearer at-1");
//!     assert!(std::sync::Arc::ptr_eq(&token, &source.token().await?));
//!
//!     // A request answered 401: report the token's generation; the next call gets a
//!     // new token (many reports of one generation, one refresh).
//!     source.report_rejected(token.generation);
//!     Ok(())
//! }
//! ```
//!
//! # What it does
//!
//! A [`TokenSource`] drives the sans-IO [`silent_refresh::TokenMachine`] (read its docs
//! for the rules: single flight, exactly-once outcomes, stale-while-refreshing, backoff,
//! rotation). One background task per source (the driver's exchange loop, on
//! [`Tokio`]) runs the refreshes (through your [`Refresher`]) and sleeps until the
//! machine's next deadline: the proactive refresh, the end of a backoff, a refresh or
//! request timeout. An exchange past `refresh_timeout` is not thrown away: it runs on
//! until its refresher's own timeout ends it, since its answer may carry the rotated
//! refresh token ([`TokenSource::refresh_overdue`]). The task ends when the last clone
//! of the source is dropped.
//!
//! [`TokenSource::token`] reads a published snapshot while the token is fresh (no lock,
//! no task hop, one reference count, and no clock read: the background task withdraws
//! the snapshot when the refresh window opens); otherwise the call enters the machine
//! and waits for its outcome, and dropping it mid-wait removes it. The machine is
//! behind a `std::sync::Mutex` that is never held across an `.await`.
//!
//! [`AuthorizedClient`] sends through any HTTP client with the token attached, only to
//! origins you allow, and retries once after a 401. The same rules plug into a tower
//! stack ([`tower::BearerAuthLayer`], feature `tower`) and into reqwest-middleware
//! ([`middleware::BearerAuth`], feature `reqwest-middleware`).
//!
//! `OAuth2Refresher` (feature `reqwest`) refreshes against an OAuth 2.0 token endpoint
//! with the codec, [`oauth2`] (the `silent-refresh-oauth2` crate); the grant a program
//! builds ([`RefreshGrant`], [`ClientAuth`]…) is also at this crate's root.
//!
//! # Signing in
//!
//! `Issuer` (feature `reqwest`, module `signin`) starts and ends a session: it reads an
//! issuer's metadata, runs the device flow or the browser sign-in with PKCE (the token
//! signs the source in and is saved to its store before it is used), and logs out by
//! revoking the session at the server, each call a future to `.await`.
//! [`TokenSource::ready`] says whether the store held a session already, so that a
//! tool signs its user in once, then refreshes silently at every start. The README's
//! "Sign in once, refresh silently, log out" tells the whole story.
//!
//! # Logs
//!
//! `tracing` events (target `silent_refresh_driver`): refresh started and token adopted
//! (info), refresh failed (warn; error when terminal or misconfigured), exchange overdue
//! (warn), token stored (debug; a failed save is an error once per streak). They never
//! contain a token or a refresh credential.
//! With the `metrics` feature, refresh durations by outcome, refreshes by trigger,
//! callers waiting and failed saves go to the `metrics` facade (see the driver's
//! `observe` module for the names).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "reqwest")]
mod oauth2_refresher;
mod send;
#[cfg(feature = "reqwest")]
pub mod signin;

/// A tower layer that attaches the access token (feature `tower`): the one of
/// `silent-refresh-http`, over this crate's [`TokenSource`].
#[cfg(feature = "tower")]
pub mod tower {
    pub use silent_refresh_http::tower::{BoxError, ReplayBody};

    /// A tower layer that adds `Authorization: Bearer …` with an
    /// [`AuthorizedClient`](crate::AuthorizedClient)'s rules (see
    /// `silent_refresh_http::tower::BearerAuthLayer`).
    pub type BearerAuthLayer = silent_refresh_http::tower::BearerAuthLayer<crate::TokenSource>;

    /// The service of a [`BearerAuthLayer`] around the service `S`.
    pub type BearerAuthService<S> =
        silent_refresh_http::tower::BearerAuthService<crate::TokenSource, S>;
}

/// A reqwest-middleware middleware that attaches the access token (feature
/// `reqwest-middleware`): the one of `silent-refresh-http`, over this crate's
/// [`TokenSource`].
#[cfg(feature = "reqwest-middleware")]
pub mod middleware {
    /// A middleware that adds `Authorization: Bearer …` with an
    /// [`AuthorizedClient`](crate::AuthorizedClient)'s rules (see
    /// `silent_refresh_http::middleware::BearerAuth`).
    pub type BearerAuth = silent_refresh_http::middleware::BearerAuth<crate::TokenSource>;
}

#[cfg(feature = "reqwest")]
pub use oauth2_refresher::{OAuth2Refresher, OAuth2RefresherBuilder, Reqwest};
pub use send::{
    AuthorizedClient, AuthorizedClientBuilder, ResponseStatus, TokenHeaders, authorization,
};
#[cfg(feature = "reqwest")]
pub use signin::Issuer;
pub use silent_refresh;
#[doc(inline)]
pub use silent_refresh_driver::exports::*;
pub use silent_refresh_driver::runtime::tokio::{Refresher, Tokio};
pub use silent_refresh_http;
pub use silent_refresh_oauth2 as oauth2;
#[cfg(feature = "jwt")]
#[doc(inline)]
pub use silent_refresh_oauth2::{JwtAssertion, SigningKey};

/// A source of fresh access tokens, driven by one background task on the tokio runtime
/// it was built in: the driver's generic source on [`Tokio`]. `token()`,
/// `token_within`, `token_before`, `shutdown` and `until_durable` return futures to
/// `.await`.
///
/// Cheap to clone (`Send + Sync + 'static`): every clone shares one token, one refresh
/// at a time, and one background task, which ends when the last clone is dropped.
/// Build one with `TokenSource::builder(config)`; see the [crate docs](crate).
pub type TokenSource = silent_refresh_driver::TokenSource<Tokio>;

/// Builds a [`TokenSource`]: start with `TokenSource::builder(config)`. Building needs
/// a [`Refresher`] (`.refresher(..)`) and a running tokio runtime.
pub type TokenSourceBuilder<R = NoRefresher> = silent_refresh_driver::TokenSourceBuilder<Tokio, R>;
