//! A sans-IO state machine that keeps an OAuth access token fresh.
//!
//! Many requests need a valid token at once; the machine refreshes before expiry,
//! runs at most one refresh at a time, parks the requests that cannot go on, and
//! releases every one of them exactly once, with the newest token or a clear error.
//! It reads no clock and does no I/O: you feed it inputs with `now`, and drain
//! what it wants done. The `silent-refresh-tokio` and `silent-refresh-ureq` crates
//! drive it for you; drive it yourself like this:
//!
//! ```
//! use std::time::{Duration, Instant, SystemTime};
//! use silent_refresh::{Action, Config, Credentials, Expiry, Token, TokenMachine};
//!
//! let start = Instant::now(); // the driver owns the clock, the machine never reads it
//! let mut machine = TokenMachine::new(Config::default(), start, SystemTime::now());
//! machine.handle_sign_in(start, SystemTime::now(), Credentials::RefreshToken("rt-1".into()));
//!
//! // A request arrives: there is no access token yet, so it parks and a refresh starts.
//! let request = machine.handle_request(start, None);
//! let mut granted = None;
//! let mut rounds = 0;
//! loop {
//!     rounds += 1;
//!     assert!(rounds < 10, "the driver loop must settle");
//!     let now = start + Duration::from_millis(120); // say, when the refresh answered
//!     let mut fed_input = false;
//!     while let Some(action) = machine.poll_action() {
//!         match action {
//!             Action::StartRefresh { attempt, refresh_token } => {
//!                 // Send it (crate `silent-refresh-oauth2`), then report the result.
//!                 assert_eq!(refresh_token.unwrap().expose(), "rt-1");
//!                 let token = Token::bearer("at-1", Expiry::In(Duration::from_secs(3600)))
//!                     .with_refresh_token("rt-2");
//!                 machine.handle_refresh_result(now, attempt, Ok(token));
//!                 fed_input = true;
//!             }
//!             Action::Persist { token, .. } => {
//!                 // Store the rotated refresh credential before using the token.
//!                 assert_eq!(token.refresh_token.unwrap().expose(), "rt-2");
//!             }
//!             Action::Grant { request: id, token } => {
//!                 assert_eq!(id, request);
//!                 granted = Some(token);
//!             }
//!             Action::Reject { error, .. } => panic!("{error}"),
//!             // Past `refresh_timeout`: abort the exchange, then report its result.
//!             Action::CancelRefresh { .. } | Action::Forget => {}
//!         }
//!     }
//!     if !fed_input {
//!         break;
//!     }
//! }
//! let token = granted.expect("granted");
//! assert_eq!(token.authorization().as_str(), "Bearer at-1");
//! // Sleep until the next wake-up (the proactive refresh), then call handle_timeout.
//! let wakeup = machine.poll_timeout().expect("a refresh is scheduled");
//! assert!(wakeup.at > start + Duration::from_secs(3000));
//! ```
//!
//! # The rules it keeps
//!
//! 1. **Single flight, on the wire**: at most one refresh exchange runs. It is over only
//!    when its result is reported; past `refresh_timeout` the machine emits
//!    `CancelRefresh` and keeps waiting for that result.
//! 2. **Exactly once**: every request gets one `Grant` or one `Reject`; a cancelled one
//!    gets none.
//! 3. **Never expired**: no token is granted at or after its `usable_until`.
//! 4. **Stale-while-refreshing** (default) or **wait-for-fresh** ([`RefreshMode`]).
//! 5. Parked requests are released in **arrival order**, with the newest token.
//! 6. **Refresh only when needed**: no token and someone waiting, the refresh window
//!    reached, or a 401 of the *current* generation (many 401s, one refresh).
//! 7. **Failures are classified in three** ([`FailureKind`]): transient ones back off
//!    (with jitter and `Retry-After`; an unreachable endpoint is probed again after
//!    the first step of the backoff while requests need a token); a misconfiguration
//!    fails requests that need a refresh fast with [`Error::Misconfigured`] for
//!    `backoff_max`, keeping the refresh credential; dead credentials require a
//!    sign-in and fail requests fast. A waiting request is answered as soon as its
//!    wait can no longer succeed ([`WaitPolicy`]).
//! 8. **Late results**: the result of the exchange on the wire is adopted even past its
//!    deadline (the server consumed the old credential); after a sign-in or sign-out it
//!    is dropped; duplicates change nothing. An exchange cancelled at its deadline has
//!    an unknown outcome: the machine retries with the same credential after the
//!    backoff, and if that is refused as dead, the error says the cancelled exchange
//!    may have spent it.
//! 9. **Rotation and persistence**: each refresh sends the newest refresh credential;
//!    a `Persist` precedes the first `Grant` of each new token. A rotated credential is
//!    persisted even when its access token arrived unusable (a failed refresh): with
//!    the previous access token while that one is usable, under a new generation.
//! 10. **Bounded**: parked requests are capped and each has a deadline.
//! 11. **Total**: no input sequence panics; time that goes backwards counts as none.
//! 12. **Sign-out** rejects every parked request, clears the token, and emits `Forget`.
//! 14. **Rejections that repeat**: from the second fresh token in a row rejected soon
//!     after its adoption, the refresh a rejection calls for is held back
//!     (exponentially, capped at `backoff_max`), and requests that cannot wait get
//!     [`Error::TokensRejected`].
//!
//! # Timing
//!
//! For a token adopted at `base` (when its refresh was *sent*) that expires at `exp`,
//! with lifetime `L = exp − base`:
//! - `usable_until = exp − min(safety_margin, margin_fraction × L)`;
//! - `refresh_at = exp − min(refresh_threshold, refresh_fraction × L) + jitter`, with
//!   the jitter in `[0, jitter_fraction × that threshold)`, capped at `usable_until`.
//!
//! A token without expiry is refreshed only when a request using it is rejected.
//! Secrets ([`Secret`]) print as `[redacted]` and are wiped on drop.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod action;
mod config;
mod error;
mod event;
mod failure;
mod ids;
pub mod jitter;
mod machine;
mod parked;
mod persist;
mod schedule;
mod secret;
mod session;
mod status;
pub mod time;
mod token;

pub use action::{Action, WakeReason, Wakeup};
pub use config::{Config, ConfigBuilder, RefreshMode, WaitPolicy};
pub use error::Error;
pub use event::{Event, MAX_QUEUED_EVENTS, Trigger};
pub use failure::{FailureKind, RefreshFailure};
pub use ids::{AttemptId, RequestId};
pub use machine::TokenMachine;
pub use persist::Persisted;
pub use secret::Secret;
pub use session::{KeyId, Session};
pub use status::Status;
pub use token::{AccessToken, Credentials, Expiry, Generation, KeyedToken, Token};
