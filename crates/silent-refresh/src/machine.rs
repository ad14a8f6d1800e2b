//! The state machine: every transition rule of the contract, in one place.
//!
//! Read it top to bottom: the state, the inputs (`handle_*`), the outputs (`poll_*`),
//! and then `advance`, the one function that turns time and state into actions.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::action::{Action, WakeReason, Wakeup};
use crate::config::{Config, RefreshMode};
use crate::error::Error;
use crate::failure::{FailureKind, RefreshFailure};
use crate::ids::{AttemptId, RequestId};
use crate::jitter::{self, Stream};
use crate::parked::Parked;
use crate::schedule::Schedule;
use crate::secret::Secret;
use crate::token::{AccessToken, Credentials, Expiry, Generation, Token};

/// How many timed-out attempts are remembered for a late result (rule 8). Older ones
/// are forgotten, so the table stays bounded (rule 10).
const MAX_ABANDONED: usize = 8;

/// Where the machine stands with the user's credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// No credentials yet: requests wait (until their deadline) for a sign-in.
    AwaitingSignIn,
    /// Credentials present: tokens are granted and refreshed.
    SignedIn,
    /// A terminal refresh failure: requests fail fast until the next sign-in.
    SignInRequired(Arc<str>),
    /// Signed out: requests fail fast until the next sign-in.
    SignedOut,
}

/// The refresh state: idle, one attempt in flight, or waiting out a backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RefreshState {
    Idle,
    InFlight {
        attempt: AttemptId,
        started: Instant,
        deadline: Instant,
    },
    Backoff {
        until: Instant,
    },
}

/// The adopted token and its schedule.
#[derive(Debug)]
struct Current {
    token: Arc<AccessToken>,
    /// `None`: no expiry, refreshed only when rejected.
    schedule: Option<Schedule>,
    /// A request with this token was rejected (401): never granted again.
    rejected: bool,
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
    flight: RefreshState,
    consecutive_failures: u32,
    last_failure: Option<Arc<str>>,
    /// Attempts given up on (timed out) whose late success may still be adopted, with
    /// the instant each started. Cleared whenever a token is adopted.
    abandoned: VecDeque<(AttemptId, Instant)>,
    next_attempt: u64,
    next_request: u64,
    parked: Parked,
    actions: VecDeque<Action>,
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
            flight: RefreshState::Idle,
            consecutive_failures: 0,
            last_failure: None,
            abandoned: VecDeque::new(),
            next_attempt: 1,
            next_request: 1,
            parked: Parked::default(),
            actions: VecDeque::new(),
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

    /// The refresh attempt in flight, if any.
    #[must_use]
    pub fn refresh_in_flight(&self) -> Option<AttemptId> {
        match self.flight {
            RefreshState::InFlight { attempt, .. } => Some(attempt),
            _ => None,
        }
    }

    /// When the current backoff ends, if the machine is waiting one out.
    #[must_use]
    pub fn backoff_until(&self) -> Option<Instant> {
        match self.flight {
            RefreshState::Backoff { until } => Some(until),
            _ => None,
        }
    }

    /// The last transient refresh failure since the last adopted token.
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
        if self.status != Status::SignedIn {
            return None;
        }
        let current = self.current.as_ref()?;
        let can_refresh = self.can_refresh();
        if !current.usable_at(self.now) || (can_refresh && current.in_window_at(self.now)) {
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

    /// The result of a refresh attempt. Results for unknown, stale or already reported
    /// attempts are dropped (see the crate docs, rule 8).
    pub fn handle_refresh_result(
        &mut self,
        now: Instant,
        attempt: AttemptId,
        result: Result<Token, RefreshFailure>,
    ) {
        let now = self.clamp(now);
        let in_flight_start = match self.flight {
            RefreshState::InFlight {
                attempt: a,
                started,
                ..
            } if a == attempt => Some(started),
            _ => None,
        };
        if let Some(started) = in_flight_start {
            self.flight = RefreshState::Idle;
            match result {
                Ok(token) => {
                    if !self.adopt(now, token, started) {
                        let failure = RefreshFailure::transient(
                            "the refresh returned a token that is already expired",
                        );
                        self.on_failure(now, failure);
                    }
                }
                Err(failure) => self.on_failure(now, failure),
            }
        } else if let Some(pos) = self.abandoned.iter().position(|(a, _)| *a == attempt) {
            let (_, started) = self.abandoned.remove(pos).unwrap_or((attempt, now));
            // A late success is adopted: no newer token was adopted since it started
            // (adoption clears `abandoned`). A late failure changes nothing.
            // Adopting it also stops waiting for the attempt in flight, if any: that one
            // started before this adoption, so its result can no longer be adopted.
            // A late success after a terminal failure counts as new credentials.
            if let Ok(token) = result {
                if self.adopt(now, token, started) {
                    self.status = Status::SignedIn;
                }
            }
        }
        self.advance(now);
    }

    /// A request sent with the token of `generation` was rejected (401). Only a
    /// rejection of the current generation triggers a refresh, once.
    pub fn handle_rejected(&mut self, now: Instant, generation: Generation) {
        let now = self.clamp(now);
        if let Some(current) = self.current.as_mut() {
            if current.token.generation == generation {
                current.rejected = true;
            }
        }
        self.advance(now);
    }

    /// Signs in with new credentials: adopts the token (if given and not expired),
    /// forgets any refresh in flight and any terminal failure, and releases waiting
    /// requests once a token is available.
    pub fn handle_sign_in(&mut self, now: Instant, wall_now: SystemTime, credentials: Credentials) {
        let now = self.clamp(now);
        self.wall_anchor = (now, wall_now);
        self.status = Status::SignedIn;
        self.current = None;
        self.refresh_token = None;
        self.forget_attempts();
        let token = match credentials {
            Credentials::Token(token) => {
                self.self_authenticating = false;
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
            if !self.adopt(now, token, now) {
                self.refresh_token = refresh_token;
            }
        }
        self.advance(now);
    }

    /// Signs out: every waiting request is rejected, the token is cleared, and the
    /// driver is asked to forget the stored one.
    pub fn handle_sign_out(&mut self, now: Instant) {
        let now = self.clamp(now);
        self.status = Status::SignedOut;
        self.current = None;
        self.refresh_token = None;
        self.self_authenticating = false;
        self.forget_attempts();
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
            if let Some(at) = at {
                if next.is_none_or(|n| at < n.at) {
                    next = Some(Wakeup { at, reason });
                }
            }
        };
        match self.flight {
            RefreshState::InFlight { deadline, .. } => {
                consider(Some(deadline), WakeReason::RefreshTimeout)
            }
            RefreshState::Backoff { until } => consider(Some(until), WakeReason::BackoffEnds),
            RefreshState::Idle => {
                if self.status == Status::SignedIn && self.can_refresh() {
                    let window = self
                        .current
                        .as_ref()
                        .and_then(|c| c.schedule)
                        .map(|s| s.refresh_at);
                    consider(window, WakeReason::RefreshWindow);
                }
            }
        }
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

    /// Applies everything that `now` makes due, in this order: the refresh timeout, the
    /// end of a backoff, starting a refresh, releasing requests, and last the deadlines
    /// of the requests still parked, so that a request whose deadline falls in the very
    /// instant a token becomes grantable gets the token (rule 4 over rule 2's deadline).
    fn advance(&mut self, now: Instant) {
        if let RefreshState::InFlight {
            attempt,
            started,
            deadline,
        } = self.flight
        {
            if now >= deadline {
                self.flight = RefreshState::Idle;
                if self.abandoned.len() == MAX_ABANDONED {
                    self.abandoned.pop_front();
                }
                self.abandoned.push_back((attempt, started));
                self.on_failure(now, RefreshFailure::transient("the refresh timed out"));
            }
        }
        if let RefreshState::Backoff { until } = self.flight {
            if now >= until {
                self.flight = RefreshState::Idle;
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
        }
        while let Some(request) = self.parked.pop_expired(now) {
            let error = Error::DeadlineExceeded {
                last_failure: self.last_failure.clone(),
            };
            self.actions.push_back(Action::Reject { request, error });
        }
    }

    /// Rule 6: refresh only with no refresh running and a reason: no token while
    /// someone waits, the refresh window reached, or the current token rejected.
    fn needs_refresh(&self, now: Instant) -> bool {
        self.status == Status::SignedIn
            && self.flight == RefreshState::Idle
            && self.can_refresh()
            && match &self.current {
                Some(current) => current.in_window_at(now),
                None => !self.parked.is_empty(),
            }
    }

    fn can_refresh(&self) -> bool {
        self.self_authenticating || self.refresh_token.is_some()
    }

    /// Rules 3 and 4: a token is granted when it is usable, except in wait-for-fresh
    /// mode while a refresh of a token in its window is in flight.
    fn grantable(&self, now: Instant) -> bool {
        self.status == Status::SignedIn
            && self.current.as_ref().is_some_and(|c| {
                c.usable_at(now)
                    && !(self.config.mode == RefreshMode::WaitForFresh
                        && c.in_window_at(now)
                        && matches!(self.flight, RefreshState::InFlight { .. }))
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
            Status::SignedIn => {
                let usable = self.current.as_ref().is_some_and(|c| c.usable_at(now));
                (!usable && !self.can_refresh()).then(|| Error::SignInRequired {
                    reason: "the token is no longer usable and there is no refresh credential"
                        .into(),
                })
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
        let attempt = AttemptId(self.next_attempt);
        self.next_attempt += 1;
        let deadline = later(now, self.config.refresh_timeout);
        self.flight = RefreshState::InFlight {
            attempt,
            started: now,
            deadline,
        };
        self.actions.push_back(Action::StartRefresh {
            attempt,
            refresh_token: self.refresh_token.clone(),
        });
    }

    /// Rule 7: transient failures back off (honouring `Retry-After`); terminal ones end
    /// the session until the next sign-in.
    fn on_failure(&mut self, now: Instant, failure: RefreshFailure) {
        match failure.kind {
            FailureKind::Transient => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.last_failure = Some(failure.message.into());
                let delay = self.backoff_delay(failure.retry_after);
                self.flight = RefreshState::Backoff {
                    until: later(now, delay),
                };
            }
            FailureKind::Terminal => {
                let reason: Arc<str> = failure.message.into();
                self.status = Status::SignInRequired(reason.clone());
                self.current = None;
                self.refresh_token = None;
                // Timed-out attempts stay remembered: with rotating refresh tokens this
                // failure is often caused by one of them having consumed the credential,
                // and its late success is then the session's only way back (rule 8).
                self.flight = RefreshState::Idle;
                self.consecutive_failures = 0;
                self.last_failure = None;
                self.reject_all_parked(&Error::SignInRequired { reason });
            }
        }
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
        let server = retry_after
            .unwrap_or(Duration::ZERO)
            .min(self.config.max_retry_after);
        delay.max(server)
    }

    /// Rule 9: adopts a token received from a refresh sent at `base` (or given at
    /// sign-in). Returns `false`, adopting nothing, if it is not usable at `now`.
    fn adopt(&mut self, now: Instant, token: Token, base: Instant) -> bool {
        let generation = Generation(self.generation.0 + 1);
        let expires_at = match token.expiry {
            Expiry::Never => None,
            // An expiry too far away to represent counts as none.
            Expiry::In(lifetime) => base.checked_add(lifetime),
            Expiry::At(wall) => self.instant_for_wall(now, wall),
        };
        let schedule =
            expires_at.map(|at| Schedule::new(&self.config, generation.0, base.min(at), at));
        if schedule.is_some_and(|s| now >= s.usable_until) {
            return false;
        }
        self.generation = generation;
        if token.refresh_token.is_some() {
            self.refresh_token = token.refresh_token.clone();
        }
        let stored = Token {
            expiry: match expires_at {
                None => Expiry::Never,
                Some(at) => Expiry::At(self.wall_for_instant(at)),
            },
            refresh_token: self.refresh_token.clone(),
            ..token
        };
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
            rejected: false,
        });
        self.forget_attempts();
        self.actions.push_back(Action::Persist {
            generation,
            token: Box::new(stored),
        });
        true
    }

    /// Drops the refresh in flight, any backoff and every remembered attempt: their
    /// results will be ignored.
    fn forget_attempts(&mut self) {
        self.flight = RefreshState::Idle;
        self.abandoned.clear();
        self.consecutive_failures = 0;
        self.last_failure = None;
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
