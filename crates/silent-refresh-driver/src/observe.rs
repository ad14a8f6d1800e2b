//! What a token source tells about its refreshes besides its log lines: a `tracing`
//! span around each refresh exchange, carrying its attempt id and its trigger, fed by
//! the core's events in one place for every adapter.
//!
//! No span field carries a secret: attempt ids, triggers and outcomes only.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use silent_refresh::{AttemptId, Event, Trigger};

use crate::kernel::{Kernel, Waiter};

/// How many started attempts are remembered for their spans: one is on the wire at a
/// time, and a few more may be remembered past their deadline.
const REMEMBERED: usize = 8;

/// Remembers why each refresh started, from the core's events, so that the adapter can
/// open its exchange's span with the attempt id and the trigger.
#[derive(Debug, Default)]
pub struct Observer {
    started: Mutex<VecDeque<(AttemptId, Trigger)>>,
}

impl Observer {
    /// An observer fed by `kernel`'s events from now on (attach it before the first
    /// input, so that no refresh start is missed).
    pub fn attach<W: Waiter>(kernel: &Kernel<W>) -> Arc<Self> {
        let observer = Arc::new(Self::default());
        let fed = observer.clone();
        kernel.subscribe(move |event| fed.on_event(event));
        observer
    }

    /// The span to run the exchange of `attempt` in: `refresh_exchange`, with the
    /// fields `attempt` and `trigger` (`window`, `no_token`, `rejected`, `sign_in`;
    /// `unknown` for an attempt this observer did not see start).
    #[must_use]
    pub fn exchange_span(&self, attempt: AttemptId) -> tracing::Span {
        let trigger = self
            .lock()
            .iter()
            .find(|(a, _)| *a == attempt)
            .map_or("unknown", |(_, trigger)| trigger.as_str());
        tracing::info_span!("refresh_exchange", attempt = attempt.0, trigger)
    }

    /// Takes in one of the core's events.
    pub fn on_event(&self, event: &Event) {
        if let Event::RefreshStarted { attempt, trigger } = event {
            let mut started = self.lock();
            if started.len() >= REMEMBERED {
                started.pop_front();
            }
            started.push_back((*attempt, *trigger));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(AttemptId, Trigger)>> {
        self.started.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
