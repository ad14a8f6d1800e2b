//! The background task: the one place that runs refreshes and owns the timer.
//!
//! It sleeps until the machine's next wake-up (re-arming its one sleep only when that
//! instant changes), runs the refresh exchanges the machine asks for, cancels the ones it
//! asks to cancel, feeds every result back (a cancelled exchange's as a transient
//! failure), and ends when the last handle is dropped and no exchange is left running.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{AbortHandle, Abortable};
use futures::stream::{FuturesUnordered, StreamExt};
use silent_refresh::{AttemptId, RefreshFailure, Secret, Token};
use tokio::sync::oneshot;

use crate::refresher::Refresher;
use crate::shared::{Shared, Start, Work};

/// Marks the shared state when the task ends, however it ends (also when its runtime
/// shuts down), so no request waits for an answer that cannot come.
struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.driver_stopped();
    }
}

/// Runs until `shutdown` resolves (its sender, held by the handles, is dropped) and the
/// exchange on the wire, if any, has ended.
///
/// After shutdown it still waits for that exchange (which the machine cancels at its
/// deadline) and feeds its result, so that a credential the server rotated reaches the
/// token-change callback instead of being lost; it starts no new one.
pub(crate) async fn run<R: Refresher>(
    shared: Arc<Shared>,
    refresher: R,
    mut shutdown: oneshot::Receiver<()>,
) {
    let _stop = StopOnDrop(shared.clone());
    let mut in_flight = FuturesUnordered::new();
    let mut aborts: HashMap<AttemptId, AbortHandle> = HashMap::new();
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    let mut stopping = false;
    loop {
        let Work {
            starts,
            cancels,
            next,
        } = shared.take_work();
        for attempt in cancels {
            if let Some(abort) = aborts.remove(&attempt) {
                abort.abort();
            }
        }
        for Start {
            attempt,
            refresh_token,
        } in starts
        {
            if stopping {
                // Nobody is left to use the token; the machine is dropped with the task.
                continue;
            }
            tracing::debug!(attempt = attempt.0, "token refresh started");
            let (abort, registration) = AbortHandle::new_pair();
            aborts.insert(attempt, abort);
            in_flight.push(exchange(&refresher, attempt, refresh_token, registration));
        }
        if stopping && in_flight.is_empty() {
            break;
        }
        if next != armed {
            if let Some(at) = next {
                sleep.as_mut().reset(tokio::time::Instant::from_std(at));
            }
            armed = next;
        }
        tokio::select! {
            biased;
            _ = &mut shutdown, if !stopping => stopping = true,
            Some((attempt, result)) = in_flight.next(), if !in_flight.is_empty() => {
                aborts.remove(&attempt);
                shared.refresh_result(attempt, result);
            }
            () = &mut sleep, if armed.is_some() => {
                // Re-arm on the next turn even if the machine names the same instant.
                armed = None;
                shared.timeout();
            }
            () = shared.work_changed() => {}
        }
    }
    tracing::debug!("token source dropped; background task ends");
}

/// One refresh exchange, until it answers or is cancelled (a transient failure whose
/// outcome the server may know better than we do); a panicking refresher counts as a
/// transient failure rather than taking the task down.
async fn exchange<R: Refresher>(
    refresher: &R,
    attempt: AttemptId,
    refresh_token: Option<Secret>,
    registration: futures::future::AbortRegistration,
) -> (AttemptId, Result<Token, RefreshFailure>) {
    let refresh = std::panic::AssertUnwindSafe(refresher.refresh(refresh_token)).catch_unwind();
    let result = match Abortable::new(refresh, registration).await {
        Ok(Ok(result)) => result,
        Ok(Err(_panic)) => Err(RefreshFailure::transient("the refresher panicked")),
        Err(_aborted) => Err(RefreshFailure::transient(
            "the refresh exchange was cancelled (past its deadline, or superseded by new \
             credentials)",
        )),
    };
    (attempt, result)
}
