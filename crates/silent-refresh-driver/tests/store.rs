//! The token store, through the generic source, once on each runtime (tokio on paused
//! time, threads on a manual clock): a restart continues the stored session, failed
//! and panicking saves are retried and reported, strict mode waits for the store, a
//! sibling's newer session is adopted and not overwritten, a corrupt file is never
//! overwritten, sign-out forgets the file, a suspend withdraws the old token, and
//! `until_durable` and `shutdown` wait for what exiting would lose.

#[macro_use]
mod support;

use std::fs;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use silent_refresh::{Config, Credentials, Event, Expiry, Secret, Token};
use silent_refresh_driver::TokenSource;
use silent_refresh_driver::kernel::WALL_CLOCK_CHECK;
use silent_refresh_driver::store::{FileStore, Saved, StoreLock, TokenStore};
use support::{
    Answer, Calls, Flaky, HOUR, Harness, Shared, Uncoordinated, assert_stored, core_error, load,
    millis, next_event, persist_failed, persisted, refresh_of, rotated, secret_of, secs, settled,
    stored, until, until_waiting,
};

scenarios!(
    a_restart_continues_the_stored_session_over_wrong_credentials,
    a_stored_token_issued_long_ago_refreshes_at_once,
    a_failing_store_keeps_the_token_and_retries_until_durable,
    a_panicking_store_is_a_failed_save_not_a_swallowed_success,
    strict_mode_grants_no_token_until_it_is_stored,
    a_siblings_newer_session_is_adopted_and_not_overwritten,
    a_siblings_rotation_found_in_the_store_is_adopted_without_an_exchange,
    a_corrupt_file_is_never_overwritten,
    sign_out_forgets_the_file,
    after_a_suspend_the_old_token_is_not_handed_out,
    until_durable_waits_for_the_save_before_the_program_exits,
    shutdown_waits_for_the_exchange_on_the_wire_and_its_save_then_starts_none,
    shutdown_with_nothing_on_the_wire_returns_at_once,
);

/// A waiting caller that something broke gives up within the tests' bound.
fn config() -> Config {
    Config::builder()
        .request_timeout(support::BOUND)
        .build()
        .expect("config")
}

/// A fake refresher of `h` answering its `n`th call with `answers(n)`.
fn fake<H: Harness>(
    h: &H,
    answers: impl Fn(usize) -> Answer + Send + Sync + 'static,
) -> (Arc<Calls>, H::Fake) {
    let calls = Arc::new(Calls::default());
    (calls.clone(), h.fake(calls, Arc::new(answers)))
}

/// A store whose first load waits until the test subscribed (the source may load its
/// store before `build` returns): no event is missed.
struct Gated<S> {
    store: S,
    gate: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl<S: TokenStore> TokenStore for Gated<S> {
    fn load(&self) -> Result<Option<Token>, silent_refresh_driver::Error> {
        // Bounded: a test that never subscribes still loads.
        let _ = support::lock(&self.gate).recv_timeout(support::BOUND);
        self.store.load()
    }

    fn save(
        &self,
        token: &Token,
        from: Option<&Secret>,
    ) -> Result<Saved, silent_refresh_driver::Error> {
        self.store.save(token, from)
    }

    fn save_if_empty(&self, token: &Token) -> Result<Saved, silent_refresh_driver::Error> {
        self.store.save_if_empty(token)
    }

    fn forget(&self) -> Result<(), silent_refresh_driver::Error> {
        self.store.forget()
    }

    fn lock_for_refresh(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Option<Box<dyn StoreLock>>, silent_refresh_driver::Error> {
        self.store.lock_for_refresh(timeout)
    }
}

/// A source of `h` on `store`, and its events from the start.
fn build<H: Harness>(
    h: &H,
    config: Config,
    store: impl TokenStore,
    credentials: Option<Credentials>,
    refresher: H::Fake,
) -> (TokenSource<H::Rt>, H::Events) {
    let (open, gate) = std::sync::mpsc::channel();
    let store = Gated {
        store,
        gate: Mutex::new(gate),
    };
    let mut builder = h.builder(config).store(store);
    if let Some(credentials) = credentials {
        builder = builder.credentials(credentials);
    }
    let source = builder
        .refresher(refresher)
        .build()
        .expect("the source starts");
    let events = H::subscribe(&source);
    open.send(()).expect("the store waits");
    (source, events)
}

/// A session of `h` on a [`Flaky`] store in a directory of its own, started from
/// `at-1`/`rt-1` (usable for an hour) and refreshed to `at-{100 + n}`.
struct OnFlaky<H: Harness> {
    path: std::path::PathBuf,
    store: Arc<Flaky>,
    calls: tokio::sync::mpsc::UnboundedReceiver<&'static str>,
    source: TokenSource<H::Rt>,
    events: H::Events,
    /// Bind it (`_dir`, not `..`): the directory is deleted when it is dropped.
    _dir: tempfile::TempDir,
}

/// [`OnFlaky`] with `config`, its store made to fail or panic by `prepare` before the
/// source starts.
fn on_flaky<H: Harness>(h: &H, config: Config, prepare: impl FnOnce(&Flaky)) -> OnFlaky<H> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let (store, calls) = Flaky::new(&path);
    prepare(&store);
    let (_, refresher) = fake(h, |n| Answer::now(Ok(rotated(100 + n, HOUR))));
    let (source, events) = build(
        h,
        config,
        Shared(store.clone()),
        Some(Credentials::Token(rotated(1, HOUR))),
        refresher,
    );
    OnFlaky {
        path,
        store,
        calls,
        source,
        events,
        _dir: dir,
    }
}

fn is_refresh_started(event: &Event) -> bool {
    matches!(event, Event::RefreshStarted { .. })
}

async fn a_restart_continues_the_stored_session_over_wrong_credentials<H: Harness>(h: H) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");

    // First run: signs in with a token and saves it.
    let (_, refresher) = fake(&h, |n| Answer::now(Ok(rotated(100 + n, HOUR))));
    let (first, mut events) = build(
        &h,
        config(),
        FileStore::new(&path),
        Some(Credentials::Token(rotated(1, HOUR))),
        refresher,
    );
    persisted::<H>(&first, &mut events).await;
    assert!(first.is_durable());
    drop(first);
    let saved = load(&path);
    assert_eq!(saved.access_token.expose(), "at-1");
    assert_eq!(refresh_of(&saved), Some("rt-1"));
    assert!(matches!(saved.expiry, Expiry::At(_)), "a wall-clock expiry");
    assert!(saved.issued_at.is_some(), "the issue time is kept");

    // Second run, with credentials that would fail: the stored session wins, and its
    // fresh token is used without a refresh, also a minute later.
    let (calls, refresher) = fake(&h, |n| Answer::now(Ok(rotated(200 + n, HOUR))));
    let (second, _) = build(
        &h,
        config(),
        FileStore::new(&path),
        Some(Credentials::RefreshToken(Secret::new("rt-WRONG"))),
        refresher,
    );
    assert_eq!(secret_of(H::token(&second).await), "at-1");
    h.advance(secs(60)).await;
    settled(&second);
    assert_eq!(secret_of(H::token(&second).await), "at-1");
    assert_eq!(calls.count(), 0, "a fresh stored token needs no refresh");
    assert!(second.is_durable(), "a loaded session is stored already");
    drop(second);

    // Third run, with no credentials at all: no sign-in needed.
    let (calls, refresher) = fake(&h, |n| Answer::now(Ok(rotated(300 + n, HOUR))));
    let (third, _) = build(&h, config(), FileStore::new(&path), None, refresher);
    assert_eq!(secret_of(H::token_within(&third, secs(1)).await), "at-1");
    assert_eq!(calls.count(), 0);
    assert_eq!(
        refresh_of(&load(&path)),
        Some("rt-1"),
        "the file is unchanged"
    );
}

/// A stored token issued 3400 s ago with 200 s left: its window comes from its whole
/// hour (threshold 5 min), so it refreshes at once, not in about 100 s (half of what is
/// left), as the same token without its issue time does.
async fn a_stored_token_issued_long_ago_refreshes_at_once<H: Harness>(h: H) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let now = SystemTime::now();
    let mut old = Token::bearer("at-old", Expiry::At(now + secs(200))).with_refresh_token("rt-old");
    old.issued_at = Some(now - secs(3400));
    assert_stored(FileStore::new(&path).save(&old, None).expect("seeds"));

    let (calls, refresher) = fake(&h, |n| Answer::after(millis(50), Ok(rotated(n, HOUR))));
    let (source, mut events) = build(
        &h,
        config(),
        FileStore::new(&path),
        Some(Credentials::RefreshToken(Secret::new("rt-WRONG"))),
        refresher,
    );
    // Stale-while-refreshing: the old token serves while the refresh runs.
    assert_eq!(secret_of(H::token(&source).await), "at-old");
    next_event::<H>(&source, &mut events, "RefreshStarted", is_refresh_started).await;
    until(&h, || calls.count() == 1, "the refresh goes on the wire").await;
    h.advance(millis(50)).await;
    persisted::<H>(&source, &mut events).await;
    assert_eq!(
        calls.credentials(),
        vec![Some("rt-old".to_owned())],
        "refreshed at once"
    );
    assert_eq!(secret_of(H::token(&source).await), "at-1");
    let saved = load(&path);
    assert_eq!(refresh_of(&saved), Some("rt-1"));
    assert!(saved.issued_at.is_some());
    drop(source);

    // The control: without the issue time, the lifetime counts from the load, and the
    // same token is not refreshed in its first 50 s, only later.
    let control = dir.path().join("control.json");
    old.issued_at = None;
    old.expiry = Expiry::At(SystemTime::now() + secs(200));
    assert_stored(FileStore::new(&control).save(&old, None).expect("seeds"));
    let (calls, refresher) = fake(&h, |n| Answer::now(Ok(rotated(n, HOUR))));
    let (source, mut events) = build(&h, config(), FileStore::new(&control), None, refresher);
    assert_eq!(secret_of(H::token(&source).await), "at-old");
    h.advance(secs(50)).await;
    settled(&source);
    assert!(
        !H::sent(&mut events).iter().any(is_refresh_started),
        "not refreshed in its first 50 s"
    );
    assert_eq!(calls.count(), 0);
    h.advance(secs(60)).await;
    next_event::<H>(&source, &mut events, "RefreshStarted", is_refresh_started).await;
    persisted::<H>(&source, &mut events).await;
    assert_eq!(calls.credentials(), vec![Some("rt-old".to_owned())]);
}

async fn a_failing_store_keeps_the_token_and_retries_until_durable<H: Harness>(h: H) {
    let OnFlaky {
        path,
        store,
        source,
        mut events,
        _dir,
        ..
    } = on_flaky(&h, config(), |store| store.fail.store(2, Ordering::SeqCst));

    let message = persist_failed::<H>(&source, &mut events).await;
    assert!(message.contains("disk is full"), "{message}");
    assert!(!message.contains("at-1") && !message.contains("rt-1"));
    assert!(!source.is_durable());
    // Availability: the token is used although it is not stored.
    assert_eq!(secret_of(H::token(&source).await), "at-1");
    // The retry waits for its backoff (1 s, then 2 s).
    h.advance(secs(2)).await;
    let message = persist_failed::<H>(&source, &mut events).await;
    assert!(message.contains("disk is full"), "{message}");
    assert!(!source.is_durable());
    assert_eq!(secret_of(H::token(&source).await), "at-1");
    h.advance(secs(4)).await;
    persisted::<H>(&source, &mut events).await;
    assert!(source.is_durable());
    assert_eq!(store.saves(), 3, "two failures, one success");
    assert_eq!(refresh_of(&load(&path)), Some("rt-1"));
}

async fn a_panicking_store_is_a_failed_save_not_a_swallowed_success<H: Harness>(h: H) {
    let OnFlaky {
        path,
        store,
        source,
        mut events,
        _dir,
        ..
    } = on_flaky(&h, config(), |store| store.panic.store(1, Ordering::SeqCst));

    let message = persist_failed::<H>(&source, &mut events).await;
    assert!(message.contains("panicked"), "{message}");
    assert!(!source.is_durable(), "a panic is not a success");
    assert!(
        FileStore::new(&path).load().expect("loads").is_none(),
        "nothing was written"
    );
    assert_eq!(secret_of(H::token(&source).await), "at-1");
    h.advance(secs(2)).await;
    persisted::<H>(&source, &mut events).await;
    assert!(source.is_durable());
    assert_eq!(store.saves(), 2);
    assert_eq!(refresh_of(&load(&path)), Some("rt-1"));
}

async fn strict_mode_grants_no_token_until_it_is_stored<H: Harness>(h: H) {
    let config = Config::builder()
        .strict_persistence(true)
        .request_timeout(support::BOUND)
        .build()
        .expect("config");
    let OnFlaky {
        store,
        source,
        mut events,
        _dir,
        ..
    } = on_flaky(&h, config, |store| store.fail.store(3, Ordering::SeqCst));

    persist_failed::<H>(&source, &mut events).await;
    let error = core_error(H::token_within(&source, millis(100)).await);
    assert!(
        matches!(error, silent_refresh::Error::DeadlineExceeded { .. }),
        "{error:?}"
    );
    assert!(!source.is_durable());
    // A caller already waiting is granted the token once it is stored (the retries
    // come after 1 s, 2 s and 4 s).
    let waiting = H::spawn_token(&source);
    until_waiting(&h, &source, 1).await;
    h.advance(secs(1)).await;
    persist_failed::<H>(&source, &mut events).await;
    h.advance(secs(2)).await;
    persist_failed::<H>(&source, &mut events).await;
    h.advance(secs(4)).await;
    persisted::<H>(&source, &mut events).await;
    assert_eq!(secret_of(waiting.await), "at-1");
    assert_eq!(
        secret_of(H::token_within(&source, millis(100)).await),
        "at-1"
    );
    assert!(source.is_durable());
    assert_eq!(store.saves(), 4);
}

/// Another process refreshed from the same credential and saved first (a store without
/// a refresh lock lets it): our save finds its session in the file, leaves it there, and
/// adopts it.
async fn a_siblings_newer_session_is_adopted_and_not_overwritten<H: Harness>(h: H) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let sibling_path = path.clone();
    let (calls, refresher) = fake(&h, move |n| {
        if n == 1 {
            // While our exchange is on the wire, the sibling saves its rotation of rt-1.
            let mut theirs = stored(0, HOUR);
            theirs.access_token = Secret::new("at-sibling");
            theirs.refresh_token = Some(Secret::new("rt-sibling"));
            assert_stored(
                FileStore::new(&sibling_path)
                    .save(&theirs, Some(&Secret::new("rt-1")))
                    .expect("the sibling saves"),
            );
        }
        Answer::now(Ok(rotated(n + 1, HOUR)))
    });
    let (source, mut events) = build(
        &h,
        config(),
        Uncoordinated(FileStore::new(&path)),
        Some(Credentials::RefreshToken(Secret::new("rt-1"))),
        refresher,
    );

    // Our own refresh result may serve until the store answers.
    let first = secret_of(H::token(&source).await);
    assert!(first == "at-2" || first == "at-sibling", "{first}");
    next_event::<H>(&source, &mut events, "AdoptedFromStore", |e| {
        matches!(e, Event::AdoptedFromStore { .. })
    })
    .await;
    let adopted = H::token(&source).await.expect("a token");
    assert_eq!(adopted.secret.expose(), "at-sibling");
    assert!(source.is_durable(), "the adopted session is the stored one");
    let file = load(&path);
    assert_eq!(file.access_token.expose(), "at-sibling", "not overwritten");
    assert_eq!(refresh_of(&file), Some("rt-sibling"));

    // The next refresh sends the sibling's credential, the newest.
    source.report_rejected(adopted.generation);
    assert_eq!(secret_of(H::token(&source).await), "at-3");
    assert_eq!(
        calls.credentials(),
        vec![Some("rt-1".to_owned()), Some("rt-sibling".to_owned())]
    );
}

/// Processes sharing a file store refresh one at a time: before its exchange a process
/// takes the store's lock and re-reads it, and a sibling's rotation found there is
/// adopted instead of spending the credential it holds (which the sibling spent).
async fn a_siblings_rotation_found_in_the_store_is_adopted_without_an_exchange<H: Harness>(h: H) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let (calls, refresher) = fake(&h, |n| Answer::now(Ok(rotated(100 + n, HOUR))));
    // Our session, stored, with its refresh window 10 minutes away.
    let config = Config::builder()
        .refresh_threshold(secs(300))
        .jitter_fraction(0.0)
        .request_timeout(support::BOUND)
        .build()
        .expect("config");
    let (source, mut events) = build(
        &h,
        config,
        FileStore::new(&path),
        Some(Credentials::Token(rotated(1, secs(900)))),
        refresher,
    );
    persisted::<H>(&source, &mut events).await;
    assert_eq!(secret_of(H::token(&source).await), "at-1");

    // A sibling process refreshes first and saves its rotation of rt-1.
    let mut theirs = stored(0, HOUR);
    theirs.access_token = Secret::new("at-sibling");
    theirs.refresh_token = Some(Secret::new("rt-sibling"));
    assert_stored(
        FileStore::new(&path)
            .save(&theirs, Some(&Secret::new("rt-1")))
            .expect("the sibling saves"),
    );

    // Our window opens: we re-read the store under its lock and adopt theirs.
    h.advance(secs(700)).await;
    next_event::<H>(&source, &mut events, "TokenAdopted", |e| {
        matches!(
            e,
            Event::TokenAdopted {
                attempt: Some(_),
                ..
            }
        )
    })
    .await;
    assert_eq!(secret_of(H::token(&source).await), "at-sibling");
    assert_eq!(
        calls.count(),
        0,
        "no exchange: rt-1 is spent, and the store knew"
    );
    assert_eq!(refresh_of(&load(&path)), Some("rt-sibling"));
}

async fn a_corrupt_file_is_never_overwritten<H: Harness>(h: H) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (n, garbage) in [
        &b"{\"format\": \"someone else's\", \"x\": 1}\n"[..],
        &b"not a session at all\n"[..],
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.path().join(format!("session-{n}.json"));
        fs::write(&path, garbage).expect("writes");
        let (_, refresher) = fake(&h, |n| Answer::now(Ok(rotated(100 + n, HOUR))));
        let (source, mut events) = build(
            &h,
            config(),
            FileStore::new(&path),
            Some(Credentials::Token(rotated(1, HOUR))),
            refresher,
        );

        // It starts from the credentials given in code.
        assert_eq!(secret_of(H::token(&source).await), "at-1");
        let message = persist_failed::<H>(&source, &mut events).await;
        assert!(message.contains("move it away"), "{message}");
        h.advance(secs(2)).await;
        persist_failed::<H>(&source, &mut events).await;
        assert!(!source.is_durable());
        assert_eq!(fs::read(&path).expect("still there"), garbage, "untouched");
    }
}

async fn sign_out_forgets_the_file<H: Harness>(h: H) {
    let OnFlaky {
        path,
        mut calls,
        source,
        mut events,
        _dir,
        ..
    } = on_flaky(&h, config(), |_| {});
    persisted::<H>(&source, &mut events).await;
    assert!(path.exists());

    source.sign_out();
    let forgot = H::within(async {
        while let Some(call) = calls.recv().await {
            if call == "forget" {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(forgot, Some(true), "forget is called");
    assert!(!path.exists(), "the file is deleted");
    assert!(!source.is_durable());
    let error = core_error(H::token(&source).await);
    assert!(
        matches!(error, silent_refresh::Error::SignedOut),
        "{error:?}"
    );

    // A restart finds no session, and its callers are told so (not that the server
    // may be down).
    drop(source);
    let (calls, refresher) = fake(&h, |n| Answer::now(Ok(rotated(n, HOUR))));
    let (restarted, _) = build(&h, config(), FileStore::new(&path), None, refresher);
    let error = core_error(H::token_within(&restarted, millis(50)).await);
    assert!(
        matches!(error, silent_refresh::Error::AwaitingSignIn),
        "{error:?}"
    );
    assert!(error.to_string().starts_with("no credentials"), "{error}");
    assert_eq!(calls.count(), 0);
}

async fn after_a_suspend_the_old_token_is_not_handed_out<H: Harness>(h: H) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let (calls, refresher) = fake(&h, |n| Answer::now(Ok(rotated(n + 1, HOUR))));
    let (source, mut events) = build(
        &h,
        config(),
        FileStore::new(&path),
        Some(Credentials::Token(rotated(1, HOUR))),
        refresher,
    );
    persisted::<H>(&source, &mut events).await;
    assert_eq!(secret_of(H::token(&source).await), "at-1");

    // Two hours asleep: the hour-long token expired on the wall clock, while the
    // monotonic clock says no time passed; the driver reads the wall clock within
    // seconds.
    h.suspend(secs(7200));
    h.advance(WALL_CLOCK_CHECK + secs(1)).await;
    match next_event::<H>(&source, &mut events, "WallClockJumped", |e| {
        matches!(e, Event::WallClockJumped { .. })
    })
    .await
    {
        Event::WallClockJumped { ahead } => assert!(ahead >= secs(7000), "{ahead:?}"),
        _ => unreachable!("filtered"),
    }
    for _ in 0..3 {
        assert_eq!(
            secret_of(H::token(&source).await),
            "at-2",
            "never the token that expired during the suspend"
        );
    }
    assert_eq!(calls.count(), 1);
    assert_eq!(calls.credentials(), vec![Some("rt-1".to_owned())]);
    persisted::<H>(&source, &mut events).await;
    assert_eq!(refresh_of(&load(&path)), Some("rt-2"));
}

/// A program about to exit waits for its token to be stored: `until_durable` says
/// whether it is, within the time given.
async fn until_durable_waits_for_the_save_before_the_program_exits<H: Harness>(h: H) {
    // Two failed saves: retried after 1 s, then 2 s.
    let OnFlaky {
        path,
        store,
        source,
        mut events,
        _dir,
        ..
    } = on_flaky(&h, config(), |store| store.fail.store(2, Ordering::SeqCst));

    persist_failed::<H>(&source, &mut events).await;
    assert!(
        !H::until_durable(&source, millis(500)).await,
        "still failing"
    );
    h.advance(secs(1)).await;
    persist_failed::<H>(&source, &mut events).await;
    h.advance(secs(2)).await;
    assert!(
        H::until_durable(&source, secs(10)).await,
        "stored by the retries"
    );
    assert!(source.is_durable());
    assert_eq!(load(&path).access_token.expose(), "at-1");
    assert_eq!(store.saves(), 3);
}

/// A program that exits while a refresh is on the wire loses its answer, and with it
/// the rotated refresh token: `shutdown` waits for that exchange and its save (a limit
/// that passes first says so), and starts no refresh after it.
async fn shutdown_waits_for_the_exchange_on_the_wire_and_its_save_then_starts_none<H: Harness>(
    h: H,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let (calls, refresher) = fake(&h, |n| {
        Answer::after(secs(20), Ok(rotated(100 + n, secs(60))))
    });
    let (source, mut events) = build(
        &h,
        config(),
        FileStore::new(&path),
        Some(Credentials::Token(rotated(1, secs(60)))),
        refresher,
    );
    persisted::<H>(&source, &mut events).await;
    // at-1's window opens at 30 s to 33 s: its refresh goes on the wire, and answers
    // 20 s after it started.
    h.advance(secs(40)).await;
    next_event::<H>(&source, &mut events, "RefreshStarted", is_refresh_started).await;
    until(&h, || calls.count() == 1, "the refresh goes on the wire").await;
    let started = calls.times()[0];
    assert!(
        !H::shutdown(&source, millis(50)).await,
        "an exchange on the wire: not settled"
    );
    h.advance(secs(20)).await;
    assert!(
        H::shutdown(&source, support::BOUND).await,
        "settled once its answer is saved"
    );
    assert!(
        h.now() >= started + secs(20),
        "returned only once the answer came"
    );
    assert!(source.is_durable());
    assert_eq!(
        refresh_of(&load(&path)),
        Some("rt-101"),
        "its token is saved"
    );
    // at-101's window opens (its lifetime counts from when its refresh was sent): no
    // refresh starts after shutdown; still usable, still granted.
    h.advance(secs(20)).await;
    settled(&source);
    assert_eq!(calls.count(), 1, "nothing spent after shutdown");
    assert_eq!(
        secret_of(H::token_within(&source, support::BOUND).await),
        "at-101",
        "still usable: still granted"
    );
    // And its window passes: still nothing.
    h.advance(secs(75)).await;
    settled(&source);
    assert_eq!(calls.count(), 1, "nothing spent after shutdown");
    assert_eq!(refresh_of(&load(&path)), Some("rt-101"));
}

async fn shutdown_with_nothing_on_the_wire_returns_at_once<H: Harness>(h: H) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (calls, refresher) = fake(&h, |n| Answer::now(Ok(rotated(100 + n, HOUR))));
    let (source, mut events) = build(
        &h,
        config(),
        FileStore::new(dir.path().join("session.json")),
        Some(Credentials::Token(rotated(1, HOUR))),
        refresher,
    );
    persisted::<H>(&source, &mut events).await;
    let before = h.now();
    assert!(H::shutdown(&source, secs(60)).await);
    assert_eq!(h.now(), before, "no wait");
    // Still usable: still granted.
    assert_eq!(secret_of(H::token(&source).await), "at-1");
    assert_eq!(calls.count(), 0);
}
