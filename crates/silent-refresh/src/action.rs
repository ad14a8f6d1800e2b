//! What the machine asks its driver to do, and when to wake it.

use crate::time::Instant;
use std::sync::Arc;

use crate::error::Error;
use crate::ids::{AttemptId, RequestId};
use crate::secret::Secret;
use crate::token::{AccessToken, Generation, Token};

/// One thing for the driver to do. Drain them with
/// [`crate::TokenMachine::poll_action`] until `None`, in order: a `Persist` always
/// comes before the first `Grant` of its token.
#[derive(Clone, Debug)]
pub enum Action {
    /// Run a refresh exchange and report its result with
    /// [`crate::TokenMachine::handle_refresh_result`] and this attempt id, whatever
    /// happens: the machine starts no other exchange until that result comes in
    /// (single flight on the wire). Bound it by the configuration's `refresh_timeout`.
    StartRefresh {
        /// The attempt id to report the result with.
        attempt: AttemptId,
        /// The newest refresh credential, if any (none for e.g. client credentials).
        refresh_token: Option<Secret>,
    },
    /// Cancel the exchange of this attempt if it is still running (its deadline passed,
    /// or the credentials changed), then report its result as usual: a transient
    /// failure if it was cancelled, or the answer if it came first. Until that report
    /// no other exchange starts. A driver that cannot cancel (a blocking call) reports
    /// when the call returns, which its own timeout must bound.
    CancelRefresh {
        /// The attempt whose exchange to cancel.
        attempt: AttemptId,
    },
    /// A new token was adopted: store it (it holds the rotated refresh credential and
    /// a wall-clock expiry) before using it.
    ///
    /// Report the outcome with [`crate::TokenMachine::handle_persisted`]: a driver that
    /// does not leaves the token "not durable" (granted all the same, unless the
    /// configuration asks for strict persistence). A failed save is asked again after a
    /// backoff.
    Persist {
        /// The generation the machine gave the token.
        generation: Generation,
        /// The token to store, with `Expiry::At` (or `Never`) and its issue time. Boxed:
        /// it is rare, and keeps every other action (grants above all) small.
        token: Box<Token>,
        /// The refresh credential this token was refreshed from: a shared store replaces
        /// the stored token only if it still holds this one (compare-and-swap). `None`:
        /// a sign-in, stored whatever the store holds.
        from: Option<Secret>,
    },
    /// Signed out: delete the stored token.
    Forget,
    /// Give this token to this request.
    Grant {
        /// The request.
        request: RequestId,
        /// The token (shared).
        token: Arc<AccessToken>,
    },
    /// Fail this request.
    Reject {
        /// The request.
        request: RequestId,
        /// Why.
        error: Error,
    },
}

/// Why the machine wants to be woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WakeReason {
    /// Actions are queued: drain them now.
    PendingActions,
    /// The current token's refresh window opens.
    RefreshWindow,
    /// A backoff after a failed refresh ends.
    BackoffEnds,
    /// A waiting request may probe a token endpoint that could not be reached.
    ProbeDue,
    /// The hold-off of a refresh after fresh tokens were rejected again ends.
    HoldoffEnds,
    /// The exchange on the wire reaches its deadline (and is to be cancelled).
    RefreshTimeout,
    /// A parked request reaches its deadline.
    RequestDeadline,
    /// A failed save of the current token is asked again.
    PersistRetry,
}

/// When to call [`crate::TokenMachine::handle_timeout`] next, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wakeup {
    /// The instant.
    pub at: Instant,
    /// The reason, for logs.
    pub reason: WakeReason,
}
