//! The token store on tokio's paused clock: a restart continues the stored session,
//! failed and panicking saves are retried and reported, strict mode waits for the
//! store, a sibling's newer session is adopted and not overwritten, a corrupt file is
//! never overwritten, sign-out forgets the file, and a suspend withdraws the old token.

mod common;

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::{Answer, fake, lock, millis, rotated, secs};
use silent_refresh_driver::Error as StoreError;
use silent_refresh_tokio::silent_refresh::{self, Config, Credentials, Event, Expiry, Token};
use silent_refresh_tokio::{
    Clock, Error, FileStore, Refresher, Saved, Secret, TokenSource, TokenStore,
};
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, sleep, timeout};

/// A token issued now on the wall clock, living `lifetime`: `at-{n}`, `rt-{n}`.
fn stored(n: usize, lifetime: Duration) -> Token {
    let now = SystemTime::now();
    let mut token = Token::bearer(format!("at-{n}"), Expiry::At(now + lifetime))
        .with_refresh_token(format!("rt-{n}"));
    token.issued_at = Some(now);
    token
}

fn hour() -> Duration {
    secs(3600)
}

fn build_source(
    config: Config,
    store: impl TokenStore,
    credentials: Option<Credentials>,
    refresher: impl Refresher,
) -> TokenSource {
    let mut builder = TokenSource::builder(config).store(store);
    if let Some(credentials) = credentials {
        builder = builder.credentials(credentials);
    }
    builder
        .refresher(refresher)
        .build()
        .expect("inside a runtime")
}

/// Waits until the input that sent the last event received has been settled.
///
/// The kernel sends events to subscribers inside its settle loop, before it publishes
/// the snapshot the getters and the fast path read: a subscriber woken by `Persisted`
/// (sent from the store's blocking thread) may still read `is_durable() == false`, or
/// the token before an `AdoptedFromStore`. Any input takes the kernel's lock, so it
/// returns only after that settle published; a rejection of generation 0 (older than
/// any token) changes nothing.
fn settled(source: &TokenSource) {
    source.report_rejected(silent_refresh::Generation(0));
}

/// The next event `wanted` accepts, skipping others (bounded on the paused clock).
async fn next_event(
    events: &mut broadcast::Receiver<Event>,
    what: &str,
    wanted: impl Fn(&Event) -> bool,
) -> Event {
    timeout(secs(600), async {
        loop {
            match events.recv().await {
                Ok(event) if wanted(&event) => return event,
                Ok(_) => {}
                Err(error) => panic!("waiting for {what}: {error}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} event within 10 minutes"))
}

async fn persisted(source: &TokenSource, events: &mut broadcast::Receiver<Event>) {
    next_event(events, "Persisted", |e| {
        matches!(e, Event::Persisted { .. })
    })
    .await;
    settled(source);
}

async fn persist_failed(source: &TokenSource, events: &mut broadcast::Receiver<Event>) -> String {
    let event = next_event(events, "PersistFailed", |e| {
        matches!(e, Event::PersistFailed { .. })
    })
    .await;
    settled(source);
    match event {
        Event::PersistFailed { message, .. } => message.to_string(),
        _ => unreachable!("filtered"),
    }
}

fn secret_of(result: Result<Arc<silent_refresh::AccessToken>, Error>) -> String {
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

/// A [`FileStore`] whose next saves fail or panic, as many times as told, and which
/// reports each call on a channel.
struct Flaky {
    file: FileStore,
    fail: AtomicUsize,
    panic: AtomicUsize,
    saves: AtomicUsize,
    calls: mpsc::UnboundedSender<&'static str>,
}

impl Flaky {
    fn new(path: &Path) -> (Arc<Self>, mpsc::UnboundedReceiver<&'static str>) {
        let (calls, seen) = mpsc::unbounded_channel();
        let store = Arc::new(Self {
            file: FileStore::new(path),
            fail: AtomicUsize::new(0),
            panic: AtomicUsize::new(0),
            saves: AtomicUsize::new(0),
            calls,
        });
        (store, seen)
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
        let _ = self.0.calls.send("load");
        self.0.file.load()
    }

    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, StoreError> {
        self.0.saves.fetch_add(1, Ordering::SeqCst);
        let _ = self.0.calls.send("save");
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
        let _ = self.0.calls.send("forget");
        result
    }
}

#[tokio::test(start_paused = true)]
async fn a_restart_continues_the_stored_session_over_wrong_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");

    // First run: signs in with a token and saves it.
    let (_, refresher) = fake(|n| Answer::now(Ok(rotated(100 + n, hour()))));
    let first = build_source(
        Config::default(),
        FileStore::new(&path),
        Some(Credentials::Token(rotated(1, hour()))),
        refresher,
    );
    let mut events = first.subscribe();
    persisted(&first, &mut events).await;
    assert!(first.is_durable());
    drop(first);
    let saved = load(&path);
    assert_eq!(saved.access_token.expose(), "at-1");
    assert_eq!(refresh_of(&saved), Some("rt-1"));
    assert!(matches!(saved.expiry, Expiry::At(_)), "a wall-clock expiry");
    assert!(saved.issued_at.is_some(), "the issue time is kept");

    // Second run, with credentials that would fail: the stored session wins, and its
    // fresh token is used without a refresh.
    let (calls, refresher) = fake(|n| Answer::now(Ok(rotated(200 + n, hour()))));
    let second = build_source(
        Config::default(),
        FileStore::new(&path),
        Some(Credentials::RefreshToken(Secret::new("rt-WRONG"))),
        refresher,
    );
    assert_eq!(secret_of(second.token().await), "at-1");
    sleep(secs(60)).await;
    assert_eq!(secret_of(second.token().await), "at-1");
    assert_eq!(calls.count(), 0, "a fresh stored token needs no refresh");
    assert!(second.is_durable(), "a loaded session is stored already");
    drop(second);

    // Third run, with no credentials at all: no sign-in needed.
    let (calls, refresher) = fake(|n| Answer::now(Ok(rotated(300 + n, hour()))));
    let third = build_source(Config::default(), FileStore::new(&path), None, refresher);
    assert_eq!(secret_of(third.token_within(secs(1)).await), "at-1");
    assert_eq!(calls.count(), 0);
    assert_eq!(
        refresh_of(&load(&path)),
        Some("rt-1"),
        "the file is unchanged"
    );
}

/// A stored token issued 3400 s ago with 200 s left: its window comes from its whole
/// hour (threshold 5 min), so it refreshes at once, not in 100 s (half of what is left).
#[tokio::test(start_paused = true)]
async fn a_stored_token_issued_long_ago_refreshes_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let now = SystemTime::now();
    let mut old = Token::bearer("at-old", Expiry::At(now + secs(200))).with_refresh_token("rt-old");
    old.issued_at = Some(now - secs(3400));
    FileStore::new(&path)
        .save(&old, None)
        .expect("seeds the file")
        .assert_stored();

    let (calls, refresher) = fake(|n| Answer::after(millis(50), Ok(rotated(n, hour()))));
    let source = build_source(
        Config::default(),
        FileStore::new(&path),
        Some(Credentials::RefreshToken(Secret::new("rt-WRONG"))),
        refresher,
    );
    let mut events = source.subscribe();
    // Stale-while-refreshing: the old token serves while the refresh runs.
    assert_eq!(secret_of(source.token().await), "at-old");
    sleep(secs(1)).await;
    assert_eq!(calls.count(), 1, "refreshed at once");
    assert_eq!(calls.credentials(), vec![Some("rt-old".to_owned())]);
    persisted(&source, &mut events).await;
    assert_eq!(secret_of(source.token().await), "at-1");
    let saved = load(&path);
    assert_eq!(refresh_of(&saved), Some("rt-1"));
    assert!(saved.issued_at.is_some());

    // The control: without the issue time, the lifetime counts from the load, and the
    // same token is not refreshed in its first 50 s.
    let control = dir.path().join("control.json");
    old.issued_at = None;
    old.expiry = Expiry::At(SystemTime::now() + secs(200));
    FileStore::new(&control)
        .save(&old, None)
        .expect("seeds the file")
        .assert_stored();
    let (calls, refresher) = fake(|n| Answer::now(Ok(rotated(n, hour()))));
    let source = build_source(Config::default(), FileStore::new(&control), None, refresher);
    assert_eq!(secret_of(source.token().await), "at-old");
    sleep(secs(50)).await;
    assert_eq!(calls.count(), 0);
}

trait AssertStored {
    fn assert_stored(self);
}

impl AssertStored for Saved {
    fn assert_stored(self) {
        assert!(
            matches!(self, Saved::Stored),
            "expected Stored, got {self:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_keeps_the_token_and_retries_until_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let (store, _calls) = Flaky::new(&path);
    store.fail.store(2, Ordering::SeqCst);
    let (_, refresher) = fake(|n| Answer::now(Ok(rotated(100 + n, hour()))));
    let source = build_source(
        Config::default(),
        Shared(store.clone()),
        Some(Credentials::Token(rotated(1, hour()))),
        refresher,
    );
    let mut events = source.subscribe();

    // Availability: the token is used although it is not stored.
    assert_eq!(secret_of(source.token().await), "at-1");
    let message = persist_failed(&source, &mut events).await;
    assert!(message.contains("disk is full"), "{message}");
    assert!(!source.is_durable());
    assert!(!message.contains("at-1") && !message.contains("rt-1"));
    let message = persist_failed(&source, &mut events).await;
    assert!(message.contains("disk is full"), "{message}");
    assert!(!source.is_durable());
    assert_eq!(secret_of(source.token().await), "at-1");
    persisted(&source, &mut events).await;
    assert!(source.is_durable());
    assert_eq!(
        store.saves.load(Ordering::SeqCst),
        3,
        "two failures, one success"
    );
    assert_eq!(refresh_of(&load(&path)), Some("rt-1"));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_store_is_a_failed_save_not_a_swallowed_success() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let (store, _calls) = Flaky::new(&path);
    store.panic.store(1, Ordering::SeqCst);
    let (_, refresher) = fake(|n| Answer::now(Ok(rotated(100 + n, hour()))));
    let source = build_source(
        Config::default(),
        Shared(store.clone()),
        Some(Credentials::Token(rotated(1, hour()))),
        refresher,
    );
    let mut events = source.subscribe();

    let message = persist_failed(&source, &mut events).await;
    assert!(message.contains("panicked"), "{message}");
    assert!(!source.is_durable(), "a panic is not a success");
    assert!(
        FileStore::new(&path).load().expect("loads").is_none(),
        "nothing was written"
    );
    assert_eq!(secret_of(source.token().await), "at-1");
    persisted(&source, &mut events).await;
    assert!(source.is_durable());
    assert_eq!(store.saves.load(Ordering::SeqCst), 2);
    assert_eq!(refresh_of(&load(&path)), Some("rt-1"));
}

#[tokio::test(start_paused = true)]
async fn strict_mode_grants_no_token_until_it_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let (store, _calls) = Flaky::new(&path);
    store.fail.store(3, Ordering::SeqCst);
    let config = Config::builder()
        .strict_persistence(true)
        .build()
        .expect("config");
    let (_, refresher) = fake(|n| Answer::now(Ok(rotated(100 + n, hour()))));
    let source = build_source(
        config,
        Shared(store.clone()),
        Some(Credentials::Token(rotated(1, hour()))),
        refresher,
    );
    let mut events = source.subscribe();

    persist_failed(&source, &mut events).await;
    match source.token_within(millis(100)).await {
        Err(Error::Token(silent_refresh::Error::DeadlineExceeded { .. })) => {}
        other => panic!("expected a deadline error, got {other:?}"),
    }
    assert!(!source.is_durable());
    persisted(&source, &mut events).await;
    assert_eq!(secret_of(source.token_within(millis(100)).await), "at-1");
    assert!(source.is_durable());
    assert_eq!(store.saves.load(Ordering::SeqCst), 4);
}

/// A file store that does not coordinate processes (no refresh lock): only its
/// compare-and-swap stands between two writers.
struct Uncoordinated(FileStore);

impl TokenStore for Uncoordinated {
    fn load(&self) -> Result<Option<Token>, StoreError> {
        self.0.load()
    }

    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, StoreError> {
        self.0.save(token, from)
    }

    fn forget(&self) -> Result<(), StoreError> {
        self.0.forget()
    }
}

/// Another process refreshed from the same credential and saved first (a store without
/// a refresh lock lets it): our save finds its session in the file, leaves it there, and
/// adopts it.
#[tokio::test(start_paused = true)]
async fn a_siblings_newer_session_is_adopted_and_not_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let sibling_path = path.clone();
    let (calls, refresher) = fake(move |n| {
        if n == 1 {
            // While our exchange is on the wire, the sibling saves its rotation of rt-1.
            let mut theirs = stored(0, hour());
            theirs.access_token = Secret::new("at-sibling");
            theirs.refresh_token = Some(Secret::new("rt-sibling"));
            FileStore::new(&sibling_path)
                .save(&theirs, Some(&Secret::new("rt-1")))
                .expect("the sibling saves")
                .assert_stored();
        }
        Answer::after(millis(10), Ok(rotated(n + 1, hour())))
    });
    let source = build_source(
        Config::default(),
        Uncoordinated(FileStore::new(&path)),
        Some(Credentials::RefreshToken(Secret::new("rt-1"))),
        refresher,
    );
    let mut events = source.subscribe();

    // Our own refresh result may serve until the store answers.
    let first = secret_of(source.token().await);
    assert!(first == "at-2" || first == "at-sibling", "{first}");
    next_event(&mut events, "AdoptedFromStore", |e| {
        matches!(e, Event::AdoptedFromStore { .. })
    })
    .await;
    settled(&source);
    let adopted = source.token().await.expect("a token");
    assert_eq!(adopted.secret.expose(), "at-sibling");
    assert!(source.is_durable(), "the adopted session is the stored one");
    let file = load(&path);
    assert_eq!(file.access_token.expose(), "at-sibling", "not overwritten");
    assert_eq!(refresh_of(&file), Some("rt-sibling"));

    // The next refresh sends the sibling's credential, the newest.
    source.report_rejected(adopted.generation);
    assert_eq!(secret_of(source.token().await), "at-3");
    assert_eq!(
        calls.credentials(),
        vec![Some("rt-1".to_owned()), Some("rt-sibling".to_owned())]
    );
}

/// Processes sharing a file store refresh one at a time: before its exchange a process
/// takes the store's lock and re-reads it, and a sibling's rotation found there is
/// adopted instead of spending the credential it holds (which the sibling spent).
#[tokio::test(start_paused = true)]
async fn a_siblings_rotation_found_in_the_store_is_adopted_without_an_exchange() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let (calls, refresher) = fake(|n| Answer::now(Ok(rotated(100 + n, hour()))));
    // Our session, stored, with its refresh window 10 minutes away.
    let source = build_source(
        Config::builder()
            .refresh_threshold(secs(300))
            .jitter_fraction(0.0)
            .build()
            .expect("config"),
        FileStore::new(&path),
        Some(Credentials::Token(rotated(1, secs(900)))),
        refresher,
    );
    let mut events = source.subscribe();
    persisted(&source, &mut events).await;
    assert_eq!(secret_of(source.token().await), "at-1");

    // A sibling process refreshes first and saves its rotation of rt-1.
    let mut theirs = stored(0, hour());
    theirs.access_token = Secret::new("at-sibling");
    theirs.refresh_token = Some(Secret::new("rt-sibling"));
    FileStore::new(&path)
        .save(&theirs, Some(&Secret::new("rt-1")))
        .expect("the sibling saves")
        .assert_stored();

    // Our window opens: we re-read the store under its lock and adopt theirs.
    tokio::time::sleep(secs(700)).await;
    settled(&source);
    assert_eq!(secret_of(source.token().await), "at-sibling");
    assert_eq!(
        calls.count(),
        0,
        "no exchange: rt-1 is spent, and the store knew"
    );
    assert_eq!(refresh_of(&load(&path)), Some("rt-sibling"));
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_file_is_never_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let garbage = b"{\"format\": \"someone else's\", \"x\": 1}\n".to_vec();
    fs::write(&path, &garbage).expect("writes");
    let (_, refresher) = fake(|n| Answer::now(Ok(rotated(100 + n, hour()))));
    let source = build_source(
        Config::default(),
        FileStore::new(&path),
        Some(Credentials::Token(rotated(1, hour()))),
        refresher,
    );
    let mut events = source.subscribe();

    // It starts from the credentials given in code.
    assert_eq!(secret_of(source.token().await), "at-1");
    let message = persist_failed(&source, &mut events).await;
    assert!(message.contains("move it away"), "{message}");
    persist_failed(&source, &mut events).await;
    assert!(!source.is_durable());
    assert_eq!(fs::read(&path).expect("still there"), garbage, "untouched");
}

#[tokio::test(start_paused = true)]
async fn sign_out_forgets_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let (store, mut calls) = Flaky::new(&path);
    let (_, refresher) = fake(|n| Answer::now(Ok(rotated(100 + n, hour()))));
    let source = build_source(
        Config::default(),
        Shared(store),
        Some(Credentials::Token(rotated(1, hour()))),
        refresher,
    );
    let mut events = source.subscribe();
    persisted(&source, &mut events).await;
    assert!(path.exists());

    source.sign_out();
    timeout(secs(60), async {
        while let Some(call) = calls.recv().await {
            if call == "forget" {
                return;
            }
        }
        panic!("the store is gone");
    })
    .await
    .expect("forget is called");
    assert!(!path.exists(), "the file is deleted");
    assert!(!source.is_durable());
    match source.token().await {
        Err(Error::Token(silent_refresh::Error::SignedOut)) => {}
        other => panic!("expected SignedOut, got {other:?}"),
    }

    // A restart finds no session.
    drop(source);
    let (calls, refresher) = fake(|n| Answer::now(Ok(rotated(n, hour()))));
    let restarted = build_source(Config::default(), FileStore::new(&path), None, refresher);
    match restarted.token_within(secs(1)).await {
        Err(Error::Token(silent_refresh::Error::DeadlineExceeded { .. })) => {}
        other => panic!("expected no token, got {other:?}"),
    }
    assert_eq!(calls.count(), 0);
}

/// tokio's paused monotonic clock, and a wall clock that a test can move ahead alone.
#[derive(Clone, Default)]
struct SuspendClock {
    wall_ahead: Arc<Mutex<Duration>>,
}

impl SuspendClock {
    /// A suspend: the wall clock jumps, the monotonic clock stands still.
    fn suspend(&self, by: Duration) {
        *lock(&self.wall_ahead) += by;
    }
}

impl Clock for SuspendClock {
    fn now(&self) -> std::time::Instant {
        Instant::now().into_std()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now() + *lock(&self.wall_ahead)
    }
}

#[tokio::test(start_paused = true)]
async fn after_a_suspend_the_old_token_is_not_handed_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let clock = SuspendClock::default();
    let (calls, refresher) = fake(|n| Answer::after(millis(20), Ok(rotated(n + 1, hour()))));
    let source = TokenSource::builder(Config::default())
        .store(FileStore::new(&path))
        .credentials(Credentials::Token(rotated(1, hour())))
        .refresher(refresher)
        .clock(clock.clone())
        .build()
        .expect("inside a runtime");
    let mut events = source.subscribe();
    persisted(&source, &mut events).await;
    assert_eq!(secret_of(source.token().await), "at-1");

    // Two hours asleep: the hour-long token expired on the wall clock, while the
    // monotonic clock says no time passed.
    clock.suspend(secs(7200));
    sleep(silent_refresh_driver::kernel::WALL_CLOCK_CHECK + secs(1)).await;
    match next_event(&mut events, "WallClockJumped", |e| {
        matches!(e, Event::WallClockJumped { .. })
    })
    .await
    {
        Event::WallClockJumped { ahead } => assert!(ahead >= secs(7000), "{ahead:?}"),
        _ => unreachable!("filtered"),
    }
    for _ in 0..3 {
        assert_eq!(
            secret_of(source.token().await),
            "at-2",
            "never the token that expired during the suspend"
        );
    }
    assert_eq!(calls.count(), 1);
    assert_eq!(calls.credentials(), vec![Some("rt-1".to_owned())]);
    persisted(&source, &mut events).await;
    assert_eq!(refresh_of(&load(&path)), Some("rt-2"));
}

/// A program about to exit waits for its token to be stored: `until_durable` says
/// whether it is, within the time given.
#[tokio::test(start_paused = true)]
async fn until_durable_waits_for_the_save_before_the_program_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let (store, _calls) = Flaky::new(&path);
    // Two failed saves: retried after 1 s, then 2 s.
    store.fail.store(2, Ordering::SeqCst);
    let (_, refresher) = fake(|n| Answer::now(Ok(rotated(100 + n, hour()))));
    let source = build_source(
        Config::default(),
        Shared(store.clone()),
        Some(Credentials::Token(rotated(1, hour()))),
        refresher,
    );

    assert!(!source.until_durable(millis(500)).await, "still failing");
    assert!(
        source.until_durable(secs(10)).await,
        "stored by the retries"
    );
    assert_eq!(load(&path).access_token.expose(), "at-1");
    assert_eq!(store.saves.load(Ordering::SeqCst), 3);
}

/// A program that exits while a refresh is on the wire loses its answer, and with it
/// the rotated refresh token: `shutdown` waits for that exchange and its save, and
/// starts no refresh after it.
#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_the_exchange_on_the_wire_and_its_save_then_starts_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let (calls, refresher) = fake(|n| Answer::after(secs(20), Ok(rotated(100 + n, secs(60)))));
    let source = build_source(
        Config::default(),
        FileStore::new(&path),
        Some(Credentials::Token(rotated(1, secs(60)))),
        refresher,
    );
    let mut events = source.subscribe();
    persisted(&source, &mut events).await;
    // at-1's window opens at 30 s to 33 s; at 40 s its refresh is on the wire (its
    // answer comes 20 s after it started).
    sleep(secs(40)).await;
    assert_eq!(calls.count(), 1, "the refresh is on the wire");
    let started = calls.times()[0];
    assert!(source.shutdown(secs(60)).await, "settled within the limit");
    assert!(
        Instant::now() >= started + secs(20),
        "returned only once the answer came"
    );
    assert!(source.is_durable());
    assert_eq!(
        refresh_of(&load(&path)),
        Some("rt-101"),
        "its token is saved"
    );
    // at-101's window opens, and passes: no refresh starts any more.
    sleep(secs(120)).await;
    assert_eq!(calls.count(), 1, "nothing spent after shutdown");
    assert_eq!(refresh_of(&load(&path)), Some("rt-101"));
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_nothing_on_the_wire_returns_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (calls, refresher) = fake(|n| Answer::now(Ok(rotated(100 + n, hour()))));
    let source = build_source(
        Config::default(),
        FileStore::new(dir.path().join("session.json")),
        Some(Credentials::Token(rotated(1, hour()))),
        refresher,
    );
    let mut events = source.subscribe();
    persisted(&source, &mut events).await;
    let before = Instant::now();
    assert!(source.shutdown(secs(60)).await);
    assert_eq!(Instant::now(), before, "no wait");
    // Still usable: still granted.
    assert_eq!(secret_of(source.token().await), "at-1");
    assert_eq!(calls.count(), 0);
}
