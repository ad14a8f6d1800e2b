//! The simulated runtime each process's real [`Driver`](silent_refresh_driver::driver::Driver)
//! runs on: the script completes its futures.
//!
//! - An exchange goes "on the wire" when the driver starts it, under whatever lease the
//!   process holds then, and ends when the script answers it (or aborts it at its own
//!   timeout); the driver cancelling it (dropping it) takes it off the wire unanswered.
//! - A store call runs when the driver first polls it. A wait for the store's lock
//!   between processes runs once the lock is free, or once `refresh_timeout` has passed
//!   since it began (then it fails, as a blocking wait would).
//! - A timer fires when the shared [`ManualClock`] reaches it.

use std::collections::HashSet;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use silent_refresh::{AttemptId, RefreshFailure, Secret, Token};
use silent_refresh_driver::clock::{Clock, ManualClock};
use silent_refresh_driver::kernel::Kernel;
use silent_refresh_driver::runtime::{BlockingWork, Exchanger, Runtime};

use super::store::{SimStore, parse_rank};
use super::{K4_MARK, SimWaiter, lock};

/// An answer the script gives an exchange.
pub(super) type Answered = Arc<Mutex<Option<Result<Token, RefreshFailure>>>>;

/// An exchange on the wire of one process.
pub(super) struct OnWire {
    /// The refresh credential it sent.
    pub(super) sent: Option<Secret>,
    /// The lease it was sent under (`None`: no lock at all).
    pub(super) lease: Option<u64>,
    /// Where the script puts its answer.
    pub(super) answer: Answered,
}

/// The exchanges on the wire of one process, oldest first.
pub(super) type Wire = Arc<Mutex<Vec<OnWire>>>;

/// The runtime of one process.
#[derive(Clone)]
pub(super) struct SimRuntime {
    pub(super) store: Arc<SimStore>,
    pub(super) me: usize,
    pub(super) clock: ManualClock,
    pub(super) refresh_timeout: Duration,
}

/// The refresher of one process: it puts each exchange on its wire.
pub(super) struct SimRefresher {
    pub(super) store: Arc<SimStore>,
    pub(super) me: usize,
    pub(super) wire: Wire,
    /// Its kernel, to name the attempt an exchange belongs to.
    pub(super) kernel: Weak<Kernel<SimWaiter>>,
    /// The attempts that went on the wire.
    pub(super) sent: Arc<Mutex<HashSet<AttemptId>>>,
}

impl Exchanger<SimExchange> for SimRefresher {
    fn exchange(&self, refresh_token: Option<Secret>) -> SimExchange {
        let lease = self
            .store
            .live_lease()
            .filter(|(_, owner)| *owner == self.me)
            .map(|(id, _)| id);
        let attempt = self
            .kernel
            .upgrade()
            .and_then(|kernel| kernel.snapshot().refresh_in_flight);
        if let Some(attempt) = attempt {
            lock(&self.sent).insert(attempt);
        }
        lock(&self.store.trail).push(format!(
            "process {} sends {} (attempt {:?}, lease {lease:?})",
            self.me,
            refresh_token.as_ref().map_or("-", |s| s.expose()),
            attempt.map(|a| a.0)
        ));
        // Known bug K4 (fixed, see `Known`): a store ahead of the credential sent. A
        // repeat is a violation (the credential is presented twice), never excused.
        let ahead = {
            let state = self.store.lock();
            let stored = state.token.as_ref().and_then(|t| t.refresh_token.as_ref());
            match (
                stored.map(|s| parse_rank(s.expose())),
                refresh_token.as_ref(),
            ) {
                (Some(Some(stored)), Some(sent)) => parse_rank(sent.expose())
                    .is_some_and(|sent| sent.0 == stored.0 && sent.1 < stored.1),
                _ => false,
            }
        };
        if ahead {
            lock(&self.store.trail).push(format!(
                "{K4_MARK}: process {} sends a credential whose successor the store holds]",
                self.me
            ));
        }
        let answer: Answered = Arc::new(Mutex::new(None));
        lock(&self.wire).push(OnWire {
            sent: refresh_token,
            lease,
            answer: answer.clone(),
        });
        SimExchange {
            answer,
            wire: self.wire.clone(),
        }
    }

    fn token_endpoint(&self) -> Option<&str> {
        None
    }

    fn exchange_timeout(&self) -> Option<Duration> {
        None
    }
}

/// An exchange as the driver holds it.
pub(super) struct SimExchange {
    answer: Answered,
    wire: Wire,
}

impl Future for SimExchange {
    type Output = Result<Token, RefreshFailure>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        match lock(&self.answer).take() {
            Some(result) => Poll::Ready(result),
            None => Poll::Pending,
        }
    }
}

impl Drop for SimExchange {
    /// Cancelled by the driver (or answered): it is off the wire, unanswered.
    fn drop(&mut self) {
        lock(&self.wire).retain(|on| !Arc::ptr_eq(&on.answer, &self.answer));
    }
}

/// A blocking job: run when the driver polls it, a wait for the lock once it can end.
pub(super) struct SimBlocking<T> {
    job: Option<Box<dyn FnOnce() -> T + Send>>,
    /// A wait for the store's lock, since then.
    waits_for_lock: Option<Instant>,
    runtime: SimRuntime,
}

impl<T> Future for SimBlocking<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        if let Some(since) = this.waits_for_lock {
            let runtime = &this.runtime;
            let free = runtime.store.free_for(runtime.me);
            if !free && runtime.clock.now() < since + runtime.refresh_timeout {
                return Poll::Pending;
            }
        }
        let job = this.job.take();
        Poll::Ready(job.and_then(|job| catch_unwind(AssertUnwindSafe(job)).ok()))
    }
}

/// A timer on the shared clock.
pub(super) struct SimSleep {
    until: Instant,
    clock: ManualClock,
}

impl Future for SimSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.clock.now() >= self.until {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Runtime for SimRuntime {
    type Refresher = SimRefresher;
    type Exchange = SimExchange;
    type Blocking<T: Send + 'static> = SimBlocking<T>;
    type Sleep = SimSleep;
    const CANCELS_EXCHANGES: bool = true;

    fn run_blocking<T, F>(&self, work: BlockingWork, job: F) -> SimBlocking<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        SimBlocking {
            job: Some(Box::new(job)),
            waits_for_lock: (work == BlockingWork::StoreLock).then(|| self.clock.now()),
            runtime: self.clone(),
        }
    }

    fn sleep(&self, duration: Duration) -> SimSleep {
        SimSleep {
            until: self.clock.now() + duration,
            clock: self.clock.clone(),
        }
    }

    fn default_clock(&self) -> Arc<dyn Clock> {
        Arc::new(self.clock.clone())
    }
}
