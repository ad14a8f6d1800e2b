//! The driver: the one future that runs a source's exchanges and owns its timer,
//! written once for every [`Runtime`].
//!
//! Each turn it answers its doorbell (registering its waker first, so no ring is
//! lost), takes the kernel's work, and then:
//! - runs the exchange loop: for each refresh to start, *prepare* (the store's lock
//!   between processes and a re-read of the store, as store I/O off the callers and
//!   the async workers), *exchange* (the runtime's refresher), and feed the *result*
//!   to the kernel, which queues the *save* of the token it brings;
//! - runs the store I/O, one piece at a time, in order, off the callers and the async
//!   workers;
//! - cancels what the kernel asks to cancel (a superseded exchange, or one past its
//!   hard limit), where the runtime can;
//! - sleeps until the kernel's next wake-up, re-arming its one timer only when that
//!   instant changes.
//!
//! It ends once the source's handles are gone and nothing is left running: an
//! exchange on the wire still reports its result, so a rotated credential still
//! reaches the callback and the store. However it ends (also when its runtime shuts
//! down and drops it), the kernel is stopped, so no caller waits for an answer that
//! cannot come.

use silent_refresh::time::Instant;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use silent_refresh::{AttemptId, KeyId, RefreshFailure, Secret, Token};
use silent_refresh_oauth2::Target;

use crate::Error;
use crate::kernel::{Kernel, Prepared, Start, StoreIo, Waiter};
use crate::observe::Observer;
use crate::runtime::{BlockingWork, Exchanger, Runtime};
use crate::wake::Doorbell;

/// Turns of the loop in one poll before the driver yields to its runtime (and asks to
/// be polled again): a kernel that keeps finding work cannot hold a worker.
const TURNS_PER_POLL: usize = 64;

/// Why an exchange the driver cancelled has no answer.
const CANCELLED: &str = "the refresh exchange was cancelled (superseded by new credentials, or \
     past its hard limit): its outcome is unknown";

/// How a runtime runs a source's driver: a task of its own (tokio), a thread (threads).
/// A trait apart from [`Runtime`], so that the seam's traits do not name the driver; a
/// simulation that steps its drivers by hand needs none.
pub trait Spawn: Runtime {
    /// Spawns `driver`; it runs until it returns (the source's handles are gone and
    /// nothing is left running).
    ///
    /// # Errors
    ///
    /// Why it could not be spawned: [`Error::NoRuntime`], [`Error::Spawn`].
    fn spawn<W: Waiter>(&self, driver: Driver<Self, W>) -> Result<(), Error>;
}

/// The driver of one token source on the runtime `Rt`: a future to spawn (or, in a
/// simulation, to poll by hand).
pub struct Driver<Rt: Runtime, W: Waiter> {
    kernel: Arc<Kernel<W>>,
    runtime: Rt,
    refresher: Arc<Rt::Refresher>,
    bell: Arc<Doorbell>,
    observer: Arc<Observer>,
    exchanges: Vec<Running<Rt>>,
    store_queue: VecDeque<StoreIo>,
    store_job: Option<Rt::Blocking<()>>,
    timer: Option<Rt::Sleep>,
    /// The instant the timer is armed for.
    armed: Option<Instant>,
    /// The source's handles are gone: nothing new starts.
    stopping: bool,
}

/// One exchange of the exchange loop.
struct Running<Rt: Runtime> {
    key: KeyId,
    target: Arc<Target>,
    attempt: AttemptId,
    refresh_token: Option<Secret>,
    span: tracing::Span,
    step: Step<Rt>,
}

enum Step<Rt: Runtime> {
    /// Taking the store's lock and re-reading the store (store I/O).
    Preparing(Rt::Blocking<Prepared>),
    /// On the wire.
    OnWire(Rt::Exchange),
}

impl<Rt: Runtime, W: Waiter> Driver<Rt, W> {
    /// The driver of `kernel`: it runs exchanges with `refresher` on `runtime`, and is
    /// woken through `bell` (the kernel's [`Wake`](crate::wake::Wake), which the
    /// source's last handle closes). `observer` names each exchange's span.
    pub fn new(
        kernel: Arc<Kernel<W>>,
        runtime: Rt,
        refresher: Arc<Rt::Refresher>,
        bell: Arc<Doorbell>,
        observer: Arc<Observer>,
    ) -> Self {
        Self {
            kernel,
            runtime,
            refresher,
            bell,
            observer,
            exchanges: Vec::new(),
            store_queue: VecDeque::new(),
            store_job: None,
            timer: None,
            armed: None,
            stopping: false,
        }
    }

    /// One turn of the loop, for a simulation that steps its drivers by hand (with
    /// runtimes whose futures it completes itself): whether it did anything.
    pub fn step(&mut self, cx: &mut Context<'_>) -> bool {
        self.turn(cx)
    }

    /// One turn; whether it did anything.
    fn turn(&mut self, cx: &mut Context<'_>) -> bool {
        if self.bell.answer(cx.waker()).closed {
            self.stopping = true;
        }
        let work = self.kernel.take_work();
        let mut progress =
            !work.starts.is_empty() || !work.cancels.is_empty() || !work.store.is_empty();
        self.store_queue.extend(work.store);
        for (key, attempt) in work.cancels {
            self.cancel(key, attempt);
        }
        for start in work.starts {
            self.start(start);
        }
        progress |= self.poll_store(cx);
        progress |= self.poll_exchanges(cx);
        progress |= self.poll_timer(cx, work.next);
        progress
    }

    fn idle(&self) -> bool {
        self.exchanges.is_empty() && self.store_job.is_none() && self.store_queue.is_empty()
    }

    /// Prepares the exchange (with a store), or sends it.
    fn start(
        &mut self,
        Start {
            key,
            target,
            attempt,
            refresh_token,
        }: Start,
    ) {
        if self.stopping {
            // Nobody is left to use the token; nothing goes on the wire.
            self.kernel.exchange_result_for(
                key,
                attempt,
                Err(RefreshFailure::transient("the token source is gone")),
            );
            return;
        }
        if !target.is_default() && !self.refresher.supports_targets() {
            // Never the default token in its place: a caller of one API would get a
            // token for another.
            self.kernel.exchange_result_for(
                key,
                attempt,
                Err(RefreshFailure::misconfigured(
                    "this refresher cannot ask for a token for a resource, an audience or \
                     a scope of its own: use an OAuth2Refresher for `for_target`",
                )),
            );
            return;
        }
        let span = self.observer.exchange_span(attempt);
        let step = if let Some(store) = self.kernel.store() {
            let (kernel, sent) = (self.kernel.clone(), refresh_token.clone());
            Step::Preparing(
                self.runtime
                    .run_store(store, BlockingWork::StoreLock, move || {
                        kernel.prepare_exchange_for(key, attempt, sent.as_ref())
                    }),
            )
        } else {
            let _entered = span.enter();
            Step::OnWire(exchange(&*self.refresher, refresh_token.clone(), &target))
        };
        self.exchanges.push(Running {
            key,
            target,
            attempt,
            refresh_token,
            span,
            step,
        });
    }

    fn cancel(&mut self, key: KeyId, attempt: AttemptId) {
        if !Rt::CANCELS_EXCHANGES {
            // A blocking call cannot be cut short: the refresher's own timeout ends it,
            // and its result ends the exchange.
            tracing::debug!(
                attempt = attempt.0,
                "cannot cancel a blocking exchange; waiting for it to return"
            );
            return;
        }
        if let Some(at) = self
            .exchanges
            .iter()
            .position(|r| (r.key, r.attempt) == (key, attempt))
        {
            // Dropped: the exchange is cut short. A store job still preparing it runs
            // on, and the kernel releases the lock it takes.
            drop(self.exchanges.remove(at));
            self.kernel.exchange_result_for(
                key,
                attempt,
                Err(RefreshFailure::transient(CANCELLED)),
            );
        }
    }

    /// Runs the store I/O, one piece at a time, in order.
    fn poll_store(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        loop {
            if self.store_job.is_none() {
                let Some(io) = self.store_queue.pop_front() else {
                    return progress;
                };
                let kernel = self.kernel.clone();
                let job = move || kernel.store_io(io);
                self.store_job = Some(match self.kernel.store() {
                    Some(store) => self.runtime.run_store(store, BlockingWork::StoreIo, job),
                    None => self.runtime.run_blocking(BlockingWork::StoreIo, job),
                });
            }
            let Some(job) = self.store_job.as_mut() else {
                return progress;
            };
            // A panic in the store is reported by the kernel as a failed save.
            if Pin::new(job).poll(cx).is_pending() {
                return progress;
            }
            self.store_job = None;
            progress = true;
        }
    }

    /// Moves each exchange on: prepared → on the wire → its result to the kernel.
    fn poll_exchanges(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        let mut at = 0;
        while at < self.exchanges.len() {
            let running = &mut self.exchanges[at];
            let _entered = running.span.enter();
            let result = match &mut running.step {
                Step::Preparing(job) => match Pin::new(job).poll(cx) {
                    Poll::Pending => None,
                    Poll::Ready(Some(Prepared::Exchange)) => {
                        let sent = running.refresh_token.take();
                        running.step =
                            Step::OnWire(exchange(&*self.refresher, sent, &running.target));
                        progress = true;
                        // Polled right away, on the next round of this loop.
                        continue;
                    }
                    // Another process rotated the credential: sent with the store's.
                    Poll::Ready(Some(Prepared::ExchangeWith(credential))) => {
                        running.refresh_token = None;
                        running.step = Step::OnWire(exchange(
                            &*self.refresher,
                            Some(credential),
                            &running.target,
                        ));
                        progress = true;
                        continue;
                    }
                    Poll::Ready(Some(Prepared::Adopt(token))) => Some(Ok(*token)),
                    Poll::Ready(Some(Prepared::Failed(failure))) => Some(Err(failure)),
                    Poll::Ready(None) => Some(Err(RefreshFailure::transient(
                        "the token store panicked while locking",
                    ))),
                },
                Step::OnWire(exchange) => poll_exchange(exchange, cx),
            };
            drop(_entered);
            match result {
                None => at += 1,
                Some(result) => {
                    let running = self.exchanges.remove(at);
                    self.kernel
                        .exchange_result_for(running.key, running.attempt, result);
                    progress = true;
                }
            }
        }
        progress
    }

    /// Re-arms the timer when the kernel's wake-up changed; feeds the kernel the time
    /// when it fires.
    fn poll_timer(&mut self, cx: &mut Context<'_>, next: Option<Instant>) -> bool {
        if next != self.armed {
            let now = self.kernel.clock().now();
            self.timer = next.map(|at| self.runtime.sleep(at.saturating_duration_since(now)));
            self.armed = next;
        }
        let Some(timer) = self.timer.as_mut() else {
            return false;
        };
        if Pin::new(timer).poll(cx).is_pending() {
            return false;
        }
        // Re-armed on the next turn, even for the same instant.
        self.timer = None;
        self.armed = None;
        self.kernel.timeout();
        true
    }
}

/// Starts the exchange on the wire, for the default token or another key's.
fn exchange<Ex, R: Exchanger<Ex> + ?Sized>(
    refresher: &R,
    refresh_token: Option<Secret>,
    target: &Target,
) -> Ex {
    if target.is_default() {
        refresher.exchange(refresh_token)
    } else {
        refresher.exchange_for(refresh_token, target)
    }
}

/// Polls an exchange; a panicking refresher is a transient failure, never a driver
/// taken down.
fn poll_exchange<E>(exchange: &mut E, cx: &mut Context<'_>) -> Option<Result<Token, RefreshFailure>>
where
    E: Future<Output = Result<Token, RefreshFailure>> + Unpin,
{
    match catch_unwind(AssertUnwindSafe(|| Pin::new(exchange).poll(cx))) {
        Ok(Poll::Pending) => None,
        Ok(Poll::Ready(result)) => Some(result),
        Err(_panic) => Some(Err(RefreshFailure::transient("the refresher panicked"))),
    }
}

impl<Rt: Runtime, W: Waiter> Future for Driver<Rt, W> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        for _ in 0..TURNS_PER_POLL {
            let progress = this.turn(cx);
            if this.stopping && this.idle() {
                tracing::debug!("token source dropped; its driver ends");
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<Rt: Runtime, W: Waiter> Drop for Driver<Rt, W> {
    fn drop(&mut self) {
        self.kernel.stop();
    }
}

impl<Rt: Runtime, W: Waiter> fmt::Debug for Driver<Rt, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("exchanges", &self.exchanges.len())
            .field("store_queue", &self.store_queue.len())
            .field("stopping", &self.stopping)
            .finish_non_exhaustive()
    }
}
