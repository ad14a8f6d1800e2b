//! Keeps an OAuth access token fresh for blocking threads, with ureq 3 as the HTTP
//! client: for CLI tools, build scripts and synchronous services.
//!
//! The recipe: an OAuth 2.0 refresher, a file that keeps the session (each rotated
//! refresh token is saved before the new access token is used), a ureq middleware that
//! attaches the token to your API's origin only, and a shutdown that lets the last
//! refresh be saved. Here it runs against the test kit's server on 127.0.0.1; give it
//! your provider's token URL, client and refresh token.
//!
//! ```
//! use std::time::Duration;
//! use silent_refresh_ureq::{
//!     BearerAuth, Config, Credentials, FileStore, OAuth2Refresher, RefreshGrant, TokenSource,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! #   let server = silent_refresh_testkit::server::AuthServer::start(Default::default())?;
//! #   let (token_url, api, me) = (server.token_url(), server.origin(), server.resource_url());
//! #   let (client_secret, refresh_token) = ("demo-client-secret", server.sign_in(None).refresh_token);
//! #   let dir = tempfile::tempdir()?;
//! #   let session_file = dir.path().join("session.json");
//! let grant = RefreshGrant::new(token_url, "demo-client").client_secret(client_secret);
//! let source = TokenSource::builder(Config::default())
//!     // The stored session wins; the refresh token is needed only the first time.
//!     .store(FileStore::new(session_file))
//!     .credentials(Credentials::RefreshToken(refresh_token.into()))
//!     .refresher(OAuth2Refresher::builder(grant).build()?)
//!     .build()?;
//! // Attaches the token to this origin only, and sends once more after a 401.
//! // The agent for it: the middleware installed last, no redirect followed.
//! let agent = BearerAuth::builder(source.clone())
//!     .allow_origin(api)
//!     .build_agent(ureq::Agent::config_builder())?;
//! // Share `agent` between threads (it is cheap to clone).
//! let response = agent.get(me).call()?;
//! assert!(response.status().is_success());
//! // Before exiting: let a refresh on the wire end and its rotated token be saved.
//! source.shutdown(Duration::from_secs(35));
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `jwt` | signed client assertions (`private_key_jwt`, `client_secret_jwt`) and the JWT bearer grant |
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
//! Any closure from the refresh credential to a [`Token`] is a refresher: call your own
//! refresh endpoint there (read its failures with [`oauth2::classify`]).
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//! use silent_refresh_ureq::{
//!     Config, Credentials, Expiry, RefreshFailure, Secret, Token, TokenChange, TokenSource,
//! };
//!
//! // The refresher talks to the authorization server; here, a stand-in that counts calls.
//! // (For a real server, use `OAuth2Refresher`.)
//! let refreshes = Arc::new(AtomicUsize::new(0));
//! let counter = refreshes.clone();
//! let refresher = move |refresh_token: Option<Secret>| -> Result<Token, RefreshFailure> {
//!     assert_eq!(refresh_token.expect("a refresh credential").expose(), "rt-1");
//!     let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
//!     Ok(Token::bearer(format!("at-{n}"), Expiry::In(Duration::from_secs(3600)))
//!         .with_refresh_token(format!("rt-{}", n + 1)))
//! };
//!
//! let source = TokenSource::builder(Config::default())
//!     .credentials(Credentials::RefreshToken("rt-1".into()))
//!     .refresher(refresher)
//!     .on_token_change(|change| {
//!         if let TokenChange::Persist { token, .. } = change {
//!             // Store the rotated refresh credential (a file, a keychain) here.
//!             assert_eq!(token.refresh_token.as_ref().expect("rotated").expose(), "rt-2");
//!         }
//!     })
//!     .build()?;
//!
//! // Eight threads ask at once: one refresh, and every thread gets its token.
//! std::thread::scope(|scope| {
//!     for _ in 0..8 {
//!         scope.spawn(|| {
//!             let token = source.token().expect("a token");
//!             assert_eq!(token.authorization().as_str(), "Bearer at-1");
//!         });
//!     }
//! });
//! assert_eq!(refreshes.load(Ordering::SeqCst), 1);
//! # Ok::<(), silent_refresh_ureq::Error>(())
//! ```
//!
//! # How it works
//!
//! A [`TokenSource`] is the driver's source (`silent-refresh-driver`) on its runtime of
//! std threads, [`Threads`]; it drives the core's sans-IO
//! [`silent_refresh::TokenMachine`] (read its docs for the rules it keeps) behind one
//! mutex:
//! - A fresh token is returned without the lock and without a clock read (an atomic
//!   snapshot). Otherwise the caller parks a request in the machine and parks its own
//!   thread until its outcome arrives: nothing polls, nothing sleeps in a loop.
//! - One timer thread per source runs the driver: it sleeps until the machine's next
//!   deadline and feeds it the time, so refreshes start on schedule while the program
//!   is idle. Each exchange and each store call runs on a short-lived thread of its
//!   own; one exchange at a time (a blocking call cannot be cancelled: the next starts
//!   once it returns). A panicking refresher is a transient failure.
//! - New tokens go to the token-change callback ([`TokenChange`]) and the store before
//!   anyone can use them, so a rotated refresh credential is never lost.
//!
//! # Sending requests
//!
//! [`BearerAuth`] is a ureq 3 middleware that adds the token to requests for the
//! origins you allow (never to the token endpoint, never across a redirect), reports
//! a 401 and sends the request again once with the new token when its body allows.
//! [`OAuth2Refresher`] refreshes against an OAuth 2.0 token endpoint with the codec,
//! [`oauth2`] (the `silent-refresh-oauth2` crate); the grant a program builds
//! ([`RefreshGrant`], [`ClientAuth`]…) is also at this crate's root.
//!
//! # Signing in
//!
//! [`Issuer`] starts and ends a session (module [`signin`]): it reads an issuer's
//! metadata, runs the device flow or the browser sign-in with PKCE (the token signs
//! the source in and is saved to its store before it is used), and logs out by
//! revoking the session at the server. [`TokenSource::ready`] says whether the store
//! held a session already, so that a tool signs its user in once, then refreshes
//! silently at every start. The README's "Sign in once, refresh silently, log out"
//! tells the whole story.
//!
//! # Logs
//!
//! `tracing` events (target `silent_refresh_driver`; the middleware's: `silent_refresh_http::ureq`):
//! refresh started, succeeded, failed (with the failure's message), overdue, backing
//! off; token adopted; saves; 401s. They carry generations, attempt ids and durations,
//! never a token or a refresh credential.
//! With the `metrics` feature, refresh durations by outcome, refreshes by trigger,
//! callers waiting and failed saves go to the `metrics` facade (see the driver's
//! `observe` module for the names).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod oauth2_refresher;
pub mod signin;
mod source;

pub use silent_refresh_http::ureq::DEFAULT_REPLAY_LIMIT;

/// A ureq 3 middleware that adds the source's token to requests for the origins you
/// allowed, never to the token endpoint nor across a redirect, and sends a request once
/// more after a 401 with the new token when its body allows: the HTTP integrations'
/// [`silent_refresh_http::ureq::BearerAuth`] (read its docs for every rule), over this
/// crate's [`TokenSource`]. Build it with `BearerAuth::builder(source)`.
pub type BearerAuth = silent_refresh_http::ureq::BearerAuth<TokenSource>;

/// Builds a [`BearerAuth`]: [`silent_refresh_http::ureq::BearerAuthBuilder`] over this
/// crate's [`TokenSource`].
pub type BearerAuthBuilder = silent_refresh_http::ureq::BearerAuthBuilder<TokenSource>;
pub use oauth2_refresher::{OAuth2Refresher, OAuth2RefresherBuilder, UreqAgent};
pub use signin::Issuer;
pub use silent_refresh_driver::runtime::threads::{Refresher, Threads};
pub use source::{TokenSource, TokenSourceBuilder};

pub use silent_refresh;
#[doc(inline)]
pub use silent_refresh_driver::exports::*;
pub use silent_refresh_oauth2 as oauth2;
#[cfg(feature = "jwt")]
#[doc(inline)]
pub use silent_refresh_oauth2::{JwtAssertion, SigningKey};
