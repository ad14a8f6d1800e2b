//! The state machine: every transition rule of the contract, in one place.
//!
//! Read it top to bottom: the state, the inputs (`handle_*`), the outputs (`poll_*`),
//! and then `advance`, the one function that turns time and state into actions.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::time::{Instant, SystemTime};

use crate::action::{Action, WakeReason, Wakeup};
use crate::config::{Config, RefreshMode, WaitPolicy};
use crate::error::Error;
use crate::event::{Event, MAX_QUEUED_EVENTS, Trigger};
use crate::failure::{FailureKind, RefreshFailure};
use crate::ids::{AttemptId, RequestId};
use crate::jitter::{self, Stream};
use crate::parked::Parked;
use crate::persist::Persisted;
use crate::schedule::Schedule;
use crate::secret::Secret;
use crate::status::Status;
use crate::token::{AccessToken, Credentials, Expiry, Generation, Token};

/// The failure recorded when an exchange passes its deadline (`refresh_timeout`).
const TIMED_OUT: &str = "the refresh exchange passed its deadline";
/// The failure recorded when a refresh returns a token that is not usable any more.
const EXPIRED_RESULT: &str = "the refresh returned a token that is already expired";
/// Added to the reason of a terminal failure that follows an exchange whose outcome is
/// unknown (it passed its deadline and was cancelled, so the server may have consumed
/// the refresh credential without the answer reaching us).
const UNKNOWN_OUTCOME: &str = "an earlier refresh exchange passed its deadline, so \
     the server may have consumed the refresh credential without its answer arriving";
/// How far the wall clock may drift from the monotonic clock before the machine takes
/// it for a suspend (or a clock set) and moves the current token's expiry.
const WALL_CLOCK_TOLERANCE: Duration = Duration::from_secs(1);
/// Why a request fails fast when the token is unusable and cannot be refreshed.
const NO_WAY_TO_REFRESH: &str = "the token is no longer usable and there is no refresh credential";

/// The refresh exchange the driver is running (rule 1: at most one, on the wire). It
/// ends only when its result comes in, whatever happened meanwhile.
#[derive(Clone, Debug)]
struct Exchange {
    attempt: AttemptId,
    /// When it started: the base of the lifetime of the token it brings.
    started: Instant,
    /// `started + refresh_timeout`: past it, the driver is asked to cancel it.
    deadline: Instant,
    /// `CancelRefresh` was emitted (the deadline passed, or the credentials changed).
    cancel_requested: bool,
    /// A sign-in or sign-out happened since it started: its result will be dropped.
    superseded: bool,
    /// A newer token was adopted from the store since it started (another process
    /// refreshed first): its result will be dropped too (rule 8), but it is not
    /// cancelled.
    overtaken: bool,
    /// The refresh credential it sent (the store's compare-and-swap key).
    sent: Option<Secret>,
}

/// The adopted token and its schedule.
#[derive(Debug)]
struct Current {
    token: Arc<AccessToken>,
    /// `None`: no expiry, refreshed only when rejected.
    schedule: Option<Schedule>,
    /// Its expiry on the wall clock and its whole lifetime: after a suspend the
    /// schedule is recomputed from these.
    expiry: Option<(SystemTime, Duration)>,
    /// A request with this token was rejected (401): never granted again.
    rejected: bool,
    /// When it was adopted: a rejection soon after counts toward rule 14.
    adopted_at: Instant,
    /// The token as handed out for storage, and the refresh credential it was
    /// refreshed from (kept to ask again after a failed save).
    stored: Box<Token>,
    from: Option<Secret>,
    /// The store confirmed it.
    durable: bool,
}

impl Current {
    fn usable_at(&self, now: Instant) -> bool {
        !self.rejected && self.schedule.is_none_or(|s| now < s.usable_until)
    }

    fn in_window_at(&self, now: Instant) -> bool {
        self.rejected || self.schedule.is_some_and(|s| now >= s.refresh_at)
    }
}

/// The sans-IO token state machine.
///
/// It reads no clock and does no I/O: every call that can change state takes `now`
/// (a monotonic instant; one earlier than the last is treated as no time passing).
///
/// - Getters on `&self`: [`status`](Self::status), [`generation`](Self::generation),
///   [`fresh_token`](Self::fresh_token), [`parked_len`](Self::parked_len), …
/// - Inputs: [`handle_request`](Self::handle_request), [`handle_cancel`](Self::handle_cancel),
///   [`handle_refresh_result`](Self::handle_refresh_result),
///   [`handle_rejected`](Self::handle_rejected), [`handle_sign_in`](Self::handle_sign_in),
///   [`handle_sign_out`](Self::handle_sign_out), [`handle_timeout`](Self::handle_timeout).
/// - Outputs: [`poll_action`](Self::poll_action) until `None`, then
///   [`poll_timeout`](Self::poll_timeout) for the next wake-up.
#[derive(Debug)]
pub struct TokenMachine {
    config: Config,
    now: Instant,
    /// A pair of readings of the two clocks, to convert expiries between them.
    wall_anchor: (Instant, SystemTime),
    status: Status,
    /// A refresh is possible without a refresh credential (client credentials).
    self_authenticating: bool,
    refresh_token: Option<Secret>,
    current: Option<Current>,
    generation: Generation,
    /// The exchange on the wire, if any.
    exchange: Option<Exchange>,
    /// No refresh starts before this instant: after a failure, or while fresh tokens
    /// keep being rejected (rule 14)...
    backoff: Option<Instant>,
    /// ...which it is: the backoff is a hold-off of rule 14 (the later of the two wins).
    held_by_rejections: bool,
    /// ...except for a request that waits, after an unreachable endpoint: it probes
    /// from this instant on (rule 7: about a second, not the grown backoff).
    probe_at: Option<Instant>,
    /// Tokens rejected in a row, each soon after it was adopted (rule 14).
    rejections: u32,
    consecutive_failures: u32,
    last_failure: Option<Arc<str>>,
    /// An exchange of the current refresh credential ended with its outcome unknown.
    outcome_unknown: bool,
    /// Failed saves of the current token in a row, and when to ask again.
    save_failures: u32,
    save_retry_at: Option<Instant>,
    next_attempt: u64,
    next_request: u64,
    /// A sign-in is being handled: a refresh it starts says so.
    signing_in: bool,
    /// Another key of the same session has an exchange on the wire: this key starts
    /// none (rule 13, one exchange on the wire for the lineage).
    lineage_busy: bool,
    parked: Parked,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
}

impl TokenMachine {
    /// A machine without credentials: requests wait for [`handle_sign_in`](Self::handle_sign_in).
    ///
    /// `now` and `wall_now` are readings of the monotonic and the wall clock taken
    /// together.
    pub fn new(config: Config, now: Instant, wall_now: SystemTime) -> Self {
        Self {
            config,
            now,
            wall_anchor: (now, wall_now),
            status: Status::AwaitingSignIn,
            self_authenticating: false,
            refresh_token: None,
            current: None,
            generation: Generation(0),
            exchange: None,
            backoff: None,
            held_by_rejections: false,
            probe_at: None,
            rejections: 0,
            consecutive_failures: 0,
            last_failure: None,
            outcome_unknown: false,
            save_failures: 0,
            save_retry_at: None,
            next_attempt: 1,
            next_request: 1,
            signing_in: false,
            lineage_busy: false,
            parked: Parked::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    // ----- getters ---------------------------------------------------------------

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The latest instant the machine has seen.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Where the machine stands with the credentials.
    #[must_use]
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// The generation of the newest adopted token (0 before the first).
    #[must_use]
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// How many requests are waiting.
    #[must_use]
    pub fn parked_len(&self) -> usize {
        self.parked.len()
    }

    /// The refresh attempt whose exchange is on the wire, if any: until its result is
    /// reported, no other exchange starts (also after its deadline, and after a
    /// sign-in or sign-out, which only make the machine drop its result).
    #[must_use]
    pub fn refresh_in_flight(&self) -> Option<AttemptId> {
        self.exchange.as_ref().map(|e| e.attempt)
    }

    /// The refresh credential the next refresh sends (the newest one), if any: for a
    /// sign-out that revokes it at the server (RFC 7009) before forgetting it.
    #[must_use]
    pub fn refresh_credential(&self) -> Option<&Secret> {
        self.refresh_token.as_ref()
    }

    /// The access token in hand, usable or not (`None` after a sign-out, a dead
    /// credential, or before the first): for a sign-out that revokes it too.
    #[must_use]
    pub fn current_token(&self) -> Option<&Arc<AccessToken>> {
        self.current.as_ref().map(|c| &c.token)
    }

    /// Whether its refresher authenticates by itself (client credentials, assertions):
    /// it needs no refresh credential.
    pub(crate) fn is_self_authenticating(&self) -> bool {
        self.self_authenticating
    }

    /// When the current backoff ends, if the machine is waiting one out.
    #[must_use]
    pub fn backoff_until(&self) -> Option<Instant> {
        self.backoff
    }

    /// Whether the store confirmed the current token (`false` with no token, or while
    /// its save is pending or failing).
    #[must_use]
    pub fn is_durable(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.durable)
    }

    /// Whether the current token waits for its save (pending or failing): the store is
    /// then older than this source, and nothing in it is newer than what this source
    /// holds. `false` with no token.
    #[must_use]
    pub fn awaits_save(&self) -> bool {
        self.current.as_ref().is_some_and(|c| !c.durable)
    }

    /// The last refresh failure (or exchange past its deadline) since the last
    /// adopted token.
    #[must_use]
    pub fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }

    /// The current token and the instant until which a driver may hand it out
    /// without asking the machine (its fast path): before the refresh window opens,
    /// so no refresh needs starting (or, when no refresh is possible, before the token
    /// stops being usable). `None` for the instant: the token has no expiry.
    ///
    /// `None` when there is no such token (none, rejected, or the window is open).
    /// A driver must re-read this after every input it feeds the machine, and stop
    /// using it at the instant returned (which [`poll_timeout`](Self::poll_timeout)
    /// does not necessarily name: nothing changes in the machine then).
    #[must_use]
    pub fn fresh_token(&self) -> Option<(Arc<AccessToken>, Option<Instant>)> {
        if !self.status.is_signed_in() {
            return None;
        }
        let current = self.current.as_ref()?;
        let can_refresh = self.can_refresh();
        if !current.usable_at(self.now)
            || (can_refresh && current.in_window_at(self.now))
            || (self.config.strict_persistence && !current.durable)
        {
            return None;
        }
        let until = current.schedule.map(|s| {
            if can_refresh {
                s.refresh_at
            } else {
                s.usable_until
            }
        });
        Some((current.token.clone(), until))
    }

    // ----- inputs ----------------------------------------------------------------

    /// A request wants a token. Its outcome (a `Grant` or a `Reject` for the returned
    /// id) comes out of [`poll_action`](Self::poll_action), at once when a token can
    /// be granted, otherwise when a refresh ends or `deadline` (default: now +
    /// `request_timeout`) passes.
    pub fn handle_request(&mut self, now: Instant, deadline: Option<Instant>) -> RequestId {
        let now = self.clamp(now);
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.advance(now);
        if let Some(error) = self.fail_fast_error(now) {
            self.actions
                .push_back(Action::Reject { request: id, error });
        } else if self.grantable(now) {
            let token = self.current_token_unchecked();
            self.actions.push_back(Action::Grant { request: id, token });
        } else if self.parked.len() >= self.config.max_parked {
            let error = Error::Overloaded {
                limit: self.config.max_parked,
            };
            self.actions
                .push_back(Action::Reject { request: id, error });
        } else {
            let deadline = deadline.unwrap_or_else(|| later(now, self.config.request_timeout));
            self.parked.push(id, deadline);
            self.advance(now);
        }
        id
    }

    /// The caller gave up on a request: it gets no outcome and leaves nothing behind.
    /// Unknown or already answered ids are ignored. The shared refresh goes on.
    pub fn handle_cancel(&mut self, now: Instant, request: RequestId) {
        let now = self.clamp(now);
        self.parked.remove(request);
        self.advance(now);
    }

    /// The result of a refresh attempt: its exchange is over (answered, failed, or
    /// cancelled by the driver). The result of the exchange on the wire is taken even
    /// after its deadline (rule 8: with rotating refresh credentials the server has
    /// consumed the old one); it is dropped if a sign-in or sign-out came since, or if
    /// a newer token was adopted from the store since it started (another process
    /// refreshed first). Results for unknown or already reported attempts change
    /// nothing.
    pub fn handle_refresh_result(
        &mut self,
        now: Instant,
        attempt: AttemptId,
        result: Result<Token, RefreshFailure>,
    ) {
        let now = self.clamp(now);
        if let Some(exchange) = self.exchange.take_if(|e| e.attempt == attempt) {
            if exchange.superseded || exchange.overtaken {
                self.event(Event::ResultDropped { attempt });
            } else {
                match result {
                    Ok(token) => {
                        let refresh_token = token.refresh_token.clone();
                        // Compare-and-swap on what the store holds: the credential sent,
                        // unless the token it came from is not stored yet (its save
                        // pending or failing); then the store still holds what that
                        // token's own save compares against (nothing, after a sign-in).
                        let from = match &self.current {
                            Some(current) if !current.durable => current.from.clone(),
                            _ => exchange.sent.clone(),
                        };
                        let rotated = refresh_token.is_some()
                            && refresh_token.as_ref().map(Secret::expose)
                                != exchange.sent.as_ref().map(Secret::expose);
                        // Should the token arrive unusable, its rotated credential is
                        // stored all the same (rule 9): with the previous access token
                        // while that one is still usable (it stays in service), else
                        // with the unusable one (never granted).
                        let keep = rotated.then(|| {
                            match self.current.as_ref().filter(|c| c.usable_at(now)) {
                                Some(current) => Token {
                                    refresh_token: refresh_token.clone(),
                                    ..(*current.stored).clone()
                                },
                                None => token.clone(),
                            }
                        });
                        if !self.adopt(now, token, exchange.started, Some(attempt), from.clone()) {
                            // The server answered: a rotated credential is the one to
                            // send next, even with an unusable access token, and it is
                            // stored (rule 9).
                            if refresh_token.is_some() {
                                self.refresh_token = refresh_token;
                            }
                            if let Some(token) = keep {
                                self.keep_unusable(now, token, exchange.started, attempt, from);
                            }
                            let failure = RefreshFailure::transient(EXPIRED_RESULT);
                            self.on_failure(now, attempt, failure);
                        }
                    }
                    Err(failure) => {
                        if exchange.cancel_requested {
                            self.outcome_unknown = true;
                        }
                        self.on_failure(now, attempt, failure);
                    }
                }
            }
        } else {
            self.event(Event::ResultDropped { attempt });
        }
        self.advance(now);
    }

    /// A request sent with the token of `generation` was rejected (401). Only a
    /// rejection of the current generation triggers a refresh, once.
    ///
    /// Rule 14: when tokens keep being rejected soon after they were adopted (within
    /// `backoff_max`), the refresh a rejection calls for is held back, from the second
    /// such token in a row on: `backoff_initial × 2^(n−2)` (less up to half as jitter),
    /// capped at `backoff_max`. A refresh for any other reason (the window, an expired
    /// token, a sign-in) ends the streak.
    pub fn handle_rejected(&mut self, now: Instant, generation: Generation) {
        let now = self.clamp(now);
        if let Some(current) = self.current.as_mut()
            && current.token.generation == generation
            && !current.rejected
        {
            current.rejected = true;
            let soon = now < later(current.adopted_at, self.config.backoff_max);
            self.rejections = if soon {
                self.rejections.saturating_add(1)
            } else {
                1
            };
            if self.rejections >= 2 {
                let holdoff = later(now, self.holdoff_delay(generation));
                if self.backoff.is_none_or(|backoff| holdoff > backoff) {
                    self.backoff = Some(holdoff);
                    self.held_by_rejections = true;
                    self.probe_at = None;
                }
                let retry_at = self.backoff.unwrap_or(holdoff);
                self.event(Event::RejectionsRepeat {
                    generation,
                    count: self.rejections,
                    retry_at,
                });
            }
        }
        self.advance(now);
    }

    /// Signs in with new credentials: adopts the token (if given and not expired),
    /// forgets any failure and backoff, and releases waiting requests once a token is
    /// available. An exchange still on the wire is cancelled and its result will be
    /// dropped; the next refresh starts only once it is over (rule 1).
    pub fn handle_sign_in(&mut self, now: Instant, wall_now: SystemTime, credentials: Credentials) {
        let now = self.clamp(now);
        self.wall_anchor = (now, wall_now);
        self.set_status(Status::SignedIn);
        self.current = None;
        self.refresh_token = None;
        self.rejections = 0;
        self.supersede_exchange();
        let mut stored = false;
        let token = match credentials {
            Credentials::Token(token) => {
                self.self_authenticating = false;
                Some(token)
            }
            Credentials::Stored(token) => {
                self.self_authenticating = false;
                stored = true;
                Some(token)
            }
            Credentials::RefreshToken(secret) => {
                self.self_authenticating = false;
                self.refresh_token = Some(secret);
                None
            }
            Credentials::ClientCredentials { token } => {
                self.self_authenticating = true;
                token
            }
        };
        if let Some(token) = token {
            // An expired token is not adopted; its refresh credential is kept.
            let refresh_token = token.refresh_token.clone();
            let adopted = if stored {
                self.adopt_stored(now, token)
            } else {
                self.adopt(now, token, now, None, None)
            };
            if !adopted {
                self.refresh_token = refresh_token;
            }
        }
        self.signing_in = true;
        self.advance(now);
        self.signing_in = false;
    }

    /// What became of the `Persist` of `generation`. Only the current token's outcome
    /// counts: `Stored` makes the session durable, `Conflict` adopts the newer token the
    /// store holds (another process refreshed first) instead of overwriting it, and
    /// `Failed` reports the session as not durable and asks again after a backoff.
    pub fn handle_persisted(&mut self, now: Instant, generation: Generation, outcome: Persisted) {
        let now = self.clamp(now);
        let is_current = self
            .current
            .as_ref()
            .is_some_and(|c| c.token.generation == generation && !c.durable);
        if is_current && self.status.is_signed_in() {
            match outcome {
                Persisted::Stored => {
                    self.mark_durable();
                    self.event(Event::Persisted { generation });
                }
                Persisted::Conflict(token) => {
                    let refresh_token = token.refresh_token.clone();
                    if self.adopt_stored(now, *token) {
                        // Rule 8: the exchange on the wire, if any, was overtaken.
                        if let Some(exchange) = self.exchange.as_mut() {
                            exchange.overtaken = true;
                        }
                        self.event(Event::AdoptedFromStore {
                            generation: self.generation,
                        });
                    } else {
                        // The store's session replaces ours, but its access token is
                        // not usable: ours is dropped all the same (the store no longer
                        // holds it, and a save of it would only conflict again), and the
                        // next refresh sends the store's refresh credential. With none,
                        // nothing is left to refresh with (our own credential is older
                        // than the store's session): requests fail fast with
                        // "sign-in required", unless the grant needs no credential.
                        self.refresh_token = refresh_token;
                        self.current = None;
                    }
                }
                Persisted::Failed(message) => {
                    self.save_failures = self.save_failures.saturating_add(1);
                    let delay = self.save_backoff();
                    let retry_at = later(now, delay);
                    self.save_retry_at = Some(retry_at);
                    self.event(Event::PersistFailed {
                        generation,
                        message: message.into(),
                        retry_at,
                    });
                }
            }
        }
        self.advance(now);
    }

    /// A reading of the wall clock with the monotonic one. If the wall clock ran ahead
    /// (a suspend: the monotonic clock stood still) the current token's expiry moves to
    /// where the wall clock says it is, so no token is granted past its wall-clock
    /// usable time. A wall clock set back never makes a token live longer. Drivers call
    /// this every few seconds.
    pub fn handle_wall_clock(&mut self, now: Instant, wall_now: SystemTime) {
        let now = self.clamp(now);
        let projected = self.wall_for_instant(now);
        let ahead = wall_now.duration_since(projected).unwrap_or(Duration::ZERO);
        let behind = projected.duration_since(wall_now).unwrap_or(Duration::ZERO);
        if ahead > WALL_CLOCK_TOLERANCE || behind > WALL_CLOCK_TOLERANCE {
            self.wall_anchor = (now, wall_now);
            if ahead > WALL_CLOCK_TOLERANCE {
                self.event(Event::WallClockJumped { ahead });
                self.reproject_current(now);
            }
        }
        self.advance(now);
    }

    /// Rule 13, for a key of a session with several: another key's exchange is on the
    /// wire (`busy`), or it is over. While busy this key starts no exchange (one on the
    /// wire for the whole lineage); its waiting requests keep waiting, until their
    /// deadline or until the lineage is free and this key's refresh has run.
    pub fn handle_lineage_busy(&mut self, now: Instant, busy: bool) {
        let now = self.clamp(now);
        self.lineage_busy = busy;
        self.advance(now);
    }

    /// Rule 13: another key's exchange rotated the session's refresh credential, which
    /// is this key's credential from now on (the one the server will accept). Ignored
    /// unless signed in with a refresh credential.
    pub fn handle_rotated(&mut self, now: Instant, credential: Secret) {
        let now = self.clamp(now);
        if self.status.is_signed_in() && self.refresh_token.is_some() {
            self.refresh_token = Some(credential);
        }
        self.advance(now);
    }

    /// Rule 13: another key's exchange found the session's credentials dead; this
    /// key's session ends too, as after its own terminal failure (an exchange of its
    /// own on the wire is cancelled, and its result dropped).
    pub fn handle_lineage_dead(&mut self, now: Instant, reason: Arc<str>) {
        let now = self.clamp(now);
        if self.status.is_signed_in() {
            // Its own exchange, if any, presents the same dead credential: cancelled,
            // and its result dropped.
            self.supersede_exchange();
            self.end_session(reason);
        }
        self.advance(now);
    }

    /// Signs out: every waiting request is rejected, the token is cleared, and the
    /// driver is asked to forget the stored one.
    pub fn handle_sign_out(&mut self, now: Instant) {
        let now = self.clamp(now);
        self.set_status(Status::SignedOut);
        self.current = None;
        self.refresh_token = None;
        self.rejections = 0;
        self.self_authenticating = false;
        self.supersede_exchange();
        self.reject_all_parked(&Error::SignedOut);
        self.actions.push_back(Action::Forget);
        self.advance(now);
    }

    /// Time passed. Calling it early, late or more than once is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        self.advance(now);
    }

    // ----- outputs ---------------------------------------------------------------

    /// The next action for the driver; call until `None`.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event (what happened, for logs and subscribers); call until `None`
    /// after draining the actions.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next (`None`: only
    /// inputs can change anything). While actions are queued, that is now.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Wakeup> {
        if !self.actions.is_empty() {
            return Some(Wakeup {
                at: self.now,
                reason: WakeReason::PendingActions,
            });
        }
        let mut next: Option<Wakeup> = None;
        let mut consider = |at: Option<Instant>, reason: WakeReason| {
            if let Some(at) = at
                && next.is_none_or(|n| at < n.at)
            {
                next = Some(Wakeup { at, reason });
            }
        };
        match (self.exchange.as_ref(), self.backoff) {
            (Some(exchange), _) => {
                // Once cancelled, only its result (an input) can end it.
                if !exchange.cancel_requested {
                    consider(Some(exchange.deadline), WakeReason::RefreshTimeout);
                }
            }
            (None, Some(until)) => {
                let reason = if self.held_by_rejections {
                    WakeReason::HoldoffEnds
                } else {
                    WakeReason::BackoffEnds
                };
                consider(Some(until), reason);
                if !self.parked.is_empty() && !self.lineage_busy {
                    consider(self.probe_at, WakeReason::ProbeDue);
                }
            }
            (None, None) => {
                if self.status.is_signed_in() && self.can_refresh() && !self.lineage_busy {
                    let window = self
                        .current
                        .as_ref()
                        .and_then(|c| c.schedule)
                        .map(|s| s.refresh_at);
                    consider(window, WakeReason::RefreshWindow);
                }
            }
        }
        consider(self.save_retry_at, WakeReason::PersistRetry);
        consider(self.parked.earliest_deadline(), WakeReason::RequestDeadline);
        next
    }

    // ----- the rules -------------------------------------------------------------

    /// Moves time forward; earlier instants count as no time passing (rule 11).
    fn clamp(&mut self, now: Instant) -> Instant {
        if now > self.now {
            self.now = now;
        }
        self.now
    }

    /// Applies everything that `now` makes due, in this order: the deadline of the
    /// exchange on the wire, the end of a backoff, starting a refresh, releasing
    /// requests, and last the deadlines of the requests still parked, so that a request
    /// whose deadline falls in the very instant a token becomes grantable gets the
    /// token (rule 4 over rule 2's deadline).
    fn advance(&mut self, now: Instant) {
        if let Some(exchange) = self.exchange.as_mut()
            && !exchange.cancel_requested
            && now >= exchange.deadline
        {
            // Rule 1: the exchange is not over until the driver says so; ask it to
            // cancel, and keep waiting for the result (rule 8: a late success is
            // still adopted).
            exchange.cancel_requested = true;
            let attempt = exchange.attempt;
            if !exchange.superseded {
                self.last_failure = Some(TIMED_OUT.into());
            }
            self.actions.push_back(Action::CancelRefresh { attempt });
            self.event(Event::RefreshOverdue { attempt });
        }
        if self.backoff.is_some_and(|until| now >= until) {
            self.backoff = None;
            self.held_by_rejections = false;
            self.probe_at = None;
        }
        if self.save_retry_at.is_some_and(|at| now >= at) {
            self.save_retry_at = None;
            if let Some(current) = self.current.as_ref().filter(|c| !c.durable) {
                self.actions.push_back(Action::Persist {
                    generation: current.token.generation,
                    token: current.stored.clone(),
                    from: current.from.clone(),
                });
            }
        }
        if self.needs_refresh(now) {
            self.start_refresh(now);
        }
        if self.parked.is_empty() {
            return;
        }
        if let Some(error) = self.fail_fast_error(now) {
            self.reject_all_parked(&error);
        } else if self.grantable(now) {
            let token = self.current_token_unchecked();
            self.actions.reserve(self.parked.len());
            for request in self.parked.drain() {
                self.actions.push_back(Action::Grant {
                    request,
                    token: token.clone(),
                });
            }
        } else if let Some((next, error)) = self.held_back(now) {
            // Rule 7: no waiting past the moment a wait can no longer succeed.
            match self.config.wait_policy {
                WaitPolicy::FirstFailure => self.reject_all_parked(&error),
                WaitPolicy::WhileHopeful => {
                    while let Some(request) = self.parked.pop_expired(next) {
                        self.actions.push_back(Action::Reject {
                            request,
                            error: error.clone(),
                        });
                    }
                }
                WaitPolicy::UntilDeadline => {}
            }
        }
        while let Some(request) = self.parked.pop_expired(now) {
            // Never given credentials: say so, not that the server may be down.
            let error = if self.status == Status::AwaitingSignIn {
                Error::AwaitingSignIn
            } else {
                Error::DeadlineExceeded {
                    last_failure: self.last_failure.clone(),
                }
            };
            self.actions.push_back(Action::Reject { request, error });
        }
    }

    /// Rule 6: refresh only with no exchange on the wire (rule 1), no backoff, and a
    /// reason: no token while someone waits, the refresh window reached, or the
    /// current token rejected.
    fn needs_refresh(&self, now: Instant) -> bool {
        self.status.is_signed_in()
            && self.exchange.is_none()
            && !self.lineage_busy
            && (self.backoff.is_none() || self.probe_due(now))
            && self.can_refresh()
            && match &self.current {
                Some(current) => current.in_window_at(now),
                None => !self.parked.is_empty(),
            }
    }

    fn can_refresh(&self) -> bool {
        self.self_authenticating || self.refresh_token.is_some()
    }

    /// After an unreachable endpoint, a waiting request may probe it again.
    fn probe_due(&self, now: Instant) -> bool {
        !self.parked.is_empty() && self.probe_at.is_some_and(|at| now >= at)
    }

    /// When a request that needs a refresh can next get an attempt, while one is held
    /// back (`None`: nothing holds it back): the end of the backoff (or hold-off), or
    /// the probe after an unreachable endpoint if that comes first.
    fn next_attempt_for_request(&self) -> Option<Instant> {
        if self.exchange.is_some() || self.lineage_busy {
            return None;
        }
        let backoff = self.backoff?;
        Some(self.probe_at.map_or(backoff, |p| p.min(backoff)))
    }

    /// Rule 7: with no usable token and an attempt held back, the instant it may start
    /// and the error a request that cannot wait for it gets.
    fn held_back(&self, now: Instant) -> Option<(Instant, Error)> {
        if !self.status.is_signed_in() || !self.can_refresh() {
            return None;
        }
        if self.current.as_ref().is_some_and(|c| c.usable_at(now)) {
            return None;
        }
        let next = self.next_attempt_for_request()?;
        let retry_in = next.saturating_duration_since(now);
        let error = if self.held_by_rejections {
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
                    .clone()
                    .unwrap_or_else(|| EXPIRED_RESULT.into()),
                retry_in,
            }
        };
        Some((next, error))
    }

    /// Rules 3 and 4: a token is granted when it is usable, except in wait-for-fresh
    /// mode while a refresh of a token in its window is in flight.
    fn grantable(&self, now: Instant) -> bool {
        let refreshing = self
            .exchange
            .as_ref()
            .is_some_and(|e| !e.superseded && !e.overtaken);
        self.status.is_signed_in()
            && self.current.as_ref().is_some_and(|c| {
                c.usable_at(now)
                    && (c.durable || !self.config.strict_persistence)
                    && !(self.config.mode == RefreshMode::WaitForFresh
                        && c.in_window_at(now)
                        && refreshing)
            })
    }

    /// The error a request gets at once, without waiting: terminal states, and a
    /// signed-in machine that has no usable token and no way to get one.
    fn fail_fast_error(&self, now: Instant) -> Option<Error> {
        match &self.status {
            Status::SignInRequired(reason) => Some(Error::SignInRequired {
                reason: reason.clone(),
            }),
            Status::SignedOut => Some(Error::SignedOut),
            Status::AwaitingSignIn => None,
            Status::SignedIn | Status::Misconfigured(_) | Status::Unreachable { .. } => {
                let usable = self.current.as_ref().is_some_and(|c| c.usable_at(now));
                if usable {
                    return None;
                }
                if !self.can_refresh() {
                    return Some(Error::SignInRequired {
                        reason: NO_WAY_TO_REFRESH.into(),
                    });
                }
                // No waiting for a refresh that cannot start before the backoff ends.
                match (&self.status, self.backoff) {
                    (Status::Misconfigured(reason), Some(_)) => Some(Error::Misconfigured {
                        reason: reason.clone(),
                    }),
                    (Status::Unreachable { reason, .. }, Some(_))
                        if self.config.fail_fast_unreachable && !self.held_by_rejections =>
                    {
                        // Until a request may probe the endpoint again.
                        let next = self.next_attempt_for_request()?;
                        (now < next).then(|| Error::Unreachable {
                            reason: reason.clone(),
                            retry_in: next - now,
                        })
                    }
                    _ => None,
                }
            }
        }
    }

    fn current_token_unchecked(&self) -> Arc<AccessToken> {
        match &self.current {
            Some(current) => current.token.clone(),
            None => unreachable!("grantable() is true only with a current token"),
        }
    }

    fn start_refresh(&mut self, now: Instant) {
        let trigger = match &self.current {
            _ if self.signing_in => Trigger::SignIn,
            Some(current) if current.rejected => Trigger::Rejected,
            Some(current) if current.usable_at(now) => Trigger::Window,
            _ => Trigger::NoToken,
        };
        if trigger != Trigger::Rejected {
            // This token was not rejected: the streak of rule 14 is over.
            self.rejections = 0;
        }
        // A probe may start before the backoff ends; either way it is spent.
        self.backoff = None;
        self.held_by_rejections = false;
        self.probe_at = None;
        let attempt = AttemptId(self.next_attempt);
        self.next_attempt += 1;
        self.exchange = Some(Exchange {
            attempt,
            started: now,
            deadline: later(now, self.config.refresh_timeout),
            cancel_requested: false,
            superseded: false,
            overtaken: false,
            sent: self.refresh_token.clone(),
        });
        self.actions.push_back(Action::StartRefresh {
            attempt,
            refresh_token: self.refresh_token.clone(),
        });
        self.event(Event::RefreshStarted { attempt, trigger });
    }

    /// Rule 7: transient failures back off (honouring `Retry-After`); a misconfiguration
    /// waits `backoff_max` and fails requests that need a refresh fast meanwhile, keeping
    /// the credential; dead credentials end the session until the next sign-in.
    fn on_failure(&mut self, now: Instant, attempt: AttemptId, failure: RefreshFailure) {
        let kind = failure.kind;
        let message: Arc<str> = failure.message.into();
        match kind {
            FailureKind::Transient => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.last_failure = Some(message.clone());
                let delay = self.backoff_delay(failure.retry_after);
                let retry_at = self.hold_back(later(now, delay));
                let status = if failure.unreachable {
                    // Connecting costs the server nothing: a waiting request probes
                    // again after about a second, not after the grown backoff (unless
                    // a hold-off of rule 14 holds every refresh back longer).
                    self.probe_at = (!self.held_by_rejections)
                        .then(|| later(now, self.probe_delay(failure.retry_after)).min(retry_at));
                    Status::Unreachable {
                        reason: message.clone(),
                        retry_at: self.probe_at.unwrap_or(retry_at),
                    }
                } else {
                    Status::SignedIn
                };
                self.set_status(status);
            }
            FailureKind::Misconfigured => {
                self.set_status(Status::Misconfigured(message.clone()));
                self.last_failure = Some(message.clone());
                let delay = self
                    .config
                    .backoff_max
                    .max(self.server_delay(failure.retry_after));
                self.hold_back(later(now, delay));
            }
            FailureKind::Terminal => {
                let reason: Arc<str> = if self.outcome_unknown {
                    format!("{message}; {UNKNOWN_OUTCOME}").into()
                } else {
                    message.clone()
                };
                self.end_session(reason);
            }
        }
        self.event(Event::RefreshFailed {
            attempt,
            kind,
            message,
            retry_at: self.backoff,
        });
    }

    /// Dead credentials (rule 7): every waiting request is told a sign-in is needed,
    /// and the token and the refresh credential are cleared.
    fn end_session(&mut self, reason: Arc<str>) {
        self.set_status(Status::SignInRequired(reason.clone()));
        self.current = None;
        self.refresh_token = None;
        self.backoff = None;
        self.held_by_rejections = false;
        self.probe_at = None;
        self.consecutive_failures = 0;
        self.last_failure = None;
        self.outcome_unknown = false;
        self.reject_all_parked(&Error::SignInRequired { reason });
    }

    /// Sets the status, and reports a change as an event.
    fn set_status(&mut self, status: Status) {
        if self.status != status {
            self.status = status.clone();
            self.event(Event::StatusChanged { status });
        }
    }

    /// Queues an event, dropping the oldest past [`MAX_QUEUED_EVENTS`] (rule 10).
    fn event(&mut self, event: Event) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// `min(backoff_max, backoff_initial × 2^(failures−1))`, less up to half of it as
    /// jitter, and never shorter than the server's `Retry-After` (itself capped).
    fn backoff_delay(&self, retry_after: Option<Duration>) -> Duration {
        let exponent = self.consecutive_failures.saturating_sub(1).min(32);
        let base = self
            .config
            .backoff_initial
            .saturating_mul(1u32 << exponent.min(31))
            .min(self.config.backoff_max);
        // Keyed by the id of the attempt that failed (the last one started).
        let unit = jitter::unit(self.config.seed, Stream::Backoff, self.next_attempt - 1);
        let delay = base.mul_f64(1.0 - 0.5 * unit);
        delay.max(self.server_delay(retry_after))
    }

    /// Backs off until `until`, unless a hold-off of rule 14 (set while the exchange was
    /// on the wire) ends later; returns when the backoff ends.
    fn hold_back(&mut self, until: Instant) -> Instant {
        match self.backoff {
            Some(held) if self.held_by_rejections && held > until => held,
            _ => {
                self.backoff = Some(until);
                self.held_by_rejections = false;
                until
            }
        }
    }

    /// The probe after an unreachable endpoint: the first step of the backoff
    /// (`backoff_initial`, less the same jitter), however many failures came before.
    fn probe_delay(&self, retry_after: Option<Duration>) -> Duration {
        let unit = jitter::unit(self.config.seed, Stream::Backoff, self.next_attempt - 1);
        let delay = self.config.backoff_initial.mul_f64(1.0 - 0.5 * unit);
        delay.max(self.server_delay(retry_after))
    }

    /// Rule 14: the hold-off of the refresh after the `n`-th fresh token in a row was
    /// rejected (`n ≥ 2`): `min(backoff_max, backoff_initial × 2^(n−2))`, less up to
    /// half of it as jitter keyed by the rejected generation.
    fn holdoff_delay(&self, generation: Generation) -> Duration {
        let exponent = self.rejections.saturating_sub(2).min(31);
        let base = self
            .config
            .backoff_initial
            .saturating_mul(1u32 << exponent)
            .min(self.config.backoff_max);
        let unit = jitter::unit(self.config.seed, Stream::Rejections, generation.0);
        base.mul_f64(1.0 - 0.5 * unit)
    }

    /// The server's `Retry-After`, capped at `max_retry_after`.
    fn server_delay(&self, retry_after: Option<Duration>) -> Duration {
        retry_after
            .unwrap_or(Duration::ZERO)
            .min(self.config.max_retry_after)
    }

    /// Rule 9: adopts a token received from a refresh sent at `base` (or given at
    /// sign-in), and asks for it to be persisted (compare-and-swap on `from`, the
    /// refresh credential it was refreshed from). Returns `false`, adopting nothing, if
    /// it is not usable at `now`.
    fn adopt(
        &mut self,
        now: Instant,
        token: Token,
        base: Instant,
        attempt: Option<AttemptId>,
        from: Option<Secret>,
    ) -> bool {
        let Some(stored) = self.install(now, token, base, false) else {
            return false;
        };
        if let Some(current) = self.current.as_mut() {
            current.from = from.clone();
        }
        let generation = self.generation;
        self.event(Event::TokenAdopted {
            generation,
            attempt,
        });
        self.actions.push_back(Action::Persist {
            generation,
            token: stored,
            from,
        });
        true
    }

    /// Adopts a token the store holds (loaded at start, or a sibling's newer one):
    /// durable already, so no `Persist`. Returns `false` if it is not usable at `now`.
    fn adopt_stored(&mut self, now: Instant, token: Token) -> bool {
        if self.install(now, token, now, false).is_none() {
            return false;
        }
        self.mark_durable();
        let generation = self.generation;
        self.event(Event::TokenAdopted {
            generation,
            attempt: None,
        });
        true
    }

    /// Makes `token` the current one with the next generation and returns it as it is
    /// to be stored (wall-clock expiry, issue time, newest refresh credential); `None`,
    /// changing nothing, if it is not usable at `now`.
    ///
    /// Its lifetime counts from `base` (when its refresh was sent), or, for a wall-clock
    /// expiry with an issue time (a stored token), from its issue time: the refresh
    /// window is a fraction of the whole lifetime, not of what is left of it.
    fn install(
        &mut self,
        now: Instant,
        token: Token,
        base: Instant,
        unusable: bool,
    ) -> Option<Box<Token>> {
        let generation = Generation(self.generation.0 + 1);
        // The expiry as an instant, and the whole lifetime ending there.
        let expiry = match token.expiry {
            Expiry::Never => None,
            // An expiry too far away to represent counts as none.
            Expiry::In(lifetime) => base.checked_add(lifetime).map(|at| (at, lifetime)),
            Expiry::At(wall) => self.instant_for_wall(now, wall).map(|at| {
                let lifetime = match token.issued_at {
                    Some(issued) if issued <= wall => {
                        wall.duration_since(issued).unwrap_or_default()
                    }
                    _ => at.saturating_duration_since(base),
                };
                (at, lifetime)
            }),
        };
        let schedule = expiry.map(|(at, lifetime)| {
            let floor = at.checked_sub(lifetime).unwrap_or(base).min(at);
            Schedule::with_lifetime(&self.config, generation.0, lifetime, at, floor)
        });
        if !unusable && schedule.is_some_and(|s| now >= s.usable_until) {
            return None;
        }
        self.generation = generation;
        if token.refresh_token.is_some() {
            self.refresh_token = token.refresh_token.clone();
        }
        let expires_wall = expiry.map(|(at, lifetime)| (self.wall_for_instant(at), lifetime));
        let stored = Box::new(Token {
            expiry: match expires_wall {
                None => Expiry::Never,
                Some((wall, _)) => Expiry::At(wall),
            },
            issued_at: match expires_wall {
                Some((wall, lifetime)) => wall.checked_sub(lifetime),
                None => token
                    .issued_at
                    .or_else(|| Some(self.wall_for_instant(base))),
            },
            refresh_token: self.refresh_token.clone(),
            ..token
        });
        let access = AccessToken {
            generation,
            secret: stored.access_token.clone(),
            token_type: stored.token_type.clone(),
            scope: stored.scope.clone(),
            usable_until: schedule.map(|s| s.usable_until),
        };
        self.current = Some(Current {
            token: Arc::new(access),
            schedule,
            expiry: expires_wall,
            rejected: false,
            adopted_at: now,
            stored: stored.clone(),
            from: None,
            durable: false,
        });
        if !unusable {
            if let Status::Misconfigured(_) | Status::Unreachable { .. } = self.status {
                self.set_status(Status::SignedIn);
            }
            self.forget_failures();
        }
        self.save_failures = 0;
        self.save_retry_at = None;
        Some(stored)
    }

    /// Rule 9 for a result whose access token arrived unusable but whose refresh
    /// credential is rotated: the server has spent the one sent, so the new one must
    /// reach the store (a sibling, or a restart, would spend the old one again).
    /// `token` holds the rotated credential, with the previous access token if that
    /// one is still usable (granted on, under the next generation), else with the
    /// unusable one (never granted). It becomes the current token and is asked to be
    /// persisted like any other; the result still counts as a transient failure.
    fn keep_unusable(
        &mut self,
        now: Instant,
        token: Token,
        base: Instant,
        attempt: AttemptId,
        from: Option<Secret>,
    ) {
        let Some(stored) = self.install(now, token, base, true) else {
            return;
        };
        if let Some(current) = self.current.as_mut() {
            current.from = from.clone();
        }
        self.event(Event::TokenAdopted {
            generation: self.generation,
            attempt: Some(attempt),
        });
        self.actions.push_back(Action::Persist {
            generation: self.generation,
            token: stored,
            from,
        });
    }

    /// The store confirmed the current token.
    fn mark_durable(&mut self) {
        if let Some(current) = self.current.as_mut() {
            current.durable = true;
        }
        self.save_failures = 0;
        self.save_retry_at = None;
    }

    /// `min(backoff_max, backoff_initial × 2^(failures−1))`, without jitter: only this
    /// process saves its token.
    fn save_backoff(&self) -> Duration {
        let exponent = self.save_failures.saturating_sub(1).min(31);
        self.config
            .backoff_initial
            .saturating_mul(1u32 << exponent)
            .min(self.config.backoff_max)
    }

    /// After the wall clock ran ahead: the current token's expiry, kept on the wall
    /// clock, is where the wall clock now says; its schedule moves earlier (never
    /// later), so a token past its wall-clock usable time is never granted.
    fn reproject_current(&mut self, now: Instant) {
        let Some(current) = self.current.as_ref() else {
            return;
        };
        let (Some((wall, lifetime)), Some(old)) = (current.expiry, current.schedule) else {
            return;
        };
        let at = self.instant_for_wall(now, wall).unwrap_or(now);
        let floor = at.checked_sub(lifetime).unwrap_or(now).min(at);
        let generation = current.token.generation;
        let moved = Schedule::with_lifetime(&self.config, generation.0, lifetime, at, floor);
        let schedule = Schedule {
            refresh_at: moved.refresh_at.min(old.refresh_at),
            usable_until: moved.usable_until.min(old.usable_until),
        };
        if schedule == old {
            return;
        }
        if let Some(current) = self.current.as_mut() {
            let old = &current.token;
            current.token = Arc::new(AccessToken {
                generation: old.generation,
                secret: old.secret.clone(),
                token_type: old.token_type.clone(),
                scope: old.scope.clone(),
                usable_until: Some(schedule.usable_until),
            });
            current.schedule = Some(schedule);
        }
    }

    /// Forgets every failure and backoff (a token was adopted, or new credentials came).
    fn forget_failures(&mut self) {
        self.backoff = None;
        self.held_by_rejections = false;
        self.probe_at = None;
        self.consecutive_failures = 0;
        self.last_failure = None;
        self.outcome_unknown = false;
    }

    /// New credentials (or none): the exchange on the wire, if any, is cancelled and
    /// its result will be dropped, and every failure is forgotten.
    fn supersede_exchange(&mut self) {
        if let Some(exchange) = self.exchange.as_mut() {
            exchange.superseded = true;
            if !exchange.cancel_requested {
                exchange.cancel_requested = true;
                let attempt = exchange.attempt;
                self.actions.push_back(Action::CancelRefresh { attempt });
            }
        }
        self.forget_failures();
    }

    fn reject_all_parked(&mut self, error: &Error) {
        for request in self.parked.drain() {
            self.actions.push_back(Action::Reject {
                request,
                error: error.clone(),
            });
        }
    }

    fn wall_for_instant(&self, at: Instant) -> SystemTime {
        let (anchor, wall) = self.wall_anchor;
        if at >= anchor {
            wall.checked_add(at - anchor).unwrap_or(wall)
        } else {
            wall.checked_sub(anchor - at).unwrap_or(wall)
        }
    }

    /// The instant of a wall-clock expiry; one already past maps to `now`, one too far
    /// away to represent to `None`.
    fn instant_for_wall(&self, now: Instant, wall: SystemTime) -> Option<Instant> {
        let wall_now = self.wall_for_instant(now);
        match wall.duration_since(wall_now) {
            Ok(remaining) => now.checked_add(remaining),
            Err(_) => Some(now),
        }
    }
}

/// `now + d`, saturating far in the future instead of overflowing (rule 11).
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}
