//! The token store with blocking threads, on a [`ManualClock`]: a restart continues the
//! stored session, failed and panicking saves are retried and reported, strict mode
//! waits for the store, a sibling's newer session is adopted and not overwritten, a
//! corrupt file is never overwritten, sign-out forgets the file, and a suspend
//! withdraws the old token. Nothing sleeps: the tests wait on events and answers, with
//! bounds.

mod support;

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime};

use silent_refresh_driver::Error as StoreError;
use silent_refresh_ureq::{
    Config, Credentials, Error, Event, Expiry, FileStore, Generation, ManualClock, RefreshFailure,
    Saved, Secret, Token, TokenSource, TokenStore,
};
use support::core_error;

/// Far above what any step here takes; reached only when something is broken.
const BOUND: Duration = Duration::from_secs(10);

const HOUR: Duration = Duration::from_secs(3600);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `at-{n}` / `rt-{n}`, living `lifetime` from when it is adopted.
fn rotated(n: usize, lifetime: Duration) -> Token {
    Token::bearer(format!("at-{n}"), Expiry::In(lifetime)).with_refresh_token(format!("rt-{n}"))
}

/// The refresh credentials a fake refresher was given, in order.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<Option<String>>>>);

impl Calls {
    fn seen(&self) -> Vec<Option<String>> {
        self.0.lock().expect("calls").clone()
    }
}

/// A refresher answering its `n`th call (1-based) with `answer(n)`, at once.
fn fake(
    answer: impl Fn(usize) -> Token + Send + Sync + 'static,
) -> (
    Calls,
    impl Fn(Option<Secret>) -> Result<Token, RefreshFailure> + Send + Sync + 'static,
) {
    let calls = Calls::default();
    let seen = calls.clone();
    let refresher = move |refresh_token: Option<Secret>| {
        let n = {
            let mut seen = seen.0.lock().expect("calls");
            seen.push(refresh_token.map(|s| s.expose().to_owned()));
            seen.len()
        };
        Ok(answer(n))
    };
    (calls, refresher)
}

fn config() -> Config {
    Config::builder()
        .request_timeout(BOUND)
        .build()
        .expect("config")
}

struct Built {
    source: TokenSource,
    events: mpsc::Receiver<Event>,
    clock: ManualClock,
}

fn build(
    config: Config,
    store: impl TokenStore,
    credentials: Option<Credentials>,
    refresher: impl silent_refresh_ureq::Refresher,
) -> Built {
    let clock = ManualClock::new();
    let (open, gate) = mpsc::channel();
    let mut builder = TokenSource::builder(config)
        .store(Gated {
            store,
            gate: Mutex::new(gate),
        })
        .refresher(refresher)
        .clock(clock.clone());
    if let Some(credentials) = credentials {
        builder = builder.credentials(credentials);
    }
    let source = builder.build().expect("the source starts");
    let events = source.subscribe();
    open.send(()).expect("the store waits");
    Built {
        source,
        events,
        clock,
    }
}

/// A store whose first load waits until the test subscribed (the source loads its
/// store on its own thread, which may run before `build` returns): no event is missed.
struct Gated<S> {
    store: S,
    gate: Mutex<mpsc::Receiver<()>>,
}

impl<S: TokenStore> TokenStore for Gated<S> {
    fn load(&self) -> Result<Option<Token>, StoreError> {
        // Bounded: a test that never subscribes still loads.
        let _ = self.gate.lock().expect("gate").recv_timeout(BOUND);
        self.store.load()
    }

    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, StoreError> {
        self.store.save(token, from)
    }

    fn forget(&self) -> Result<(), StoreError> {
        self.store.forget()
    }
}

/// Waits until the input that sent the last event received has been settled.
///
/// The kernel sends events to subscribers inside its settle loop, before it publishes
/// the snapshot the getters and the fast path read: a subscriber woken by `Persisted`
/// may still read `is_durable() == false`. Any input takes the kernel's lock, so it
/// returns only after that settle published; a rejection of generation 0 (older than
/// any token) changes nothing but feeds the machine the clock's time.
fn settled(source: &TokenSource) {
    source.report_rejected(Generation(0));
}

/// The next event `wanted` accepts, skipping others.
fn next_event(built: &Built, what: &str, wanted: impl Fn(&Event) -> bool) -> Event {
    loop {
        match built.events.recv_timeout(BOUND) {
            Ok(event) if wanted(&event) => {
                settled(&built.source);
                return event;
            }
            Ok(_) => {}
            Err(error) => panic!("waiting for {what}: {error}"),
        }
    }
}

fn persisted(built: &Built) {
    next_event(built, "Persisted", |e| matches!(e, Event::Persisted { .. }));
}

fn persist_failed(built: &Built) -> String {
    match next_event(built, "PersistFailed", |e| {
        matches!(e, Event::PersistFailed { .. })
    }) {
        Event::PersistFailed { message, .. } => message.to_string(),
        _ => unreachable!("filtered"),
    }
}

fn secret_of(result: Result<Arc<silent_refresh_ureq::AccessToken>, Error>) -> String {
    match result {
        Ok(token) => token.secret.expose().to_owned(),
        Err(error) => panic!("expected a token, got: {error}"),
    }
}

fn load(path: &Path) -> Token {
    FileStore::new(path)
        .load()
        .expect("the file parses")
        .expect("the file holds a session")
}

fn refresh_of(token: &Token) -> Option<&str> {
    token.refresh_token.as_ref().map(Secret::expose)
}

fn assert_stored(saved: Saved) {
    assert!(
        matches!(saved, Saved::Stored),
        "expected Stored, got {saved:?}"
    );
}

/// A [`FileStore`] whose next saves fail or panic, as many times as told, and which
/// reports each call on a channel.
struct Flaky {
    file: FileStore,
    fail: AtomicUsize,
    panic: AtomicUsize,
    saves: AtomicUsize,
    calls: Mutex<mpsc::Sender<&'static str>>,
}

impl Flaky {
    fn new(path: &Path) -> (Arc<Self>, mpsc::Receiver<&'static str>) {
        let (calls, seen) = mpsc::channel();
        let store = Arc::new(Self {
            file: FileStore::new(path),
            fail: AtomicUsize::new(0),
            panic: AtomicUsize::new(0),
            saves: AtomicUsize::new(0),
            calls: Mutex::new(calls),
        });
        (store, seen)
    }

    fn report(&self, call: &'static str) {
        let _ = self.calls.lock().expect("calls").send(call);
    }

    fn take_one(counter: &AtomicUsize) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// The source owns its store; the test keeps a handle on the same one.
struct Shared(Arc<Flaky>);

impl TokenStore for Shared {
    fn load(&self) -> Result<Option<Token>, StoreError> {
        self.0.report("load");
        self.0.file.load()
    }

    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, StoreError> {
        self.0.saves.fetch_add(1, Ordering::SeqCst);
        self.0.report("save");
        if Flaky::take_one(&self.0.panic) {
            panic!("the test store panics");
        }
        if Flaky::take_one(&self.0.fail) {
            return Err(StoreError::StoreIo {
                action: "written",
                path: self.0.file.path().display().to_string(),
                source: std::io::Error::other("the disk is full (a test failure)"),
            });
        }
        self.0.file.save(token, from)
    }

    fn forget(&self) -> Result<(), StoreError> {
        let result = self.0.file.forget();
        self.0.report("forget");
        result
    }
}

#[test]
fn a_restart_continues_the_stored_session_over_wrong_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");

    let (_, refresher) = fake(|n| rotated(100 + n, HOUR));
    let first = build(
        config(),
        FileStore::new(&path),
        Some(Credentials::Token(rotated(1, HOUR))),
        refresher,
    );
    persisted(&first);
    assert!(first.source.is_durable());
    drop(first);
    let saved = load(&path);
    assert_eq!(saved.access_token.expose(), "at-1");
    assert_eq!(refresh_of(&saved), Some("rt-1"));
    assert!(saved.issued_at.is_some(), "the issue time is kept");

    // Credentials that would fail: the stored session wins; its fresh token needs no
    // refresh, also a minute later.
    let (calls, refresher) = fake(|n| rotated(200 + n, HOUR));
    let second = build(
        config(),
        FileStore::new(&path),
        Some(Credentials::RefreshToken(Secret::new("rt-WRONG"))),
        refresher,
    );
    assert_eq!(secret_of(second.source.token()), "at-1");
    second.clock.advance(secs(60));
    settled(&second.source);
    assert_eq!(secret_of(second.source.token()), "at-1");
    assert!(calls.seen().is_empty(), "no refresh");
    assert!(second.source.is_durable());
    drop(second);

    // No credentials at all: no sign-in needed.
    let (calls, refresher) = fake(|n| rotated(300 + n, HOUR));
    let third = build(config(), FileStore::new(&path), None, refresher);
    assert_eq!(secret_of(third.source.token()), "at-1");
    assert!(calls.seen().is_empty());
}

/// Issued 3400 s ago, 200 s left: the window of its whole hour (threshold 5 min) is
/// open, so it refreshes at once; without the issue time, only after about 100 s.
#[test]
fn a_stored_token_issued_long_ago_refreshes_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let now = SystemTime::now();
    let mut old = Token::bearer("at-old", Expiry::At(now + secs(200))).with_refresh_token("rt-old");
    old.issued_at = Some(now - secs(3400));
    assert_stored(FileStore::new(&path).save(&old, None).expect("seeds"));

    let (calls, refresher) = fake(|n| rotated(n, HOUR));
    let built = build(config(), FileStore::new(&path), None, refresher);
    next_event(&built, "RefreshStarted", |e| {
        matches!(e, Event::RefreshStarted { .. })
    });
    persisted(&built);
    assert_eq!(calls.seen(), vec![Some("rt-old".to_owned())]);
    assert_eq!(secret_of(built.source.token()), "at-1");
    assert_eq!(refresh_of(&load(&path)), Some("rt-1"));
    drop(built);

    // The control: the same token without its issue time.
    let control = dir.path().join("control.json");
    old.issued_at = None;
    old.expiry = Expiry::At(SystemTime::now() + secs(200));
    assert_stored(FileStore::new(&control).save(&old, None).expect("seeds"));
    let (calls, refresher) = fake(|n| rotated(n, HOUR));
    let built = build(config(), FileStore::new(&control), None, refresher);
    assert_eq!(secret_of(built.source.token()), "at-old");
    built.clock.advance(secs(50));
    settled(&built.source);
    assert!(
        !built
            .events
            .try_iter()
            .any(|e| matches!(e, Event::RefreshStarted { .. })),
        "not refreshed in its first 50 s"
    );
    built.clock.advance(secs(60));
    next_event(&built, "RefreshStarted", |e| {
        matches!(e, Event::RefreshStarted { .. })
    });
    persisted(&built);
    assert_eq!(calls.seen(), vec![Some("rt-old".to_owned())]);
}

#[test]
fn a_failing_store_keeps_the_token_and_retries_until_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let (store, _calls) = Flaky::new(&path);
    store.fail.store(2, Ordering::SeqCst);
    let (_, refresher) = fake(|n| rotated(100 + n, HOUR));
    let built = build(
        config(),
        Shared(store.clone()),
        Some(Credentials::Token(rotated(1, HOUR))),
        refresher,
    );

    let message = persist_failed(&built);
    assert!(message.contains("disk is full"), "{message}");
    assert!(!message.contains("at-1") && !message.contains("rt-1"));
    assert!(!built.source.is_durable());
    // Availability: the token is used although it is not stored.
    assert_eq!(secret_of(built.source.token()), "at-1");
    // The retry waits for its backoff (1 s, then 2 s, on the manual clock).
    built.clock.advance(secs(2));
    persist_failed(&built);
    assert!(!built.source.is_durable());
    built.clock.advance(secs(4));
    persisted(&built);
    assert!(built.source.is_durable());
    assert_eq!(store.saves.load(Ordering::SeqCst), 3);
    assert_eq!(refresh_of(&load(&path)), Some("rt-1"));
}

#[test]
fn a_panicking_store_is_a_failed_save_not_a_swallowed_success() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let (store, _calls) = Flaky::new(&path);
    store.panic.store(1, Ordering::SeqCst);
    let (_, refresher) = fake(|n| rotated(100 + n, HOUR));
    let built = build(
        config(),
        Shared(store.clone()),
        Some(Credentials::Token(rotated(1, HOUR))),
        refresher,
    );

    let message = persist_failed(&built);
    assert!(message.contains("panicked"), "{message}");
    assert!(!built.source.is_durable(), "a panic is not a success");
    assert!(FileStore::new(&path).load().expect("loads").is_none());
    assert_eq!(secret_of(built.source.token()), "at-1");
    built.clock.advance(secs(2));
    persisted(&built);
    assert!(built.source.is_durable());
    assert_eq!(store.saves.load(Ordering::SeqCst), 2);
    assert_eq!(refresh_of(&load(&path)), Some("rt-1"));
}

#[test]
fn strict_mode_grants_no_token_until_it_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let (store, _calls) = Flaky::new(&path);
    store.fail.store(1, Ordering::SeqCst);
    let config = Config::builder()
        .strict_persistence(true)
        .request_timeout(BOUND)
        .build()
        .expect("config");
    let (_, refresher) = fake(|n| rotated(100 + n, HOUR));
    let built = build(
        config,
        Shared(store.clone()),
        Some(Credentials::Token(rotated(1, HOUR))),
        refresher,
    );

    persist_failed(&built);
    let error = core_error(built.source.token_within(Duration::from_millis(50)));
    assert!(
        matches!(error, silent_refresh::Error::DeadlineExceeded { .. }),
        "{error:?}"
    );
    assert!(!built.source.is_durable());
    // A caller already waiting is granted the token once it is stored.
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| built.source.token());
        support::until_waiting(&built.source, 1);
        built.clock.advance(secs(2));
        assert_eq!(secret_of(waiting.join().expect("joins")), "at-1");
    });
    assert!(built.source.is_durable());
    assert_eq!(store.saves.load(Ordering::SeqCst), 2);
}

#[test]
fn a_siblings_newer_session_is_adopted_and_not_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let sibling_path = path.clone();
    let (calls, refresher) = fake(move |n| {
        if n == 1 {
            // While our exchange is on the wire, the sibling saves its rotation of rt-1.
            let now = SystemTime::now();
            let mut theirs = Token::bearer("at-sibling", Expiry::At(now + HOUR))
                .with_refresh_token("rt-sibling");
            theirs.issued_at = Some(now);
            assert_stored(
                FileStore::new(&sibling_path)
                    .save(&theirs, Some(&Secret::new("rt-1")))
                    .expect("the sibling saves"),
            );
        }
        rotated(n + 1, HOUR)
    });
    let built = build(
        config(),
        FileStore::new(&path),
        Some(Credentials::RefreshToken(Secret::new("rt-1"))),
        refresher,
    );

    let first = secret_of(built.source.token());
    assert!(first == "at-2" || first == "at-sibling", "{first}");
    next_event(&built, "AdoptedFromStore", |e| {
        matches!(e, Event::AdoptedFromStore { .. })
    });
    let adopted = built.source.token().expect("a token");
    assert_eq!(adopted.secret.expose(), "at-sibling");
    assert!(built.source.is_durable());
    let file = load(&path);
    assert_eq!(file.access_token.expose(), "at-sibling", "not overwritten");
    assert_eq!(refresh_of(&file), Some("rt-sibling"));

    built.source.report_rejected(adopted.generation);
    assert_eq!(secret_of(built.source.token()), "at-3");
    assert_eq!(
        calls.seen(),
        vec![Some("rt-1".to_owned()), Some("rt-sibling".to_owned())]
    );
}

#[test]
fn a_corrupt_file_is_never_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let garbage = b"not a session at all\n".to_vec();
    fs::write(&path, &garbage).expect("writes");
    let (_, refresher) = fake(|n| rotated(100 + n, HOUR));
    let built = build(
        config(),
        FileStore::new(&path),
        Some(Credentials::Token(rotated(1, HOUR))),
        refresher,
    );

    assert_eq!(secret_of(built.source.token()), "at-1");
    let message = persist_failed(&built);
    assert!(message.contains("move it away"), "{message}");
    built.clock.advance(secs(2));
    persist_failed(&built);
    assert!(!built.source.is_durable());
    assert_eq!(fs::read(&path).expect("still there"), garbage, "untouched");
}

#[test]
fn sign_out_forgets_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let (store, calls) = Flaky::new(&path);
    let (_, refresher) = fake(|n| rotated(100 + n, HOUR));
    let built = build(
        config(),
        Shared(store),
        Some(Credentials::Token(rotated(1, HOUR))),
        refresher,
    );
    persisted(&built);
    assert!(path.exists());

    built.source.sign_out();
    loop {
        match calls.recv_timeout(BOUND) {
            Ok("forget") => break,
            Ok(_) => {}
            Err(error) => panic!("forget is never called: {error}"),
        }
    }
    assert!(!path.exists(), "the file is deleted");
    assert!(!built.source.is_durable());
    let error = core_error(built.source.token());
    assert!(
        matches!(error, silent_refresh::Error::SignedOut),
        "{error:?}"
    );
    drop(built);

    let (calls, refresher) = fake(|n| rotated(n, HOUR));
    let restarted = build(config(), FileStore::new(&path), None, refresher);
    let error = core_error(restarted.source.token_within(Duration::from_millis(50)));
    assert!(
        matches!(error, silent_refresh::Error::DeadlineExceeded { .. }),
        "{error:?}"
    );
    assert!(calls.seen().is_empty());
}

#[test]
fn after_a_suspend_the_old_token_is_not_handed_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let (calls, refresher) = fake(|n| rotated(n + 1, HOUR));
    let built = build(
        config(),
        FileStore::new(&path),
        Some(Credentials::Token(rotated(1, HOUR))),
        refresher,
    );
    persisted(&built);
    assert_eq!(secret_of(built.source.token()), "at-1");

    // Two hours asleep: the monotonic clock stood still, the wall clock did not.
    built.clock.advance_wall(secs(7200));
    match next_event(&built, "WallClockJumped", |e| {
        matches!(e, Event::WallClockJumped { .. })
    }) {
        Event::WallClockJumped { ahead } => assert!(ahead >= secs(7000), "{ahead:?}"),
        _ => unreachable!("filtered"),
    }
    for _ in 0..3 {
        assert_eq!(
            secret_of(built.source.token()),
            "at-2",
            "never the token that expired during the suspend"
        );
    }
    assert_eq!(calls.seen(), vec![Some("rt-1".to_owned())]);
    persisted(&built);
    assert_eq!(refresh_of(&load(&path)), Some("rt-2"));
}

/// A program about to exit waits for its token to be stored (the store runs on a thread
/// of its own): `until_durable` returns once it is.
#[test]
fn until_durable_waits_for_the_store_thread_before_the_program_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let (_, refresher) = fake(|n| rotated(100 + n, HOUR));
    let source = TokenSource::builder(Config::default())
        .store(FileStore::new(&path))
        .credentials(Credentials::Token(rotated(1, HOUR)))
        .refresher(refresher)
        .build()
        .expect("source");

    assert!(source.until_durable(BOUND), "stored within the bound");
    assert!(source.is_durable());
    assert_eq!(load(&path).access_token.expose(), "at-1");
}

/// A program that exits while a refresh is on the wire loses its answer, and with it
/// the rotated refresh token: `shutdown` waits for that exchange and its save (a limit
/// that passes first says so), and starts no refresh after it.
#[test]
fn shutdown_waits_for_the_exchange_on_the_wire_and_its_save_then_starts_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let (started, on_wire) = mpsc::channel();
    let (answer, release) = mpsc::channel::<()>();
    let release = Mutex::new(release);
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let built = build(
        config(),
        FileStore::new(&path),
        Some(Credentials::Token(rotated(1, secs(60)))),
        move |_: Option<Secret>| {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = started.send(());
            // On the wire until the test lets the answer come.
            let _ = release.lock().expect("release").recv_timeout(BOUND);
            Ok(rotated(100 + n, secs(60)))
        },
    );
    persisted(&built);
    // at-1's window opens at 30 s to 33 s: its refresh goes on the wire.
    built.clock.advance(secs(40));
    on_wire.recv_timeout(BOUND).expect("the refresh started");
    assert!(
        !built.source.shutdown(Duration::from_millis(50)),
        "an exchange on the wire: not settled"
    );
    answer.send(()).expect("the refresher waits");
    assert!(
        built.source.shutdown(BOUND),
        "settled once its answer is saved"
    );
    assert!(built.source.is_durable());
    assert_eq!(
        refresh_of(&load(&path)),
        Some("rt-101"),
        "its token is saved"
    );
    // at-101's window opens: no refresh starts after shutdown.
    built.clock.advance(secs(45));
    settled(&built.source);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "nothing spent after shutdown"
    );
    assert_eq!(
        secret_of(built.source.token_within(BOUND)),
        "at-101",
        "still usable: still granted"
    );
}
