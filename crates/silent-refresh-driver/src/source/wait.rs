//! How a caller waits, on any runtime: for its answer from the kernel, and for the
//! events a wait looks again at. Written as futures; a blocking runtime runs them on
//! the caller's thread.

use silent_refresh::time::Instant;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use silent_refresh::{AccessToken, KeyId, RequestId};

use crate::Error;
use crate::clock::Clock;
use crate::kernel::{Kernel, NoToken, Outcome, Snapshot, Waiter};
use crate::runtime::Caller;

/// Where a call that has to wait gives up.
#[derive(Clone, Copy, Debug)]
pub(super) enum Deadline {
    /// The configuration's `request_timeout` from now.
    Default,
    /// This long from now.
    Within(Duration),
    /// At this instant of the source's clock.
    At(Instant),
}

impl Deadline {
    /// The instant, on `clock` (`None`: the kernel's default).
    pub(super) fn at(self, clock: &dyn Clock) -> Option<Instant> {
        match self {
            Deadline::Default => None,
            Deadline::Within(limit) => {
                let now = clock.now();
                Some(now.checked_add(limit).unwrap_or(now))
            }
            Deadline::At(at) => Some(at),
        }
    }
}

/// The answer of a `token` call: the fresh token at once, or a wait (boxed, so that
/// the fast path's future stays two words).
pub(super) enum Answering<F> {
    /// The fast path's token (taken when polled).
    Fresh(Option<Arc<AccessToken>>),
    /// The wait for the machine's answer.
    Waiting(Pin<Box<F>>),
}

impl<F: Future<Output = Result<Arc<AccessToken>, Error>>> Future for Answering<F> {
    type Output = Result<Arc<AccessToken>, Error>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Answering::Fresh(token) = this
            && let Some(token) = token.take()
        {
            return Poll::Ready(Ok(token));
        }
        this.poll_wait(cx)
    }
}

impl<F: Future<Output = Result<Arc<AccessToken>, Error>>> Answering<F> {
    /// The wait, out of the fast path's way.
    #[inline(never)]
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<Result<Arc<AccessToken>, Error>> {
        match self {
            Answering::Waiting(wait) => wait.as_mut().poll(cx),
            Answering::Fresh(_) => panic!("a token answer polled after it was ready"),
        }
    }
}

/// A waiting caller's answer: the kernel resolves it, the caller polls it (an async
/// task, or a blocked thread through its runtime's executor).
#[derive(Clone, Default)]
pub struct Answer(Arc<Mutex<Slot>>);

#[derive(Default)]
struct Slot {
    outcome: Option<Outcome>,
    waker: Option<Waker>,
}

impl Answer {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> Option<Outcome> {
        self.lock().outcome.take()
    }

    fn poll_outcome(&self, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut slot = self.lock();
        match slot.outcome.take() {
            Some(outcome) => Poll::Ready(outcome),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Waiter for Answer {
    fn resolve(self, outcome: Outcome) {
        let waker = {
            let mut slot = self.lock();
            slot.outcome = Some(outcome);
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Removes a waiting request from the machine when its wait is dropped (or gives up).
struct CancelOnDrop<'a> {
    kernel: &'a Kernel<Answer>,
    key: KeyId,
    request: Option<RequestId>,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(request) = self.request.take() {
            self.kernel.cancel_key(self.key, request);
        }
    }
}

/// Enters a request and waits for its answer. On a runtime whose driver may answer
/// late ([`Caller::LATE_GRACE`]), it gives up by itself that long past its deadline.
pub(super) async fn wait_for_token<Rt: Caller>(
    kernel: &Kernel<Answer>,
    runtime: &Rt,
    key: KeyId,
    deadline: Option<Instant>,
) -> Result<Arc<AccessToken>, Error> {
    let answer = Answer::default();
    let request = kernel
        .enter_key(key, deadline, answer.clone())
        .map_err(Error::from)?;
    let mut cancel = CancelOnDrop {
        kernel,
        key,
        request: Some(request),
    };
    let mut give_up = Rt::LATE_GRACE.map(|grace| {
        let now = kernel.clock().now();
        let deadline =
            deadline.unwrap_or_else(|| now.checked_add(kernel.request_timeout()).unwrap_or(now));
        runtime.sleep(
            deadline
                .saturating_duration_since(now)
                .saturating_add(grace),
        )
    });
    let answered = poll_fn(|cx| {
        if let Poll::Ready(outcome) = answer.poll_outcome(cx) {
            return Poll::Ready(Some(outcome));
        }
        match give_up.as_mut().map(|timer| Pin::new(timer).poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    })
    .await;
    let outcome = match answered {
        Some(outcome) => {
            cancel.request = None;
            outcome
        }
        None => {
            // The driver is late: give up, unless the answer came meanwhile.
            drop(cancel);
            answer.take().unwrap_or_else(|| {
                let snapshot = kernel.snapshot();
                Err(NoToken::Token(
                    if snapshot.status == silent_refresh::Status::AwaitingSignIn {
                        silent_refresh::Error::AwaitingSignIn
                    } else {
                        silent_refresh::Error::DeadlineExceeded {
                            last_failure: snapshot.last_failure.clone(),
                        }
                    },
                ))
            })
        }
    };
    outcome.map_err(Error::from)
}

/// A flag the kernel raises at each event, for a wait that looks again at every event.
pub(super) struct Signal(Arc<Mutex<(bool, Option<Waker>)>>);

impl Signal {
    /// Raised by every event of `kernel` from now on; the kernel forgets it once it is
    /// dropped.
    /// Also raised by every change of the getters' snapshot (the store read, the store
    /// idle, which no event announces).
    pub(super) fn subscribe(kernel: &Kernel<Answer>) -> Self {
        let state = Arc::new(Mutex::new((false, None::<Waker>)));
        let weak: Weak<Mutex<(bool, Option<Waker>)>> = Arc::downgrade(&state);
        let raise = move || {
            let Some(state) = weak.upgrade() else {
                return false;
            };
            let waker = {
                let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                state.0 = true;
                state.1.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
            true
        };
        let on_event = raise.clone();
        kernel.subscribe(move |_| on_event());
        kernel.watch(raise);
        Self(state)
    }

    fn poll_raised(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if std::mem::take(&mut state.0) {
            return Poll::Ready(());
        }
        state.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Waits, at most `limit` on `runtime`'s time, until `check` finds what it looks for
/// in the getters' snapshot (looked at again after every event and every change of
/// the snapshot); `None` when the time is up first.
pub(crate) async fn until<Rt: Caller, T>(
    kernel: &Kernel<Answer>,
    runtime: &Rt,
    limit: Duration,
    check: impl Fn(&Snapshot) -> Option<T>,
) -> Option<T> {
    let events = Signal::subscribe(kernel);
    let mut deadline = runtime.sleep(limit);
    loop {
        if let Some(found) = check(&kernel.snapshot()) {
            return Some(found);
        }
        let mut never = std::future::pending::<()>();
        if first_of(&events, &mut never, &mut deadline).await {
            return check(&kernel.snapshot());
        }
    }
}

/// Waits for an event, `other`, or `deadline`; `true` when the deadline came.
pub(super) async fn first_of<A, B>(events: &Signal, other: &mut A, deadline: &mut B) -> bool
where
    A: Future + Unpin,
    B: Future + Unpin,
{
    poll_fn(|cx| {
        if Pin::new(&mut *deadline).poll(cx).is_ready() {
            return Poll::Ready(true);
        }
        if events.poll_raised(cx).is_ready() || Pin::new(&mut *other).poll(cx).is_ready() {
            return Poll::Ready(false);
        }
        Poll::Pending
    })
    .await
}
