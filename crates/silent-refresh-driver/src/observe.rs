//! What a token source tells about its refreshes besides its log lines, fed by the
//! core's events in one place for every adapter:
//!
//! - a `tracing` span around each refresh exchange, carrying its attempt id and its
//!   trigger;
//! - with the `metrics` feature, through the [`metrics`](https://docs.rs/metrics)
//!   facade (install any recorder: Prometheus, OpenTelemetry, statsd…):
//!   - `silent_refresh.refresh.duration` (histogram, seconds), from the start of a
//!     refresh to its result, on the source's clock, labelled `outcome`: `success`,
//!     `transient`, `terminal`, `misconfigured`, `unreachable` (no connection to the
//!     token endpoint), `cancelled` (the exchange passed its deadline, or new
//!     credentials superseded it, and brought no token);
//!   - `silent_refresh.refresh.count` (counter), each refresh started, labelled
//!     `trigger`: `window`, `no_token`, `rejected`, `sign_in`;
//!   - `silent_refresh.requests.waiting` (gauge), the callers waiting for a token,
//!     summed over the process's sources, as it stood at the source's last event;
//!   - `silent_refresh.store.save_failures` (counter), each failed save of a token.
//!
//! No span field and no metric label carries a secret: attempt ids, triggers and
//! outcomes only, from fixed sets of names.

use silent_refresh::time::Instant;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use silent_refresh::{AttemptId, Event, FailureKind, Status, Trigger};

use crate::kernel::{Kernel, Waiter};

/// How many started attempts are remembered: one is on the wire at a time, and a few
/// more may be remembered past their deadline.
const REMEMBERED: usize = 8;

/// The name of the refresh duration histogram (seconds, label `outcome`).
pub const REFRESH_DURATION: &str = "silent_refresh.refresh.duration";
/// The name of the refresh counter (label `trigger`).
pub const REFRESH_COUNT: &str = "silent_refresh.refresh.count";
/// The name of the gauge of callers waiting for a token.
pub const REQUESTS_WAITING: &str = "silent_refresh.requests.waiting";
/// The name of the counter of failed saves.
pub const SAVE_FAILURES: &str = "silent_refresh.store.save_failures";

/// Remembers why and when each refresh started, from the core's events, so that the
/// adapter can open its exchange's span with the attempt id and the trigger, and (with
/// the `metrics` feature) the refresh's duration and outcome can be recorded.
pub struct Observer {
    state: Mutex<State>,
    /// The source's clock and its number of waiting callers (`None` once the source is
    /// gone).
    read: Box<dyn Fn() -> Option<(Instant, usize)> + Send + Sync>,
}

#[derive(Default)]
struct State {
    started: VecDeque<Started>,
    /// The last status the core reported is `Unreachable`: a transient failure that
    /// comes with it is a failure to connect.
    unreachable: bool,
    /// The waiting callers last added to the gauge.
    waiting: usize,
}

/// A refresh that started.
struct Started {
    attempt: AttemptId,
    trigger: Trigger,
    at: Option<Instant>,
    /// It passed its deadline: the driver was asked to cancel it.
    overdue: bool,
}

impl Observer {
    /// An observer fed by `kernel`'s events from now on (attach it before the first
    /// input, so that no refresh start is missed). It reads the kernel's clock for
    /// durations, and holds no strong reference to it.
    pub fn attach<W: Waiter>(kernel: &Arc<Kernel<W>>) -> Arc<Self> {
        let weak = Arc::downgrade(kernel);
        let observer = Arc::new(Self {
            state: Mutex::new(State::default()),
            read: Box::new(move || {
                let kernel = weak.upgrade()?;
                let now = kernel.clock().now();
                Some((now, kernel.snapshot().waiting))
            }),
        });
        describe();
        let fed = observer.clone();
        kernel.subscribe(move |event| {
            fed.on_event(event);
            true
        });
        observer
    }

    /// The span to run the exchange of `attempt` in: `refresh_exchange`, with the
    /// fields `attempt` and `trigger` (`window`, `no_token`, `rejected`, `sign_in`;
    /// `unknown` for an attempt this observer did not see start).
    #[must_use]
    pub fn exchange_span(&self, attempt: AttemptId) -> tracing::Span {
        let trigger = self
            .lock()
            .started
            .iter()
            .find(|s| s.attempt == attempt)
            .map_or("unknown", |s| s.trigger.as_str());
        tracing::info_span!("refresh_exchange", attempt = attempt.0, trigger)
    }

    /// Takes in one of the core's events.
    pub fn on_event(&self, event: &Event) {
        let read = (self.read)();
        let now = read.map(|(now, _)| now);
        let mut state = self.lock();
        match event {
            Event::RefreshStarted { attempt, trigger } => {
                if state.started.len() >= REMEMBERED {
                    state.started.pop_front();
                }
                state.started.push_back(Started {
                    attempt: *attempt,
                    trigger: *trigger,
                    at: now,
                    overdue: false,
                });
                record::started(*trigger);
            }
            Event::RefreshOverdue { attempt } => {
                if let Some(started) = state.started.iter_mut().find(|s| s.attempt == *attempt) {
                    started.overdue = true;
                }
            }
            Event::StatusChanged { status } => {
                state.unreachable = matches!(status, Status::Unreachable { .. });
            }
            Event::TokenAdopted {
                attempt: Some(attempt),
                ..
            } => state.finish(*attempt, "success", now),
            Event::RefreshFailed { attempt, kind, .. } => {
                let overdue = state
                    .started
                    .iter()
                    .any(|s| s.attempt == *attempt && s.overdue);
                let outcome = match kind {
                    FailureKind::Transient if overdue => "cancelled",
                    FailureKind::Transient if state.unreachable => "unreachable",
                    FailureKind::Transient => "transient",
                    FailureKind::Terminal => "terminal",
                    FailureKind::Misconfigured => "misconfigured",
                };
                state.finish(*attempt, outcome, now);
            }
            Event::ResultDropped { attempt } => state.finish(*attempt, "cancelled", now),
            Event::PersistFailed { .. } => record::save_failed(),
            _ => {}
        }
        if let Some((_, waiting)) = read {
            record::waiting(state.waiting, waiting);
            state.waiting = waiting;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// The refresh of `attempt` ended with `outcome` at `now`: its duration is recorded
    /// once (a second result for it, or one for an attempt not seen start, records
    /// nothing).
    fn finish(&mut self, attempt: AttemptId, outcome: &'static str, now: Option<Instant>) {
        let Some(at) = self.started.iter().position(|s| s.attempt == attempt) else {
            return;
        };
        let started = self.started.remove(at);
        if let (Some(Some(start)), Some(now)) = (started.map(|s| s.at), now) {
            record::finished(outcome, now.saturating_duration_since(start));
        }
    }
}

impl Drop for Observer {
    /// The source is gone: its waiting callers leave the gauge.
    fn drop(&mut self) {
        let state = self.lock();
        record::waiting(state.waiting, 0);
    }
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Observer")
            .field("started", &state.started.len())
            .field("unreachable", &state.unreachable)
            .finish_non_exhaustive()
    }
}

/// Describes the metrics to the installed recorder (units and help texts).
fn describe() {
    #[cfg(feature = "metrics")]
    {
        metrics::describe_histogram!(
            REFRESH_DURATION,
            metrics::Unit::Seconds,
            "How long a refresh took, from its start to its result, by outcome"
        );
        metrics::describe_counter!(REFRESH_COUNT, "Refreshes started, by trigger");
        metrics::describe_gauge!(REQUESTS_WAITING, "Callers waiting for a token");
        metrics::describe_counter!(SAVE_FAILURES, "Failed saves of a token to the store");
    }
}

/// The metrics, through the `metrics` facade; nothing without the `metrics` feature.
#[cfg(feature = "metrics")]
mod record {
    use std::time::Duration;

    use silent_refresh::Trigger;

    use super::{REFRESH_COUNT, REFRESH_DURATION, REQUESTS_WAITING, SAVE_FAILURES};

    pub(super) fn started(trigger: Trigger) {
        metrics::counter!(REFRESH_COUNT, "trigger" => trigger.as_str()).increment(1);
    }

    pub(super) fn finished(outcome: &'static str, took: Duration) {
        metrics::histogram!(REFRESH_DURATION, "outcome" => outcome).record(took.as_secs_f64());
    }

    pub(super) fn save_failed() {
        metrics::counter!(SAVE_FAILURES).increment(1);
    }

    /// Moves the process-wide gauge by this source's change, so several sources add up.
    #[allow(clippy::cast_precision_loss)] // a count of callers, far below 2^52
    pub(super) fn waiting(before: usize, now: usize) {
        if now > before {
            metrics::gauge!(REQUESTS_WAITING).increment((now - before) as f64);
        } else if now < before {
            metrics::gauge!(REQUESTS_WAITING).decrement((before - now) as f64);
        }
    }
}

/// Without the `metrics` feature: nothing is recorded.
#[cfg(not(feature = "metrics"))]
mod record {
    use std::time::Duration;

    use silent_refresh::Trigger;

    pub(super) fn started(_: Trigger) {}
    pub(super) fn finished(_: &'static str, _: Duration) {}
    pub(super) fn save_failed() {}
    pub(super) fn waiting(_: usize, _: usize) {}
}
