//! The kernel's runtime for blocking threads, with nothing but `std`: how a caller
//! waits (a slot with a condition variable), how the timer thread sleeps and is woken,
//! and how an exchange runs (on a short-lived thread of its own). Any blocking adapter
//! uses it whatever its HTTP client (the ureq adapter does); it brings only the
//! refresh function.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use silent_refresh::{AttemptId, RefreshFailure, Secret, Token};

use crate::kernel::{Kernel, NoToken, Outcome, Prepared, Start, StoreIo, Waiter, Wake};
use crate::observe::Observer;

/// The kernel as a blocking adapter uses it.
pub type BlockingKernel = Kernel<SlotWaiter>;

/// What runs one refresh exchange on a blocking thread: the adapter's refresher.
pub type BlockingRefresh = dyn Fn(Option<Secret>) -> Result<Token, RefreshFailure> + Send + Sync;

/// Where one waiting caller's outcome lands.
#[derive(Default)]
pub struct Slot {
    outcome: Mutex<Option<Outcome>>,
    ready: Condvar,
}

impl Slot {
    /// Waits for the outcome until `give_up` on the clock (`Instant::now()`: a real
    /// wait, bounded so that no caller ever waits past its deadline even if the timer
    /// thread is late). `None`: still none by then.
    #[must_use]
    pub fn wait(&self, give_up: Duration) -> Option<Outcome> {
        let mut outcome = lock(&self.outcome);
        let until = Instant::now().checked_add(give_up);
        loop {
            if let Some(outcome) = outcome.take() {
                return Some(outcome);
            }
            let left = until.map(|until| until.saturating_duration_since(Instant::now()));
            match left {
                Some(left) if left.is_zero() => return None,
                Some(left) => {
                    outcome = self
                        .ready
                        .wait_timeout(outcome, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                None => {
                    outcome = self
                        .ready
                        .wait(outcome)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }
}

/// A waiting caller: its slot.
pub struct SlotWaiter(pub Arc<Slot>);

impl Waiter for SlotWaiter {
    fn resolve(self, outcome: Outcome) {
        *lock(&self.0.outcome) = Some(outcome);
        self.0.ready.notify_one();
    }
}

/// The timer thread's doorbell: new work, a new wake-up instant, or stop.
#[derive(Default)]
pub struct Doorbell {
    state: Mutex<Bell>,
    rung: Condvar,
}

#[derive(Default)]
struct Bell {
    rung: bool,
    stopping: bool,
}

impl Doorbell {
    /// Asks the timer thread to end once no exchange of its own is left to start.
    pub fn stop(&self) {
        lock(&self.state).stopping = true;
        self.rung.notify_all();
    }

    /// Sleeps until rung or for `timeout` (`None`: until rung). Returns whether to stop.
    fn sleep(&self, timeout: Option<Duration>) -> bool {
        let mut bell = lock(&self.state);
        if !bell.rung && !bell.stopping {
            bell = match timeout {
                Some(timeout) => {
                    self.rung
                        .wait_timeout(bell, timeout)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self.rung.wait(bell).unwrap_or_else(PoisonError::into_inner),
            };
        }
        bell.rung = false;
        bell.stopping
    }
}

impl Wake for Doorbell {
    fn wake(&self) {
        lock(&self.state).rung = true;
        self.rung.notify_all();
    }
}

/// The timer thread: starts the exchanges the kernel asks for, each on a thread of its
/// own, and feeds the kernel the time at its wake-ups. Ends when the last handle of the
/// source is dropped; exchanges still running report their result anyway, so a rotated
/// credential still reaches the callback.
pub fn run(
    kernel: &Arc<BlockingKernel>,
    refresher: &Arc<BlockingRefresh>,
    observer: &Observer,
    bell: &Doorbell,
) {
    // Store I/O runs on a thread of its own, one piece at a time, in order, so that a
    // slow store never delays a deadline; it ends with this loop.
    let mut store_thread: Option<std::sync::mpsc::Sender<StoreIo>> = None;
    loop {
        let work = kernel.take_work();
        let next = work.next;
        for io in work.store {
            if store_thread.is_none() {
                store_thread = spawn_store_thread(kernel);
            }
            match &store_thread {
                Some(sender) => {
                    if let Err(std::sync::mpsc::SendError(io)) = sender.send(io) {
                        kernel.store_io(io);
                    }
                }
                // No thread to be had: do it here rather than lose it.
                None => kernel.store_io(io),
            }
        }
        for attempt in work.cancels {
            // A blocking call cannot be cut short: the refresher's own timeout ends it,
            // and its result ends the exchange.
            tracing::debug!(
                attempt = attempt.0,
                "cannot cancel a blocking exchange; waiting for it to return"
            );
        }
        for Start {
            attempt,
            refresh_token,
        } in work.starts
        {
            let span = observer.exchange_span(attempt);
            spawn_exchange(kernel, refresher, span, attempt, refresh_token);
        }
        let now = kernel.clock().now();
        let timeout = match next {
            Some(at) if at <= now => {
                kernel.timeout();
                continue;
            }
            Some(at) => Some(at - now),
            None => None,
        };
        if bell.sleep(timeout) {
            break;
        }
        if next.is_some_and(|at| kernel.clock().now() >= at) {
            kernel.timeout();
        }
    }
}

/// The thread that runs store I/O, in order; `None` if none can be started.
fn spawn_store_thread(kernel: &Arc<BlockingKernel>) -> Option<std::sync::mpsc::Sender<StoreIo>> {
    let (sender, receiver) = std::sync::mpsc::channel::<StoreIo>();
    let kernel = kernel.clone();
    thread::Builder::new()
        .name("silent-refresh-store".into())
        .spawn(move || {
            for io in receiver {
                kernel.store_io(io);
            }
        })
        .map_err(|error| tracing::error!(%error, "could not start the token store thread"))
        .ok()
        .map(|_| sender)
}

/// Runs one exchange on a thread of its own, so that no caller waits for it past its
/// own deadline, and callers granted the still-valid token are not held up by it.
fn spawn_exchange(
    kernel: &Arc<BlockingKernel>,
    refresher: &Arc<BlockingRefresh>,
    span: tracing::Span,
    attempt: AttemptId,
    refresh_token: Option<Secret>,
) {
    let (thread_kernel, thread_refresher) = (kernel.clone(), refresher.clone());
    let spawned = thread::Builder::new()
        .name("silent-refresh".into())
        .spawn(move || {
            let _span = span.entered();
            // With a store shared between processes: its lock, and a sibling's fresh
            // token adopted instead of spending the credential again.
            let (result, lock) = match thread_kernel.prepare_exchange(refresh_token.as_ref()) {
                Prepared::Adopt(token, lock) => (Ok(*token), Some(lock)),
                Prepared::Failed(failure) => (Err(failure), None),
                Prepared::Exchange(lock) => {
                    let result = catch_unwind(AssertUnwindSafe(|| thread_refresher(refresh_token)))
                        .unwrap_or_else(|_| {
                            Err(RefreshFailure::transient("the refresher panicked"))
                        });
                    (result, lock)
                }
            };
            thread_kernel.exchange_result(attempt, result, lock);
        });
    if let Err(error) = spawned {
        let failure =
            RefreshFailure::transient(format!("could not start a refresh thread: {error}"));
        kernel.refresh_result(attempt, Err(failure));
    }
}

/// A waiting caller whose outcome did not come by its deadline (the timer thread is
/// late): it gives up by itself.
#[must_use]
pub fn late(kernel: &BlockingKernel) -> NoToken {
    NoToken::Token(silent_refresh::Error::DeadlineExceeded {
        last_failure: kernel.snapshot().last_failure.clone(),
    })
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
