//! The servers silent-refresh's tests, examples and tools run against, all on
//! `127.0.0.1` (not published).
//!
//! - [`server`]: an OAuth 2.0 authorization server and protected resource
//!   (short-lived access tokens, rotating refresh tokens, reuse detection, a switch that
//!   makes the token endpoint fail; slow, faulty and redirecting modes of the token
//!   endpoint; the other grants, signed assertions, DPoP, discovery, the device flow, the
//!   browser sign-in, revocation, several APIs, and a second origin that counts what
//!   reaches it).
//! - [`app`]: an application's own JSON login and refresh API (not OAuth 2.0), the
//!   server side of `examples/custom_refresh.rs`, and the counts of a run.
//! - [`keys`]: RS256 and ES256 key pairs made at run time, for signed assertions.
//! - [`serve`]: an axum app on a bound listener, on a runtime and thread of its own.
//! - [`scripted`]: a scripted HTTP/1.1 server on plain `std` threads that records each
//!   request and answers what a handler says, and a server that counts connections (or
//!   never answers).
//!
//! ```
//! use silent_refresh_testkit::server::{AuthServer, ServerConfig};
//!
//! let server = AuthServer::start(ServerConfig::default())?;
//! assert!(server.token_url().starts_with("http://127.0.0.1:"));
//! # Ok::<(), std::io::Error>(())
//! ```

#![forbid(unsafe_code)]

pub mod app;
pub mod keys;
pub mod scripted;
pub mod serve;
pub mod server;

/// Which adapter drives a run's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `silent-refresh-tokio` with reqwest, one task per request in flight.
    Tokio,
    /// `silent-refresh-ureq`, one thread per request in flight.
    Blocking,
}

impl Runtime {
    /// The name on the command line and in the report.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Tokio => "tokio",
            Self::Blocking => "blocking",
        }
    }
}
