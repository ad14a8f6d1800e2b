//! The rule checker: the rules of the contract (DESIGN.md), checked on the trace
//! alone — the inputs, the instants and the actions — without looking inside the
//! machine or the model.
//!
//! For each step the checker first works out what the input itself does (a result for
//! the attempt in flight, a timeout that became due, a sign-in…) into a [`View`], then
//! books the step's actions into its own record of requests, attempts and tokens, and
//! finally runs one function per rule over (record before, view, record after). The rules
//! are listed in [`RULES`], in the contract's order.
//!
//! Where the contract is silent, or two of its rules meet, the checker accepts the
//! machine's documented choice rather than invent one:
//! - a request whose deadline is reached in the very step that releases parked requests
//!   (a result arriving, or in wait-for-fresh mode the refresh timing out with the old
//!   token still usable) is granted: deadlines are handled last;
//! - a terminal failure rejects parked requests even in wait-for-fresh mode with a usable
//!   old token (rule 7 over rule 4);
//! - an exchange is on the wire from its `StartRefresh` until its result is fed, also
//!   past its deadline (then the machine asks, once, to cancel it) and after a sign-in or
//!   sign-out (which cancel it and make its result dropped: new credentials win);
//! - a result of the exchange on the wire is taken whenever it comes (a late success is
//!   adopted); a failure after its deadline has an unknown outcome, and a terminal
//!   failure of the same credential afterwards says so;
//! - a misconfiguration waits exactly `backoff_max` (or a longer `Retry-After`), keeps
//!   the refresh credential and the usable token, and fails requests that would wait
//!   for a refresh fast, with `Misconfigured`, until then;
//! - a refresh that returns an unusable token is a transient failure, but a rotated
//!   refresh credential in it is kept and stored (the server consumed the old one),
//!   with the previous access token while that one is usable;
//! - after a sign-out, requests fail fast with `SignedOut` until the next sign-in;
//! - a transient failure that could not reach the token endpoint backs off like any
//!   other, keeps granting a usable token, and (unless the configuration waits) fails
//!   requests that would wait for a refresh fast, with `Unreachable` naming the time
//!   left in the backoff, until the backoff ends.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use crate::reference::UNKNOWN_OUTCOME;
use crate::trace::{Act, Credential, Input, Label, Step, Stored, TOKEN_TYPE, TokenSpec};
use silent_refresh::Error;
use silent_refresh::FailureKind;
use silent_refresh::{AttemptId, RequestId};
use silent_refresh::{Config, RefreshMode, WaitPolicy};
use silent_refresh::{Expiry, Generation};

/// A rule of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// 1. At most one refresh exchange on the wire; one past its deadline is cancelled.
    SingleFlight = 1,
    /// 2. Every request gets exactly one outcome; a cancelled one none.
    ExactlyOnce = 2,
    /// 3. No token is granted at or past its `usable_until`.
    NeverExpired = 3,
    /// 4. A usable token is granted at once (stale-while-refreshing), or after the
    ///    refresh ends (wait-for-fresh).
    StaleWhileRefreshing = 4,
    /// 5. Parked requests are released in arrival order with the newest token.
    ArrivalOrder = 5,
    /// 6. A refresh starts only when needed, and always when needed.
    RefreshOnlyWhenNeeded = 6,
    /// 7. Transient failures back off; misconfigurations fail fast and keep the
    ///    credential; dead credentials reject and fail fast until a sign-in.
    FailuresClassified = 7,
    /// 8. The exchange's result is adopted even late, unless new credentials came;
    ///    duplicates change nothing.
    LateResults = 8,
    /// 9. Each refresh sends the newest refresh credential; `Persist` precedes `Grant`.
    RotationAndPersistence = 9,
    /// 10. Parked requests are capped and none outlives its deadline.
    Bounded = 10,
    /// 11. Totality: time runs forward and the next wake-up is in the future.
    Total = 11,
    /// 12. Sign-out rejects every parked request, clears the token and emits `Forget`.
    SignOut = 12,
    /// 13. One lineage, many keys: no exchange starts while another key's is on the
    ///     wire; a rotation elsewhere is this key's credential; a dead lineage ends it.
    Lineage = 13,
    /// 14. When fresh tokens keep being rejected, the refreshes those rejections call
    ///     for are held back (exponentially, capped).
    RejectionsRepeat = 14,
}

impl Rule {
    /// The rule's number in DESIGN.md.
    #[must_use]
    pub fn number(self) -> u8 {
        self as u8
    }
}

/// What a violation is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    /// The trace breaks a rule of the contract.
    Rule(Rule),
    /// The machine did something other than the reference model predicted.
    ModelMismatch,
}

/// A broken rule or a disagreement with the model, at a step of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The step (1-based) at which it was found.
    pub step: usize,
    /// What is broken.
    pub kind: ViolationKind,
    /// What happened (labels stand for secrets; no secret is printed).
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ViolationKind::Rule(rule) => write!(
                f,
                "step {}: rule {} ({rule:?}) broken: {}",
                self.step,
                rule.number(),
                self.detail
            ),
            ViolationKind::ModelMismatch => write!(
                f,
                "step {}: the machine disagrees with the model: {}",
                self.step, self.detail
            ),
        }
    }
}

impl std::error::Error for Violation {}

type Check = Result<(), String>;

/// One rule's check: the record before the step, what the input did, the record after.
pub type RuleCheck = fn(&Checker, &View<'_>, &Checker) -> Check;

/// The rules, in the contract's order.
pub const RULES: [(Rule, RuleCheck); 14] = [
    (Rule::SingleFlight, single_flight),
    (Rule::ExactlyOnce, exactly_once),
    (Rule::NeverExpired, never_expired),
    (Rule::StaleWhileRefreshing, stale_while_refreshing),
    (Rule::ArrivalOrder, arrival_order),
    (Rule::RefreshOnlyWhenNeeded, refresh_only_when_needed),
    (Rule::FailuresClassified, failures_classified),
    (Rule::LateResults, late_results),
    (Rule::RotationAndPersistence, rotation_and_persistence),
    (Rule::Bounded, bounded),
    (Rule::Total, total),
    (Rule::SignOut, sign_out),
    (Rule::Lineage, lineage),
    (Rule::RejectionsRepeat, rejections_repeat),
];

// ----- the record ------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Session {
    AwaitingSignIn,
    SignedIn,
    Misconfigured,
    Unreachable,
    SignInRequired,
    SignedOut,
}

impl Session {
    /// Signed in, misconfigured, unreachable or not: tokens may be granted and
    /// refreshed.
    fn active(self) -> bool {
        matches!(
            self,
            Session::SignedIn | Session::Misconfigured | Session::Unreachable
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Parked,
    Granted,
    Rejected,
    Cancelled,
}

#[derive(Clone, Copy, Debug)]
struct Request {
    id: RequestId,
    deadline: Instant,
    fate: Fate,
}

#[derive(Clone, Copy, Debug)]
struct Attempt {
    id: AttemptId,
    started: Instant,
    /// Its exchange is on the wire: its result has not come yet.
    on_wire: bool,
    /// The machine asked for it to be cancelled.
    cancel_asked: bool,
    /// New credentials came while it was on the wire: its result is dropped.
    superseded: bool,
    /// A newer token came from the store while it was on the wire (DESIGN.md rule 8:
    /// "a late success is adopted if no newer token was adopted since that attempt
    /// started"): its result is dropped, but it is not cancelled.
    overtaken: bool,
    /// The refresh credential it sent.
    sent: Option<Label>,
}

/// A token the machine adopted (or, in a [`View`], must adopt).
#[derive(Clone, Debug)]
pub struct Adopted {
    generation: Generation,
    access: Label,
    scope: Option<String>,
    /// The refresh credential stored with it: its own, or the one it kept.
    refresh: Option<Label>,
    /// `(expires_at, whole lifetime, floor)`: DESIGN.md computes the schedule from the
    /// whole lifetime (from the issue time of a stored token), never before `floor`.
    expiry: Option<(Instant, Duration, Instant)>,
    /// Its expiry on the wall clock (where a suspend moves it).
    expires_wall: Option<SystemTime>,
    /// After a suspend: the earlier window and usable time the moved ones never exceed.
    cap: Option<((Instant, Instant), Instant)>,
    /// When it was issued on the wall clock, as it must be stored.
    issued_wall: Option<SystemTime>,
    /// The credential it was refreshed from (the store's compare-and-swap key).
    from: Option<Label>,
    /// It came from the store: durable already, never persisted again.
    from_store: bool,
    /// It came with a result whose token arrived unusable, with a rotated refresh
    /// credential: stored (rule 9) and current, and the result counts as a transient
    /// failure. It is the previous token with the rotated credential while that one
    /// was usable (granted on); else the unusable one, never granted.
    unusable: bool,
    rejected: bool,
    /// When it was adopted (rule 14 counts rejections soon after).
    adopted_at: Instant,
}

impl Adopted {
    /// DESIGN.md: "`usable_until`: the expiry less a safety margin", the margin capped at
    /// a fraction of the lifetime.
    fn usable_until(&self, config: &Config) -> Option<Instant> {
        let (exp, lifetime, floor) = self.expiry?;
        let margin = config
            .safety_margin()
            .min(lifetime.mul_f64(config.margin_fraction()));
        let until = exp.checked_sub(margin).map_or(floor, |t| t.max(floor));
        Some(self.cap.map_or(until, |(_, cap)| until.min(cap)))
    }

    fn usable_at(&self, config: &Config, now: Instant) -> bool {
        !self.rejected && self.usable_until(config).is_none_or(|until| now < until)
    }

    /// DESIGN.md: "`refresh_at`: … `min(configured threshold, fraction × lifetime)`, less a
    /// seeded jitter" — the earliest and the latest instant the jitter allows.
    fn window(&self, config: &Config) -> Option<(Instant, Instant)> {
        let (exp, lifetime, floor) = self.expiry?;
        let until = self.usable_until(config)?;
        let threshold = config
            .refresh_threshold()
            .min(lifetime.mul_f64(config.refresh_fraction()));
        let max_jitter = threshold.mul_f64(config.jitter_fraction());
        let opens = |lead: Duration| {
            exp.checked_sub(lead)
                .map_or(floor, |t| t.max(floor))
                .min(until)
        };
        let (earliest, latest) = (
            opens(threshold),
            opens(threshold.saturating_sub(max_jitter)),
        );
        Some(match self.cap {
            Some(((e, l), _)) => (earliest.min(e), latest.min(l)),
            None => (earliest, latest),
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Backoff {
    not_before: Instant,
    not_after: Instant,
}

impl Backoff {
    /// The later of two backoffs whose exact ends the jitter hides.
    fn later(self, other: Backoff) -> Backoff {
        Backoff {
            not_before: self.not_before.max(other.not_before),
            not_after: self.not_after.max(other.not_after),
        }
    }
}

/// What holds the next refresh back: a failure's backoff, a hold-off of rule 14, or
/// (when the jitter hides which ends later) either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    Failure,
    Rejections,
    Either,
}

impl Cause {
    /// The cause when `held` (a hold-off) meets `failing` (a failure's backoff): the
    /// machine keeps the hold-off only if it ends strictly later.
    fn of(held: Backoff, failing: Backoff) -> Cause {
        if held.not_before > failing.not_after {
            Cause::Rejections
        } else if held.not_after <= failing.not_before {
            Cause::Failure
        } else {
            Cause::Either
        }
    }
}

/// The checker: its own record of the run, built from the trace alone.
#[derive(Clone, Debug)]
pub struct Checker {
    config: Config,
    steps: usize,
    now: Instant,
    anchor: (Instant, SystemTime),
    session: Session,
    self_authenticating: bool,
    refresh_token: Option<Label>,
    requests: Vec<Request>,
    attempts: Vec<Attempt>,
    tokens: Vec<Adopted>,
    current: Option<Generation>,
    failures: u32,
    /// No refresh before this: a failure's backoff, or a hold-off of rule 14, the later
    /// of the two (which one, as far as the jitter lets the checker know).
    backoff: Option<Backoff>,
    backoff_cause: Cause,
    /// After an unreachable endpoint: when a waiting request may probe it again.
    probe: Option<Backoff>,
    /// Rule 14: tokens rejected in a row soon after adoption, and the last hold-off
    /// (the earliest a refresh may start, for rule 14's own check).
    rejections: u32,
    holdoff: Option<Backoff>,
    /// Rule 13: another key of the session has an exchange on the wire.
    lineage_busy: bool,
    /// A failed exchange of the current credential had passed its deadline.
    outcome_unknown: bool,
    /// The generation the store confirmed last (rule 9).
    durable: Option<Generation>,
    /// Failed saves of the current token in a row, and when the save is asked again.
    save_failures: u32,
    save_retry: Option<Instant>,
}

/// How a refresh result relates to the attempts the checker knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultFor {
    /// The exchange on the wire, for the current credentials.
    InFlight,
    /// The exchange on the wire, started before a sign-in or sign-out, or overtaken by
    /// a newer token from the store: dropped.
    Superseded,
    /// An attempt already answered, or never started.
    Stale,
}

/// What the store answered about the current token in a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreAnswer {
    /// Stored: the token is durable.
    Stored,
    /// A newer session was in the store: adopted instead.
    Conflict,
    /// The save failed: asked again after a backoff.
    Failed,
}

/// A failure of the attempt in flight during a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failed {
    /// Transient (including a cancelled exchange and an unusable token), with the
    /// server's `Retry-After`.
    Transient(Option<Duration>),
    /// A misconfiguration, with the server's `Retry-After`.
    Misconfigured(Option<Duration>),
    /// Transient, and the token endpoint could not be reached, with the server's
    /// `Retry-After` (none, in practice).
    Unreachable(Option<Duration>),
    /// Terminal: the credentials are dead.
    Terminal,
}

/// What a step's input does by itself, before the machine decides anything else.
#[derive(Clone, Debug)]
pub struct View<'a> {
    step: &'a Step,
    now: Instant,
    anchor: (Instant, SystemTime),
    /// The session once the input took effect.
    session: Session,
    self_authenticating: bool,
    /// The newest refresh credential once the input took effect (before adoption).
    refresh_token: Option<Label>,
    /// The current token once the input took effect (before adoption, 401 applied).
    token: Option<Adopted>,
    /// The attempt whose exchange is still on the wire when the machine goes on deciding.
    in_flight: Option<AttemptId>,
    /// Whether that exchange is for the current credentials (not superseded).
    refreshing: bool,
    result: Option<ResultFor>,
    /// The exchange that reached its deadline in this step: it must be cancelled.
    due_cancel: Option<AttemptId>,
    failure: Option<Failed>,
    /// A failed exchange of the current credential had passed its deadline.
    outcome_unknown: bool,
    /// The store's answer in this step, for the current token.
    stored: Option<StoreAnswer>,
    /// The save of the current token is asked again in this step.
    repersist: bool,
    /// The token this step must adopt and persist.
    adopt: Option<Adopted>,
    /// Rule 13 once the input took effect: another key's exchange is on the wire.
    lineage_busy: bool,
    /// Rule 13: another key found the credentials dead in this step (this key's own
    /// exchange on the wire is superseded, as by new credentials).
    lineage_dead: bool,
    /// Rule 14 once the input took effect: rejections in a row, and the hold-off
    /// (`new_holdoff`: the one this step's rejection set).
    rejections: u32,
    holdoff: Option<Backoff>,
    new_holdoff: Option<Backoff>,
    /// Requests that may be answered in this step, in arrival order, with deadlines.
    waiting: Vec<(RequestId, Instant)>,
    new_request: Option<RequestId>,
}

impl View<'_> {
    fn actions(&self) -> &[Act] {
        &self.step.actions
    }

    fn deadline(&self, request: RequestId) -> Option<Instant> {
        self.waiting
            .iter()
            .find(|(id, _)| *id == request)
            .map(|(_, deadline)| *deadline)
    }

    fn outcome(&self, request: RequestId) -> Option<&Act> {
        self.actions()
            .iter()
            .find(|act| act.request() == Some(request))
    }

    fn has(&self, pred: impl Fn(&Act) -> bool) -> bool {
        self.actions().iter().any(pred)
    }
}

impl Checker {
    /// A checker for a machine created at `now` with the wall clock at `wall_now`.
    #[must_use]
    pub fn new(config: Config, now: Instant, wall_now: SystemTime) -> Self {
        Self {
            config,
            steps: 0,
            now,
            anchor: (now, wall_now),
            session: Session::AwaitingSignIn,
            self_authenticating: false,
            refresh_token: None,
            requests: Vec::new(),
            attempts: Vec::new(),
            tokens: Vec::new(),
            current: None,
            failures: 0,
            backoff: None,
            backoff_cause: Cause::Failure,
            probe: None,
            rejections: 0,
            holdoff: None,
            lineage_busy: false,
            outcome_unknown: false,
            durable: None,
            save_failures: 0,
            save_retry: None,
        }
    }

    /// Checks one step against every rule, then records it.
    pub fn observe(&mut self, step: &Step) -> Result<(), Violation> {
        self.steps += 1;
        let view = self.view(step);
        let after = self.after(&view);
        for (rule, check) in RULES {
            check(self, &view, &after).map_err(|detail| Violation {
                step: self.steps,
                kind: ViolationKind::Rule(rule),
                detail: format!(
                    "{detail}\n  input: {:?}\n  actions: {:?}",
                    step.input, step.actions
                ),
            })?;
        }
        *self = after;
        Ok(())
    }

    /// Rule 2 at the end of a run (after time passed every deadline): every request
    /// that was not cancelled got its outcome.
    pub fn finish(&self) -> Result<(), Violation> {
        match self.parked().next() {
            Some(request) => Err(Violation {
                step: self.steps,
                kind: ViolationKind::Rule(Rule::ExactlyOnce),
                detail: format!(
                    "{} (deadline {:?} from the start) never got an outcome",
                    request.id,
                    request.deadline.saturating_duration_since(self.anchor.0)
                ),
            }),
            None => Ok(()),
        }
    }

    /// Checks a whole trace.
    pub fn replay(
        config: Config,
        now: Instant,
        wall_now: SystemTime,
        steps: &[Step],
    ) -> Result<(), Violation> {
        let mut checker = Checker::new(config, now, wall_now);
        for step in steps {
            checker.observe(step)?;
        }
        checker.finish()
    }

    // ----- reading the record ------------------------------------------------------

    fn parked(&self) -> impl Iterator<Item = &Request> {
        self.requests.iter().filter(|r| r.fate == Fate::Parked)
    }

    fn request(&self, id: RequestId) -> Option<&Request> {
        self.requests.iter().find(|r| r.id == id)
    }

    fn attempt(&self, id: AttemptId) -> Option<&Attempt> {
        self.attempts.iter().find(|a| a.id == id)
    }

    /// The attempt whose exchange is on the wire (there is at most one).
    fn in_flight(&self) -> Option<&Attempt> {
        self.attempts.iter().rev().find(|a| a.on_wire)
    }

    /// The exchange on the wire for the current credentials (wait-for-fresh waits on it).
    fn refreshing(&self) -> bool {
        self.in_flight()
            .is_some_and(|a| !a.superseded && !a.overtaken)
    }

    fn token(&self, generation: Generation) -> Option<&Adopted> {
        self.tokens.iter().find(|t| t.generation == generation)
    }

    fn current_token(&self) -> Option<&Adopted> {
        self.current.and_then(|g| self.token(g))
    }

    fn last_generation(&self) -> Generation {
        self.tokens.last().map_or(Generation(0), |t| t.generation)
    }

    fn can_refresh(&self) -> bool {
        self.self_authenticating || self.refresh_token.is_some()
    }

    /// The expiry of a token as an instant: `In` counts from `base`; a wall-clock
    /// expiry already passed is `now`.
    /// The expiry of a token as `(instant, whole lifetime, floor)`: `In` counts from
    /// `base`; a wall-clock expiry already passed is `now`, and with an issue time its
    /// lifetime counts from that.
    fn expiry_of(
        now: Instant,
        anchor: (Instant, SystemTime),
        base: Instant,
        spec: &TokenSpec,
    ) -> Option<(Instant, Duration, Instant)> {
        let (at, lifetime) = match spec.expiry {
            Expiry::Never => return None,
            Expiry::In(lifetime) => (base.checked_add(lifetime)?, lifetime),
            Expiry::At(wall) => {
                let wall_now = wall_of(anchor, now);
                let at = match wall.duration_since(wall_now) {
                    Ok(remaining) => now.checked_add(remaining)?,
                    Err(_) => now,
                };
                let lifetime = match spec.issued_at {
                    Some(issued) if issued <= wall => {
                        wall.duration_since(issued).unwrap_or_default()
                    }
                    _ => at.saturating_duration_since(base),
                };
                (at, lifetime)
            }
        };
        Some((
            at,
            lifetime,
            at.checked_sub(lifetime).unwrap_or(base).min(at),
        ))
    }

    /// The token a result, a sign-in or the store hands over, if it is usable at `now`.
    fn usable_token(
        &self,
        view: &View<'_>,
        spec: &TokenSpec,
        base: Instant,
        from: Option<Label>,
        from_store: bool,
    ) -> Option<Adopted> {
        let token = self.handed_token(view, spec, base, from, from_store, false);
        token.usable_at(&self.config, view.now).then_some(token)
    }

    /// The token a result hands over even though its own is unusable (rule 9: its
    /// rotated refresh credential must be stored).
    fn unusable_token(
        &self,
        view: &View<'_>,
        spec: &TokenSpec,
        base: Instant,
        from: Option<Label>,
    ) -> Adopted {
        self.handed_token(view, spec, base, from, false, true)
    }

    /// The token `spec` describes, as it would be adopted in this step.
    fn handed_token(
        &self,
        view: &View<'_>,
        spec: &TokenSpec,
        base: Instant,
        from: Option<Label>,
        from_store: bool,
        unusable: bool,
    ) -> Adopted {
        let expiry = Self::expiry_of(view.now, view.anchor, base, spec);
        let expires_wall = expiry.map(|(at, ..)| wall_of(view.anchor, at));
        let issued_wall = match (expires_wall, expiry) {
            (Some(wall), Some((_, lifetime, _))) => wall.checked_sub(lifetime),
            _ => spec.issued_at.or_else(|| Some(wall_of(view.anchor, base))),
        };
        Adopted {
            generation: Generation(self.last_generation().0 + 1),
            access: spec.access,
            scope: spec.scope.clone(),
            refresh: spec.refresh.or(view.refresh_token),
            expiry,
            expires_wall,
            cap: None,
            issued_wall,
            from,
            from_store,
            unusable,
            rejected: false,
            adopted_at: view.now,
        }
    }

    /// Backoff bounds after the `failures`-th transient failure in a row: the delay is
    /// `min(max, initial × 2^(n−1))` less up to half of it, and at least the server's
    /// (capped) `Retry-After`.
    /// The wait after a misconfiguration: exactly `backoff_max`, or the server's longer
    /// (capped) `Retry-After`.
    fn misconfigured_backoff(&self, now: Instant, retry_after: Option<Duration>) -> Backoff {
        let server = retry_after
            .unwrap_or_default()
            .min(self.config.max_retry_after());
        let until = now + self.config.backoff_max().max(server);
        Backoff {
            not_before: until,
            not_after: until,
        }
    }

    /// Rule 14: the hold-off after the `n`-th fresh token in a row was rejected (n ≥ 2):
    /// `min(max, initial × 2^(n−2))` less up to half of it.
    fn holdoff_after(&self, now: Instant, rejections: u32) -> Backoff {
        let doubling = 2u32.saturating_pow(rejections.saturating_sub(2));
        let full = self
            .config
            .backoff_initial()
            .saturating_mul(doubling)
            .min(self.config.backoff_max());
        Backoff {
            not_before: now + full.mul_f64(0.5),
            not_after: now + full,
        }
    }

    /// DESIGN.md rule 7: after an unreachable endpoint a waiting request probes it again
    /// "about every second": the first step of the backoff, never after the backoff.
    fn probe_after(
        &self,
        now: Instant,
        retry_after: Option<Duration>,
        backoff: Backoff,
    ) -> Backoff {
        let first = self.backoff_after(now, 1, retry_after);
        Backoff {
            not_before: first.not_before.min(backoff.not_before),
            not_after: first.not_after.min(backoff.not_after),
        }
    }

    /// When a request that needs a refresh may next get an attempt, while one is held
    /// back: the end of the backoff (or hold-off), or the probe if sooner.
    fn next_attempt(&self, now: Instant) -> Option<Backoff> {
        if self.in_flight().is_some() || self.lineage_busy {
            return None;
        }
        let backoff = self.backoff.filter(|b| now < b.not_after)?;
        Some(match self.probe {
            Some(p) => Backoff {
                not_before: p.not_before.min(backoff.not_before),
                not_after: p.not_after.min(backoff.not_after),
            },
            None => backoff,
        })
    }

    /// Whether the backoff in force may be, or surely is, a hold-off of rule 14.
    fn held_back_by_rejections(&self, now: Instant) -> (bool, bool) {
        let running = self.backoff.is_some_and(|b| now < b.not_after);
        (
            running && self.backoff_cause != Cause::Failure,
            running && self.backoff_cause == Cause::Rejections,
        )
    }

    /// Backs off for a failure (`failing`), unless a hold-off in force ends later.
    fn back_off(&mut self, failing: Backoff) {
        match self.backoff {
            Some(held) if self.backoff_cause != Cause::Failure => {
                self.backoff_cause = match (self.backoff_cause, Cause::of(held, failing)) {
                    (_, Cause::Failure) => Cause::Failure,
                    (Cause::Rejections, cause) => cause,
                    _ => Cause::Either,
                };
                self.backoff = Some(if self.backoff_cause == Cause::Failure {
                    failing
                } else {
                    held.later(failing)
                });
            }
            _ => {
                self.backoff = Some(failing);
                self.backoff_cause = Cause::Failure;
            }
        }
    }

    fn backoff_after(&self, now: Instant, failures: u32, retry_after: Option<Duration>) -> Backoff {
        let doubling = 2u32.saturating_pow(failures.saturating_sub(1));
        let full = self
            .config
            .backoff_initial()
            .saturating_mul(doubling)
            .min(self.config.backoff_max());
        let server = retry_after
            .unwrap_or_default()
            .min(self.config.max_retry_after());
        Backoff {
            not_before: now + full.mul_f64(0.5).max(server),
            not_after: now + full.mul_f64(1.0).max(server),
        }
    }

    // ----- what the input does -----------------------------------------------------

    fn view<'a>(&self, step: &'a Step) -> View<'a> {
        let now = self.now.max(step.now);
        let mut view = View {
            step,
            now,
            anchor: self.anchor,
            session: self.session,
            self_authenticating: self.self_authenticating,
            refresh_token: self.refresh_token,
            token: self.current_token().cloned(),
            in_flight: self.in_flight().map(|a| a.id),
            refreshing: self.refreshing(),
            result: None,
            due_cancel: None,
            failure: None,
            outcome_unknown: self.outcome_unknown,
            stored: None,
            repersist: false,
            adopt: None,
            rejections: self.rejections,
            holdoff: self.holdoff,
            new_holdoff: None,
            lineage_busy: self.lineage_busy,
            lineage_dead: false,
            waiting: self.parked().map(|r| (r.id, r.deadline)).collect(),
            new_request: None,
        };
        match &step.input {
            Input::LineageBusy(busy) => view.lineage_busy = *busy,
            // DESIGN.md rule 13: "a rotation is the credential for every key at once".
            Input::Rotated(label) => {
                if view.session.active() && view.refresh_token.is_some() {
                    view.refresh_token = Some(*label);
                }
            }
            // "a dead lineage ends every key": as this key's own terminal failure.
            Input::LineageDead => {
                if view.session.active() {
                    view.session = Session::SignInRequired;
                    view.token = None;
                    view.refresh_token = None;
                    view.refreshing = false;
                    view.outcome_unknown = false;
                    view.failure = Some(Failed::Terminal);
                    view.lineage_dead = true;
                }
            }
            Input::Request { deadline } => {
                if let Some(id) = step.request {
                    let deadline = deadline.unwrap_or(now + self.config.request_timeout());
                    view.waiting.push((id, deadline));
                    view.new_request = Some(id);
                }
            }
            Input::Cancel(id) => view.waiting.retain(|(waiting, _)| waiting != id),
            Input::Rejected(generation) => {
                if let Some(token) = view.token.as_mut()
                    && token.generation == *generation
                    && !token.rejected
                {
                    token.rejected = true;
                    // DESIGN.md rule 14: fresh tokens rejected again hold the refresh back.
                    let soon = now < token.adopted_at + self.config.backoff_max();
                    view.rejections = if soon {
                        self.rejections.saturating_add(1)
                    } else {
                        1
                    };
                    if view.rejections >= 2 {
                        view.holdoff = Some(self.holdoff_after(now, view.rejections));
                        view.new_holdoff = view.holdoff;
                    }
                }
            }
            Input::SignIn {
                wall_now,
                credentials,
            } => {
                view.anchor = (now, *wall_now);
                view.session = Session::SignedIn;
                view.rejections = 0;
                view.holdoff = None;
                view.token = None;
                view.refreshing = false;
                view.outcome_unknown = false;
                let spec = match credentials {
                    Credential::Token(spec) | Credential::Stored(spec) => Some(spec),
                    Credential::RefreshToken(_) => None,
                    Credential::ClientCredentials(spec) => spec.as_ref(),
                };
                let from_store = matches!(credentials, Credential::Stored(_));
                view.self_authenticating = matches!(credentials, Credential::ClientCredentials(_));
                view.refresh_token = match credentials {
                    Credential::RefreshToken(label) => Some(*label),
                    _ => spec.and_then(|s| s.refresh),
                };
                view.adopt =
                    spec.and_then(|spec| self.usable_token(&view, spec, now, None, from_store));
            }
            Input::SignOut => {
                view.session = Session::SignedOut;
                view.rejections = 0;
                view.holdoff = None;
                view.token = None;
                view.refreshing = false;
                view.outcome_unknown = false;
                view.refresh_token = None;
                view.self_authenticating = false;
            }
            Input::RefreshResult { attempt, result } => {
                let known = self.attempt(*attempt).filter(|a| a.on_wire);
                let kind = match known {
                    Some(a) if a.superseded || a.overtaken => ResultFor::Superseded,
                    Some(_) => ResultFor::InFlight,
                    None => ResultFor::Stale,
                };
                view.result = Some(kind);
                if kind != ResultFor::Stale {
                    // Its exchange is over, whatever it says.
                    view.in_flight = None;
                    view.refreshing = false;
                }
                let started = known.map_or(now, |a| a.started);
                let sent = known.and_then(|a| a.sent);
                let cancelled = known.is_some_and(|a| a.cancel_asked);
                match (kind, result) {
                    (ResultFor::InFlight, Ok(spec)) => {
                        // Adopted, or an unusable token (a transient failure): either way
                        // the configuration worked.
                        view.session = Session::SignedIn;
                        // DESIGN.md rule 9, compare-and-swap on what the store holds:
                        // while the current token is not stored yet, the store still
                        // holds what that token's own save compares against.
                        let from = match &view.token {
                            Some(token) if self.durable != Some(token.generation) => token.from,
                            _ => sent,
                        };
                        view.adopt = self.usable_token(&view, spec, started, from, false);
                        if view.adopt.is_none() {
                            // Unusable, but a rotated credential is the one to send next,
                            // and it is stored (rule 9): with the previous token while
                            // that one is usable (it stays in service), else with this
                            // one (never granted).
                            let rotated = spec.refresh.is_some() && spec.refresh != sent;
                            let usable_left = view
                                .token
                                .as_ref()
                                .filter(|t| t.usable_at(&self.config, now));
                            if rotated {
                                let kept = match usable_left {
                                    Some(left) => TokenSpec {
                                        access: left.access,
                                        refresh: spec.refresh,
                                        expiry: left.expires_wall.map_or(Expiry::Never, Expiry::At),
                                        scope: left.scope.clone(),
                                        issued_at: left.issued_wall,
                                    },
                                    None => spec.clone(),
                                };
                                view.adopt = Some(self.unusable_token(&view, &kept, started, from));
                            }
                            view.refresh_token = spec.refresh.or(view.refresh_token);
                            view.failure = Some(Failed::Transient(None));
                        }
                    }
                    (ResultFor::InFlight, Err(failure)) => {
                        view.outcome_unknown |= cancelled;
                        view.failure = Some(match failure.kind {
                            FailureKind::Transient if failure.unreachable => {
                                Failed::Unreachable(failure.retry_after)
                            }
                            FailureKind::Transient => Failed::Transient(failure.retry_after),
                            FailureKind::Misconfigured => {
                                Failed::Misconfigured(failure.retry_after)
                            }
                            FailureKind::Terminal => Failed::Terminal,
                        });
                        match failure.kind {
                            FailureKind::Terminal => {
                                view.session = Session::SignInRequired;
                                view.token = None;
                                view.refresh_token = None;
                            }
                            FailureKind::Misconfigured => view.session = Session::Misconfigured,
                            FailureKind::Transient if failure.unreachable => {
                                view.session = Session::Unreachable;
                            }
                            FailureKind::Transient => view.session = Session::SignedIn,
                        }
                    }
                    _ => {}
                }
            }
            Input::Timeout => {}
            Input::Persisted {
                generation,
                outcome,
            } => {
                let current = view
                    .token
                    .as_ref()
                    .is_some_and(|t| t.generation == *generation)
                    && self.durable != Some(*generation)
                    && view.session.active();
                if current {
                    view.stored = Some(match outcome {
                        Stored::Stored => StoreAnswer::Stored,
                        Stored::Failed => StoreAnswer::Failed,
                        Stored::Conflict(spec) => {
                            view.adopt = self.usable_token(&view, spec, now, None, true);
                            if view.adopt.is_some() {
                                // The exchange on the wire, if any, is overtaken; the
                                // new token ends a hold-off (it was not rejected).
                                view.refreshing = false;
                                view.holdoff = None;
                                // Its credential is the newest now: a refresh this step
                                // starts sends it.
                                view.refresh_token = spec.refresh.or(view.refresh_token);
                            } else {
                                // The store's session wins even spent: ours is dropped,
                                // and only the store's refresh credential (if any) is
                                // left to refresh with.
                                view.refresh_token = spec.refresh;
                                view.token = None;
                            }
                            StoreAnswer::Conflict
                        }
                    });
                }
            }
            Input::WallClock { wall_now } => {
                let projected = wall_of(view.anchor, now);
                let ahead = wall_now.duration_since(projected).unwrap_or_default();
                let behind = projected.duration_since(*wall_now).unwrap_or_default();
                let tolerance = Duration::from_secs(1);
                if ahead > tolerance || behind > tolerance {
                    view.anchor = (now, *wall_now);
                    if ahead > tolerance
                        && let Some(token) = view.token.as_mut()
                        && let (Some(wall), Some((_, lifetime, _))) =
                            (token.expires_wall, token.expiry)
                        && let (Some(window), Some(until)) =
                            (token.window(&self.config), token.usable_until(&self.config))
                    {
                        // DESIGN.md: a token past its wall-clock usable time is never
                        // granted, whatever the monotonic clock says: its expiry is
                        // where the wall clock now puts it, and never later than before.
                        let at = match wall.duration_since(*wall_now) {
                            Ok(remaining) => now.checked_add(remaining).unwrap_or(now),
                            Err(_) => now,
                        };
                        let floor = at.checked_sub(lifetime).unwrap_or(now).min(at);
                        token.expiry = Some((at, lifetime, floor));
                        token.cap = Some((window, until));
                    }
                }
            }
        }
        // An adopted token ends a misconfiguration or an unreachable endpoint (a
        // sibling's token from the store, too).
        if view.adopt.as_ref().is_some_and(|t| !t.unusable)
            && matches!(view.session, Session::Misconfigured | Session::Unreachable)
        {
            view.session = Session::SignedIn;
        }
        // A failed save is asked again once its retry time has come (unless a new token
        // replaced it in this step).
        view.repersist = view.adopt.is_none()
            && view.stored.is_none()
            && self.save_retry.is_some_and(|at| now >= at)
            && view
                .token
                .as_ref()
                .is_some_and(|t| self.durable != Some(t.generation));
        if let Some(attempt) = view.in_flight.and_then(|id| self.attempt(id)) {
            let superseded_now =
                matches!(step.input, Input::SignIn { .. } | Input::SignOut) || view.lineage_dead;
            if !attempt.cancel_asked
                && (superseded_now || now >= attempt.started + self.config.refresh_timeout())
            {
                view.due_cancel = Some(attempt.id);
            }
        }
        view
    }

    // ----- booking the step --------------------------------------------------------

    /// New credentials: the exchange on the wire is superseded, failures forgotten.
    fn supersede(&mut self) {
        for attempt in &mut self.attempts {
            if attempt.on_wire {
                attempt.superseded = true;
            }
        }
        self.forget_failures();
    }

    fn forget_failures(&mut self) {
        self.failures = 0;
        self.backoff = None;
        self.backoff_cause = Cause::Failure;
        self.probe = None;
        self.holdoff = None;
        self.outcome_unknown = false;
    }

    fn after(&self, view: &View<'_>) -> Checker {
        let mut after = self.clone();
        let now = view.now;
        after.now = now;
        after.anchor = view.anchor;
        after.session = view.session;
        after.self_authenticating = view.self_authenticating;
        after.refresh_token = view.refresh_token;
        after.current = view.token.as_ref().map(|t| t.generation);
        after.outcome_unknown = view.outcome_unknown;
        after.rejections = view.rejections;
        after.holdoff = view.holdoff;
        after.lineage_busy = view.lineage_busy;
        // DESIGN.md rule 14: the hold-off holds every refresh back, unless a failure's
        // backoff ends later.
        if let Some(held) = view.new_holdoff {
            match after.backoff.filter(|b| now < b.not_after) {
                None => {
                    after.backoff = Some(held);
                    after.backoff_cause = Cause::Rejections;
                    after.probe = None;
                }
                Some(backoff) => {
                    let (bounds, cause) = match Cause::of(held, backoff) {
                        Cause::Rejections => (held, Cause::Rejections),
                        Cause::Failure => (backoff, after.backoff_cause),
                        Cause::Either => (held.later(backoff), Cause::Either),
                    };
                    after.backoff = Some(bounds);
                    after.backoff_cause = cause;
                    if cause == Cause::Rejections {
                        after.probe = None;
                    }
                }
            }
        }
        match &view.step.input {
            Input::SignIn { .. } | Input::SignOut => after.supersede(),
            Input::Rejected(generation) => {
                if let Some(token) = after
                    .tokens
                    .iter_mut()
                    .find(|t| t.generation == *generation)
                {
                    token.rejected = true;
                }
            }
            Input::Cancel(id) => {
                if let Some(request) = after.requests.iter_mut().find(|r| r.id == *id)
                    && request.fate == Fate::Parked
                {
                    request.fate = Fate::Cancelled;
                }
            }
            Input::RefreshResult { attempt, .. } => {
                if let Some(a) = after.attempts.iter_mut().find(|a| a.id == *attempt) {
                    a.on_wire = false;
                }
            }
            Input::Request { .. } | Input::Timeout => {}
            Input::LineageDead if view.lineage_dead => after.supersede(),
            Input::LineageBusy(_) | Input::Rotated(_) | Input::LineageDead => {}
            Input::Persisted { .. } | Input::WallClock { .. } => {}
        }
        // The current token as the input left it (a suspend moves its expiry).
        if let Some(token) = &view.token
            && let Some(held) = after
                .tokens
                .iter_mut()
                .find(|t| t.generation == token.generation)
        {
            held.expiry = token.expiry;
            held.cap = token.cap;
        }
        match view.stored {
            Some(StoreAnswer::Stored) => {
                after.durable = view.token.as_ref().map(|t| t.generation);
                after.save_failures = 0;
                after.save_retry = None;
            }
            Some(StoreAnswer::Failed) => {
                after.save_failures = after.save_failures.saturating_add(1);
                let doubling = 2u32.saturating_pow(after.save_failures.saturating_sub(1));
                let delay = after
                    .config
                    .backoff_initial()
                    .saturating_mul(doubling)
                    .min(after.config.backoff_max());
                after.save_retry = Some(now + delay);
            }
            Some(StoreAnswer::Conflict) | None => {}
        }
        // The machine drops the retry once it is due, asking again if the token is
        // still not stored.
        if view.repersist || after.save_retry.is_some_and(|at| now >= at) {
            after.save_retry = None;
        }
        // A token the store handed over: adopted without a Persist, durable already; a
        // conflict's overtakes the exchange on the wire (its result will be dropped).
        if let Some(token) = view.adopt.as_ref().filter(|t| t.from_store) {
            if matches!(view.step.input, Input::Persisted { .. }) {
                for attempt in after.attempts.iter_mut().filter(|a| a.on_wire) {
                    attempt.overtaken = true;
                }
            }
            after.refresh_token = token.refresh;
            after.tokens.push(token.clone());
            after.current = Some(token.generation);
            after.durable = Some(token.generation);
            after.save_failures = 0;
            after.save_retry = None;
            after.forget_failures();
        }
        match view.failure {
            Some(Failed::Transient(retry_after) | Failed::Unreachable(retry_after)) => {
                after.failures = after.failures.saturating_add(1);
                let backoff = after.backoff_after(now, after.failures, retry_after);
                after.back_off(backoff);
                // No probe while a longer hold-off surely runs (the machine drops it).
                after.probe = match view.failure {
                    Some(Failed::Unreachable(_)) if after.backoff_cause != Cause::Rejections => {
                        Some(after.probe_after(now, retry_after, backoff))
                    }
                    _ => None,
                };
            }
            Some(Failed::Misconfigured(retry_after)) => {
                let backoff = after.misconfigured_backoff(now, retry_after);
                after.back_off(backoff);
                after.probe = None;
            }
            Some(Failed::Terminal) => {
                after.failures = 0;
                after.backoff = None;
                after.backoff_cause = Cause::Failure;
                after.probe = None;
                after.outcome_unknown = false;
            }
            None => {}
        }
        if let (Some(id), Some(deadline)) = (view.new_request, view.deadline_of_new()) {
            after.requests.push(Request {
                id,
                deadline,
                fate: Fate::Parked,
            });
        }
        for act in view.actions() {
            match act {
                Act::StartRefresh {
                    attempt,
                    refresh_token,
                } => {
                    after.attempts.push(Attempt {
                        id: *attempt,
                        started: now,
                        on_wire: true,
                        cancel_asked: false,
                        superseded: false,
                        overtaken: false,
                        sent: *refresh_token,
                    });
                    // The backoff (or the probe) is spent on it; a refresh for anything
                    // but a rejection ends the streak of rule 14.
                    after.backoff = None;
                    after.backoff_cause = Cause::Failure;
                    after.probe = None;
                    after.holdoff = None;
                    if !view.token_at_refresh().is_some_and(|t| t.rejected) {
                        after.rejections = 0;
                    }
                }
                Act::CancelRefresh { attempt } => {
                    if let Some(a) = after.attempts.iter_mut().find(|a| a.id == *attempt) {
                        a.cancel_asked = true;
                    }
                }
                Act::Persist { generation, .. } => {
                    if let Some(token) = view.adopt.as_ref().filter(|t| !t.from_store) {
                        after.refresh_token = token.refresh;
                        after.tokens.push(token.clone());
                        after.save_failures = 0;
                        after.save_retry = None;
                        after.current = Some(*generation);
                        // An unusable one ends nothing: its result is a failure.
                        if !token.unusable {
                            after.forget_failures();
                        }
                    }
                }
                Act::Grant { request, .. } | Act::Reject { request, .. } => {
                    let granted = matches!(act, Act::Grant { .. });
                    if let Some(r) = after.requests.iter_mut().find(|r| r.id == *request)
                        && r.fate == Fate::Parked
                    {
                        r.fate = if granted {
                            Fate::Granted
                        } else {
                            Fate::Rejected
                        };
                    }
                }
                Act::Forget => {}
            }
        }
        after
    }
}

impl View<'_> {
    fn deadline_of_new(&self) -> Option<Instant> {
        self.new_request.and_then(|id| self.deadline(id))
    }

    /// The current token when a refresh of this step starts: one from the store counts
    /// from the start of the step, one persisted in the step from its `Persist` on.
    fn token_at_refresh(&self) -> Option<&Adopted> {
        let mut token = self
            .adopt
            .as_ref()
            .filter(|t| t.from_store)
            .or(self.token.as_ref());
        for act in self.actions() {
            match act {
                Act::Persist { .. } if self.adopt.is_some() => token = self.adopt.as_ref(),
                Act::StartRefresh { .. } => return token,
                _ => {}
            }
        }
        token
    }
}

fn wall_of(anchor: (Instant, SystemTime), at: Instant) -> SystemTime {
    let (instant, wall) = anchor;
    if at >= instant {
        wall.checked_add(at - instant).unwrap_or(wall)
    } else {
        wall.checked_sub(instant - at).unwrap_or(wall)
    }
}

fn ensure(condition: bool, detail: impl FnOnce() -> String) -> Check {
    if condition { Ok(()) } else { Err(detail()) }
}

// ----- the rules -----------------------------------------------------------------------

/// Rule 1: a `StartRefresh` only when no exchange is on the wire (an exchange is on the
/// wire until its result comes, also past its deadline and after new credentials);
/// attempt ids are new. A `CancelRefresh` names the exchange on the wire, once, when its
/// deadline is reached or new credentials arrive, and then always.
fn single_flight(before: &Checker, view: &View<'_>, _after: &Checker) -> Check {
    let mut in_flight = view.in_flight;
    let mut newest = before.attempts.last().map(|a| a.id);
    let mut cancelled = None;
    for act in view.actions() {
        match act {
            Act::StartRefresh { attempt, .. } => {
                if let Some(other) = in_flight {
                    return Err(format!(
                        "{attempt} started while the exchange of {other} is on the wire"
                    ));
                }
                ensure(newest.is_none_or(|n| *attempt > n), || {
                    format!("{attempt} is not newer than {newest:?}")
                })?;
                in_flight = Some(*attempt);
                newest = Some(*attempt);
            }
            Act::CancelRefresh { attempt } => {
                ensure(
                    view.due_cancel == Some(*attempt) && cancelled.is_none(),
                    || {
                        format!(
                            "a CancelRefresh for {attempt}, but the exchange due for one is {:?}{}",
                            view.due_cancel,
                            if cancelled.is_some() {
                                " (cancelled twice)"
                            } else {
                                ""
                            }
                        )
                    },
                )?;
                cancelled = Some(*attempt);
            }
            _ => {}
        }
    }
    if let Some(due) = view.due_cancel {
        ensure(cancelled == Some(due), || {
            format!("the exchange of {due} is past its deadline or superseded, but not cancelled")
        })?;
    }
    Ok(())
}

/// Rule 2: every outcome answers a request that waits (or arrives now), once; a
/// cancelled request gets none. (The end of a run checks that none is left waiting.)
fn exactly_once(before: &Checker, view: &View<'_>, _after: &Checker) -> Check {
    if matches!(view.step.input, Input::Request { .. }) {
        let id = view
            .new_request
            .ok_or_else(|| "a request got no id".to_owned())?;
        ensure(before.requests.iter().all(|r| r.id < id), || {
            format!("{id} is not a new, increasing request id")
        })?;
    }
    let mut open: Vec<RequestId> = view.waiting.iter().map(|(id, _)| *id).collect();
    for request in view.actions().iter().filter_map(Act::request) {
        if let Some(index) = open.iter().position(|id| *id == request) {
            open.remove(index);
            continue;
        }
        let why = match (before.request(request).map(|r| r.fate), &view.step.input) {
            (Some(Fate::Parked), Input::Cancel(id)) if *id == request => "it was cancelled",
            (Some(Fate::Cancelled), _) => "it was cancelled",
            (Some(Fate::Parked), _) | (None, _)
                if view.waiting.iter().any(|(id, _)| *id == request) =>
            {
                "it was answered twice in one step"
            }
            (Some(Fate::Granted | Fate::Rejected), _) => "it already had its outcome",
            _ => "no request has this id",
        };
        return Err(format!("an outcome for {request}, but {why}"));
    }
    Ok(())
}

/// Rule 3: every `Grant` is of a token usable at `now` (not past `usable_until` as the
/// contract computes it, never after a 401) and says so truthfully; the driver's fast
/// path (`fresh_token`) never outlives the token either.
fn never_expired(_before: &Checker, view: &View<'_>, after: &Checker) -> Check {
    let config = &after.config;
    let now = view.now;
    for act in view.actions() {
        let Act::Grant {
            request,
            generation,
            access,
            token_type,
            usable_until,
            ..
        } = act
        else {
            continue;
        };
        let Some(token) = after.token(*generation) else {
            continue; // rule 9 reports a grant of a token never persisted
        };
        ensure(!token.rejected, || {
            format!("{request} granted {generation}, which was rejected (401)")
        })?;
        let until = token.usable_until(config);
        ensure(until.is_none_or(|u| now < u), || {
            format!(
                "{request} granted {generation} at {:?}, past its usable_until {:?}",
                now - after.anchor.0,
                until.map(|u| u.saturating_duration_since(after.anchor.0))
            )
        })?;
        ensure(
            *usable_until == until && *access == token.access && token_type == TOKEN_TYPE,
            || {
                format!(
                    "{request} granted {generation} with wrong details ({usable_until:?} vs {until:?})"
                )
            },
        )?;
    }
    if let Some((generation, fast_until)) = view.step.fresh {
        ensure(
            after.session.active() && after.current == Some(generation),
            || format!("fresh_token offers {generation}, not the current token"),
        )?;
        let Some(token) = after.token(generation) else {
            return Ok(()); // rule 8 reports a token adopted out of turn
        };
        let until = token.usable_until(config);
        ensure(token.usable_at(config, now), || {
            format!("fresh_token offers {generation}, not usable at now")
        })?;
        ensure(
            match (fast_until, until) {
                (Some(fast), Some(until)) => fast <= until,
                (None, None) => true,
                _ => false,
            },
            || {
                format!(
                    "fresh_token may hand {generation} out until {fast_until:?}, past {until:?}"
                )
            },
        )?;
    }
    Ok(())
}

/// Rule 4: while signed in with a usable token, nobody waits — except, in wait-for-fresh
/// mode, while a refresh is in flight; a failed refresh releases them with the old token.
fn stale_while_refreshing(_before: &Checker, view: &View<'_>, after: &Checker) -> Check {
    let config = &after.config;
    let now = view.now;
    let Some(token) = after.current_token() else {
        return Ok(());
    };
    if !after.session.active() || !token.usable_at(config, now) {
        return Ok(());
    }
    // Strict persistence: a token the store has not confirmed is not granted yet.
    let not_stored = config.strict_persistence() && after.durable != Some(token.generation);
    let held_back =
        (config.mode() == RefreshMode::WaitForFresh && after.refreshing()) || not_stored;
    if held_back {
        return Ok(());
    }
    if let Some(request) = after.parked().next() {
        return Err(format!(
            "{} waits though {} is usable{}",
            request.id,
            token.generation,
            if config.mode() == RefreshMode::WaitForFresh {
                " and no refresh is in flight"
            } else {
                " (stale-while-refreshing)"
            }
        ));
    }
    if let Some(id) = view.new_request {
        ensure(matches!(view.outcome(id), Some(Act::Grant { .. })), || {
            format!(
                "{id} was not granted at once though {} is usable",
                token.generation
            )
        })?;
    }
    Ok(())
}

/// Rule 5: grants go out in arrival order — no request is granted while an earlier one
/// keeps waiting — and all carry the newest token.
fn arrival_order(_before: &Checker, view: &View<'_>, after: &Checker) -> Check {
    let mut last: Option<RequestId> = None;
    for act in view.actions() {
        let Act::Grant {
            request,
            generation,
            ..
        } = act
        else {
            continue;
        };
        ensure(last.is_none_or(|l| *request > l), || {
            format!("{request} granted after {last:?}: not in arrival order")
        })?;
        last = Some(*request);
        ensure(after.current == Some(*generation), || {
            format!(
                "{request} granted {generation}, not the newest token {:?}",
                after.current
            )
        })?;
    }
    if let (Some(last), Some(waiting)) = (last, after.parked().next()) {
        ensure(waiting.id > last, || {
            format!(
                "{last} was granted while the earlier {} keeps waiting",
                waiting.id
            )
        })?;
    }
    Ok(())
}

/// Rule 6: a refresh starts only when signed in, possible, and needed (no token while
/// someone waits, the window reached, or a 401 of the current generation; not a 401 of
/// an older one), and it does start when needed and nothing holds it back.
fn refresh_only_when_needed(before: &Checker, view: &View<'_>, after: &Checker) -> Check {
    let config = &before.config;
    let now = view.now;
    // A token from the store is current from the start of the step (no Persist).
    let stored = view.adopt.as_ref().filter(|t| t.from_store);
    let mut token = stored.or(view.token.as_ref());
    let mut refresh = stored.map_or(view.refresh_token, |t| t.refresh);
    let mut waiting: Vec<RequestId> = view.waiting.iter().map(|(id, _)| *id).collect();
    for act in view.actions() {
        match act {
            Act::Persist { .. } => {
                // A new token (not a save asked again) replaces the current one.
                if let Some(adopted) = view.adopt.as_ref() {
                    token = Some(adopted);
                    refresh = adopted.refresh;
                }
            }
            Act::Grant { request, .. } | Act::Reject { request, .. } => {
                waiting.retain(|id| id != request);
            }
            Act::StartRefresh { attempt, .. } => {
                ensure(view.session.active(), || {
                    format!("{attempt} started while {:?}", view.session)
                })?;
                ensure(refresh.is_some() || view.self_authenticating, || {
                    format!("{attempt} started without a refresh credential or client credentials")
                })?;
                let reason = match token {
                    Some(t) => {
                        t.rejected || t.window(config).is_some_and(|(opens, _)| now >= opens)
                    }
                    None => !waiting.is_empty(),
                };
                ensure(reason, || match (&view.step.input, token) {
                    (Input::Rejected(g), Some(t)) if *g != t.generation => format!(
                        "{attempt} started by a 401 of {g}, older than the current {}",
                        t.generation
                    ),
                    (_, Some(t)) => format!(
                        "{attempt} started for {} before its window and without a 401",
                        t.generation
                    ),
                    (_, None) => format!("{attempt} started with no token and nobody waiting"),
                })?;
            }
            Act::Forget | Act::CancelRefresh { .. } => {}
        }
    }
    // ... and when needed, one starts (no flag stays stuck after a failure): once the
    // backoff surely ended, or (for a waiting request) the probe after an unreachable
    // endpoint, and no hold-off of rule 14 runs.
    let surely_over = |b: Option<Backoff>| b.is_none_or(|b| now >= b.not_after);
    let someone_waits = after.parked().next().is_some();
    let backoff_over = surely_over(after.backoff)
        || (someone_waits
            && after.backoff_cause == Cause::Failure
            && after.probe.is_some_and(|p| now >= p.not_after));
    if after.session.active()
        && after.can_refresh()
        && after.in_flight().is_none()
        && !after.lineage_busy
        && backoff_over
    {
        let needed = match after.current_token() {
            Some(t) => t.rejected || t.window(config).is_some_and(|(_, latest)| now >= latest),
            None => after.parked().next().is_some(),
        };
        ensure(!needed, || {
            format!(
                "a refresh is needed ({}) but none is in flight",
                match after.current_token() {
                    Some(t) if t.rejected => "the current token was rejected",
                    Some(_) => "the refresh window is reached",
                    None => "no token and requests wait",
                }
            )
        })?;
    }
    Ok(())
}

/// Rule 7: transient failures back off (exponentially, honouring `Retry-After`) and
/// leave waiting requests to their deadlines; a misconfiguration waits `backoff_max`,
/// keeps the refresh credential and the usable token, and fails requests that would wait
/// fast with `Misconfigured` meanwhile; dead credentials reject every waiting request
/// with "sign-in required" (saying so when an earlier exchange's outcome is unknown) and
/// fail new requests fast, with no refresh, until a sign-in. Every rejection has its
/// cause.
fn failures_classified(before: &Checker, view: &View<'_>, after: &Checker) -> Check {
    let config = &before.config;
    let now = view.now;
    // The backoff in force when a refresh starts.
    let adopted = view.adopt.as_ref().filter(|t| !t.unusable);
    let backoff = match (&view.step.input, view.failure, adopted) {
        (Input::SignIn { .. } | Input::SignOut, ..) | (_, _, Some(_)) => None,
        (_, Some(Failed::Transient(retry_after) | Failed::Unreachable(retry_after)), None) => {
            Some(before.backoff_after(now, before.failures.saturating_add(1), retry_after))
        }
        (_, Some(Failed::Misconfigured(retry_after)), None) => {
            Some(before.misconfigured_backoff(now, retry_after))
        }
        _ => before.backoff,
    };
    if let Some(Act::StartRefresh { attempt, .. }) = view
        .actions()
        .iter()
        .find(|a| matches!(a, Act::StartRefresh { .. }))
    {
        // DESIGN.md rule 7: a waiting request probes an unreachable endpoint again after
        // about a second, before the grown backoff ends.
        let probing = before.session == Session::Unreachable
            && !view.waiting.is_empty()
            && before.probe.is_some_and(|p| now >= p.not_before);
        ensure(
            probing || backoff.is_none_or(|b| now >= b.not_before),
            || {
                format!(
                    "{attempt} started during a backoff (lasting at least {:?} more)",
                    backoff.map(|b| b.not_before - now)
                )
            },
        )?;
    }
    let fails_fast = matches!(view.session, Session::SignInRequired | Session::SignedOut);
    if fails_fast {
        ensure(
            !view.has(|a| {
                matches!(
                    a,
                    Act::Grant { .. } | Act::Persist { .. } | Act::StartRefresh { .. }
                )
            }),
            || format!("a grant, persist or refresh while {:?}", view.session),
        )?;
    }
    if view.failure == Some(Failed::Terminal) {
        for (id, deadline) in &view.waiting {
            ensure(
                match view.outcome(*id) {
                    Some(Act::Reject {
                        error: Error::SignInRequired { reason },
                        ..
                    }) => reason.ends_with(UNKNOWN_OUTCOME) == view.outcome_unknown,
                    Some(Act::Reject {
                        error: Error::DeadlineExceeded { .. },
                        ..
                    }) => *deadline <= now,
                    _ => false,
                },
                || {
                    format!(
                        "{id} was not rejected with sign-in required after a terminal failure{}",
                        if view.outcome_unknown {
                            " saying an earlier exchange's outcome is unknown"
                        } else {
                            ""
                        }
                    )
                },
            )?;
        }
    }
    if matches!(view.failure, Some(Failed::Misconfigured(_))) {
        ensure(view.refresh_token == before.refresh_token, || {
            "a misconfiguration dropped the refresh credential".to_owned()
        })?;
    }
    // Every rejection has its cause.
    let token_usable = view
        .adopt
        .as_ref()
        .or(view.token.as_ref())
        .is_some_and(|t| t.usable_at(config, now));
    let can_refresh = view.refresh_token.is_some() || view.self_authenticating;
    let misconfigured_wait = view.session == Session::Misconfigured
        && !token_usable
        && can_refresh
        && after.backoff.is_some_and(|b| now < b.not_before);
    // The jitter is not known here: a request must fail fast while the next attempt
    // (the backoff, or the probe of an unreachable endpoint) surely has not come, and
    // may until its latest instant.
    let slack = Duration::from_micros(1);
    let next = after.next_attempt(now);
    let retry_fits = |retry_in: Duration| {
        next.is_some_and(|n| {
            now < n.not_after
                && now + retry_in + slack >= n.not_before
                && now + retry_in <= n.not_after + slack
        })
    };
    // Rule 14's hold-off may be (or surely is) what holds the next attempt back.
    let (held_may, held_must) = after.held_back_by_rejections(now);
    let unreachable = view.session == Session::Unreachable
        && config.fail_fast_unreachable()
        && !token_usable
        && can_refresh
        && !held_must;
    let unreachable_wait = unreachable && !held_may && next.is_some_and(|n| now < n.not_before);
    // DESIGN.md rule 7: with no usable token and the next attempt held back, a request
    // is answered as soon as its wait can no longer succeed (the wait policy).
    let usable_after = after
        .current_token()
        .is_some_and(|t| t.usable_at(config, now));
    let held_back = after.session.active() && after.can_refresh() && !usable_after;
    let policy_may = |deadline: Option<Instant>, retry_in: Duration| {
        held_back
            && retry_fits(retry_in)
            && match config.wait_policy() {
                WaitPolicy::FirstFailure => true,
                WaitPolicy::WhileHopeful => deadline.is_some_and(|d| d <= now + retry_in + slack),
                WaitPolicy::UntilDeadline => false,
            }
    };
    let mut parked = view.waiting.len() - usize::from(view.new_request.is_some());
    for act in view.actions() {
        let Act::Reject { request, error } = act else {
            continue;
        };
        let is_new = view.new_request == Some(*request);
        let deadline = view.deadline(*request);
        let caused = match error {
            Error::DeadlineExceeded { .. } => {
                deadline.is_some_and(|d| d <= now) && view.session != Session::AwaitingSignIn
            }
            Error::AwaitingSignIn => {
                deadline.is_some_and(|d| d <= now) && view.session == Session::AwaitingSignIn
            }
            Error::Overloaded { limit } => {
                is_new && *limit == config.max_parked() && parked >= config.max_parked()
            }
            Error::SignedOut => view.session == Session::SignedOut,
            Error::SignInRequired { .. } => {
                view.session == Session::SignInRequired
                    || (view.session.active() && !token_usable && !can_refresh)
            }
            Error::Misconfigured { .. } => misconfigured_wait,
            Error::Unreachable { retry_in, .. } => {
                (unreachable && retry_fits(*retry_in))
                    || (after.session == Session::Unreachable
                        && !held_must
                        && policy_may(deadline, *retry_in))
            }
            Error::RefreshFailed { retry_in, .. } => {
                after.session == Session::SignedIn && !held_must && policy_may(deadline, *retry_in)
            }
            Error::TokensRejected { count, retry_in } => {
                held_may && *count == after.rejections && policy_may(deadline, *retry_in)
            }
            _ => false,
        };
        ensure(caused, || {
            format!("{request} rejected with {error:?}, which does not apply")
        })?;
        if !is_new {
            parked = parked.saturating_sub(1);
        }
    }
    if (fails_fast || misconfigured_wait || unreachable_wait)
        && let Some(id) = view.new_request
    {
        ensure(matches!(view.outcome(id), Some(Act::Reject { .. })), || {
            format!("{id} did not fail fast while {:?}", view.session)
        })?;
    }
    if held_back && let Some(n) = next {
        let hopeless = after.parked().find(|r| match config.wait_policy() {
            WaitPolicy::FirstFailure => true,
            WaitPolicy::WhileHopeful => r.deadline <= n.not_before,
            WaitPolicy::UntilDeadline => false,
        });
        if let Some(request) = hopeless {
            return Err(format!(
                "{} still waits though the next attempt is held back until at least {:?} \
                 from now and its deadline is {:?} from now ({:?})",
                request.id,
                n.not_before.saturating_duration_since(now),
                request.deadline.saturating_duration_since(now),
                config.wait_policy()
            ));
        }
    }
    // Nobody waits on a session that cannot give a token (yet).
    let dead = match after.session {
        Session::SignInRequired | Session::SignedOut => true,
        Session::SignedIn => !after.can_refresh() && !usable_after,
        Session::Misconfigured => {
            !usable_after
                && (!after.can_refresh() || after.backoff.is_some_and(|b| now < b.not_before))
        }
        Session::Unreachable => {
            !usable_after
                && (!after.can_refresh()
                    || (config.fail_fast_unreachable()
                        && !held_may
                        && next.is_some_and(|n| now < n.not_before)))
        }
        Session::AwaitingSignIn => false,
    };
    if dead && let Some(request) = after.parked().next() {
        return Err(format!(
            "{} waits though no token can come ({:?})",
            request.id, after.session
        ));
    }
    Ok(())
}

/// Rule 8: a token is persisted exactly when the step hands over a usable one: the
/// result of the exchange on the wire (also past its deadline), unless new credentials
/// came since it started, or a sign-in. Results of answered, superseded or unknown
/// attempts, and late failures, change nothing.
fn late_results(_before: &Checker, view: &View<'_>, _after: &Checker) -> Check {
    let persists = view
        .actions()
        .iter()
        .filter(|a| matches!(a, Act::Persist { .. }))
        .count();
    let expected = usize::from(view.adopt.as_ref().is_some_and(|t| !t.from_store))
        + usize::from(view.repersist);
    ensure(persists == expected, || {
        match (&view.step.input, view.result) {
            (Input::RefreshResult { attempt, .. }, Some(ResultFor::Stale)) => {
                format!("a result for {attempt} (answered or unknown) changed the token")
            }
            (Input::RefreshResult { attempt, .. }, Some(ResultFor::Superseded)) => format!(
                "the result for {attempt}, superseded by new credentials or overtaken by the store's newer token, changed the token"
            ),
            (Input::RefreshResult { attempt, .. }, Some(ResultFor::InFlight)) => format!(
                "the result for {attempt}, the exchange on the wire, was {}",
                if expected == 1 {
                    "not adopted"
                } else {
                    "adopted though unusable"
                }
            ),
            _ => format!("{persists} Persist actions where the contract expects {expected}"),
        }
    })
}

/// Rule 9: each refresh sends the newest refresh credential; a new token is persisted
/// as received (with the kept refresh credential when it brought none, and a wall-clock
/// expiry) with the next generation, before any grant of it.
fn rotation_and_persistence(before: &Checker, view: &View<'_>, after: &Checker) -> Check {
    let mut newest = view.refresh_token;
    let mut persisted: Vec<Generation> = before.tokens.iter().map(|t| t.generation).collect();
    if let Some(token) = view.adopt.as_ref().filter(|t| t.from_store) {
        persisted.push(token.generation);
    }
    // Strict persistence: only tokens the store confirmed are granted.
    if after.config.strict_persistence() {
        for act in view.actions() {
            if let Act::Grant {
                request,
                generation,
                ..
            } = act
            {
                ensure(after.durable == Some(*generation), || {
                    format!(
                        "{request} granted {generation}, which the store has not confirmed (strict)"
                    )
                })?;
            }
        }
        if let Some((generation, _)) = view.step.fresh {
            ensure(after.durable == Some(generation), || {
                format!("the fast path offers {generation} before the store confirmed it (strict)")
            })?;
        }
    }
    for act in view.actions() {
        match act {
            Act::StartRefresh {
                attempt,
                refresh_token,
            } => ensure(*refresh_token == newest, || {
                format!(
                    "{attempt} sent {refresh_token:?}, the newest refresh credential is {newest:?}"
                )
            })?,
            Act::Persist {
                generation,
                access,
                token_type,
                scope,
                refresh_token,
                expiry,
                issued_at,
                from,
            } => {
                // A failed save asked again: the same token, from the same credential.
                if view.repersist && view.adopt.is_none() {
                    let original = view
                        .token
                        .as_ref()
                        .and_then(|t| before.tokens.iter().find(|b| b.generation == t.generation));
                    ensure(
                        original.is_some_and(|t| {
                            t.generation == *generation
                                && t.access == *access
                                && t.refresh == *refresh_token
                                && t.from == *from
                                && t.issued_wall == *issued_at
                        }),
                        || format!("{generation} asked to be saved again, but not as it was"),
                    )?;
                    continue;
                }
                let Some(expected) = view.adopt.as_ref().filter(|t| !t.from_store) else {
                    continue; // rule 8 reports it
                };
                let stored_expiry = match expected.expires_wall {
                    None => Expiry::Never,
                    Some(wall) => Expiry::At(wall),
                };
                ensure(*generation == expected.generation, || {
                    format!(
                        "persisted as {generation}, the next generation is {}",
                        expected.generation
                    )
                })?;
                ensure(
                    *access == expected.access
                        && token_type == TOKEN_TYPE
                        && *scope == expected.scope
                        && *refresh_token == expected.refresh
                        && *expiry == stored_expiry
                        && *issued_at == expected.issued_wall,
                    || {
                        format!(
                            "{generation} persisted as ({access:?}, {refresh_token:?}, {expiry:?}, \
                             issued {issued_at:?}), expected ({:?}, {:?}, {stored_expiry:?}, \
                             issued {:?})",
                            expected.access, expected.refresh, expected.issued_wall
                        )
                    },
                )?;
                // DESIGN.md rule 9: compare-and-swap on the credential it was refreshed
                // from (none for a sign-in).
                ensure(*from == expected.from, || {
                    format!(
                        "{generation} persisted from {from:?}, but it was refreshed from {:?}",
                        expected.from
                    )
                })?;
                newest = expected.refresh;
                persisted.push(*generation);
            }
            Act::Grant {
                request,
                generation,
                ..
            } => ensure(persisted.contains(generation), || {
                format!("{request} granted {generation} before it was persisted")
            })?,
            Act::Reject { .. } | Act::Forget | Act::CancelRefresh { .. } => {}
        }
    }
    Ok(())
}

/// Rule 10: at most `max_parked` requests wait, and none past its deadline.
fn bounded(_before: &Checker, view: &View<'_>, after: &Checker) -> Check {
    let parked = after.parked().count();
    ensure(parked <= after.config.max_parked(), || {
        format!(
            "{parked} requests wait, the cap is {}",
            after.config.max_parked()
        )
    })?;
    if let Some(late) = after.parked().find(|r| r.deadline <= view.now) {
        return Err(format!("{} waits past its deadline", late.id));
    }
    Ok(())
}

/// Rule 11: once the actions are drained the next wake-up is in the future (no busy
/// loop), and no later than the next thing due: a request deadline, the deadline of the
/// exchange on the wire (until it is cancelled), the end of a backoff known to be
/// running, or the refresh window.
fn total(_before: &Checker, view: &View<'_>, after: &Checker) -> Check {
    let config = &after.config;
    let now = view.now;
    let wakeup = view.step.wakeup.map(|w| w.at);
    ensure(wakeup.is_none_or(|at| at > now), || {
        format!(
            "poll_timeout {:?} is not after now: a driver would busy-loop",
            view.step.wakeup
        )
    })?;
    let mut due: Vec<(Instant, &str)> = Vec::new();
    if let Some(deadline) = after.parked().map(|r| r.deadline).min() {
        due.push((deadline, "a request deadline"));
    }
    if let Some(attempt) = after.in_flight().filter(|a| !a.cancel_asked) {
        due.push((
            attempt.started + config.refresh_timeout(),
            "the deadline of the exchange",
        ));
    }
    if let Some(at) = after.save_retry {
        due.push((at, "a save asked again"));
    }
    let backoff = after.backoff.filter(|b| now < b.not_after);
    if let Some(p) = after.probe.filter(|_| after.parked().next().is_some())
        && now < p.not_before
        && after.backoff_cause == Cause::Failure
        && !after.lineage_busy
    {
        due.push((p.not_after, "the probe of an unreachable endpoint"));
    }
    match backoff {
        // A hold-off set while an exchange is on the wire waits for its result.
        Some(_) if after.in_flight().is_some() => {}
        Some(b) if now < b.not_before => {
            due.push((b.not_after, "the end of the backoff (or hold-off)"));
        }
        Some(_) => {}
        None => {
            if after.session.active()
                && after.can_refresh()
                && after.in_flight().is_none()
                && !after.lineage_busy
                && let Some((_, latest)) = after.current_token().and_then(|t| t.window(config))
            {
                due.push((latest, "the refresh window"));
            }
        }
    }
    for (at, what) in due {
        ensure(wakeup.is_some_and(|w| w <= at), || {
            format!(
                "poll_timeout {:?} sleeps past {what} ({:?} from the start)",
                view.step.wakeup,
                at.saturating_duration_since(after.anchor.0)
            )
        })?;
    }
    Ok(())
}

/// Rule 12: sign-out rejects every waiting request with `SignedOut`, emits one
/// `Forget`, grants, persists and refreshes nothing; `Forget` comes only then.
fn sign_out(_before: &Checker, view: &View<'_>, _after: &Checker) -> Check {
    let forgets = view
        .actions()
        .iter()
        .filter(|a| matches!(a, Act::Forget))
        .count();
    if view.step.input != Input::SignOut {
        return ensure(forgets == 0, || "a Forget without a sign-out".to_owned());
    }
    ensure(forgets == 1, || {
        format!("sign-out emitted {forgets} Forget actions")
    })?;
    for (id, _) in &view.waiting {
        ensure(
            matches!(
                view.outcome(*id),
                Some(Act::Reject {
                    error: Error::SignedOut,
                    ..
                })
            ),
            || format!("{id} was not rejected with SignedOut at sign-out"),
        )?;
    }
    ensure(
        !view.has(|a| {
            matches!(
                a,
                Act::Grant { .. } | Act::Persist { .. } | Act::StartRefresh { .. }
            )
        }),
        || "sign-out granted, persisted or refreshed".to_owned(),
    )
}

/// Rule 14: the second token in a row rejected soon after its adoption (within
/// `backoff_max`), and every one after, holds the refresh back: no refresh starts before
/// the hold-off's earliest end (`min(max, initial × 2^(n−2))` less up to half); rule 6
/// checks that one starts once it surely ended, and rule 7 that a request told so names
/// the streak.
fn rejections_repeat(_before: &Checker, view: &View<'_>, _after: &Checker) -> Check {
    let now = view.now;
    let Some(holdoff) = view.holdoff.filter(|h| now < h.not_before) else {
        return Ok(());
    };
    if let Some(Act::StartRefresh { attempt, .. }) = view
        .actions()
        .iter()
        .find(|a| matches!(a, Act::StartRefresh { .. }))
    {
        return Err(format!(
            "{attempt} started {:?} before the hold-off after {} rejected fresh tokens ends",
            holdoff.not_before - now,
            view.rejections
        ));
    }
    Ok(())
}

/// Rule 13 (one lineage, many keys), as one key sees it: no exchange starts while
/// another key's is on the wire. (That a rotation elsewhere is the credential sent next
/// is rule 9's newest-credential check; that a dead lineage rejects every waiting
/// request is rule 7's terminal check.)
fn lineage(_before: &Checker, view: &View<'_>, _after: &Checker) -> Check {
    if !view.lineage_busy {
        return Ok(());
    }
    match view
        .actions()
        .iter()
        .find(|a| matches!(a, Act::StartRefresh { .. }))
    {
        Some(Act::StartRefresh { attempt, .. }) => Err(format!(
            "{attempt} started while another key's exchange is on the wire"
        )),
        _ => Ok(()),
    }
}
