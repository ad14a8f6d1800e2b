//! Configuration: when to refresh, how long to wait, how hard to retry.

use std::time::Duration;

use crate::error::Error;

/// What a request inside the refresh window gets while the refresh runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum RefreshMode {
    /// Grant the still-usable token at once while the refresh runs (the default: no
    /// request waits while a valid token exists).
    #[default]
    StaleWhileRefreshing,
    /// Park the request until the refresh ends (the browser interceptor pattern). If the
    /// refresh fails while the old token is still usable, parked requests get the old one.
    WaitForFresh,
}

/// How long a request with no usable token waits while refreshes fail (rule 7).
///
/// Whatever the policy, a request never waits past its own deadline, misconfigured
/// clients and dead credentials fail it at once, and a request is answered as soon as
/// a token comes. The policy decides what a request does while the next attempt is
/// held back: after a transient failure (its backoff), after an unreachable endpoint
/// with [`fail_fast_unreachable`](ConfigBuilder::fail_fast_unreachable) off, and while
/// refreshes are held back because an API keeps rejecting fresh tokens (rule 14).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum WaitPolicy {
    /// Wait while the wait can still succeed: a request is answered with the failure as
    /// soon as the next attempt is due at or after its deadline (the default). A 5xx
    /// with a short backoff is waited out; a long `Retry-After` or a grown backoff
    /// answers at once.
    #[default]
    WhileHopeful,
    /// Interactive programs: a request that finds no usable token while an attempt is
    /// held back is answered at once with the failure, and the requests waiting for an
    /// attempt that fails are answered with it.
    FirstFailure,
    /// Batch jobs: wait until the request's own deadline, whatever the failures, for
    /// the chance that an attempt succeeds in time.
    UntilDeadline,
}

/// The machine's settings. Build one with [`Config::builder`]; [`Config::default`]
/// holds the documented defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub(crate) refresh_threshold: Duration,
    pub(crate) refresh_fraction: f64,
    pub(crate) safety_margin: Duration,
    pub(crate) margin_fraction: f64,
    pub(crate) jitter_fraction: f64,
    pub(crate) mode: RefreshMode,
    pub(crate) refresh_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_parked: usize,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) max_retry_after: Duration,
    pub(crate) strict_persistence: bool,
    pub(crate) fail_fast_unreachable: bool,
    pub(crate) wait_policy: WaitPolicy,
    pub(crate) seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // Peers refresh 1 to 5 minutes before expiry (MSAL and the AWS SDK: 5 min,
            // oauth2-proxy: 1 min); 5 minutes rides out a slow or briefly failing server.
            refresh_threshold: Duration::from_secs(300),
            // ...but never before half the lifetime: a 2-minute token refreshes after 1.
            refresh_fraction: 0.5,
            // Clock skew plus request latency: peers use 10 s to 60 s.
            safety_margin: Duration::from_secs(30),
            // ...capped at a tenth of the lifetime, so a 10-second token serves 9 s.
            margin_fraction: 0.1,
            // Up to 10% of the threshold later, so a fleet does not refresh in one second.
            jitter_fraction: 0.1,
            mode: RefreshMode::StaleWhileRefreshing,
            // The deadline of one refresh exchange. A token endpoint answers in well
            // under a second, but a loaded identity provider can take 10 to 20 s; the
            // exchange must not be cut short while the current token still serves
            // (past the deadline its outcome is unknown: the server may have consumed a
            // rotating credential). Requests that cannot wait have their own deadline.
            refresh_timeout: Duration::from_secs(30),
            // A request waits for a token up to 30 s (a common HTTP client timeout),
            // long enough for a timed-out refresh, a backoff and a retry.
            request_timeout: Duration::from_secs(30),
            // Bounded memory (under 100 bytes each); past it callers get `Overloaded`.
            max_parked: 100_000,
            // Exponential backoff from 1 s to 1 min (Google's and AWS's client defaults).
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            // A server's Retry-After is honoured up to 10 minutes.
            max_retry_after: Duration::from_secs(600),
            // Availability first: a token whose save failed is still used (and the save
            // retried); strict mode grants only stored tokens.
            strict_persistence: false,
            // An endpoint that refuses connections answers in milliseconds, and the next
            // attempt waits for the backoff anyway: a caller gains nothing by waiting.
            fail_fast_unreachable: true,
            // A caller never waits past the moment its wait can no longer succeed.
            wait_policy: WaitPolicy::WhileHopeful,
            seed: 0,
        }
    }
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
        }
    }

    /// Refresh this long before expiry at most (capped by `refresh_fraction`).
    #[must_use]
    pub fn refresh_threshold(&self) -> Duration {
        self.refresh_threshold
    }

    /// The threshold is at most this fraction of the token's lifetime.
    #[must_use]
    pub fn refresh_fraction(&self) -> f64 {
        self.refresh_fraction
    }

    /// A token is never handed out this close to its expiry (capped by `margin_fraction`).
    #[must_use]
    pub fn safety_margin(&self) -> Duration {
        self.safety_margin
    }

    /// The margin is at most this fraction of the token's lifetime.
    #[must_use]
    pub fn margin_fraction(&self) -> f64 {
        self.margin_fraction
    }

    /// The refresh starts up to this fraction of the threshold later (seeded jitter).
    #[must_use]
    pub fn jitter_fraction(&self) -> f64 {
        self.jitter_fraction
    }

    /// What requests inside the refresh window get.
    #[must_use]
    pub fn mode(&self) -> RefreshMode {
        self.mode
    }

    /// A refresh exchange is cancelled after this long (the driver's HTTP timeout).
    #[must_use]
    pub fn refresh_timeout(&self) -> Duration {
        self.refresh_timeout
    }

    /// A parked request's default deadline, counted from its arrival.
    #[must_use]
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// At most this many requests wait at once.
    #[must_use]
    pub fn max_parked(&self) -> usize {
        self.max_parked
    }

    /// The first backoff after a transient failure.
    #[must_use]
    pub fn backoff_initial(&self) -> Duration {
        self.backoff_initial
    }

    /// The longest backoff.
    #[must_use]
    pub fn backoff_max(&self) -> Duration {
        self.backoff_max
    }

    /// A server's `Retry-After` is honoured up to this long.
    #[must_use]
    pub fn max_retry_after(&self) -> Duration {
        self.max_retry_after
    }

    /// Whether a token is granted only once the store confirmed it.
    #[must_use]
    pub fn strict_persistence(&self) -> bool {
        self.strict_persistence
    }

    /// Whether a request that needs a refresh fails at once while the token endpoint
    /// is unreachable (see [`ConfigBuilder::fail_fast_unreachable`]).
    #[must_use]
    pub fn fail_fast_unreachable(&self) -> bool {
        self.fail_fast_unreachable
    }

    /// How a request with no usable token waits while refreshes fail.
    #[must_use]
    pub fn wait_policy(&self) -> WaitPolicy {
        self.wait_policy
    }

    /// The seed of the jitter.
    #[must_use]
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

/// Builds a [`Config`], rejecting values that make no sense.
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    config: Config,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, value: $ty) -> Self {
            self.config.$name = value;
            self
        }
    };
}

impl ConfigBuilder {
    setter!(
        /// Refresh this long before expiry at most. Default 5 min.
        refresh_threshold: Duration
    );
    setter!(
        /// The threshold is at most this fraction of the lifetime, in (0, 1). Default 0.5.
        refresh_fraction: f64
    );
    setter!(
        /// Never hand a token out this close to expiry. Default 30 s.
        safety_margin: Duration
    );
    setter!(
        /// The margin is at most this fraction of the lifetime, in [0, refresh_fraction).
        /// Default 0.1.
        margin_fraction: f64
    );
    setter!(
        /// Start the refresh up to this fraction of the threshold later, in [0, 1).
        /// Default 0.1.
        jitter_fraction: f64
    );
    setter!(
        /// What requests inside the refresh window get. Default: stale-while-refreshing.
        mode: RefreshMode
    );
    setter!(
        /// Cancel a refresh exchange after this long. Default 30 s.
        refresh_timeout: Duration
    );
    setter!(
        /// A parked request's default deadline. Default 30 s.
        request_timeout: Duration
    );
    setter!(
        /// At most this many requests wait at once. Default 100 000.
        max_parked: usize
    );
    setter!(
        /// The first backoff after a transient failure. Default 1 s.
        backoff_initial: Duration
    );
    setter!(
        /// The longest backoff. Default 60 s.
        backoff_max: Duration
    );
    setter!(
        /// Honour a server's `Retry-After` up to this long. Default 10 min.
        max_retry_after: Duration
    );
    setter!(
        /// Grant a token only once its `Persist` was answered `Stored` (requests wait,
        /// until their deadline, while the save fails). Default: off (a token whose save
        /// failed is used all the same, and the save retried).
        strict_persistence: bool
    );
    setter!(
        /// While the token endpoint is unreachable (its last refresh could not connect:
        /// connection refused, no DNS answer, connect timeout) and no usable token is
        /// left, a request that needs a refresh fails at once with
        /// [`Error::Unreachable`] until the backoff ends, instead of waiting for its
        /// deadline. A usable token is granted all the same. Default: on. Turn it off
        /// for batch work that would rather wait out a short outage of the
        /// authorization server (requests then wait until their deadline, as for any
        /// transient failure).
        fail_fast_unreachable: bool
    );
    setter!(
        /// How a request with no usable token waits while refreshes fail
        /// ([`WaitPolicy`]). Default: [`WaitPolicy::WhileHopeful`].
        wait_policy: WaitPolicy
    );
    setter!(
        /// Seed of the jitter: give each process its own (e.g. from its pid and start time).
        seed: u64
    );

    /// Checks the values and returns the configuration.
    pub fn build(self) -> Result<Config, Error> {
        let c = self.config;
        let in_open_unit = |x: f64| x > 0.0 && x < 1.0;
        if c.refresh_threshold.is_zero() {
            return Err(Error::InvalidConfig(
                "refresh_threshold must be greater than zero",
            ));
        }
        if !in_open_unit(c.refresh_fraction) {
            return Err(Error::InvalidConfig(
                "refresh_fraction must be between 0 and 1, exclusive",
            ));
        }
        if !(c.margin_fraction >= 0.0 && c.margin_fraction < c.refresh_fraction) {
            return Err(Error::InvalidConfig(
                "margin_fraction must be at least 0 and less than refresh_fraction",
            ));
        }
        if c.safety_margin > c.refresh_threshold {
            return Err(Error::InvalidConfig(
                "safety_margin must not exceed refresh_threshold: the refresh would start after the token stopped being usable",
            ));
        }
        if !(c.jitter_fraction >= 0.0 && c.jitter_fraction < 1.0) {
            return Err(Error::InvalidConfig(
                "jitter_fraction must be at least 0 and less than 1",
            ));
        }
        if c.refresh_timeout.is_zero() {
            return Err(Error::InvalidConfig(
                "refresh_timeout must be greater than zero",
            ));
        }
        if c.request_timeout.is_zero() {
            return Err(Error::InvalidConfig(
                "request_timeout must be greater than zero",
            ));
        }
        if c.max_parked == 0 {
            return Err(Error::InvalidConfig("max_parked must be at least 1"));
        }
        if c.backoff_initial.is_zero() {
            return Err(Error::InvalidConfig(
                "backoff_initial must be greater than zero",
            ));
        }
        if c.backoff_max < c.backoff_initial {
            return Err(Error::InvalidConfig(
                "backoff_max must be at least backoff_initial",
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build() {
        assert_eq!(Config::builder().build(), Ok(Config::default()));
    }

    #[test]
    fn builder_rejects_nonsense() {
        let cases: Vec<(ConfigBuilder, &str)> = vec![
            (
                Config::builder().refresh_threshold(Duration::ZERO),
                "refresh_threshold",
            ),
            (Config::builder().refresh_fraction(0.0), "refresh_fraction"),
            (Config::builder().refresh_fraction(1.0), "refresh_fraction"),
            (
                Config::builder().refresh_fraction(f64::NAN),
                "refresh_fraction",
            ),
            (Config::builder().margin_fraction(0.6), "margin_fraction"),
            (Config::builder().margin_fraction(-0.1), "margin_fraction"),
            (
                Config::builder().safety_margin(Duration::from_secs(600)),
                "safety_margin",
            ),
            (Config::builder().jitter_fraction(1.0), "jitter_fraction"),
            (
                Config::builder().refresh_timeout(Duration::ZERO),
                "refresh_timeout",
            ),
            (
                Config::builder().request_timeout(Duration::ZERO),
                "request_timeout",
            ),
            (Config::builder().max_parked(0), "max_parked"),
            (
                Config::builder().backoff_initial(Duration::ZERO),
                "backoff_initial",
            ),
            (
                Config::builder().backoff_max(Duration::from_millis(1)),
                "backoff_max",
            ),
        ];
        for (builder, field) in cases {
            match builder.build() {
                Err(Error::InvalidConfig(reason)) => assert!(reason.contains(field), "{reason}"),
                other => panic!("{field}: expected InvalidConfig, got {other:?}"),
            }
        }
    }
}
