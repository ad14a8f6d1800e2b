//! The background task: the one place that runs refresh exchanges and owns the timer.
//!
//! It sleeps until the kernel's next wake-up (re-arming its one sleep only when that
//! instant changes), runs the exchanges the kernel asks for, cancels the ones it asks to
//! cancel, feeds every result back (a cancelled exchange's as a transient failure), and
//! ends when the last handle is dropped and no exchange is left running.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{AbortHandle, AbortRegistration, Abortable};
use futures::stream::{FuturesUnordered, StreamExt};
use silent_refresh::{AttemptId, RefreshFailure, Secret, Token};
use silent_refresh_driver::kernel::{Prepared, Start, StoreIo};
use silent_refresh_driver::observe::Observer;
use silent_refresh_driver::store::StoreLock;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::refresher::Refresher;
use crate::runtime::{NotifyWake, TokioKernel};

/// Stops the kernel when the task ends, however it ends (also when its runtime shuts
/// down), so no caller waits for an answer that cannot come.
struct StopOnDrop(Arc<TokioKernel>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Runs until `shutdown` resolves (its sender, held by the handles, is dropped) and the
/// exchange on the wire, if any, has ended: a credential the server rotated still
/// reaches the token-change callback. After shutdown it starts no new exchange.
pub(crate) async fn run<R: Refresher>(
    kernel: Arc<TokioKernel>,
    wake: Arc<NotifyWake>,
    refresher: R,
    observer: Arc<Observer>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let _stop = StopOnDrop(kernel.clone());
    let mut in_flight = FuturesUnordered::new();
    let mut aborts: HashMap<AttemptId, AbortHandle> = HashMap::new();
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    let mut stopping = false;
    // Store I/O runs on the blocking pool, one piece at a time, in order.
    let mut store_queue: VecDeque<StoreIo> = VecDeque::new();
    let mut store_task: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let work = kernel.take_work();
        let next = work.next;
        store_queue.extend(work.store);
        if store_task.is_none()
            && let Some(io) = store_queue.pop_front()
        {
            let kernel = kernel.clone();
            store_task = Some(tokio::task::spawn_blocking(move || kernel.store_io(io)));
        }
        for attempt in work.cancels {
            if let Some(abort) = aborts.remove(&attempt) {
                abort.abort();
            }
        }
        for Start {
            attempt,
            refresh_token,
        } in work.starts
        {
            if stopping {
                continue; // nobody is left to use the token
            }
            let (abort, registration) = AbortHandle::new_pair();
            aborts.insert(attempt, abort);
            in_flight.push(
                exchange(
                    &refresher,
                    kernel.clone(),
                    attempt,
                    refresh_token,
                    registration,
                )
                .instrument(observer.exchange_span(attempt)),
            );
        }
        if stopping && in_flight.is_empty() && store_task.is_none() && store_queue.is_empty() {
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
            Some((attempt, result, lock)) = in_flight.next(), if !in_flight.is_empty() => {
                aborts.remove(&attempt);
                kernel.exchange_result(attempt, result, lock);
            }
            () = async {
                if let Some(task) = store_task.as_mut() {
                    // A panic in the store is reported by the kernel as a failed save.
                    let _ = task.await;
                }
            }, if store_task.is_some() => {
                store_task = None;
            }
            () = &mut sleep, if armed.is_some() => {
                // Re-arm on the next turn even if the kernel names the same instant.
                armed = None;
                kernel.timeout();
            }
            () = wake.0.notified() => {}
        }
    }
    tracing::debug!("token source dropped; background task ends");
}

/// The result of one exchange, with the store's lock between processes it ran under.
type Exchanged = (
    AttemptId,
    Result<Token, RefreshFailure>,
    Option<Box<dyn StoreLock>>,
);

/// One refresh exchange, until it answers or is cancelled (a transient failure whose
/// outcome the server may know better than we do); a panicking refresher counts as a
/// transient failure rather than taking the task down. With a store shared between
/// processes it first takes the store's lock and re-reads it, on the blocking pool: a
/// sibling's fresh token is adopted instead of spending the credential again.
async fn exchange<R: Refresher>(
    refresher: &R,
    kernel: Arc<TokioKernel>,
    attempt: AttemptId,
    refresh_token: Option<Secret>,
    registration: AbortRegistration,
) -> Exchanged {
    let run = async {
        let prepared = if kernel.store().is_some() {
            let sent = refresh_token.clone();
            let kernel = kernel.clone();
            tokio::task::spawn_blocking(move || kernel.prepare_exchange(sent.as_ref()))
                .await
                .unwrap_or_else(|_| {
                    Prepared::Failed(RefreshFailure::transient(
                        "the token store panicked while locking",
                    ))
                })
        } else {
            Prepared::Exchange(None)
        };
        match prepared {
            Prepared::Adopt(token, lock) => (Ok(*token), Some(lock)),
            Prepared::Failed(failure) => (Err(failure), None),
            Prepared::Exchange(lock) => {
                let refresh =
                    std::panic::AssertUnwindSafe(refresher.refresh(refresh_token)).catch_unwind();
                let result = match refresh.await {
                    Ok(result) => result,
                    Err(_panic) => Err(RefreshFailure::transient("the refresher panicked")),
                };
                (result, lock)
            }
        }
    };
    match Abortable::new(run, registration).await {
        Ok((result, lock)) => (attempt, result, lock),
        Err(_aborted) => (
            attempt,
            Err(RefreshFailure::transient(
                "the refresh exchange was cancelled (past its deadline, or superseded by new \
                 credentials)",
            )),
            None,
        ),
    }
}
