//! The background task: the one place that runs refreshes and owns the timer.
//!
//! It sleeps until the machine's next wake-up (re-arming its one sleep only when that
//! instant changes), runs the refreshes the machine asks for, feeds their results
//! back, and ends when the last handle is dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use silent_refresh::{AttemptId, RefreshFailure, Secret, Token};
use tokio::sync::oneshot;

use crate::refresher::Refresher;
use crate::shared::{Shared, Start};

/// A refresh the machine gave up on (after `refresh_timeout`) is still awaited this many
/// times as long in all, since with rotating credentials its late result may be the
/// only one the server still honours; after that it is dropped.
const LATE_RESULT_FACTOR: u32 = 4;

/// Marks the shared state when the task ends, however it ends (also when its runtime
/// shuts down), so no request waits for an answer that cannot come.
struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.driver_stopped();
    }
}

/// Runs until `shutdown` resolves (its sender, held by the handles, is dropped).
///
/// At shutdown it still waits for the refreshes in flight (bounded as above) and feeds
/// their results, so that a credential the server rotated reaches the token-change
/// callback instead of being lost.
pub(crate) async fn run<R: Refresher>(
    shared: Arc<Shared>,
    refresher: R,
    mut shutdown: oneshot::Receiver<()>,
) {
    let _stop = StopOnDrop(shared.clone());
    let give_up = shared.refresh_timeout().saturating_mul(LATE_RESULT_FACTOR);
    let mut in_flight = FuturesUnordered::new();
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    loop {
        let (starts, next) = shared.take_work();
        for Start {
            attempt,
            refresh_token,
        } in starts
        {
            tracing::debug!(attempt = attempt.0, "token refresh started");
            in_flight.push(attempt_refresh(&refresher, attempt, refresh_token, give_up));
        }
        if next != armed {
            if let Some(at) = next {
                sleep.as_mut().reset(tokio::time::Instant::from_std(at));
            }
            armed = next;
        }
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some((attempt, result)) = in_flight.next(), if !in_flight.is_empty() => {
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
    while let Some((attempt, result)) = in_flight.next().await {
        shared.refresh_result(attempt, result);
    }
    tracing::debug!("token source dropped; background task ends");
}

/// One refresh attempt, bounded by `give_up`; a panicking refresher counts as a
/// transient failure rather than taking the task down.
async fn attempt_refresh<R: Refresher>(
    refresher: &R,
    attempt: AttemptId,
    refresh_token: Option<Secret>,
    give_up: Duration,
) -> (AttemptId, Result<Token, RefreshFailure>) {
    let refresh = std::panic::AssertUnwindSafe(refresher.refresh(refresh_token)).catch_unwind();
    let result = match tokio::time::timeout(give_up, refresh).await {
        Ok(Ok(result)) => result,
        Ok(Err(_panic)) => Err(RefreshFailure::transient("the refresher panicked")),
        Err(_elapsed) => Err(RefreshFailure::transient(
            "the refresh never answered; stopped waiting for its result",
        )),
    };
    (attempt, result)
}
