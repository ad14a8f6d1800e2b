//! The exchange on the wire, as the driver runs it: what it is asked to cancel.
//!
//! The machine asks to cancel an exchange past `refresh_timeout`, and one that new
//! credentials superseded (its result will be dropped). Rule 8 keeps the first: with a
//! rotating refresh token the server may already have spent the credential sent, and
//! only the exchange's answer carries the new one. So an overdue exchange runs on until
//! its refresher's own timeout ends it (the shipped `OAuth2Refresher`s always set one),
//! and its late result goes to the machine, which adopts a late success; callers are
//! answered meanwhile by their own deadlines. Only an exchange whose refresher has no
//! timeout of its own is cancelled, at twice `refresh_timeout` (its hard limit), and a
//! superseded one at once. A runtime that cannot cancel (a blocking call) lets either
//! end by itself.

use silent_refresh::time::Instant;

use silent_refresh::{AttemptId, KeyId};

/// The exchange on the wire.
#[derive(Debug)]
pub(super) struct Wire {
    key: KeyId,
    attempt: AttemptId,
    /// When the driver cancels it if it has not ended.
    limit: Instant,
    /// It passed `refresh_timeout` (the machine said so).
    overdue: bool,
    /// New credentials came since it started: its result will be dropped.
    superseded: bool,
    /// The driver was asked to cancel it.
    cancelled: bool,
}

impl Wire {
    pub(super) fn new(key: KeyId, attempt: AttemptId, limit: Instant) -> Self {
        Self {
            key,
            attempt,
            limit,
            overdue: false,
            superseded: false,
            cancelled: false,
        }
    }

    /// Its key and attempt.
    pub(super) fn attempt(&self) -> (KeyId, AttemptId) {
        (self.key, self.attempt)
    }

    pub(super) fn overdue(&self) -> bool {
        self.overdue && !self.cancelled
    }

    pub(super) fn mark_overdue(&mut self) {
        self.overdue = true;
    }

    pub(super) fn supersede(&mut self) {
        self.superseded = true;
    }

    /// When the driver must wake to cancel it (`None`: it is cancelled already).
    pub(super) fn cancel_at(&self) -> Option<Instant> {
        (!self.cancelled).then_some(self.limit)
    }

    /// The attempt to cancel now, once: superseded, or past its hard limit.
    pub(super) fn due_cancel(&mut self, now: Instant) -> Option<(KeyId, AttemptId)> {
        if self.cancelled {
            return None;
        }
        if now >= self.limit && !self.superseded {
            tracing::warn!(
                attempt = self.attempt.0,
                "token refresh exchange passed its hard limit (the refresher has no timeout \
                 of its own, or did not keep it): cancelling it; its outcome is unknown"
            );
        }
        if self.superseded || now >= self.limit {
            self.cancelled = true;
            return Some((self.key, self.attempt));
        }
        None
    }
}
