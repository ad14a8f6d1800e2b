//! The token source under many threads: single flight, exactly-once answers,
//! deadlines, terminal failures, panics, persistence, sign-in/out, idle refresh.
//!
//! Time that matters comes from a [`ManualClock`] the tests move by hand; real time
//! only bounds a wait for something that must happen ([`GUARD`]), so that a broken
//! source fails a test instead of hanging it.

mod support;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex, OnceLock, Weak};
use std::thread;
use std::time::Duration;

use silent_refresh::{Event, Trigger};
use silent_refresh_ureq::{
    Clock, Config, Credentials, Error, Expiry, Generation, ManualClock, RefreshFailure, Secret,
    Status, Token, TokenChange, TokenSource, WaitPolicy,
};
use support::{Adoptions, core_error, short_config, until_waiting};

const THREADS: usize = 64;

/// Real time allowed for something that must happen: only a hang reaches it. Not a
/// timing goal.
const GUARD: Duration = Duration::from_secs(20);

/// The request deadline of the tests on a manual clock. A blocked caller also gives up
/// by itself after this much real time (its deadline, read on the source's clock, plus
/// a grace), so with it far beyond [`GUARD`] an answer seen within the guard came from
/// the source, never from a caller giving up on its own.
const LONG: Duration = Duration::from_secs(60);

/// A refresher that blocks until the test opens the gate (bounded, so a broken
/// adapter fails the test instead of hanging it).
struct Gate {
    open: Mutex<mpsc::Receiver<()>>,
}

impl Gate {
    fn new() -> (Arc<Self>, mpsc::Sender<()>) {
        let (tx, rx) = mpsc::channel();
        (
            Arc::new(Self {
                open: Mutex::new(rx),
            }),
            tx,
        )
    }

    fn pass(&self) {
        let rx = self.open.lock().expect("gate");
        rx.recv_timeout(GUARD).expect("the test opens the gate");
    }
}

type Answer = Result<Arc<silent_refresh_ureq::AccessToken>, Error>;

/// Starts `n` threads that each call `token()` once; their answers arrive on the
/// receiver.
fn callers(source: &TokenSource, n: usize) -> mpsc::Receiver<Answer> {
    let (tx, answers) = mpsc::channel();
    for _ in 0..n {
        let (source, tx) = (source.clone(), tx.clone());
        thread::spawn(move || {
            let _ = tx.send(source.token());
        });
    }
    answers
}

/// The next answer of [`callers`]: it must come ([`GUARD`] only catches a hang).
fn answer(answers: &mpsc::Receiver<Answer>) -> Answer {
    answers
        .recv_timeout(GUARD)
        .expect("the caller is answered (the guard only catches a hang)")
}

/// The next event matching `wanted`, skipping others ([`GUARD`] only catches a hang).
fn next_event(events: &mpsc::Receiver<Event>, wanted: impl Fn(&Event) -> bool) -> Event {
    loop {
        let event = events
            .recv_timeout(GUARD)
            .expect("the event comes (the guard only catches a hang)");
        if wanted(&event) {
            return event;
        }
    }
}

/// Moves `clock` to `at` (no move if it is there already).
fn advance_to(clock: &ManualClock, at: std::time::Instant) {
    clock.advance(at.saturating_duration_since(clock.now()));
}

#[test]
fn sixty_four_threads_across_several_expiries_get_one_refresh_per_token() {
    const LIFETIME: Duration = Duration::from_millis(80);
    /// The test moves time a quarter of a token's life at a time, racing the threads.
    const STEP: Duration = Duration::from_millis(20);
    const GENERATIONS: u64 = 5;
    let calls = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most_in_flight = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(Mutex::new(Vec::new()));
    let refresher = {
        let (calls, in_flight, most_in_flight, sent) = (
            calls.clone(),
            in_flight.clone(),
            most_in_flight.clone(),
            sent.clone(),
        );
        move |refresh_token: Option<Secret>| {
            let now_in_flight = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            most_in_flight.fetch_max(now_in_flight, Ordering::SeqCst);
            let k = calls.fetch_add(1, Ordering::SeqCst) + 1;
            sent.lock()
                .expect("sent")
                .push(refresh_token.map(|s| s.expose().to_owned()));
            thread::yield_now();
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(Token::bearer(format!("at-{k}"), Expiry::In(LIFETIME))
                .with_refresh_token(format!("rt-{}", k + 1)))
        }
    };
    let config = Config::builder()
        .request_timeout(LONG)
        .build()
        .expect("config");
    let clock = ManualClock::new();
    let (persist, adoptions) = Adoptions::new();
    let source = TokenSource::builder(config)
        .clock(clock.clone())
        .credentials(Credentials::RefreshToken("rt-1".into()))
        .refresher(refresher)
        .on_token_change(move |change| persist(&change))
        .build()
        .expect("source");

    let start = clock.now();
    let events = source.subscribe();
    // Exchanges started, and ended with an adopted token.
    let mut tally = (0u64, 0u64);
    let settle = |tally: &mut (u64, u64)| {
        let count = |tally: &mut (u64, u64), event: Event| match event {
            Event::RefreshStarted { .. } => tally.0 += 1,
            Event::TokenAdopted {
                attempt: Some(_), ..
            } => tally.1 += 1,
            Event::RefreshFailed { message, .. } => panic!("no refresh fails here: {message}"),
            Event::ResultDropped { attempt } => panic!("no result is dropped here: {attempt:?}"),
            _ => {}
        };
        // Takes in the clock's time at once (a rejection of generation 0 rejects
        // nothing): a refresh due now starts, and says so, before this returns. Then
        // waits for the exchange on the wire to end, so time never moves under one.
        source.report_rejected(Generation(0));
        for event in events.try_iter() {
            count(tally, event);
        }
        while tally.0 > tally.1 {
            count(tally, next_event(&events, |_| true));
        }
    };
    let answered = AtomicU64::new(0);
    let done = AtomicUsize::new(0);
    let barrier = Barrier::new(THREADS + 1);
    thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                barrier.wait();
                let mut last = 0;
                while last < GENERATIONS {
                    let asked_at = clock.now();
                    // Woken when the refresh ends: the clock never comes near the
                    // deadline, so an error here would be a caller left behind.
                    let token = source.token().expect("every call is answered with a token");
                    answered.fetch_add(1, Ordering::Relaxed);
                    assert!(
                        token.usable_until.is_some_and(|until| until > asked_at),
                        "never a token past its usable_until"
                    );
                    assert!(token.generation.0 >= last, "tokens never go back in time");
                    assert_eq!(token.secret.expose(), format!("at-{}", token.generation.0));
                    last = token.generation.0;
                    thread::yield_now();
                }
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        barrier.wait();
        // Time moves while the threads ask, through windows and expiries, a step at a
        // time; the threads race each step.
        let mut steps = 0;
        while done.load(Ordering::SeqCst) < THREADS {
            assert!(
                steps < 10_000,
                "the threads never saw generation {GENERATIONS}"
            );
            clock.advance(STEP);
            steps += 1;
            settle(&mut tally);
        }
    });
    // The clock stands and no exchange is on the wire: the count is final.
    settle(&mut tally);
    let (started, adopted) = tally;
    let elapsed = clock.now() - start;
    assert_eq!(
        started, adopted,
        "every exchange ended with an adopted token"
    );

    let refreshes = calls.load(Ordering::SeqCst);
    adoptions.wait_for(refreshes);
    assert_eq!(most_in_flight.load(Ordering::SeqCst), 1, "single flight");
    assert_eq!(
        refreshes,
        source.generation().0,
        "each refresh adopted exactly one token"
    );
    assert_eq!(
        started, refreshes,
        "every refresh is an exchange the source started"
    );
    assert!(refreshes >= GENERATIONS);
    // Refreshes start at the earliest half-way through a token's life, so they are
    // at least LIFETIME/2 apart on the source's clock: no refresh storm.
    let bound = 1 + (elapsed.as_millis() / (LIFETIME / 2).as_millis()) as u64;
    assert!(refreshes <= bound, "{refreshes} refreshes in {elapsed:?}");
    // Each refresh sent the newest rotated credential.
    let expected: Vec<_> = (1..=refreshes).map(|k| Some(format!("rt-{k}"))).collect();
    assert_eq!(*sent.lock().expect("sent"), expected);
    // Every thread was answered at least once (how often depends on how the threads
    // were scheduled against the clock's steps: a thread descheduled across several
    // generations sees only the last).
    assert!(answered.load(Ordering::Relaxed) >= THREADS as u64);
    assert_eq!(source.waiting(), 0, "nobody left behind");
}

#[test]
fn with_a_failing_refresher_every_waiting_thread_gets_the_error_by_its_deadline() {
    let calls = Arc::new(AtomicU64::new(0));
    let refresher = {
        let calls = calls.clone();
        move |_: Option<Secret>| -> Result<Token, RefreshFailure> {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(RefreshFailure::transient("token endpoint answered 503"))
        }
    };
    // A batch job's policy: wait until the deadline whatever fails.
    let config = short_config()
        .request_timeout(LONG)
        .wait_policy(WaitPolicy::UntilDeadline)
        .build()
        .expect("config");
    let clock = ManualClock::new();
    let source = TokenSource::builder(config)
        .clock(clock.clone())
        .credentials(Credentials::RefreshToken("rt-1".into()))
        .refresher(refresher)
        .build()
        .expect("source");
    let events = source.subscribe();

    // Every caller asks before the clock moves: they share one deadline.
    let deadline = clock.now() + LONG;
    let answers = callers(&source, THREADS);
    until_waiting(&source, THREADS);

    // Transient failures are retried while the callers wait: each backoff is waited
    // out on the clock, and each retry fails in turn.
    let failed = |events: &mpsc::Receiver<Event>| match next_event(events, |e| {
        matches!(e, Event::RefreshFailed { .. })
    }) {
        Event::RefreshFailed { retry_at, .. } => retry_at.expect("a transient failure is retried"),
        _ => unreachable!(),
    };
    let mut retry_at = failed(&events);
    for _ in 0..2 {
        advance_to(&clock, retry_at);
        retry_at = failed(&events);
    }
    // Up to just before the deadline (past the backoff): the retry this starts failing
    // proves the source took in the new time, and every caller is still waiting.
    assert!(retry_at < deadline - Duration::from_millis(1));
    advance_to(&clock, deadline - Duration::from_millis(1));
    failed(&events);
    assert_eq!(
        source.waiting(),
        THREADS,
        "nobody failed before its deadline"
    );
    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "transient failures are retried while callers wait"
    );

    // At the deadline, every caller gets the error, with the last failure.
    advance_to(&clock, deadline);
    for _ in 0..THREADS {
        match core_error(answer(&answers)) {
            silent_refresh::Error::DeadlineExceeded { last_failure } => {
                let last = last_failure.expect("the last failure is told");
                assert!(last.contains("503"), "{last}");
            }
            other => panic!("expected DeadlineExceeded, got {other:?}"),
        }
    }
    assert_eq!(clock.now(), deadline, "answered at the deadline, not later");
    assert_eq!(source.waiting(), 0);
}

#[test]
fn a_hanging_refresher_holds_no_caller_past_its_deadline_and_its_late_token_is_adopted() {
    let (gate, open) = Gate::new();
    let exchanges = Arc::new(AtomicUsize::new(0));
    let (started_tx, started) = mpsc::channel();
    let refresher = {
        let gate = gate.clone();
        let exchanges = exchanges.clone();
        let started_tx = Mutex::new(started_tx);
        move |_: Option<Secret>| {
            exchanges.fetch_add(1, Ordering::SeqCst);
            let _ = started_tx.lock().expect("tx").send(());
            gate.pass();
            Ok(Token::bearer("late", Expiry::In(Duration::from_secs(3600))))
        }
    };
    // Backoffs far shorter than the hang: a second exchange would start at once if the
    // machine gave up on the first one.
    let config = short_config()
        .request_timeout(LONG)
        .build()
        .expect("config");
    let refresh_timeout = config.refresh_timeout();
    let clock = ManualClock::new();
    let source = TokenSource::builder(config)
        .clock(clock.clone())
        .credentials(Credentials::RefreshToken("rt-1".into()))
        .refresher(refresher)
        .build()
        .expect("source");
    let events = source.subscribe();

    // Two rounds of callers: the second asks after the exchange passed its deadline.
    for round in 0..2 {
        let deadline = clock.now() + LONG;
        let answers = callers(&source, 8);
        until_waiting(&source, 8);
        if round == 0 {
            started.recv_timeout(GUARD).expect("the exchange started");
        }
        // Each caller is answered when the clock reaches its deadline, with the
        // exchange still hanging.
        advance_to(&clock, deadline);
        for _ in 0..8 {
            let error = core_error(answer(&answers));
            assert!(
                matches!(error, silent_refresh::Error::DeadlineExceeded { .. }),
                "{error:?}"
            );
        }
        assert_eq!(clock.now(), deadline, "answered at the deadline");
        assert_eq!(source.waiting(), 0);
        assert!(LONG > refresh_timeout, "the exchange is overdue now");
    }
    next_event(&events, |e| matches!(e, Event::RefreshOverdue { .. }));
    // The exchange is past its deadline but still on the wire: no second exchange of
    // the same credential started (single flight on the wire), and the late answer is
    // adopted when it comes.
    assert_eq!(exchanges.load(Ordering::SeqCst), 1);
    open.send(()).expect("gate");
    let adopted = next_event(&events, |e| matches!(e, Event::TokenAdopted { .. }));
    assert!(
        matches!(
            adopted,
            Event::TokenAdopted {
                attempt: Some(_),
                ..
            }
        ),
        "{adopted:?}"
    );
    let token = source
        .token_before(clock.now() + GUARD)
        .expect("the late token");
    assert_eq!(token.secret.expose(), "late");
    assert_eq!(exchanges.load(Ordering::SeqCst), 1);
}

#[test]
fn terminal_failure_rejects_every_waiter_with_sign_in_required_and_later_calls_fail_fast() {
    let (gate, open) = Gate::new();
    let calls = Arc::new(AtomicU64::new(0));
    let refresher = {
        let (gate, calls) = (gate.clone(), calls.clone());
        move |_: Option<Secret>| -> Result<Token, RefreshFailure> {
            calls.fetch_add(1, Ordering::SeqCst);
            gate.pass();
            Err(RefreshFailure::terminal(
                "invalid_grant: the refresh token was revoked",
            ))
        }
    };
    let config = Config::builder()
        .request_timeout(LONG)
        .build()
        .expect("config");
    let clock = ManualClock::new();
    let start = clock.now();
    let source = TokenSource::builder(config)
        .clock(clock.clone())
        .credentials(Credentials::RefreshToken("rt-1".into()))
        .refresher(refresher)
        .build()
        .expect("source");

    let answers = callers(&source, THREADS);
    until_waiting(&source, THREADS);
    open.send(()).expect("gate");
    // Every waiter is answered by the failure: the clock never moves, so no deadline
    // could have answered them.
    for _ in 0..THREADS {
        match core_error(answer(&answers)) {
            silent_refresh::Error::SignInRequired { reason } => {
                assert!(reason.contains("revoked"), "{reason}");
            }
            other => panic!("expected SignInRequired, got {other:?}"),
        }
    }
    assert_eq!(source.waiting(), 0);
    assert!(matches!(source.status(), Status::SignInRequired(_)));

    // A later call fails at once: answered while its deadline is a minute away on the
    // clock (which stands still).
    let later = callers(&source, 1);
    let error = core_error(answer(&later));
    assert!(
        matches!(error, silent_refresh::Error::SignInRequired { .. }),
        "{error:?}"
    );
    assert_eq!(clock.now(), start, "fails fast, not at its deadline");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no refresh is tried again");

    source.sign_in(Credentials::Token(Token::bearer(
        "at-new",
        Expiry::In(Duration::from_secs(3600)),
    )));
    assert_eq!(
        source.token().expect("signed in again").secret.expose(),
        "at-new"
    );
}

#[test]
fn a_panicking_refresher_is_a_transient_failure_and_poisons_nothing() {
    let calls = Arc::new(AtomicU64::new(0));
    let refresher = {
        let calls = calls.clone();
        move |_: Option<Secret>| {
            let k = calls.fetch_add(1, Ordering::SeqCst) + 1;
            assert!(k != 1, "the refresher's first call panics");
            Ok(
                Token::bearer(format!("at-{k}"), Expiry::In(Duration::from_secs(3600)))
                    .with_refresh_token("rt"),
            )
        }
    };
    let config = short_config()
        .request_timeout(LONG)
        .build()
        .expect("config");
    let clock = ManualClock::new();
    let deadline = clock.now() + LONG;
    let source = TokenSource::builder(config)
        .clock(clock.clone())
        .credentials(Credentials::RefreshToken("rt".into()))
        .refresher(refresher)
        .build()
        .expect("source");
    let events = source.subscribe();

    let answers = callers(&source, 1);
    // The panic is a transient failure with a backoff: wait it out on the clock.
    let failed = next_event(&events, |e| matches!(e, Event::RefreshFailed { .. }));
    let Event::RefreshFailed {
        retry_at, message, ..
    } = failed
    else {
        unreachable!()
    };
    assert!(message.contains("panicked"), "{message}");
    let retry_at = retry_at.expect("a transient failure is retried");
    assert!(retry_at < deadline);
    advance_to(&clock, retry_at);
    let token = answer(&answers).expect("granted after the backoff");
    // Woken by the retry's success: the clock stands at the end of the backoff, far
    // from the caller's deadline.
    assert!(clock.now() < deadline, "woken by the retry's success");
    assert_eq!(token.secret.expose(), "at-2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Everything still works: a rejection refreshes again.
    source.report_rejected(token.generation);
    let next = source.token().expect("refreshed");
    assert_eq!(next.secret.expose(), "at-3");
    assert!(matches!(source.status(), Status::SignedIn));
}

#[test]
fn each_new_token_is_persisted_before_any_thread_gets_it() {
    let persisted = Arc::new(Mutex::new(Vec::<(u64, Option<String>)>::new()));
    let forgotten = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let refresher = {
        let calls = calls.clone();
        move |_: Option<Secret>| {
            let k = calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(
                Token::bearer(format!("at-{k}"), Expiry::In(Duration::from_secs(3600)))
                    .with_refresh_token(format!("rt-{}", k + 1)),
            )
        }
    };
    // On a clock that stands still: no call ever reaches its deadline, every one is
    // answered by a refresh.
    let clock = ManualClock::new();
    let config = short_config()
        .request_timeout(LONG)
        .build()
        .expect("config");
    let source = TokenSource::builder(config)
        .clock(clock.clone())
        .credentials(Credentials::RefreshToken("rt-1".into()))
        .refresher(refresher)
        .on_token_change({
            let (persisted, forgotten) = (persisted.clone(), forgotten.clone());
            move |change| match change {
                TokenChange::Persist { generation, token } => {
                    persisted.lock().expect("store").push((
                        generation.0,
                        token.refresh_token.as_ref().map(|s| s.expose().to_owned()),
                    ))
                }
                TokenChange::Forget => {
                    forgotten.fetch_add(1, Ordering::SeqCst);
                }
                _ => {}
            }
        })
        .build()
        .expect("source");

    let barrier = Barrier::new(32);
    thread::scope(|scope| {
        for _ in 0..32 {
            scope.spawn(|| {
                barrier.wait();
                for _ in 0..5 {
                    let token = source.token().expect("token");
                    let stored = persisted.lock().expect("store");
                    assert!(
                        stored.iter().any(|(g, _)| *g == token.generation.0),
                        "generation {} handed out before it was persisted",
                        token.generation.0
                    );
                    drop(stored);
                    // Rejected after a while in service, so rule 14 holds nothing back.
                    clock.advance(Duration::from_millis(41));
                    source.report_rejected(token.generation);
                }
            });
        }
    });
    // The last rejection may have started a refresh: wait for its token.
    let last = source.token().expect("token");
    let stored = persisted.lock().expect("store").clone();
    let refreshes = calls.load(Ordering::SeqCst);
    assert_eq!(last.generation.0, refreshes);
    let expected: Vec<_> = (1..=refreshes)
        .map(|k| (k, Some(format!("rt-{}", k + 1))))
        .collect();
    assert_eq!(
        stored, expected,
        "one Persist per adopted token, with the rotated credential"
    );

    source.sign_out();
    assert_eq!(forgotten.load(Ordering::SeqCst), 1);
}

#[test]
fn from_its_callback_the_source_defers_commands_refuses_tokens_and_never_deadlocks() {
    let cell: Arc<OnceLock<Weak<TokenSource>>> = Arc::new(OnceLock::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let source = Arc::new(
        TokenSource::builder(short_config().build().expect("config"))
            .on_token_change({
                let (cell, seen) = (cell.clone(), seen.clone());
                move |change| {
                    let Some(source) = cell.get().and_then(Weak::upgrade) else {
                        return;
                    };
                    let mut seen = seen.lock().expect("seen");
                    if let TokenChange::Persist { generation, .. } = change {
                        seen.push(format!("persist {}", generation.0));
                        // Refused, not deadlocked.
                        seen.push(format!("token {:?}", source.token().err()));
                        let getter = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            source.generation()
                        }));
                        seen.push(format!("getter panicked {}", getter.is_err()));
                        // Takes effect when the callback returns.
                        source.sign_out();
                    } else {
                        seen.push("forget".to_owned());
                    }
                }
            })
            .build()
            .expect("source"),
    );
    cell.set(Arc::downgrade(&source)).expect("set once");
    source.sign_in(Credentials::Token(Token::bearer(
        "at",
        Expiry::In(Duration::from_secs(3600)),
    )));
    assert_eq!(
        *seen.lock().expect("seen"),
        [
            "persist 1".to_owned(),
            format!("token {:?}", Some(Error::Reentrant)),
            // Getters read a published snapshot: no lock, no panic, no deadlock.
            "getter panicked false".to_owned(),
            "forget".to_owned(),
        ]
    );
    assert_eq!(source.status(), Status::SignedOut);
    assert!(
        source
            .token()
            .expect_err("signed out by the callback")
            .needs_sign_in()
    );
}

#[test]
fn sign_out_rejects_every_waiter_and_sign_in_recovers() {
    let forgotten = Arc::new(AtomicUsize::new(0));
    let config = Config::builder()
        .request_timeout(LONG)
        .build()
        .expect("config");
    let clock = ManualClock::new();
    let start = clock.now();
    let source = TokenSource::builder(config)
        .clock(clock.clone())
        .on_token_change({
            let forgotten = forgotten.clone();
            move |change| {
                if matches!(change, TokenChange::Forget) {
                    forgotten.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
        .build()
        .expect("source");
    assert_eq!(source.status(), Status::AwaitingSignIn);

    let answers = callers(&source, 16);
    until_waiting(&source, 16);
    source.sign_out();
    // Answered by the sign-out: the clock never moves, so no deadline could have.
    for _ in 0..16 {
        assert_eq!(
            core_error(answer(&answers)),
            silent_refresh::Error::SignedOut
        );
    }
    assert_eq!(source.waiting(), 0);
    assert_eq!(forgotten.load(Ordering::SeqCst), 1);
    // A later call fails at once: answered while its deadline is a minute away on the
    // clock (which stands still).
    let later = callers(&source, 1);
    assert_eq!(core_error(answer(&later)), silent_refresh::Error::SignedOut);
    assert_eq!(clock.now(), start, "fails fast, not at its deadline");

    source.sign_in(Credentials::Token(Token::bearer(
        "at-x",
        Expiry::In(Duration::from_secs(3600)),
    )));
    let token = source.token().expect("signed in");
    assert_eq!(
        (token.secret.expose(), token.generation),
        ("at-x", Generation(1))
    );
}

/// A configuration whose refresh window opens 1% into a token's life (20 ms for a
/// 2 s token), without jitter.
fn early_window() -> Config {
    Config::builder()
        .refresh_fraction(0.99)
        .margin_fraction(0.01)
        .jitter_fraction(0.0)
        .request_timeout(Duration::from_secs(10))
        .build()
        .expect("config")
}

#[test]
fn in_the_refresh_window_callers_get_the_current_token_at_once_while_the_refresh_runs() {
    let (gate, open) = Gate::new();
    let (started_tx, started) = mpsc::channel();
    let refresher = {
        let gate = gate.clone();
        let started_tx = Mutex::new(started_tx);
        move |_: Option<Secret>| {
            started_tx
                .lock()
                .expect("tx")
                .send(())
                .expect("test listens");
            gate.pass();
            Ok(Token::bearer("at-1", Expiry::In(Duration::from_secs(2))))
        }
    };
    let (persisted_tx, persisted) = mpsc::channel();
    let persisted_tx = Mutex::new(persisted_tx);
    let clock = ManualClock::new();
    let source = TokenSource::builder(early_window())
        .clock(clock.clone())
        .credentials(Credentials::ClientCredentials {
            token: Some(Token::bearer("at-0", Expiry::In(Duration::from_secs(2)))),
        })
        .refresher(refresher)
        .on_token_change(move |change| {
            if let TokenChange::Persist { generation, .. } = change {
                let _ = persisted_tx.lock().expect("tx").send(generation.0);
            }
        })
        .build()
        .expect("source");
    assert_eq!(persisted.recv().expect("sign-in persisted"), 1);
    let first = source.token().expect("token");
    // The window opens 20 ms into the token's life, on the source's clock.
    clock.advance(Duration::from_millis(25));

    // The refresh starts and blocks on the gate; callers still get at-0 at once.
    let token = source.token().expect("the current token");
    assert_eq!(token.generation, first.generation);
    started.recv_timeout(GUARD).expect("the refresh started");
    let again = source.token().expect("the current token again");
    assert_eq!(again.secret.expose(), "at-0");

    open.send(()).expect("gate");
    assert_eq!(
        persisted.recv_timeout(GUARD).expect("new token persisted"),
        2
    );
    assert_eq!(source.token().expect("fresh").secret.expose(), "at-1");
}

#[test]
fn proactive_refresh_refreshes_while_nobody_asks() {
    let (persisted_tx, persisted) = mpsc::channel();
    let persisted_tx = Mutex::new(persisted_tx);
    let calls = Arc::new(AtomicU64::new(0));
    let refresher = {
        let calls = calls.clone();
        move |_: Option<Secret>| {
            let k = calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Token::bearer(
                format!("at-{k}"),
                Expiry::In(Duration::from_secs(3600)),
            ))
        }
    };
    let clock = ManualClock::new();
    let source = TokenSource::builder(early_window())
        .clock(clock.clone())
        .credentials(Credentials::ClientCredentials {
            token: Some(Token::bearer("at-0", Expiry::In(Duration::from_secs(2)))),
        })
        .refresher(refresher)
        .on_token_change(move |change| {
            if let TokenChange::Persist { generation, .. } = change {
                let _ = persisted_tx.lock().expect("tx").send(generation.0);
            }
        })
        .build()
        .expect("source");
    assert_eq!(persisted.recv().expect("sign-in persisted"), 1);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no refresh before the window"
    );
    // Nobody calls token(): the idle thread starts the refresh when the window opens,
    // 20 ms into the token's life on the source's clock.
    clock.advance(Duration::from_millis(25));
    assert_eq!(
        persisted.recv_timeout(GUARD).expect("refreshed while idle"),
        2
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(source.token().expect("fresh").secret.expose(), "at-1");
    // Dropping the source stops and joins the idle thread (a hang here is a failure).
    drop(source);
}

#[test]
fn many_rejections_of_one_token_refresh_once_and_an_old_rejection_not_at_all() {
    let calls = Arc::new(AtomicU64::new(0));
    let refresher = {
        let calls = calls.clone();
        move |_: Option<Secret>| {
            let k = calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Token::bearer(
                format!("at-{}", k + 1),
                Expiry::In(Duration::from_secs(3600)),
            ))
        }
    };
    let clock = ManualClock::new();
    let config = short_config()
        .request_timeout(LONG)
        .build()
        .expect("config");
    let source = TokenSource::builder(config)
        .clock(clock.clone())
        .credentials(Credentials::Token(
            Token::bearer("at-1", Expiry::In(Duration::from_secs(3600))).with_refresh_token("rt"),
        ))
        .refresher(refresher)
        .build()
        .expect("source");
    let first = source.token().expect("token");

    let barrier = Barrier::new(32);
    thread::scope(|scope| {
        for _ in 0..32 {
            scope.spawn(|| {
                barrier.wait();
                source.report_rejected(first.generation);
            });
        }
    });
    // Every rejection was taken in before the new token is handed out (the rejections
    // of `first` after it are old ones).
    let second = source.token().expect("refreshed");
    assert_eq!(second.secret.expose(), "at-2");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one refresh");

    let events = source.subscribe();
    source.report_rejected(first.generation);
    assert_eq!(
        source.token().expect("current").generation,
        second.generation,
        "the current token is not withdrawn for an old rejection"
    );
    // Something that must start a refresh: the window of `second` opens on the clock.
    // Its refresh is the only one since the old rejection, and not for a rejection.
    clock.advance(Duration::from_secs(3600));
    let mut started = Vec::new();
    loop {
        match next_event(&events, |_| true) {
            Event::RefreshStarted { trigger, .. } => started.push(trigger),
            Event::TokenAdopted { generation, .. } => {
                assert_eq!(generation.0, second.generation.0 + 1);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(started.len(), 1, "{started:?}");
    assert_ne!(
        started[0],
        Trigger::Rejected,
        "no refresh for a rejection of an old token"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(source.token().expect("fresh").secret.expose(), "at-3");
}

#[test]
fn the_source_is_send_and_sync() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<TokenSource>();
    shared::<silent_refresh_ureq::BearerAuth>();
    shared::<silent_refresh_ureq::OAuth2Refresher>();
    let source = TokenSource::builder(Config::default())
        .build()
        .expect("source");
    assert!(format!("{source:?}").contains("AwaitingSignIn"));
}
