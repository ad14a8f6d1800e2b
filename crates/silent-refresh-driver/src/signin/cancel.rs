//! How a sign-in flow waits: until an instant of the source's clock, or for a request
//! on the wire, and in either case for the program's cancel.

use silent_refresh::time::Instant;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::Error;
use crate::clock::Clock;
use crate::runtime::Runtime;
use crate::wake::Wake;

/// Cancels a sign-in flow from anywhere (another thread, a signal handler's task): the
/// flow's call ends at once with [`Error::SignInCancelled`], signing nothing in (a
/// browser sign-in closes its listener). Cheap to clone; a flow hands one out with
/// `cancel_handle()`. On tokio, dropping the flow's future cancels it too.
#[derive(Clone, Default)]
pub struct CancelSignIn(Arc<Bell>);

impl CancelSignIn {
    /// Cancels the flow (again: nothing more happens).
    pub fn cancel(&self) {
        self.0.ring();
    }

    /// Whether [`cancel`](Self::cancel) was called.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.0.is_rung()
    }

    /// Ready once cancelled (and from then on).
    pub(super) fn poll_cancelled(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.0.poll_rung(cx, false)
    }

    /// `future`'s output, or [`Error::SignInCancelled`] if the flow is cancelled first.
    pub(super) async fn or_cancelled<T>(
        &self,
        future: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let mut future = pin!(future);
        poll_fn(|cx| {
            if self.poll_cancelled(cx).is_ready() {
                return Poll::Ready(Err(Error::SignInCancelled));
            }
            future.as_mut().poll(cx)
        })
        .await
    }
}

impl fmt::Debug for CancelSignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelSignIn")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// A flag with the waker of the one task that waits for it.
#[derive(Default)]
struct Bell(Mutex<(bool, Option<Waker>)>);

impl Bell {
    fn ring(&self) {
        let waker = {
            let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            state.0 = true;
            state.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn is_rung(&self) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).0
    }

    /// Ready when rung; `take`: and lowers it again (a tick), else it stays up.
    fn poll_rung(&self, cx: &mut Context<'_>, take: bool) -> Poll<()> {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if state.0 {
            if take {
                state.0 = false;
            }
            return Poll::Ready(());
        }
        state.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Rung when a clock that jumps ([`ManualClock`](crate::clock::ManualClock)) moves: a
/// wait for an instant of the source's clock looks again.
impl Wake for Bell {
    fn wake(&self) {
        self.ring();
    }
}

/// Waits for instants of the source's clock: on the runtime's timer, and again
/// whenever a clock that jumps moves.
pub(super) struct Clockwork<'a, Rt> {
    runtime: &'a Rt,
    clock: &'a dyn Clock,
    moved: Arc<Bell>,
}

impl<'a, Rt: Runtime> Clockwork<'a, Rt> {
    pub(super) fn new(runtime: &'a Rt, clock: &'a dyn Clock) -> Self {
        let moved = Arc::new(Bell::default());
        let as_wake: Arc<dyn Wake> = moved.clone();
        clock.on_advance(Arc::downgrade(&as_wake));
        Self {
            runtime,
            clock,
            moved,
        }
    }

    /// The source's clock's now.
    pub(super) fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Waits until the source's clock reaches `due`.
    ///
    /// # Errors
    ///
    /// [`Error::SignInCancelled`] when `cancel` comes first.
    pub(super) async fn until(&self, due: Instant, cancel: &CancelSignIn) -> Result<(), Error> {
        loop {
            let now = self.clock.now();
            if now >= due {
                return Ok(());
            }
            let mut sleep = self.runtime.sleep(due - now);
            poll_fn(|cx| {
                if cancel.poll_cancelled(cx).is_ready() {
                    return Poll::Ready(Err(Error::SignInCancelled));
                }
                let moved = self.moved.poll_rung(cx, true).is_ready();
                if moved || Pin::new(&mut sleep).poll(cx).is_ready() {
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            })
            .await?;
        }
    }
}
