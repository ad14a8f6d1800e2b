//! The lock-free fast path: the token a caller gets without asking the machine, while
//! it is fresh.
//!
//! The kernel publishes the machine's fresh token with the instant until which it may
//! be handed out, and the driver's timer withdraws it then, so a call reads no clock
//! and takes no lock. That instant is kept at least [`TIMER_SLACK`] before the token
//! stops being usable (a token that cannot be refreshed has no refresh window: its
//! fast path ends a second before its end of use, and the last second goes through the
//! machine), so a timer that fires late hands out no unusable token. Only a clock that
//! can jump ahead by hand ([`Clock::jumps`](crate::clock::Clock::jumps)) is read on
//! every call: after a jump no timer could have withdrawn the token in time.

use silent_refresh::time::Instant;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use silent_refresh::AccessToken;

use crate::clock::Clock;

/// How late the driver's timer may fire before the fast path would hand out a token
/// that is no longer usable.
const TIMER_SLACK: Duration = Duration::from_secs(1);

/// The fast path's token: handed out without the lock until `until` (`None`: until an
/// input changes it).
pub(super) struct Fresh {
    token: Arc<AccessToken>,
    until: Option<Instant>,
    check_clock: bool,
}

impl Fresh {
    /// The token the machine calls fresh until `until`, and the instant the fast path
    /// hands it out until: `TIMER_SLACK` before it stops being usable at the latest.
    /// `None`: less than that is left, and the machine answers every call.
    pub(super) fn window(
        token: Arc<AccessToken>,
        until: Option<Instant>,
        now: Instant,
    ) -> Option<(Arc<AccessToken>, Option<Instant>)> {
        let slack_end = token
            .usable_until
            .map(|usable| usable.checked_sub(TIMER_SLACK).unwrap_or(usable));
        let until = match (until, slack_end) {
            (Some(until), Some(end)) => Some(until.min(end)),
            (until, _) => until,
        };
        if until.is_some_and(|until| until <= now) {
            return None;
        }
        Some((token, until))
    }

    pub(super) fn new(token: Arc<AccessToken>, until: Option<Instant>, clock_jumps: bool) -> Self {
        let check_clock = match (until, token.usable_until) {
            (Some(_), _) if clock_jumps => true,
            // A window without a known end of usability: be safe.
            (Some(_), None) => true,
            _ => false,
        };
        Self {
            token,
            until,
            check_clock,
        }
    }

    /// Whether the clock must be read on every call.
    pub(super) fn check_clock(&self) -> bool {
        self.check_clock
    }

    /// The token, to hand out as it is (no clock to read).
    pub(super) fn into_token(self) -> Arc<AccessToken> {
        self.token
    }

    /// The token, unless the clock must be read and says its time is over.
    #[inline]
    pub(super) fn hand_out(&self, clock: &dyn Clock) -> Option<Arc<AccessToken>> {
        if self.check_clock && self.until.is_some_and(|until| clock.now() >= until) {
            return None;
        }
        Some(self.token.clone())
    }
}

/// One key's fast path: the token a caller of that key gets without asking the
/// machine, while it is fresh (the kernel publishes it, its timer withdraws it).
#[derive(Default)]
pub struct KeySlot {
    /// The token, handed out as it is.
    fresh: ArcSwapOption<AccessToken>,
    /// The token when the clock must be read on every call.
    checked: ArcSwapOption<Fresh>,
}

impl KeySlot {
    /// The published token while it may be handed out: no lock, and no clock read
    /// unless the clock can jump.
    #[inline]
    #[must_use]
    pub fn token(&self, clock: &dyn Clock) -> Option<Arc<AccessToken>> {
        // As cheap as an `ArcSwap` gets: a load and a reference count.
        if let Some(token) = self.fresh.load_full() {
            return Some(token);
        }
        self.checked.load().as_ref()?.hand_out(clock)
    }

    /// Publishes `fresh` (`None`: withdraws the token).
    pub(super) fn publish(&self, fresh: Option<Fresh>) {
        match fresh {
            Some(fresh) if fresh.check_clock() => {
                self.fresh.store(None);
                self.checked.store(Some(Arc::new(fresh)));
            }
            Some(fresh) => {
                self.checked.store(None);
                self.fresh.store(Some(fresh.into_token()));
            }
            None => {
                self.fresh.store(None);
                self.checked.store(None);
            }
        }
    }
}

impl std::fmt::Debug for KeySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySlot")
            .field("fresh", &self.fresh.load().is_some())
            .finish_non_exhaustive()
    }
}
