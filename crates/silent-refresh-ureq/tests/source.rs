//! The token source under many threads: single flight, exactly-once answers,
//! deadlines, terminal failures, panics, persistence, sign-in/out, idle refresh.

mod support;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use silent_refresh_ureq::{
    Config, Credentials, Error, Expiry, Generation, ManualClock, RefreshFailure, Secret, Status,
    Token, TokenChange, TokenSource,
};
use support::{Adoptions, core_error, short_config, until_waiting};

const THREADS: usize = 64;

/// Far below the 10 s deadlines of the tests that use it: a waiter answered within
/// this was woken by the outcome, not by its deadline.
const PROMPT: Duration = Duration::from_secs(2);

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
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the test opens the gate");
    }
}

#[test]
fn sixty_four_threads_across_several_expiries_get_one_refresh_per_token() {
    const LIFETIME: Duration = Duration::from_millis(80);
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
        .request_timeout(Duration::from_secs(10))
        .build()
        .expect("config");
    let (persist, adoptions) = Adoptions::new();
    let source = TokenSource::builder(config)
        .credentials(Credentials::RefreshToken("rt-1".into()))
        .refresher(refresher)
        .on_token_change(move |change| persist(&change))
        .build()
        .expect("source");

    let start = Instant::now();
    let answered = AtomicU64::new(0);
    let barrier = Barrier::new(THREADS);
    thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                barrier.wait();
                let mut last = 0;
                while last < GENERATIONS {
                    let asked_at = Instant::now();
                    let token = source.token().expect("every call is answered with a token");
                    answered.fetch_add(1, Ordering::Relaxed);
                    // Woken when the refresh ends, not at the 10 s deadline.
                    assert!(asked_at.elapsed() < PROMPT, "{:?}", asked_at.elapsed());
                    assert!(
                        token.usable_until.is_some_and(|until| until > asked_at),
                        "never a token past its usable_until"
                    );
                    assert!(token.generation.0 >= last, "tokens never go back in time");
                    assert_eq!(token.secret.expose(), format!("at-{}", token.generation.0));
                    last = token.generation.0;
                    thread::yield_now();
                }
            });
        }
    });
    let elapsed = start.elapsed();

    let refreshes = calls.load(Ordering::SeqCst);
    adoptions.wait_for(refreshes);
    assert_eq!(most_in_flight.load(Ordering::SeqCst), 1, "single flight");
    assert_eq!(
        refreshes,
        source.generation().0,
        "each refresh adopted exactly one token"
    );
    assert!(refreshes >= GENERATIONS);
    // Refreshes start at the earliest half-way through a token's life, so they are
    // at least LIFETIME/2 apart: no refresh storm.
    let bound = 1 + (elapsed.as_millis() / (LIFETIME / 2).as_millis()) as u64;
    assert!(refreshes <= bound, "{refreshes} refreshes in {elapsed:?}");
    // Each refresh sent the newest rotated credential.
    let expected: Vec<_> = (1..=refreshes).map(|k| Some(format!("rt-{k}"))).collect();
    assert_eq!(*sent.lock().expect("sent"), expected);
    assert!(answered.load(Ordering::Relaxed) >= THREADS as u64 * GENERATIONS / 2);
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
    let config = short_config().build().expect("config");
    let timeout = config.request_timeout();
    let source = TokenSource::builder(config)
        .credentials(Credentials::RefreshToken("rt-1".into()))
        .refresher(refresher)
        .build()
        .expect("source");

    let barrier = Barrier::new(THREADS);
    let waited: Vec<Duration> = thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let asked_at = Instant::now();
                    let error = core_error(source.token());
                    let waited = asked_at.elapsed();
                    match error {
                        silent_refresh::Error::DeadlineExceeded { last_failure } => {
                            let last = last_failure.expect("the last failure is told");
                            assert!(last.contains("503"), "{last}");
                        }
                        other => panic!("expected DeadlineExceeded, got {other:?}"),
                    }
                    waited
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(waited.len(), THREADS);
    for waited in waited {
        assert!(waited >= timeout, "failed before its deadline: {waited:?}");
        assert!(
            waited < timeout + Duration::from_millis(400),
            "answered late: {waited:?}"
        );
    }
    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "transient failures are retried while callers wait"
    );
    assert_eq!(source.waiting(), 0);
}

#[test]
fn a_hanging_refresher_holds_no_caller_past_its_deadline_and_its_late_token_is_adopted() {
    let (gate, open) = Gate::new();
    let exchanges = Arc::new(AtomicUsize::new(0));
    let refresher = {
        let gate = gate.clone();
        let exchanges = exchanges.clone();
        move |_: Option<Secret>| {
            exchanges.fetch_add(1, Ordering::SeqCst);
            gate.pass();
            Ok(Token::bearer("late", Expiry::In(Duration::from_secs(3600))))
        }
    };
    // Backoffs far shorter than the hang: a second exchange would start at once if the
    // machine gave up on the first one.
    let config = short_config().build().expect("config");
    let timeout = config.request_timeout();
    let source = TokenSource::builder(config)
        .credentials(Credentials::RefreshToken("rt-1".into()))
        .refresher(refresher)
        .build()
        .expect("source");

    // Two rounds of callers: the second asks after the exchange passed its deadline.
    for _round in 0..2 {
        thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    let asked_at = Instant::now();
                    let error = core_error(source.token());
                    assert!(
                        matches!(error, silent_refresh::Error::DeadlineExceeded { .. }),
                        "{error:?}"
                    );
                    assert!(asked_at.elapsed() < timeout + Duration::from_millis(400));
                });
            }
        });
    }
    // The exchange is past its deadline but still on the wire: no second exchange of
    // the same credential started (single flight on the wire), and the late answer is
    // adopted when it comes.
    assert_eq!(exchanges.load(Ordering::SeqCst), 1);
    open.send(()).expect("gate");
    let deadline = Instant::now() + Duration::from_secs(2);
    let token = source.token_before(deadline).expect("the late token");
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
        .request_timeout(Duration::from_secs(10))
        .build()
        .expect("config");
    let source = TokenSource::builder(config)
        .credentials(Credentials::RefreshToken("rt-1".into()))
        .refresher(refresher)
        .build()
        .expect("source");

    thread::scope(|scope| {
        let waiters: Vec<_> = (0..THREADS)
            .map(|_| scope.spawn(|| core_error(source.token())))
            .collect();
        until_waiting(&source, THREADS);
        let opened_at = Instant::now();
        open.send(()).expect("gate");
        for waiter in waiters {
            let error = waiter.join().expect("thread");
            assert!(opened_at.elapsed() < PROMPT, "waiters were not woken");
            match error {
                silent_refresh::Error::SignInRequired { reason } => {
                    assert!(reason.contains("revoked"), "{reason}");
                }
                other => panic!("expected SignInRequired, got {other:?}"),
            }
        }
    });
    assert!(matches!(source.status(), Status::SignInRequired(_)));

    let asked_at = Instant::now();
    let error = core_error(source.token());
    assert!(
        matches!(error, silent_refresh::Error::SignInRequired { .. }),
        "{error:?}"
    );
    assert!(asked_at.elapsed() < PROMPT / 2, "fails fast");
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
        .request_timeout(Duration::from_secs(10))
        .build()
        .expect("config");
    let source = TokenSource::builder(config)
        .credentials(Credentials::RefreshToken("rt".into()))
        .refresher(refresher)
        .build()
        .expect("source");

    let asked_at = Instant::now();
    let token = source.token().expect("granted after the backoff");
    assert!(asked_at.elapsed() < PROMPT, "woken by the retry's success");
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
    let source = TokenSource::builder(short_config().build().expect("config"))
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
        .request_timeout(Duration::from_secs(10))
        .build()
        .expect("config");
    let source = TokenSource::builder(config)
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

    thread::scope(|scope| {
        let waiters: Vec<_> = (0..16)
            .map(|_| scope.spawn(|| core_error(source.token())))
            .collect();
        until_waiting(&source, 16);
        source.sign_out();
        for waiter in waiters {
            assert_eq!(
                waiter.join().expect("thread"),
                silent_refresh::Error::SignedOut
            );
        }
    });
    assert_eq!(forgotten.load(Ordering::SeqCst), 1);
    let asked_at = Instant::now();
    assert_eq!(core_error(source.token()), silent_refresh::Error::SignedOut);
    assert!(asked_at.elapsed() < PROMPT / 2, "fails fast");

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
    started
        .recv_timeout(Duration::from_secs(2))
        .expect("the refresh started");
    let again = source.token().expect("the current token again");
    assert_eq!(again.secret.expose(), "at-0");

    open.send(()).expect("gate");
    assert_eq!(
        persisted
            .recv_timeout(Duration::from_secs(2))
            .expect("new token persisted"),
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
        persisted
            .recv_timeout(Duration::from_secs(2))
            .expect("refreshed while idle"),
        2
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(source.token().expect("fresh").secret.expose(), "at-1");
    // Dropping the source stops and joins the idle thread (a hang here is a failure).
    drop(source);
}

#[test]
fn many_rejections_of_one_token_refresh_once_and_an_old_rejection_not_at_all() {
    let (called_tx, called) = mpsc::channel();
    let called_tx = Mutex::new(called_tx);
    let refresher = move |_: Option<Secret>| {
        called_tx
            .lock()
            .expect("tx")
            .send(())
            .expect("test listens");
        Ok(Token::bearer("at-2", Expiry::In(Duration::from_secs(3600))))
    };
    let source = TokenSource::builder(short_config().build().expect("config"))
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
    let second = source.token().expect("refreshed");
    assert_eq!(second.secret.expose(), "at-2");
    called
        .recv_timeout(Duration::from_secs(1))
        .expect("one refresh");

    source.report_rejected(first.generation);
    assert_eq!(
        source.token().expect("current").generation,
        second.generation
    );
    assert!(
        called.recv_timeout(Duration::from_millis(100)).is_err(),
        "no refresh for a rejection of an old token"
    );
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
