//! The reference model: the contract (DESIGN.md and the crate docs) as plain functions
//! over plain data, predicting the machine's exact actions for every input.
//!
//! It keeps what the contract talks about and nothing clever: the parked requests in a
//! `Vec` in arrival order, the timed-out attempts in a `Vec`, the token with the two
//! instants it came with (`base`, `expires_at`), and its schedule recomputed from those
//! every time it is needed. Where the contract leaves a choice open, the model follows
//! the machine's documented choice (see the notes on each function).

use std::time::{Duration, Instant, SystemTime};

use crate::trace::{Act, Credential, Input, Label, Stored, TOKEN_TYPE, TokenSpec};
use silent_refresh::Error;
use silent_refresh::Status;
use silent_refresh::jitter::{self, Stream};
use silent_refresh::{AttemptId, RequestId};
use silent_refresh::{Config, RefreshMode, WaitPolicy};
use silent_refresh::{Expiry, Generation};
use silent_refresh::{FailureKind, RefreshFailure};
use silent_refresh::{WakeReason, Wakeup};

/// The failure recorded when an exchange passes its deadline.
pub const TIMED_OUT: &str = "the refresh exchange passed its deadline";
/// The failure recorded when a refresh returns a token that is not usable any more.
pub const EXPIRED_RESULT: &str = "the refresh returned a token that is already expired";
/// What a terminal failure's reason adds after an exchange whose outcome is unknown.
pub const UNKNOWN_OUTCOME: &str = "an earlier refresh exchange passed its deadline, so \
     the server may have consumed the refresh credential without its answer arriving";
/// The reason the harness gives when another key's exchange found the credentials dead.
pub const LINEAGE_DEAD: &str = "another key of the session was refused: invalid_grant";
/// Why a request fails fast when the token is unusable and cannot be refreshed.
pub const NO_WAY_TO_REFRESH: &str =
    "the token is no longer usable and there is no refresh credential";

/// How far the wall clock may drift before it counts as a suspend or a clock set.
const WALL_CLOCK_TOLERANCE: Duration = Duration::from_secs(1);

/// The exchange the driver runs: it is on the wire until its result comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Running {
    attempt: AttemptId,
    started: Instant,
    /// The refresh credential it sent.
    sent: Option<Label>,
    /// `CancelRefresh` was asked for.
    cancelled: bool,
    /// New credentials came since: its result is dropped.
    superseded: bool,
    /// A newer token came from the store since (rule 8): its result is dropped, but it
    /// is not cancelled.
    overtaken: bool,
}

/// The adopted token, kept as it came: its secret, when it expires (an instant, and on
/// the wall clock), its whole lifetime, and whether the store confirmed it.
#[derive(Clone, Debug)]
struct Held {
    generation: Generation,
    access: Label,
    scope: Option<String>,
    /// `(expires_at, lifetime, floor)`: the schedule is a fraction of the whole lifetime
    /// ending at `expires_at`, never before `floor`. `None`: no expiry.
    expiry: Option<(Instant, Duration, Instant)>,
    /// The expiry on the wall clock.
    expires_wall: Option<SystemTime>,
    /// After the wall clock ran ahead: the schedule before, which the moved one never
    /// exceeds (`refresh_at`, `usable_until`).
    cap: Option<(Instant, Instant)>,
    rejected: bool,
    /// When it was adopted (rule 14 counts rejections soon after).
    adopted_at: Instant,
    durable: bool,
    /// The `Persist` it was asked to be stored with (asked again after a failed save).
    persist: Option<Act>,
}

impl Held {
    fn usable_until(&self, config: &Config) -> Option<Instant> {
        self.expiry.map(|(exp, lifetime, floor)| {
            let until = usable_until(config, lifetime, exp, floor);
            self.cap.map_or(until, |(_, cap)| until.min(cap))
        })
    }

    fn refresh_at(&self, config: &Config) -> Option<Instant> {
        self.expiry.map(|(exp, lifetime, floor)| {
            let at = refresh_at(config, self.generation, lifetime, exp, floor);
            self.cap.map_or(at, |(cap, _)| at.min(cap))
        })
    }

    /// Rule 3: never after `usable_until`, never after a 401.
    fn usable_at(&self, config: &Config, now: Instant) -> bool {
        !self.rejected && self.usable_until(config).is_none_or(|until| now < until)
    }

    /// Rule 6: the window is reached, or the token was rejected.
    fn in_window_at(&self, config: &Config, now: Instant) -> bool {
        self.rejected || self.refresh_at(config).is_some_and(|at| now >= at)
    }
}

/// The crate docs, "Timing": `exp − min(safety_margin, margin_fraction × L)` for the
/// whole lifetime `L`, never before `floor`.
fn usable_until(config: &Config, lifetime: Duration, exp: Instant, floor: Instant) -> Instant {
    let margin = config
        .safety_margin()
        .min(lifetime.mul_f64(config.margin_fraction()));
    minus(exp, margin, floor)
}

/// The crate docs, "Timing": `exp − min(threshold, refresh_fraction × L)` plus a jitter in
/// `[0, jitter_fraction × that)` keyed by the generation; never before `floor`, never
/// after `usable_until`.
fn refresh_at(
    config: &Config,
    generation: Generation,
    lifetime: Duration,
    exp: Instant,
    floor: Instant,
) -> Instant {
    let threshold = config
        .refresh_threshold()
        .min(lifetime.mul_f64(config.refresh_fraction()));
    let unit = jitter::unit(config.seed(), Stream::RefreshWindow, generation.0);
    let jitter = threshold.mul_f64(config.jitter_fraction() * unit);
    minus(exp, threshold.saturating_sub(jitter), floor)
        .min(usable_until(config, lifetime, exp, floor))
}

/// `at − d`, but never before `floor` (which it is, too, when not representable).
fn minus(at: Instant, d: Duration, floor: Instant) -> Instant {
    at.checked_sub(d).map_or(floor, |t| t.max(floor))
}

/// `now + d`, saturating far in the future (as the machine does).
fn plus(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

/// Exponential backoff: `min(max, initial × 2^(failures−1))`, less up to half of it as
/// jitter keyed by the failed attempt, and at least the server's (capped) `Retry-After`.
fn backoff(
    config: &Config,
    failures: u32,
    failed: AttemptId,
    retry_after: Option<Duration>,
) -> Duration {
    let mut base = config.backoff_initial();
    for _ in 1..failures {
        if base >= config.backoff_max() {
            break;
        }
        base = base.saturating_mul(2);
    }
    let base = base.min(config.backoff_max());
    let unit = jitter::unit(config.seed(), Stream::Backoff, failed.0);
    let delay = base.mul_f64(1.0 - 0.5 * unit);
    delay.max(
        retry_after
            .unwrap_or_default()
            .min(config.max_retry_after()),
    )
}

/// The state the contract talks about, and the rules as plain functions over it.
#[derive(Clone, Debug)]
pub struct Model {
    config: Config,
    now: Instant,
    wall_anchor: (Instant, SystemTime),
    status: Status,
    self_authenticating: bool,
    refresh_token: Option<Label>,
    token: Option<Held>,
    last_generation: Generation,
    running: Option<Running>,
    backoff: Option<Instant>,
    /// After an unreachable endpoint: a waiting request may probe from here on.
    probe_at: Option<Instant>,
    /// Rule 14: the backoff is a hold-off (fresh tokens keep being rejected); the later
    /// of a hold-off and a failure's backoff is the one kept.
    held: bool,
    /// Rule 14: tokens rejected in a row, each soon after it was adopted.
    rejections: u32,
    /// Rule 13: another key's exchange is on the wire; this key starts none.
    lineage_busy: bool,
    failures: u32,
    last_failure: Option<String>,
    /// A failed exchange of the current credential had passed its deadline.
    outcome_unknown: bool,
    /// Failed saves of the current token in a row, and when to ask again.
    save_failures: u32,
    save_retry_at: Option<Instant>,
    next_attempt: u64,
    next_request: u64,
    /// Parked requests with their deadlines, in arrival order.
    parked: Vec<(RequestId, Instant)>,
    out: Vec<Act>,
}

/// The model's view of what the machine's getters should say after a step.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// `now()`.
    pub now: Instant,
    /// `status()`.
    pub status: Status,
    /// `generation()`.
    pub generation: Generation,
    /// `parked_len()`.
    pub parked: usize,
    /// `refresh_in_flight()`.
    pub in_flight: Option<AttemptId>,
    /// `backoff_until()`.
    pub backoff_until: Option<Instant>,
    /// `last_failure()`.
    pub last_failure: Option<String>,
    /// `fresh_token()`: the generation and the fast-path limit.
    pub fresh: Option<(Generation, Option<Instant>)>,
    /// `poll_timeout()` once the actions are drained.
    pub wakeup: Option<Wakeup>,
    /// `is_durable()`.
    pub durable: bool,
}

impl Model {
    /// A model of a new machine (no credentials yet).
    #[must_use]
    pub fn new(config: Config, now: Instant, wall_now: SystemTime) -> Self {
        Self {
            config,
            now,
            wall_anchor: (now, wall_now),
            status: Status::AwaitingSignIn,
            self_authenticating: false,
            refresh_token: None,
            token: None,
            last_generation: Generation(0),
            running: None,
            backoff: None,
            probe_at: None,
            held: false,
            rejections: 0,
            lineage_busy: false,
            failures: 0,
            last_failure: None,
            outcome_unknown: false,
            save_failures: 0,
            save_retry_at: None,
            next_attempt: 1,
            next_request: 1,
            parked: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Feeds one input at `now`; returns the request id (for a request) and the
    /// actions the machine must emit, in order.
    pub fn apply(&mut self, input: &Input, now: Instant) -> (Option<RequestId>, Vec<Act>) {
        // Rule 11: time never runs backwards; an earlier instant is no time passing.
        self.now = self.now.max(now);
        let mut request = None;
        match input {
            Input::Request { deadline } => request = Some(self.request(*deadline)),
            Input::Cancel(id) => self.cancel(*id),
            Input::RefreshResult { attempt, result } => self.refresh_result(*attempt, result),
            Input::Rejected(generation) => self.rejected(*generation),
            Input::SignIn {
                wall_now,
                credentials,
            } => self.sign_in(*wall_now, credentials),
            Input::SignOut => self.sign_out(),
            Input::Timeout => self.advance(),
            Input::Persisted {
                generation,
                outcome,
            } => self.persisted(*generation, outcome),
            Input::WallClock { wall_now } => self.wall_clock(*wall_now),
            Input::LineageBusy(busy) => {
                self.lineage_busy = *busy;
                self.advance();
            }
            Input::Rotated(label) => {
                if self.active() && self.refresh_token.is_some() {
                    self.refresh_token = Some(*label);
                }
                self.advance();
            }
            Input::LineageDead => {
                if self.active() {
                    self.supersede();
                    self.end_session(LINEAGE_DEAD.into());
                }
                self.advance();
            }
        }
        (request, std::mem::take(&mut self.out))
    }

    /// What the machine's getters should say now.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            now: self.now,
            status: self.status.clone(),
            generation: self.last_generation,
            parked: self.parked.len(),
            in_flight: self.running.map(|r| r.attempt),
            backoff_until: self.backoff,
            last_failure: self.last_failure.clone(),
            fresh: self.fresh(),
            wakeup: self.wakeup(),
            durable: self.token.as_ref().is_some_and(|t| t.durable),
        }
    }

    // ----- inputs ------------------------------------------------------------------

    /// A request: fails fast, is granted, is refused for overload, or parks (and then
    /// may start the refresh it needs, or miss a deadline already passed).
    fn request(&mut self, deadline: Option<Instant>) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.advance();
        if let Some(error) = self.fail_fast_error() {
            self.out.push(Act::Reject { request: id, error });
        } else if self.grantable() {
            self.out.push(self.grant(id));
        } else if self.parked.len() >= self.config.max_parked() {
            let limit = self.config.max_parked();
            self.out.push(Act::Reject {
                request: id,
                error: Error::Overloaded { limit },
            });
        } else {
            let deadline =
                deadline.unwrap_or_else(|| plus(self.now, self.config.request_timeout()));
            self.parked.push((id, deadline));
            self.advance();
        }
        id
    }

    /// Rule 2: a cancelled request leaves nothing behind.
    fn cancel(&mut self, id: RequestId) {
        self.parked.retain(|(parked, _)| *parked != id);
        self.advance();
    }

    /// Rules 1 and 8: the result of the exchange on the wire ends it; it is taken as it
    /// is (an unusable token counts as a transient failure, but its rotated credential is
    /// kept), also after its deadline, unless new credentials came since. Anything else
    /// changes nothing.
    fn refresh_result(&mut self, attempt: AttemptId, result: &Result<TokenSpec, RefreshFailure>) {
        if let Some(running) = self.running.filter(|r| r.attempt == attempt) {
            self.running = None;
            if !running.superseded && !running.overtaken {
                match result {
                    Ok(spec) => {
                        // Compare-and-swap on what the store holds: the credential
                        // sent, or, while the current token is not stored, what its own
                        // save compares against.
                        let from = match &self.token {
                            Some(held) if !held.durable => match &held.persist {
                                Some(Act::Persist { from, .. }) => *from,
                                _ => None,
                            },
                            _ => running.sent,
                        };
                        // Rule 9: a rotated credential that came with an unusable token is
                        // stored all the same (the server spent the one sent): with the
                        // previous token while that one is usable, else with this one.
                        let rotated = spec.refresh.is_some() && spec.refresh != running.sent;
                        let keep = rotated.then(|| self.kept_with(spec));
                        if !self.adopt(spec, running.started, from) {
                            if spec.refresh.is_some() {
                                self.refresh_token = spec.refresh;
                            }
                            if let Some(kept) = keep
                                && let Some(persist) =
                                    self.install(&kept, running.started, from, true)
                            {
                                self.out.push(persist);
                            }
                            self.fail(attempt, &RefreshFailure::transient(EXPIRED_RESULT));
                        }
                    }
                    Err(failure) => {
                        if running.cancelled {
                            self.outcome_unknown = true;
                        }
                        self.fail(attempt, failure);
                    }
                }
            }
        }
        self.advance();
    }

    /// What a rotated credential arriving with an unusable token (`spec`) is stored
    /// with: the current token as it was stored, while it is usable; else `spec`.
    fn kept_with(&self, spec: &TokenSpec) -> TokenSpec {
        let usable = self
            .token
            .as_ref()
            .filter(|t| t.usable_at(&self.config, self.now));
        match usable.and_then(|t| t.persist.as_ref()) {
            Some(Act::Persist {
                access,
                scope,
                expiry,
                issued_at,
                ..
            }) => TokenSpec {
                access: *access,
                refresh: spec.refresh,
                expiry: *expiry,
                scope: scope.clone(),
                issued_at: *issued_at,
            },
            _ => spec.clone(),
        }
    }

    /// Rule 6: only a 401 of the current generation counts (once). Rule 14: the second
    /// token in a row rejected within `backoff_max` of its adoption, and every one after,
    /// holds the refresh back `min(max, initial × 2^(n−2))`, less up to half as jitter.
    fn rejected(&mut self, generation: Generation) {
        let now = self.now;
        if let Some(token) = self.token.as_mut()
            && token.generation == generation
            && !token.rejected
        {
            token.rejected = true;
            let soon = now < plus(token.adopted_at, self.config.backoff_max());
            self.rejections = if soon {
                self.rejections.saturating_add(1)
            } else {
                1
            };
            if self.rejections >= 2 {
                let mut base = self.config.backoff_initial();
                for _ in 2..self.rejections.min(40) {
                    if base >= self.config.backoff_max() {
                        break;
                    }
                    base = base.saturating_mul(2);
                }
                let base = base.min(self.config.backoff_max());
                let unit = jitter::unit(self.config.seed(), Stream::Rejections, generation.0);
                let holdoff = plus(now, base.mul_f64(1.0 - 0.5 * unit));
                if self.backoff.is_none_or(|backoff| holdoff > backoff) {
                    self.backoff = Some(holdoff);
                    self.held = true;
                    self.probe_at = None;
                }
            }
        }
        self.advance();
    }

    /// New credentials replace everything: the token, the refresh credential, every
    /// attempt and backoff. A token already unusable is not adopted, but its refresh
    /// credential is kept.
    fn sign_in(&mut self, wall_now: SystemTime, credentials: &Credential) {
        self.wall_anchor = (self.now, wall_now);
        self.status = Status::SignedIn;
        self.token = None;
        self.refresh_token = None;
        self.rejections = 0;
        self.supersede();
        let (token, self_authenticating) = match credentials {
            Credential::Token(spec) => (Some(spec), false),
            Credential::RefreshToken(label) => {
                self.refresh_token = Some(*label);
                (None, false)
            }
            Credential::ClientCredentials(spec) => (spec.as_ref(), true),
            Credential::Stored(spec) => (Some(spec), false),
        };
        self.self_authenticating = self_authenticating;
        if let Some(spec) = token {
            let adopted = if matches!(credentials, Credential::Stored(_)) {
                self.adopt_stored(spec)
            } else {
                self.adopt(spec, self.now, None)
            };
            if !adopted {
                self.refresh_token = spec.refresh;
            }
        }
        self.advance();
    }

    /// Rule 9: the store's answer about the current token (an older generation's, or
    /// one already confirmed, changes nothing): stored makes it durable; a conflict
    /// adopts the store's newer token without writing it back (or, spent, drops ours and
    /// keeps the store's refresh credential, none included); a failure asks again after `min(max, initial × 2^(n−1))`.
    fn persisted(&mut self, generation: Generation, outcome: &Stored) {
        let is_current = self
            .token
            .as_ref()
            .is_some_and(|t| t.generation == generation && !t.durable);
        if is_current && self.active() {
            match outcome {
                Stored::Stored => self.mark_durable(),
                Stored::Conflict(spec) => {
                    if self.adopt_stored(spec) {
                        // Rule 8: the exchange on the wire, if any, was overtaken.
                        if let Some(running) = self.running.as_mut() {
                            running.overtaken = true;
                        }
                    } else {
                        self.refresh_token = spec.refresh;
                        self.token = None;
                    }
                }
                Stored::Failed => {
                    self.save_failures = self.save_failures.saturating_add(1);
                    let mut delay = self.config.backoff_initial();
                    for _ in 1..self.save_failures.min(32) {
                        delay = delay.saturating_mul(2);
                    }
                    self.save_retry_at = Some(plus(self.now, delay.min(self.config.backoff_max())));
                }
            }
        }
        self.advance();
    }

    /// A wall-clock reading: more than a second off re-anchors the two clocks; ahead
    /// (a suspend) moves the current token's expiry to where the wall clock puts it,
    /// never later than it was.
    fn wall_clock(&mut self, wall_now: SystemTime) {
        let now = self.now;
        let projected = self.wall_of(now);
        let ahead = wall_now.duration_since(projected).unwrap_or_default();
        let behind = projected.duration_since(wall_now).unwrap_or_default();
        if ahead > WALL_CLOCK_TOLERANCE || behind > WALL_CLOCK_TOLERANCE {
            self.wall_anchor = (now, wall_now);
            if ahead > WALL_CLOCK_TOLERANCE
                && let Some(held) = self.token.clone()
                && let (Some(wall), Some((_, lifetime, _))) = (held.expires_wall, held.expiry)
            {
                let before = (
                    held.refresh_at(&self.config),
                    held.usable_until(&self.config),
                );
                let at = self.instant_of(wall).unwrap_or(now);
                let floor = at.checked_sub(lifetime).unwrap_or(now).min(at);
                if let (Some(refresh), Some(usable), Some(token)) =
                    (before.0, before.1, self.token.as_mut())
                {
                    token.expiry = Some((at, lifetime, floor));
                    token.cap = Some((refresh, usable));
                }
            }
        }
        self.advance();
    }

    /// Rule 12: reject every parked request, clear everything, ask to forget.
    fn sign_out(&mut self) {
        self.status = Status::SignedOut;
        self.token = None;
        self.refresh_token = None;
        self.rejections = 0;
        self.self_authenticating = false;
        self.supersede();
        self.reject_all(&Error::SignedOut);
        self.out.push(Act::Forget);
        self.advance();
    }

    // ----- the rules ---------------------------------------------------------------

    /// Everything `now` makes due, in order: (b) the deadline of the exchange on the
    /// wire, (c) the end of a backoff, (d) starting a refresh, (e) releasing requests, and
    /// last (a) the deadlines of the requests still parked.
    fn advance(&mut self) {
        let now = self.now;
        // (b) An exchange past its deadline is to be cancelled; it stays on the wire
        // until its result comes.
        if let Some(running) = self.running.as_mut()
            && !running.cancelled
            && now >= plus(running.started, self.config.refresh_timeout())
        {
            running.cancelled = true;
            let attempt = running.attempt;
            if !running.superseded {
                self.last_failure = Some(TIMED_OUT.to_owned());
            }
            self.out.push(Act::CancelRefresh { attempt });
        }
        // (c)
        if self.backoff.is_some_and(|until| now >= until) {
            self.backoff = None;
            self.held = false;
            self.probe_at = None;
        }
        // (c') A failed save is asked again.
        if self.save_retry_at.is_some_and(|at| now >= at) {
            self.save_retry_at = None;
            if let Some(act) = self
                .token
                .as_ref()
                .filter(|t| !t.durable)
                .and_then(|t| t.persist.clone())
            {
                self.out.push(act);
            }
        }
        // (d)
        if self.refresh_needed() {
            // Rule 14: a refresh for anything but a rejection ends the streak.
            if !self.token.as_ref().is_some_and(|t| t.rejected) {
                self.rejections = 0;
            }
            self.backoff = None;
            self.held = false;
            self.probe_at = None;
            let attempt = AttemptId(self.next_attempt);
            self.next_attempt += 1;
            self.running = Some(Running {
                attempt,
                started: now,
                sent: self.refresh_token,
                cancelled: false,
                superseded: false,
                overtaken: false,
            });
            self.out.push(Act::StartRefresh {
                attempt,
                refresh_token: self.refresh_token,
            });
        }
        // (e)
        if let Some(error) = self.fail_fast_error() {
            self.reject_all(&error);
        } else if self.grantable() {
            let parked = std::mem::take(&mut self.parked);
            for (request, _) in parked {
                self.out.push(self.grant(request));
            }
        } else if let Some((next, error)) = self.held_back() {
            // Rule 7: whoever cannot get a token by waiting is answered now.
            match self.config.wait_policy() {
                WaitPolicy::FirstFailure => self.reject_all(&error),
                WaitPolicy::WhileHopeful => {
                    let mut hopeless: Vec<(Instant, RequestId)> = self
                        .parked
                        .iter()
                        .filter(|(_, deadline)| *deadline <= next)
                        .map(|(id, deadline)| (*deadline, *id))
                        .collect();
                    hopeless.sort();
                    self.parked.retain(|(_, deadline)| *deadline > next);
                    for (_, request) in hopeless {
                        self.out.push(Act::Reject {
                            request,
                            error: error.clone(),
                        });
                    }
                }
                WaitPolicy::UntilDeadline => {}
            }
        }
        // (a) Deadlines, earliest first (ties by arrival).
        let mut expired: Vec<(Instant, RequestId)> = self
            .parked
            .iter()
            .filter(|(_, deadline)| *deadline <= now)
            .map(|(id, deadline)| (*deadline, *id))
            .collect();
        expired.sort();
        self.parked.retain(|(_, deadline)| *deadline > now);
        for (_, request) in expired {
            // Never given credentials: the error says so.
            let error = if self.status == Status::AwaitingSignIn {
                Error::AwaitingSignIn
            } else {
                let last_failure = self.last_failure.as_deref().map(Into::into);
                Error::DeadlineExceeded { last_failure }
            };
            self.out.push(Act::Reject { request, error });
        }
    }

    /// Rules 1 and 6: signed in, nothing on the wire, no backoff (or a probe due for a
    /// waiting request), no hold-off, a refresh possible, and a reason.
    fn refresh_needed(&self) -> bool {
        let probe_due = !self.parked.is_empty() && self.probe_at.is_some_and(|at| self.now >= at);
        self.active()
            && self.running.is_none()
            && !self.lineage_busy
            && (self.backoff.is_none() || probe_due)
            && self.can_refresh()
            && match &self.token {
                Some(token) => token.in_window_at(&self.config, self.now),
                None => !self.parked.is_empty(),
            }
    }

    fn can_refresh(&self) -> bool {
        self.self_authenticating || self.refresh_token.is_some()
    }

    /// Signed in, misconfigured, unreachable or not.
    fn active(&self) -> bool {
        matches!(
            self.status,
            Status::SignedIn | Status::Misconfigured(_) | Status::Unreachable { .. }
        )
    }

    /// Rules 3 and 4.
    fn grantable(&self) -> bool {
        let waiting_for_fresh = self.config.mode() == RefreshMode::WaitForFresh
            && self.running.is_some_and(|r| !r.superseded && !r.overtaken);
        self.active()
            && self.token.as_ref().is_some_and(|token| {
                token.usable_at(&self.config, self.now)
                    && (token.durable || !self.config.strict_persistence())
                    && !(waiting_for_fresh && token.in_window_at(&self.config, self.now))
            })
    }

    /// When a request can next get an attempt while one is held back: the hold-off,
    /// else the backoff (or the probe, if sooner).
    fn next_attempt(&self) -> Option<Instant> {
        if self.running.is_some() || self.lineage_busy {
            return None;
        }
        let backoff = self.backoff?;
        Some(self.probe_at.map_or(backoff, |p| p.min(backoff)))
    }

    /// Rule 7: no usable token and an attempt held back: when it may start, and what a
    /// request that cannot wait for it is told.
    fn held_back(&self) -> Option<(Instant, Error)> {
        if !self.active() || !self.can_refresh() {
            return None;
        }
        if self
            .token
            .as_ref()
            .is_some_and(|t| t.usable_at(&self.config, self.now))
        {
            return None;
        }
        let next = self.next_attempt()?;
        let retry_in = next.saturating_duration_since(self.now);
        let error = if self.held {
            Error::TokensRejected {
                count: self.rejections,
                retry_in,
            }
        } else if let Status::Unreachable { reason, .. } = &self.status {
            Error::Unreachable {
                reason: reason.clone(),
                retry_in,
            }
        } else {
            Error::RefreshFailed {
                reason: self
                    .last_failure
                    .as_deref()
                    .unwrap_or(EXPIRED_RESULT)
                    .into(),
                retry_in,
            }
        };
        Some((next, error))
    }

    /// Backs off until `until`, unless a longer hold-off of rule 14 (set while the
    /// exchange was on the wire) runs; returns when the backoff ends.
    fn hold_back(&mut self, until: Instant) -> Instant {
        match self.backoff {
            Some(held) if self.held && held > until => held,
            _ => {
                self.backoff = Some(until);
                self.held = false;
                until
            }
        }
    }

    /// Rule 7: the error a request gets without waiting, if any.
    fn fail_fast_error(&self) -> Option<Error> {
        match &self.status {
            Status::AwaitingSignIn => None,
            Status::SignInRequired(reason) => Some(Error::SignInRequired {
                reason: reason.clone(),
            }),
            Status::SignedOut => Some(Error::SignedOut),
            Status::SignedIn | Status::Misconfigured(_) | Status::Unreachable { .. } => {
                let usable = self
                    .token
                    .as_ref()
                    .is_some_and(|token| token.usable_at(&self.config, self.now));
                if usable {
                    return None;
                }
                if !self.can_refresh() {
                    return Some(Error::SignInRequired {
                        reason: NO_WAY_TO_REFRESH.into(),
                    });
                }
                // Misconfigured, or unreachable (unless configured to wait): no waiting
                // for a refresh that cannot start yet.
                match (&self.status, self.backoff) {
                    (Status::Misconfigured(reason), Some(_)) => Some(Error::Misconfigured {
                        reason: reason.clone(),
                    }),
                    (Status::Unreachable { reason, .. }, Some(_))
                        if self.config.fail_fast_unreachable() && !self.held =>
                    {
                        // Until a request may probe the endpoint again.
                        let next = self.next_attempt()?;
                        (self.now < next).then(|| Error::Unreachable {
                            reason: reason.clone(),
                            retry_in: next - self.now,
                        })
                    }
                    _ => None,
                }
            }
        }
    }

    /// Rule 7: transient failures back off; a misconfiguration waits `backoff_max` (or
    /// the server's longer `Retry-After`) and keeps the credential; dead credentials end
    /// the session.
    fn fail(&mut self, attempt: AttemptId, failure: &RefreshFailure) {
        match failure.kind {
            FailureKind::Transient => {
                self.failures = self.failures.saturating_add(1);
                self.last_failure = Some(failure.message.clone());
                let delay = backoff(&self.config, self.failures, attempt, failure.retry_after);
                let retry_at = self.hold_back(plus(self.now, delay));
                // An endpoint that could not be reached says so, until a refresh works
                // or fails otherwise; a waiting request probes it after the first step
                // of the backoff, however far the backoff grew (not while a longer
                // hold-off of rule 14 runs).
                self.status = if failure.unreachable {
                    let probe = backoff(&self.config, 1, attempt, failure.retry_after);
                    self.probe_at = (!self.held).then(|| plus(self.now, probe).min(retry_at));
                    Status::Unreachable {
                        reason: failure.message.as_str().into(),
                        retry_at: self.probe_at.unwrap_or(retry_at),
                    }
                } else {
                    Status::SignedIn
                };
            }
            FailureKind::Misconfigured => {
                self.status = Status::Misconfigured(failure.message.as_str().into());
                self.last_failure = Some(failure.message.clone());
                let server = failure
                    .retry_after
                    .unwrap_or_default()
                    .min(self.config.max_retry_after());
                self.hold_back(plus(self.now, self.config.backoff_max().max(server)));
            }
            FailureKind::Terminal => {
                let reason: std::sync::Arc<str> = if self.outcome_unknown {
                    format!("{}; {UNKNOWN_OUTCOME}", failure.message).into()
                } else {
                    failure.message.as_str().into()
                };
                self.end_session(reason);
            }
        }
    }

    /// Dead credentials: everyone waiting is told to sign in; token and credential go.
    fn end_session(&mut self, reason: std::sync::Arc<str>) {
        self.status = Status::SignInRequired(reason.clone());
        self.token = None;
        self.refresh_token = None;
        self.backoff = None;
        self.held = false;
        self.probe_at = None;
        self.failures = 0;
        self.last_failure = None;
        self.outcome_unknown = false;
        self.reject_all(&Error::SignInRequired { reason });
    }

    /// Rule 9: adopts a token whose refresh was sent at `base`, unless it is already
    /// unusable. Persists it (with the newest refresh credential) before any grant.
    /// Rule 9: adopts a token whose refresh (sending `from`) was sent at `base`, or
    /// given at sign-in, unless it is already unusable, and asks to persist it (with the
    /// newest refresh credential, a wall-clock expiry and issue time) before any grant.
    fn adopt(&mut self, spec: &TokenSpec, base: Instant, from: Option<Label>) -> bool {
        let Some(persist) = self.install(spec, base, from, false) else {
            return false;
        };
        self.out.push(persist);
        true
    }

    /// Adopts a token the store holds: durable, not persisted again.
    fn adopt_stored(&mut self, spec: &TokenSpec) -> bool {
        if self.install(spec, self.now, None, false).is_none() {
            return false;
        }
        self.mark_durable();
        true
    }

    /// Makes `spec` the current token with the next generation; returns the `Persist`
    /// that stores it, or `None` (nothing changed) if it is not usable now. A wall-clock
    /// expiry with an issue time counts its lifetime from the issue time.
    fn install(
        &mut self,
        spec: &TokenSpec,
        base: Instant,
        from: Option<Label>,
        unusable: bool,
    ) -> Option<Act> {
        let generation = Generation(self.last_generation.0 + 1);
        let expiry = match spec.expiry {
            Expiry::Never => None,
            Expiry::In(lifetime) => base.checked_add(lifetime).map(|at| (at, lifetime)),
            Expiry::At(wall) => self.instant_of(wall).map(|at| {
                let lifetime = match spec.issued_at {
                    Some(issued) if issued <= wall => {
                        wall.duration_since(issued).unwrap_or_default()
                    }
                    _ => at.saturating_duration_since(base),
                };
                (at, lifetime)
            }),
        }
        .map(|(at, lifetime)| {
            (
                at,
                lifetime,
                at.checked_sub(lifetime).unwrap_or(base).min(at),
            )
        });
        let expires_wall = expiry.map(|(at, ..)| self.wall_of(at));
        let mut held = Held {
            generation,
            access: spec.access,
            scope: spec.scope.clone(),
            expiry,
            expires_wall,
            cap: None,
            rejected: false,
            adopted_at: self.now,
            durable: false,
            persist: None,
        };
        if !unusable
            && held
                .usable_until(&self.config)
                .is_some_and(|until| self.now >= until)
        {
            return None;
        }
        self.last_generation = generation;
        if spec.refresh.is_some() {
            self.refresh_token = spec.refresh;
        }
        let persist = Act::Persist {
            generation,
            access: spec.access,
            token_type: TOKEN_TYPE.to_owned(),
            scope: spec.scope.clone(),
            refresh_token: self.refresh_token,
            expiry: match expires_wall {
                None => Expiry::Never,
                Some(wall) => Expiry::At(wall),
            },
            issued_at: match (expires_wall, expiry) {
                (Some(wall), Some((_, lifetime, _))) => wall.checked_sub(lifetime),
                _ => spec.issued_at.or_else(|| Some(self.wall_of(base))),
            },
            from,
        };
        held.persist = Some(persist.clone());
        self.token = Some(held);
        if !unusable {
            if let Status::Misconfigured(_) | Status::Unreachable { .. } = self.status {
                self.status = Status::SignedIn;
            }
            self.forget_failures();
        }
        self.save_failures = 0;
        self.save_retry_at = None;
        Some(persist)
    }

    fn mark_durable(&mut self) {
        if let Some(token) = self.token.as_mut() {
            token.durable = true;
        }
        self.save_failures = 0;
        self.save_retry_at = None;
    }

    fn forget_failures(&mut self) {
        self.backoff = None;
        self.held = false;
        self.probe_at = None;
        self.failures = 0;
        self.last_failure = None;
        self.outcome_unknown = false;
    }

    /// New credentials (or none): the exchange on the wire is cancelled (once) and its
    /// result will be dropped.
    fn supersede(&mut self) {
        if let Some(running) = self.running.as_mut() {
            running.superseded = true;
            if !running.cancelled {
                running.cancelled = true;
                let attempt = running.attempt;
                self.out.push(Act::CancelRefresh { attempt });
            }
        }
        self.forget_failures();
    }

    fn reject_all(&mut self, error: &Error) {
        for (request, _) in std::mem::take(&mut self.parked) {
            self.out.push(Act::Reject {
                request,
                error: error.clone(),
            });
        }
    }

    fn grant(&self, request: RequestId) -> Act {
        match &self.token {
            Some(token) => Act::Grant {
                request,
                generation: token.generation,
                access: token.access,
                token_type: TOKEN_TYPE.to_owned(),
                scope: token.scope.clone(),
                usable_until: token.usable_until(&self.config),
            },
            None => unreachable!("grant() is called only when grantable()"),
        }
    }

    // ----- outputs -----------------------------------------------------------------

    /// `fresh_token()`: signed in, a usable token, and its window not reached.
    fn fresh(&self) -> Option<(Generation, Option<Instant>)> {
        let token = self.token.as_ref()?;
        // Without a way to refresh, the window changes nothing: serve until unusable.
        let can_refresh = self.can_refresh();
        let until = if can_refresh {
            token.refresh_at(&self.config)
        } else {
            token.usable_until(&self.config)
        };
        (self.active()
            && token.usable_at(&self.config, self.now)
            && (token.durable || !self.config.strict_persistence())
            && !(can_refresh && token.in_window_at(&self.config, self.now)))
        .then_some((token.generation, until))
    }

    /// `poll_timeout()` with nothing queued: the earliest of the refresh timeout or the
    /// backoff end (whichever applies), the refresh window (when a refresh could start),
    /// and the earliest request deadline. On a tie the first in that order wins.
    fn wakeup(&self) -> Option<Wakeup> {
        let mut candidates = Vec::new();
        match (self.running, self.backoff) {
            (Some(running), _) => {
                if !running.cancelled {
                    candidates.push(Wakeup {
                        at: plus(running.started, self.config.refresh_timeout()),
                        reason: WakeReason::RefreshTimeout,
                    });
                }
            }
            (None, Some(at)) => {
                candidates.push(Wakeup {
                    at,
                    reason: if self.held {
                        WakeReason::HoldoffEnds
                    } else {
                        WakeReason::BackoffEnds
                    },
                });
                if let Some(at) = self
                    .probe_at
                    .filter(|_| !self.parked.is_empty() && !self.lineage_busy)
                {
                    candidates.push(Wakeup {
                        at,
                        reason: WakeReason::ProbeDue,
                    });
                }
            }
            (None, None) => {
                if self.active()
                    && self.can_refresh()
                    && !self.lineage_busy
                    && let Some(at) = self.token.as_ref().and_then(|t| t.refresh_at(&self.config))
                {
                    candidates.push(Wakeup {
                        at,
                        reason: WakeReason::RefreshWindow,
                    });
                }
            }
        }
        if let Some(at) = self.save_retry_at {
            candidates.push(Wakeup {
                at,
                reason: WakeReason::PersistRetry,
            });
        }
        if let Some(at) = self.parked.iter().map(|(_, deadline)| *deadline).min() {
            candidates.push(Wakeup {
                at,
                reason: WakeReason::RequestDeadline,
            });
        }
        let mut best: Option<Wakeup> = None;
        for candidate in candidates {
            if best.is_none_or(|b| candidate.at < b.at) {
                best = Some(candidate);
            }
        }
        best
    }

    // ----- the two clocks ----------------------------------------------------------

    fn wall_of(&self, at: Instant) -> SystemTime {
        let (anchor, wall) = self.wall_anchor;
        if at >= anchor {
            wall.checked_add(at - anchor).unwrap_or(wall)
        } else {
            wall.checked_sub(anchor - at).unwrap_or(wall)
        }
    }

    /// A wall-clock expiry as an instant; one already passed is `now`.
    fn instant_of(&self, wall: SystemTime) -> Option<Instant> {
        match wall.duration_since(self.wall_of(self.now)) {
            Ok(remaining) => self.now.checked_add(remaining),
            Err(_) => Some(self.now),
        }
    }
}
