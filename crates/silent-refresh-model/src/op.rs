//! The random inputs: owned, small, and resolved against the run so far by the harness
//! (an op names "the latest attempt" or "the third request", not raw ids).

use std::time::Duration;

use silent_refresh::{Config, RefreshMode, WaitPolicy};

/// One input of a random run. The harness turns it into a concrete
/// [`Input`](crate::Input) (or, for time ops, moves its clock).
#[derive(Clone, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum Op {
    /// A request, with the default deadline or a custom one.
    Request {
        /// The custom deadline, if any.
        deadline: Option<DeadlinePick>,
    },
    /// The caller cancels a request.
    Cancel(RequestPick),
    /// The driver's clock moves forward (no call: the next input sees it).
    Advance(TimeStep),
    /// The driver's clock moves back this many milliseconds, then `handle_timeout`.
    Backwards(u16),
    /// `handle_timeout` at the driver's now.
    Timeout,
    /// The driver sleeps until the machine's `poll_timeout` and calls `handle_timeout`.
    WakeUp,
    /// A successful refresh result.
    RefreshOk {
        /// Which attempt it answers.
        attempt: AttemptPick,
        /// Whether the response carries a new (rotated) refresh credential.
        rotate: bool,
        /// The expiry of the new access token.
        expiry: ExpiryPick,
    },
    /// A failed refresh result.
    RefreshFail {
        /// Which attempt it answers.
        attempt: AttemptPick,
        /// How it failed.
        failure: FailurePick,
    },
    /// The last refresh result, again.
    Duplicate,
    /// A request was rejected with a 401.
    Rejected(GenerationPick),
    /// A sign-in with new credentials.
    SignIn(CredentialsPick),
    /// A sign-out.
    SignOut,
    /// The store's answer to a `Persist`.
    Persisted {
        /// Which generation it answers.
        generation: GenerationPick,
        /// What the store did.
        outcome: PersistPick,
    },
    /// The wall clock jumps (a suspend: ahead; a clock set back: behind) by this many
    /// seconds, and the driver reads it (`handle_wall_clock`).
    WallJump {
        /// Ahead (a suspend) or behind.
        ahead: bool,
        /// How far, in seconds.
        seconds: u16,
    },
    /// Rule 13: another key of the session has an exchange on the wire (`true`), or
    /// not any more.
    LineageBusy(bool),
    /// Rule 13: another key's exchange rotated the session's refresh credential.
    Rotated,
    /// Rule 13: another key's exchange found the session's credentials dead.
    LineageDead,
}

/// What a store answers to a `Persist`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum PersistPick {
    /// Stored.
    Stored,
    /// The save failed.
    Failed,
    /// The store held a newer session: a token with this expiry (issued now), with or
    /// without a refresh credential.
    Conflict {
        /// Its expiry.
        expiry: ExpiryPick,
        /// Whether it carries a refresh credential.
        refresh: bool,
    },
}

/// A request's custom deadline, relative to the driver's now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum DeadlinePick {
    /// This many milliseconds later.
    After(u16),
    /// This many milliseconds earlier (already passed).
    Before(u8),
}

/// Which request a cancellation names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum RequestPick {
    /// One of the requests made so far (index modulo their number), in any state.
    Known(u8),
    /// An id the machine never gave.
    Unknown,
}

/// How far the driver's clock moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum TimeStep {
    /// Milliseconds.
    Millis(u8),
    /// Tenths of a second.
    Tenths(u8),
    /// Seconds.
    Seconds(u8),
}

impl TimeStep {
    /// The step as a duration.
    #[must_use]
    pub fn duration(self) -> Duration {
        match self {
            TimeStep::Millis(n) => Duration::from_millis(u64::from(n)),
            TimeStep::Tenths(n) => Duration::from_millis(100 * u64::from(n)),
            TimeStep::Seconds(n) => Duration::from_secs(u64::from(n)),
        }
    }
}

/// Which attempt a refresh result names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum AttemptPick {
    /// The attempt started last (in flight, timed out or already answered).
    Latest,
    /// An attempt started before the last (counting back, modulo their number).
    Earlier(u8),
    /// An attempt the machine never started.
    Unknown,
}

/// The expiry of a token the harness makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum ExpiryPick {
    /// `Expiry::In`, short: 200 ms plus 50 ms per unit (up to about 13 s).
    Short(u8),
    /// `Expiry::In`, long: 60 s plus one second per unit.
    Long(u8),
    /// `Expiry::In(0)`: expired on arrival.
    Zero,
    /// `Expiry::Never`.
    Never,
    /// `Expiry::At` the driver's wall clock plus this many tenths of a second
    /// (negative: already passed).
    AtWall(i16),
}

impl ExpiryPick {
    /// The lifetime for `Short`, `Long` and `Zero`.
    #[must_use]
    pub fn lifetime(self) -> Option<Duration> {
        match self {
            ExpiryPick::Short(n) => Some(Duration::from_millis(200 + 50 * u64::from(n))),
            ExpiryPick::Long(n) => Some(Duration::from_secs(60 + u64::from(n))),
            ExpiryPick::Zero => Some(Duration::ZERO),
            ExpiryPick::Never | ExpiryPick::AtWall(_) => None,
        }
    }
}

/// How a refresh fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum FailurePick {
    /// A transient failure without `Retry-After`.
    Transient,
    /// A transient failure with `Retry-After` of this many tenths of a second.
    TransientRetryAfter(u8),
    /// A terminal failure (`invalid_grant`).
    Terminal,
    /// A misconfiguration (`invalid_client`, a redirect, a 404).
    Misconfigured,
    /// No connection to the token endpoint (connection refused): transient, and the
    /// endpoint is unreachable.
    Unreachable,
}

/// Which generation a 401 names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum GenerationPick {
    /// The newest generation persisted so far (0 before the first).
    Current,
    /// One to three generations older than the newest.
    Older(u8),
    /// A generation not given yet.
    Newer,
}

/// The credentials of a sign-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum CredentialsPick {
    /// A token, with or without a refresh credential.
    Token {
        /// Its expiry.
        expiry: ExpiryPick,
        /// Whether it carries a refresh credential.
        refresh: bool,
    },
    /// Only a refresh credential.
    RefreshToken,
    /// Client credentials, optionally with a token to start from.
    ClientCredentials {
        /// The expiry of the starting token, if there is one.
        token: Option<ExpiryPick>,
    },
    /// A token loaded from the store: its wall-clock expiry is this many tenths of a
    /// second away (negative: passed), and it was issued this many tenths ago.
    Stored {
        /// Tenths of a second to its expiry.
        expires_in: i16,
        /// Tenths of a second since it was issued.
        lived: u8,
        /// Whether it carries a refresh credential.
        refresh: bool,
    },
}

/// A configuration for a random run: small numbers, so that a few ops cross refresh
/// windows, deadlines, timeouts and the parked cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub struct Setup {
    /// The refresh mode.
    pub mode: RefreshMode,
    /// Which variant of the small configuration.
    pub shape: Shape,
    /// The jitter seed.
    pub seed: u8,
}

/// Variants of the small test configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum Shape {
    /// Threshold 2 s, margin 400 ms, refresh timeout 1 s, request timeout 1.5 s,
    /// backoff 100 ms to 1.6 s, `Retry-After` up to 2 s, at most 8 parked.
    Small,
    /// As `Small`, but the request timeout equals the refresh timeout (ties).
    Tied,
    /// As `Small`, without jitter and with request timeouts shorter than refreshes.
    NoJitter,
    /// As `Small`, with at most 2 parked requests (overload).
    TinyQueue,
    /// As `Small`, granting only stored tokens (strict persistence).
    Strict,
    /// As `Small`, with requests waiting for their deadline while the token endpoint
    /// is unreachable (no fail-fast).
    Patient,
    /// As `Small`, for an interactive program: a request that finds no usable token
    /// while an attempt is held back is answered at once (`WaitPolicy::FirstFailure`).
    Interactive,
    /// As `Patient`, for a batch job: requests wait until their own deadline whatever
    /// fails (`WaitPolicy::UntilDeadline`).
    Batch,
}

impl Setup {
    /// The configuration.
    #[must_use]
    pub fn config(&self) -> Config {
        let ms = Duration::from_millis;
        let mut builder = Config::builder()
            .mode(self.mode)
            .seed(u64::from(self.seed))
            .refresh_threshold(ms(2000))
            .refresh_fraction(0.5)
            .safety_margin(ms(400))
            .margin_fraction(0.1)
            .jitter_fraction(0.1)
            .refresh_timeout(ms(1000))
            .request_timeout(ms(1500))
            .max_parked(8)
            .backoff_initial(ms(100))
            .backoff_max(ms(1600))
            .max_retry_after(ms(2000));
        builder = match self.shape {
            Shape::Small => builder,
            Shape::Tied => builder.request_timeout(ms(1000)),
            Shape::NoJitter => builder.jitter_fraction(0.0).request_timeout(ms(700)),
            Shape::TinyQueue => builder.max_parked(2),
            Shape::Strict => builder.strict_persistence(true),
            Shape::Patient => builder.fail_fast_unreachable(false),
            Shape::Interactive => builder.wait_policy(WaitPolicy::FirstFailure),
            Shape::Batch => builder
                .fail_fast_unreachable(false)
                .wait_policy(WaitPolicy::UntilDeadline),
        };
        match builder.build() {
            Ok(config) => config,
            Err(error) => unreachable!("the test configurations are valid: {error}"),
        }
    }
}

/// Decodes fuzzer bytes into a setup and ops (what a fuzz target runs); bytes that run
/// out leave the defaults (`Small`, stale-while-refreshing, seed 0) and fewer ops.
#[must_use]
pub fn decode(bytes: &[u8]) -> (Setup, Vec<Op>) {
    let mut input = arbitrary::Unstructured::new(bytes);
    let setup = input.arbitrary().unwrap_or(Setup {
        mode: RefreshMode::StaleWhileRefreshing,
        shape: Shape::Small,
        seed: 0,
    });
    let ops = input.arbitrary().unwrap_or_default();
    (setup, ops)
}
