//! What happened inside the machine, for logs, metrics and subscribers.
//!
//! Actions ([`crate::Action`]) are what the driver must do; events are what it may want
//! to know. Drain them with [`crate::TokenMachine::poll_event`] until `None`, after the
//! actions. A driver that never drains them loses only the oldest (at most
//! [`MAX_QUEUED_EVENTS`] wait), never memory.

use crate::time::Instant;
use std::sync::Arc;

use crate::failure::FailureKind;
use crate::ids::AttemptId;
use crate::status::Status;
use crate::token::Generation;

/// At most this many events wait to be drained; older ones are dropped first.
pub const MAX_QUEUED_EVENTS: usize = 256;

/// Why a refresh started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// No usable token while requests wait for one.
    NoToken,
    /// The refresh window of the current token opened.
    Window,
    /// A request with the current token was rejected (401).
    Rejected,
    /// New credentials came (a sign-in) while requests waited for a token, or with a
    /// token already in its refresh window.
    SignIn,
}

impl Trigger {
    /// A short name, for logs and metrics (`no_token`, `window`, `rejected`,
    /// `sign_in`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::NoToken => "no_token",
            Trigger::Window => "window",
            Trigger::Rejected => "rejected",
            Trigger::SignIn => "sign_in",
        }
    }
}

/// One thing that happened. Never carries a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A refresh exchange started.
    RefreshStarted {
        /// Its attempt id.
        attempt: AttemptId,
        /// Why.
        trigger: Trigger,
    },
    /// The exchange passed its deadline: the driver was asked to cancel it, and no other
    /// starts until its result is reported.
    RefreshOverdue {
        /// The attempt.
        attempt: AttemptId,
    },
    /// A token was adopted (from a refresh, or given at sign-in).
    TokenAdopted {
        /// The generation the machine gave it.
        generation: Generation,
        /// The refresh it came from (`None`: a sign-in).
        attempt: Option<AttemptId>,
    },
    /// A refresh failed.
    RefreshFailed {
        /// The attempt.
        attempt: AttemptId,
        /// Its class.
        kind: FailureKind,
        /// What happened (no secret).
        message: Arc<str>,
        /// When the next refresh may start, if one may.
        retry_at: Option<Instant>,
    },
    /// A result was dropped: a duplicate, an unknown attempt, or an exchange superseded
    /// by new credentials.
    ResultDropped {
        /// The attempt named by the result.
        attempt: AttemptId,
    },
    /// The store confirmed a token (the session is durable again).
    Persisted {
        /// The token's generation.
        generation: Generation,
    },
    /// Saving a token failed: the session is not durable until a retry succeeds.
    PersistFailed {
        /// The token's generation.
        generation: Generation,
        /// What failed (no secret).
        message: Arc<str>,
        /// When the save is asked again.
        retry_at: Instant,
    },
    /// The store held a newer session (another process refreshed first): it was
    /// adopted, as this generation, instead of the machine's own token.
    AdoptedFromStore {
        /// The generation given to the stored token.
        generation: Generation,
    },
    /// The wall clock ran ahead of the monotonic clock (a suspend, or the clock was
    /// set): expiries were moved to where the wall clock says they are.
    WallClockJumped {
        /// How far ahead.
        ahead: std::time::Duration,
    },
    /// Tokens keep being rejected (401) soon after they were issued: the refresh this
    /// rejection calls for is held back until `retry_at` (rule 14), so no API can turn
    /// its requests into a refresh storm.
    RejectionsRepeat {
        /// The rejected token's generation.
        generation: Generation,
        /// How many tokens in a row were rejected soon after they were issued.
        count: u32,
        /// When the held-back refresh may start.
        retry_at: Instant,
    },
    /// The status changed.
    StatusChanged {
        /// The new status.
        status: Status,
    },
}
