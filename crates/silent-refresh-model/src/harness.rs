//! The harness: owns the driver's clock, resolves each [`Op`] into a concrete input,
//! feeds it to the machine and to the model, compares what they did, and hands the
//! step to the checker.

use std::time::{Duration, Instant, SystemTime};

use crate::checker::{Checker, Violation, ViolationKind};
use crate::op::{
    AttemptPick, CredentialsPick, DeadlinePick, ExpiryPick, FailurePick, GenerationPick, Op,
    PersistPick, RequestPick,
};
use crate::reference::{LINEAGE_DEAD, Model, Snapshot};
use crate::trace::{Act, Credential, Input, Label, Step, Stored, TokenSpec};
use silent_refresh::Config;
use silent_refresh::Event;
use silent_refresh::RefreshFailure;
use silent_refresh::Status;
use silent_refresh::TokenMachine;
use silent_refresh::Wakeup;
use silent_refresh::{AttemptId, RequestId};
use silent_refresh::{Expiry, Generation};

/// The wall clock at the start of every run: fixed, so runs replay exactly.
fn wall_start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// How far time jumps at the end of a run, past every deadline.
const END_OF_RUN: Duration = Duration::from_secs(3600);

/// Applies ops to a machine and to the model side by side, and checks every step.
#[derive(Debug)]
pub struct Harness {
    machine: TokenMachine,
    model: Model,
    checker: Checker,
    start: Instant,
    /// The driver's clock, as an offset from `start` (it may go back).
    clock: Duration,
    /// The latest the driver's clock has been.
    high_water: Duration,
    /// How far the wall clock is ahead of (positive) or behind the driver's clock, in
    /// milliseconds.
    wall_offset_ms: i64,
    next_label: u32,
    requests: Vec<RequestId>,
    attempts: Vec<AttemptId>,
    generation: Generation,
    last_result: Option<(AttemptId, Result<TokenSpec, RefreshFailure>)>,
    wakeup: Option<Wakeup>,
    trace: Vec<Step>,
}

/// Runs `ops` on a new machine created at `start` (the only clock reading, taken by the
/// caller), then fails any refresh in flight and lets time pass every deadline, checking
/// the model and the rules after every step, and that every request got its outcome.
pub fn run(config: Config, start: Instant, ops: &[Op]) -> Result<(), Violation> {
    let mut harness = Harness::new(config, start);
    for op in ops {
        harness.step(op)?;
    }
    harness.finish()
}

impl Harness {
    /// A new machine, model and checker, created at `start`.
    #[must_use]
    pub fn new(config: Config, start: Instant) -> Self {
        Self {
            machine: TokenMachine::new(config.clone(), start, wall_start()),
            model: Model::new(config.clone(), start, wall_start()),
            checker: Checker::new(config, start, wall_start()),
            start,
            clock: Duration::ZERO,
            high_water: Duration::ZERO,
            wall_offset_ms: 0,
            next_label: 1,
            requests: Vec::new(),
            attempts: Vec::new(),
            generation: Generation(0),
            last_result: None,
            wakeup: None,
            trace: Vec::new(),
        }
    }

    /// The steps so far.
    #[must_use]
    pub fn trace(&self) -> &[Step] {
        &self.trace
    }

    /// The machine under test.
    #[must_use]
    pub fn machine(&self) -> &TokenMachine {
        &self.machine
    }

    /// A fresh checker for the same machine (to replay a trace, e.g. a mutated one).
    #[must_use]
    pub fn new_checker(&self) -> Checker {
        Checker::new(self.machine.config().clone(), self.start, wall_start())
    }

    /// The driver's now.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.start + self.clock
    }

    fn label(&mut self) -> Label {
        let label = Label(self.next_label);
        self.next_label += 1;
        label
    }

    fn wall_now(&self) -> SystemTime {
        let wall = wall_start() + self.clock;
        let offset = Duration::from_millis(self.wall_offset_ms.unsigned_abs());
        if self.wall_offset_ms >= 0 {
            wall + offset
        } else {
            wall - offset
        }
    }

    fn token(&mut self, expiry: ExpiryPick, refresh: bool) -> TokenSpec {
        let access = self.label();
        let refresh = refresh.then(|| self.label());
        let expiry = match expiry {
            ExpiryPick::Never => Expiry::Never,
            ExpiryPick::AtWall(tenths) => {
                let offset = Duration::from_millis(100 * u64::from(tenths.unsigned_abs()));
                Expiry::At(if tenths >= 0 {
                    self.wall_now() + offset
                } else {
                    self.wall_now() - offset
                })
            }
            pick => Expiry::In(pick.lifetime().unwrap_or_default()),
        };
        TokenSpec {
            access,
            refresh,
            expiry,
            scope: access.0.is_multiple_of(3).then(|| "api".to_owned()),
            issued_at: None,
        }
    }

    fn attempt(&self, pick: AttemptPick) -> AttemptId {
        let newest = self.attempts.last().map_or(0, |a| a.0);
        match pick {
            AttemptPick::Latest => AttemptId(newest),
            AttemptPick::Earlier(back) if !self.attempts.is_empty() => {
                let back = usize::from(back) % self.attempts.len();
                self.attempts[self.attempts.len() - 1 - back]
            }
            AttemptPick::Earlier(_) => AttemptId(0),
            AttemptPick::Unknown => AttemptId(newest + 1000),
        }
    }

    /// Resolves one op against the run so far and feeds it.
    pub fn step(&mut self, op: &Op) -> Result<(), Violation> {
        let now = self.now();
        let input = match *op {
            Op::Request { deadline } => Input::Request {
                deadline: deadline.map(|pick| match pick {
                    DeadlinePick::After(ms) => now + Duration::from_millis(u64::from(ms)),
                    DeadlinePick::Before(ms) => {
                        self.start
                            + self
                                .clock
                                .saturating_sub(Duration::from_millis(u64::from(ms)))
                    }
                }),
            },
            Op::Cancel(pick) => Input::Cancel(match pick {
                RequestPick::Known(index) if !self.requests.is_empty() => {
                    self.requests[usize::from(index) % self.requests.len()]
                }
                RequestPick::Known(_) => RequestId(0),
                RequestPick::Unknown => RequestId(u64::MAX),
            }),
            Op::Advance(step) => {
                self.set_clock(self.clock + step.duration());
                return Ok(());
            }
            Op::Backwards(ms) => {
                self.clock = self
                    .clock
                    .saturating_sub(Duration::from_millis(u64::from(ms)));
                Input::Timeout
            }
            Op::Timeout => Input::Timeout,
            Op::WakeUp => {
                if let Some(wakeup) = self.wakeup {
                    let at = wakeup.at.saturating_duration_since(self.start);
                    self.set_clock(self.clock.max(at));
                }
                Input::Timeout
            }
            Op::RefreshOk {
                attempt,
                rotate,
                expiry,
            } => Input::RefreshResult {
                attempt: self.attempt(attempt),
                result: Ok(self.token(expiry, rotate)),
            },
            Op::RefreshFail { attempt, failure } => Input::RefreshResult {
                attempt: self.attempt(attempt),
                result: Err(match failure {
                    FailurePick::Transient => RefreshFailure::transient("server error (503)"),
                    FailurePick::TransientRetryAfter(tenths) => {
                        RefreshFailure::transient("too many requests (429)")
                            .with_retry_after(Duration::from_millis(100 * u64::from(tenths)))
                    }
                    FailurePick::Terminal => RefreshFailure::terminal("invalid_grant"),
                    FailurePick::Misconfigured => RefreshFailure::misconfigured("invalid_client"),
                    FailurePick::Unreachable => RefreshFailure::unreachable(
                        "could not reach the token endpoint: connection refused",
                    ),
                }),
            },
            Op::Duplicate => match self.last_result.clone() {
                Some((attempt, result)) => Input::RefreshResult { attempt, result },
                None => Input::Timeout,
            },
            Op::Rejected(pick) => Input::Rejected(match pick {
                GenerationPick::Current => self.generation,
                GenerationPick::Older(back) => {
                    Generation(self.generation.0.saturating_sub(1 + u64::from(back % 3)))
                }
                GenerationPick::Newer => Generation(self.generation.0 + 1),
            }),
            Op::SignIn(pick) => {
                let credentials = match pick {
                    CredentialsPick::Token { expiry, refresh } => {
                        Credential::Token(self.token(expiry, refresh))
                    }
                    CredentialsPick::RefreshToken => Credential::RefreshToken(self.label()),
                    CredentialsPick::ClientCredentials { token } => {
                        Credential::ClientCredentials(token.map(|expiry| self.token(expiry, false)))
                    }
                    CredentialsPick::Stored {
                        expires_in,
                        lived,
                        refresh,
                    } => {
                        let mut spec = self.token(ExpiryPick::AtWall(expires_in), refresh);
                        let lived = Duration::from_millis(100 * u64::from(lived));
                        spec.issued_at = Some(self.wall_now() - lived);
                        Credential::Stored(spec)
                    }
                };
                Input::SignIn {
                    wall_now: self.wall_now(),
                    credentials,
                }
            }
            Op::SignOut => Input::SignOut,
            Op::LineageBusy(busy) => Input::LineageBusy(busy),
            Op::Rotated => Input::Rotated(self.label()),
            Op::LineageDead => Input::LineageDead,
            Op::Persisted {
                generation,
                outcome,
            } => Input::Persisted {
                generation: match generation {
                    GenerationPick::Current => self.generation,
                    GenerationPick::Older(back) => {
                        Generation(self.generation.0.saturating_sub(1 + u64::from(back % 3)))
                    }
                    GenerationPick::Newer => Generation(self.generation.0 + 1),
                },
                outcome: match outcome {
                    PersistPick::Stored => Stored::Stored,
                    PersistPick::Failed => Stored::Failed,
                    PersistPick::Conflict { expiry, refresh } => {
                        let mut spec = self.token(expiry, refresh);
                        // A stored token carries a wall-clock expiry and issue time.
                        if let Expiry::In(lifetime) = spec.expiry {
                            spec.expiry = Expiry::At(self.wall_now() + lifetime);
                            spec.issued_at = Some(self.wall_now());
                        }
                        Stored::Conflict(spec)
                    }
                },
            },
            Op::WallJump { ahead, seconds } => {
                let ms = 1000 * i64::from(seconds);
                self.wall_offset_ms += if ahead { ms } else { -ms };
                Input::WallClock {
                    wall_now: self.wall_now(),
                }
            }
        };
        self.feed(input)
    }

    fn set_clock(&mut self, clock: Duration) {
        self.clock = clock;
        self.high_water = self.high_water.max(clock);
    }

    /// Ends a run: fails the latest refresh (ignored unless it is in flight), lets time
    /// pass every deadline, and checks that every request got its outcome.
    pub fn finish(&mut self) -> Result<(), Violation> {
        if let Some(&attempt) = self.attempts.last() {
            self.feed(Input::RefreshResult {
                attempt,
                result: Err(RefreshFailure::transient("the run ends")),
            })?;
        }
        self.set_clock(self.high_water + END_OF_RUN);
        self.feed(Input::Timeout)?;
        self.checker.finish()
    }

    /// Feeds one concrete input at the driver's now to the machine and the model,
    /// compares them, and checks the rules.
    pub fn feed(&mut self, input: Input) -> Result<(), Violation> {
        let now = self.now();
        let step_number = self.trace.len() + 1;
        let request = self.drive(&input, now);
        let status_before = self.model.snapshot().status;
        let mut actions = Vec::new();
        while let Some(action) = self.machine.poll_action() {
            actions.push(Act::from_action(action));
        }
        let events: Vec<Event> = std::iter::from_fn(|| self.machine.poll_event()).collect();
        let observed = snapshot(&self.machine);
        let (predicted_request, predicted) = self.model.apply(&input, now);
        let expected = self.model.snapshot();
        if request != predicted_request || actions != predicted || observed != expected {
            return Err(Violation {
                step: step_number,
                kind: ViolationKind::ModelMismatch,
                detail: format!(
                    "input {input:?} at {:?} (driver clock)\n  machine: {request:?} {actions:#?}\n  \
                     model:   {predicted_request:?} {predicted:#?}\n  machine state: {}\n  \
                     model state:   {}",
                    now - self.start,
                    describe(&observed, self.start),
                    describe(&expected, self.start),
                ),
            });
        }
        let from_store = matches!(
            &input,
            Input::SignIn {
                credentials: Credential::Stored(_),
                ..
            } | Input::Persisted {
                outcome: Stored::Conflict(_),
                ..
            }
        );
        if let Err(detail) = events_match(
            &actions,
            &events,
            (&status_before, &observed.status),
            (self.generation, from_store),
        ) {
            return Err(Violation {
                step: step_number,
                kind: ViolationKind::ModelMismatch,
                detail: format!(
                    "input {input:?}: the events do not match: {detail}\n  actions: {actions:?}\n  events: {events:?}"
                ),
            });
        }
        let step = Step {
            input,
            now,
            request,
            actions,
            wakeup: observed.wakeup,
            fresh: observed.fresh,
        };
        self.checker.observe(&step)?;
        if let Some(id) = request {
            self.requests.push(id);
        }
        for act in &step.actions {
            match act {
                Act::StartRefresh { attempt, .. } => self.attempts.push(*attempt),
                Act::Persist { .. } => {}
                _ => {}
            }
        }
        if let Input::RefreshResult { attempt, result } = &step.input {
            self.last_result = Some((*attempt, result.clone()));
        }
        self.wakeup = observed.wakeup;
        self.generation = observed.generation;
        self.trace.push(step);
        Ok(())
    }

    fn drive(&mut self, input: &Input, now: Instant) -> Option<RequestId> {
        let machine = &mut self.machine;
        match input {
            Input::Request { deadline } => return Some(machine.handle_request(now, *deadline)),
            Input::Cancel(id) => machine.handle_cancel(now, *id),
            Input::RefreshResult { attempt, result } => {
                let result = match result {
                    Ok(spec) => Ok(spec.to_token()),
                    Err(failure) => Err(failure.clone()),
                };
                machine.handle_refresh_result(now, *attempt, result);
            }
            Input::Rejected(generation) => machine.handle_rejected(now, *generation),
            Input::SignIn {
                wall_now,
                credentials,
            } => machine.handle_sign_in(now, *wall_now, credentials.to_credentials()),
            Input::SignOut => machine.handle_sign_out(now),
            Input::Timeout => machine.handle_timeout(now),
            Input::Persisted {
                generation,
                outcome,
            } => machine.handle_persisted(now, *generation, outcome.to_persisted()),
            Input::WallClock { wall_now } => machine.handle_wall_clock(now, *wall_now),
            Input::LineageBusy(busy) => machine.handle_lineage_busy(now, *busy),
            Input::Rotated(label) => machine.handle_rotated(now, label.secret()),
            Input::LineageDead => machine.handle_lineage_dead(now, LINEAGE_DEAD.into()),
        }
        None
    }
}

/// The events of a step tell what its actions did: one `RefreshStarted` per
/// `StartRefresh` and one `TokenAdopted` per `Persist`, with the same ids; a
/// `RefreshOverdue` only for a cancelled exchange; and status changes that lead from the
/// status before the step to the status after it.
fn events_match(
    actions: &[Act],
    events: &[Event],
    (before, after): (&Status, &Status),
    (last_generation, from_store): (Generation, bool),
) -> Result<(), String> {
    let started: Vec<AttemptId> = actions
        .iter()
        .filter_map(|a| match a {
            Act::StartRefresh { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    let started_events: Vec<AttemptId> = events
        .iter()
        .filter_map(|e| match e {
            Event::RefreshStarted { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    if started != started_events {
        return Err(format!(
            "started {started:?}, events say {started_events:?}"
        ));
    }
    // New generations persisted (a save asked again is not an adoption), and one more
    // when the step hands over a token from the store (adopted without a Persist).
    let mut adopted: Vec<Generation> = actions
        .iter()
        .filter_map(|a| match a {
            Act::Persist { generation, .. } if *generation > last_generation => Some(*generation),
            _ => None,
        })
        .collect();
    let from_store_event = events.iter().find_map(|e| match e {
        Event::TokenAdopted {
            generation,
            attempt: None,
        } if from_store => Some(*generation),
        _ => None,
    });
    if let Some(generation) = from_store_event {
        adopted.push(generation);
    }
    let adopted_events: Vec<Generation> = events
        .iter()
        .filter_map(|e| match e {
            Event::TokenAdopted { generation, .. } => Some(*generation),
            _ => None,
        })
        .collect();
    if adopted != adopted_events {
        return Err(format!(
            "persisted {adopted:?}, events say {adopted_events:?}"
        ));
    }
    for event in events {
        if let Event::RefreshOverdue { attempt } = event
            && !actions.contains(&Act::CancelRefresh { attempt: *attempt })
        {
            return Err(format!("{attempt} overdue without a CancelRefresh"));
        }
    }
    let mut status = before.clone();
    for event in events {
        if let Event::StatusChanged { status: new } = event {
            if *new == status {
                return Err(format!("a status change to the same {new:?}"));
            }
            status = new.clone();
        }
    }
    if status != *after {
        return Err(format!(
            "the status changes end at {status:?}, the status is {after:?}"
        ));
    }
    Ok(())
}

/// What the machine's getters say, in the model's terms.
fn snapshot(machine: &TokenMachine) -> Snapshot {
    Snapshot {
        now: machine.now(),
        status: machine.status().clone(),
        generation: machine.generation(),
        parked: machine.parked_len(),
        in_flight: machine.refresh_in_flight(),
        backoff_until: machine.backoff_until(),
        last_failure: machine.last_failure().map(str::to_owned),
        fresh: machine
            .fresh_token()
            .map(|(token, until)| (token.generation, until)),
        wakeup: machine.poll_timeout(),
        durable: machine.is_durable(),
    }
}

/// A snapshot with instants as offsets from the start, for reading.
fn describe(s: &Snapshot, start: Instant) -> String {
    let at = |t: Instant| t.saturating_duration_since(start);
    format!(
        "now {:?}, {:?}, {}, {} parked, in flight {:?}, backoff until {:?}, last failure {:?}, \
         fresh {:?}, wake-up {:?}",
        at(s.now),
        s.status,
        s.generation,
        s.parked,
        s.in_flight,
        s.backoff_until.map(at),
        s.last_failure,
        s.fresh.map(|(g, until)| (g, until.map(at))),
        s.wakeup.map(|w| (at(w.at), w.reason)),
    )
}
