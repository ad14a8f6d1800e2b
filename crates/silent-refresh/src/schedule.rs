//! When a token's refresh starts and when it stops being handed out.

use std::time::Duration;

use crate::time::Instant;

use crate::config::Config;
use crate::jitter::{self, Stream};

/// The two instants that govern one adopted token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Schedule {
    /// A proactive refresh starts here.
    pub(crate) refresh_at: Instant,
    /// The token is handed out only strictly before this instant.
    pub(crate) usable_until: Instant,
}

impl Schedule {
    /// The schedule of the token of generation `generation`, whose whole `lifetime`
    /// ends at `expires_at` (it may have started before this process did, for a stored
    /// token); no instant is before `floor`.
    ///
    /// - `usable_until = expires_at − min(safety_margin, margin_fraction × lifetime)`
    /// - `refresh_at = expires_at − min(threshold, refresh_fraction × lifetime) + jitter`,
    ///   with jitter in `[0, jitter_fraction × that threshold)`, never after `usable_until`.
    pub(crate) fn with_lifetime(
        config: &Config,
        generation: u64,
        lifetime: Duration,
        expires_at: Instant,
        floor: Instant,
    ) -> Self {
        let margin = config
            .safety_margin
            .min(lifetime.mul_f64(config.margin_fraction));
        let usable_until = sub_or(expires_at, margin, floor);
        let threshold = config
            .refresh_threshold
            .min(lifetime.mul_f64(config.refresh_fraction));
        let jitter = threshold.mul_f64(
            config.jitter_fraction * jitter::unit(config.seed, Stream::RefreshWindow, generation),
        );
        let refresh_at =
            sub_or(expires_at, threshold.saturating_sub(jitter), floor).min(usable_until);
        Self {
            refresh_at,
            usable_until,
        }
    }
}

fn sub_or(at: Instant, d: Duration, floor: Instant) -> Instant {
    at.checked_sub(d).map_or(floor, |t| t.max(floor))
}
