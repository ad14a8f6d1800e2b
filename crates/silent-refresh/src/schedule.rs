//! When a token's refresh starts and when it stops being handed out.

use std::time::{Duration, Instant};

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
    /// The schedule of a token valid from `base` (when its request was sent) to
    /// `expires_at`, for the token of generation `generation`.
    ///
    /// - `usable_until = expires_at − min(safety_margin, margin_fraction × lifetime)`
    /// - `refresh_at = expires_at − min(threshold, refresh_fraction × lifetime) + jitter`,
    ///   with jitter in `[0, jitter_fraction × that threshold)`, never after `usable_until`.
    pub(crate) fn new(
        config: &Config,
        generation: u64,
        base: Instant,
        expires_at: Instant,
    ) -> Self {
        let lifetime = expires_at.saturating_duration_since(base);
        let margin = config
            .safety_margin
            .min(lifetime.mul_f64(config.margin_fraction));
        let usable_until = sub_or(expires_at, margin, base);
        let threshold = config
            .refresh_threshold
            .min(lifetime.mul_f64(config.refresh_fraction));
        let jitter = threshold.mul_f64(
            config.jitter_fraction * jitter::unit(config.seed, Stream::RefreshWindow, generation),
        );
        let refresh_at =
            sub_or(expires_at, threshold.saturating_sub(jitter), base).min(usable_until);
        Self {
            refresh_at,
            usable_until,
        }
    }
}

fn sub_or(at: Instant, d: Duration, floor: Instant) -> Instant {
    at.checked_sub(d).map_or(floor, |t| t.max(floor))
}
