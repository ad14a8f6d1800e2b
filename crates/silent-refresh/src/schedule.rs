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

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn long_token_refreshes_threshold_before_expiry() {
        let config = Config::builder().jitter_fraction(0.0).build().unwrap();
        let t0 = Instant::now();
        let s = Schedule::new(&config, 1, t0, t0 + secs(3600));
        assert_eq!(s.refresh_at, t0 + secs(3600 - 300));
        assert_eq!(s.usable_until, t0 + secs(3600 - 30));
    }

    #[test]
    fn short_token_is_not_refreshed_on_every_request() {
        // A 60 s token with a 2 h threshold (the browser bug): refresh after half its life.
        let config = Config::builder()
            .refresh_threshold(secs(7200))
            .jitter_fraction(0.0)
            .build()
            .unwrap();
        let t0 = Instant::now();
        let s = Schedule::new(&config, 1, t0, t0 + secs(60));
        assert_eq!(s.refresh_at, t0 + secs(30));
        // The 30 s margin is capped at 10% of the lifetime: usable for 54 s.
        assert_eq!(s.usable_until, t0 + secs(54));
    }

    #[test]
    fn jitter_delays_within_bounds_and_never_past_usable() {
        let t0 = Instant::now();
        for seed in 0..200 {
            let config = Config::builder().seed(seed).build().unwrap();
            let s = Schedule::new(&config, seed, t0, t0 + secs(3600));
            assert!(s.refresh_at >= t0 + secs(3600 - 300));
            assert!(s.refresh_at < t0 + secs(3600 - 270));
            assert!(s.refresh_at <= s.usable_until);
        }
    }

    #[test]
    fn zero_lifetime_is_unusable_at_once() {
        let config = Config::default();
        let t0 = Instant::now();
        let s = Schedule::new(&config, 1, t0, t0);
        assert_eq!(s.usable_until, t0);
        assert_eq!(s.refresh_at, t0);
    }
}
