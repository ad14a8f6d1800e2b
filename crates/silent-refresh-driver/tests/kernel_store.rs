//! The kernel with a store shared by several processes, driven by hand on a manual
//! clock: what it saves, what it adopts, and when it waits for the store. Each
//! "process" is a kernel of its own over the same file.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use silent_refresh::{Config, Credentials, Expiry, RefreshFailure, Secret, Status, Token};
use silent_refresh_driver::Error;
use silent_refresh_driver::clock::{Clock, ManualClock};
use silent_refresh_driver::kernel::{Kernel, Outcome, Prepared, Waiter};
use silent_refresh_driver::store::{FileStore, Saved, StoreLock, TokenStore};
use silent_refresh_driver::wake::Wake;

/// Receives one outcome.
#[derive(Clone, Default)]
struct Slot(Arc<Mutex<Option<Outcome>>>);

impl Waiter for Slot {
    fn resolve(self, outcome: Outcome) {
        let previous = self.0.lock().expect("slot").replace(outcome);
        assert!(previous.is_none(), "a second outcome for one request");
    }
}

impl Slot {
    fn take(&self) -> Option<Outcome> {
        self.0.lock().expect("slot").take()
    }
}

struct NoWake;

impl Wake for NoWake {
    fn wake(&self) {}
}

/// An identity server that rotates refresh tokens and revokes the grant when a spent
/// one comes back.
#[derive(Default)]
struct Server {
    live: Mutex<Option<String>>,
    spent: Mutex<HashSet<String>>,
    issued: AtomicUsize,
    reused: AtomicUsize,
}

impl Server {
    fn with_grant(refresh: &str) -> Arc<Self> {
        let server = Self::default();
        *server.live.lock().expect("server") = Some(refresh.to_owned());
        Arc::new(server)
    }

    fn refresh(&self, sent: Option<&Secret>) -> Result<Token, RefreshFailure> {
        let sent = sent.map(|s| s.expose().to_owned()).unwrap_or_default();
        let mut live = self.live.lock().expect("server");
        if self.spent.lock().expect("server").contains(&sent) {
            self.reused.fetch_add(1, Ordering::SeqCst);
            *live = None;
            return Err(RefreshFailure::terminal(
                "invalid_grant: refresh token reused",
            ));
        }
        if live.as_deref() != Some(sent.as_str()) {
            return Err(RefreshFailure::terminal("invalid_grant"));
        }
        self.spent.lock().expect("server").insert(sent);
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let next = format!("rt-{n}");
        *live = Some(next.clone());
        Ok(
            Token::bearer(format!("at-{n}"), Expiry::In(Duration::from_secs(600)))
                .with_refresh_token(next),
        )
    }
}

struct Process {
    kernel: Kernel<Slot>,
    server: Arc<Server>,
}

impl Process {
    fn new(clock: &Arc<ManualClock>, store: Arc<dyn TokenStore>, server: &Arc<Server>) -> Self {
        let config = Config::builder().build().expect("config");
        let clock: Arc<dyn Clock> = clock.clone();
        Self {
            kernel: Kernel::new(config, clock, Arc::new(NoWake), None, Some(store), None),
            server: server.clone(),
        }
    }

    /// Runs the driver loop's work until there is none: store I/O, then exchanges
    /// (each prepared under the store's lock, as the adapters do).
    fn pump(&self) {
        loop {
            let work = self.kernel.take_work();
            if work.starts.is_empty() && work.store.is_empty() && work.cancels.is_empty() {
                return;
            }
            for io in work.store {
                self.kernel.store_io(io);
            }
            for start in work.starts {
                let sent = start.refresh_token.as_ref();
                let result = match self.kernel.prepare_exchange(start.attempt, sent) {
                    Prepared::Exchange => self.server.refresh(sent),
                    Prepared::ExchangeWith(credential) => self.server.refresh(Some(&credential)),
                    Prepared::Adopt(token) => Ok(*token),
                    Prepared::Failed(failure) => Err(failure),
                };
                self.kernel.exchange_result(start.attempt, result);
            }
        }
    }

    /// Asks for a token and pumps until it has an outcome.
    fn token(&self) -> Outcome {
        if let Some(token) = self.kernel.fresh_token() {
            return Ok(token);
        }
        let slot = Slot::default();
        self.kernel.enter(None, slot.clone()).expect("entered");
        self.pump();
        slot.take().expect("an outcome once the work is done")
    }
}

fn bearer(outcome: &Outcome) -> String {
    outcome
        .as_ref()
        .map(|token| token.authorization().to_string())
        .expect("a token")
}

#[test]
fn processes_started_together_from_the_same_refresh_token_refresh_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn TokenStore> = Arc::new(FileStore::new(dir.path().join("s.json")));
    let clock = Arc::new(ManualClock::new());
    let server = Server::with_grant("rt-0");
    let processes: Vec<_> = (0..4)
        .map(|_| Process::new(&clock, store.clone(), &server))
        .collect();
    // All four find the store empty before any of them refreshes.
    for process in &processes {
        process
            .kernel
            .start(Some(Credentials::RefreshToken(Secret::new("rt-0"))));
        process.pump();
    }
    let tokens: Vec<_> = processes.iter().map(Process::token).collect();
    assert_eq!(
        server.issued.load(Ordering::SeqCst),
        1,
        "one refresh for four"
    );
    assert_eq!(server.reused.load(Ordering::SeqCst), 0);
    for token in &tokens {
        assert_eq!(bearer(token), "Bearer at-1");
    }
    let stored = store.load().expect("load").expect("a session");
    assert_eq!(
        stored.refresh_token.as_ref().map(Secret::expose),
        Some("rt-1")
    );
}

#[test]
fn a_token_given_in_code_does_not_overwrite_a_session_a_sibling_stored_meanwhile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn TokenStore> = Arc::new(FileStore::new(dir.path().join("s.json")));
    let clock = Arc::new(ManualClock::new());
    let server = Server::with_grant("rt-0");
    let given = || {
        let token = Token::bearer(
            "at-0",
            Expiry::At(SystemTime::now() + Duration::from_secs(5)),
        )
        .with_refresh_token("rt-0");
        Credentials::Token(token)
    };
    let first = Process::new(&clock, store.clone(), &server);
    let second = Process::new(&clock, store.clone(), &server);
    // The second loads (empty) and signs in before the first has saved anything; its
    // save is queued...
    second.kernel.start(Some(given()));
    for io in second.kernel.take_work().store {
        second.kernel.store_io(io);
    }
    let save = second.kernel.take_work();
    assert_eq!(save.store.len(), 1, "the seed's save");
    first.kernel.start(Some(given()));
    first.pump();
    // ... and the first refreshes and saves before the second saves its seed.
    first
        .kernel
        .command(silent_refresh_driver::kernel::Command::Rejected(
            first.kernel.snapshot().generation,
        ));
    first.pump();
    assert_eq!(server.issued.load(Ordering::SeqCst), 1);
    for io in save.store {
        second.kernel.store_io(io);
    }
    second.pump();
    let stored = store.load().expect("load").expect("a session");
    assert_eq!(
        stored.refresh_token.as_ref().map(Secret::expose),
        Some("rt-1"),
        "the seed did not overwrite the sibling's rotated session"
    );
    assert_eq!(
        bearer(&second.token()),
        "Bearer at-1",
        "adopted from the store"
    );
    assert_eq!(server.reused.load(Ordering::SeqCst), 0);
}

/// A store whose server is down until `up` is set.
struct Flaky {
    inner: FileStore,
    up: AtomicBool,
    loads: AtomicUsize,
}

impl Flaky {
    fn check(&self) -> Result<(), Error> {
        if self.up.load(Ordering::SeqCst) {
            return Ok(());
        }
        Err(Error::StoreUnavailable {
            store: "test store".to_owned(),
            action: "read",
            source: "connection refused".into(),
        })
    }
}

impl TokenStore for Flaky {
    fn load(&self) -> Result<Option<Token>, Error> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.load()
    }

    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, Error> {
        self.check()?;
        self.inner.save(token, from)
    }

    fn forget(&self) -> Result<(), Error> {
        self.check()?;
        self.inner.forget()
    }

    fn lock_for_refresh(&self, timeout: Duration) -> Result<Option<Box<dyn StoreLock>>, Error> {
        self.check()?;
        self.inner.lock_for_refresh(timeout)
    }
}

#[test]
fn an_unreachable_store_at_start_is_loaded_again_not_replaced_by_the_credentials_in_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.json");
    let inner = FileStore::new(&path);
    let session = Token::bearer(
        "at-9",
        Expiry::At(SystemTime::now() + Duration::from_secs(600)),
    )
    .with_refresh_token("rt-9");
    assert!(matches!(inner.save(&session, None), Ok(Saved::Stored)));
    let flaky = Arc::new(Flaky {
        inner,
        up: AtomicBool::new(false),
        loads: AtomicUsize::new(0),
    });
    let clock = Arc::new(ManualClock::new());
    let server = Server::with_grant("rt-9");
    let process = Process::new(&clock, flaky.clone(), &server);
    process
        .kernel
        .start(Some(Credentials::RefreshToken(Secret::new("rt-0-stale"))));
    process.pump();
    assert_eq!(flaky.loads.load(Ordering::SeqCst), 1);
    assert_eq!(process.kernel.snapshot().status, Status::AwaitingSignIn);
    // Loaded again after half a second, then after a second more.
    clock.advance(Duration::from_millis(500));
    process.kernel.timeout();
    process.pump();
    assert_eq!(flaky.loads.load(Ordering::SeqCst), 2);
    assert_eq!(process.kernel.snapshot().status, Status::AwaitingSignIn);
    flaky.up.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_millis(999));
    process.kernel.timeout();
    process.pump();
    assert_eq!(flaky.loads.load(Ordering::SeqCst), 2, "not before its time");
    clock.advance(Duration::from_millis(1));
    process.kernel.timeout();
    process.pump();
    assert_eq!(flaky.loads.load(Ordering::SeqCst), 3);
    assert_eq!(process.kernel.snapshot().status, Status::SignedIn);
    assert_eq!(
        bearer(&process.token()),
        "Bearer at-9",
        "the stored session"
    );
    assert_eq!(server.issued.load(Ordering::SeqCst), 0, "nothing refreshed");
}

#[test]
fn a_clock_that_jumps_past_the_token_withdraws_the_fast_path_before_the_driver_wakes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn TokenStore> = Arc::new(FileStore::new(dir.path().join("s.json")));
    let clock = Arc::new(ManualClock::new());
    let server = Server::with_grant("rt-0");
    let process = Process::new(&clock, store, &server);
    process
        .kernel
        .start(Some(Credentials::RefreshToken(Secret::new("rt-0"))));
    process.pump();
    assert_eq!(bearer(&process.token()), "Bearer at-1");
    assert!(process.kernel.fresh_token().is_some(), "granted lock-free");
    // The 600 s token is spent in one jump; the driver loop has not run since (a
    // caller can get there first), and no timer could have withdrawn the token.
    clock.advance(Duration::from_secs(601));
    assert!(
        process.kernel.fresh_token().is_none(),
        "an expired token handed out by the fast path"
    );
    assert_eq!(bearer(&process.token()), "Bearer at-2", "refreshed instead");
}

#[test]
fn a_closing_kernel_lets_the_exchange_on_the_wire_end_and_be_saved_then_starts_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn TokenStore> = Arc::new(FileStore::new(dir.path().join("s.json")));
    let clock = Arc::new(ManualClock::new());
    let server = Server::with_grant("rt-0");
    let process = Process::new(&clock, store.clone(), &server);
    process
        .kernel
        .start(Some(Credentials::RefreshToken(Secret::new("rt-0"))));
    process.pump();
    assert_eq!(bearer(&process.token()), "Bearer at-1");
    assert!(process.kernel.settled());
    // at-1's window opens (at 300 s to 330 s): its refresh goes on the wire, and then
    // the program closes.
    clock.advance(Duration::from_secs(350));
    process.kernel.timeout();
    let work = process.kernel.take_work();
    assert_eq!(work.starts.len(), 1, "the refresh started");
    process.kernel.close();
    assert!(
        !process.kernel.settled(),
        "an exchange on the wire: exiting now would lose its answer"
    );
    // Its answer comes, and is saved: then nothing is left to lose.
    let start = &work.starts[0];
    let Prepared::Exchange = process
        .kernel
        .prepare_exchange(start.attempt, start.refresh_token.as_ref())
    else {
        panic!("nothing to adopt");
    };
    let answer = server.refresh(start.refresh_token.as_ref());
    process.kernel.exchange_result(start.attempt, answer);
    assert!(!process.kernel.settled(), "its save is queued");
    process.pump();
    assert!(process.kernel.settled());
    let stored = store.load().expect("load").expect("a session");
    assert_eq!(
        stored.refresh_token.as_ref().map(Secret::expose),
        Some("rt-2")
    );
    // at-2's window opens too, but no refresh starts after closing: nothing is spent.
    clock.advance(Duration::from_secs(350));
    process.kernel.timeout();
    process.pump();
    assert_eq!(server.issued.load(Ordering::SeqCst), 2);
    assert!(process.kernel.settled());
    assert_eq!(
        bearer(&process.token()),
        "Bearer at-2",
        "still usable, granted"
    );
}

#[test]
fn a_listener_whose_receiver_is_gone_is_dropped_at_its_next_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn TokenStore> = Arc::new(FileStore::new(dir.path().join("s.json")));
    let clock = Arc::new(ManualClock::new());
    let server = Server::with_grant("rt-0");
    let process = Process::new(&clock, store, &server);
    let (gone, staying) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let counted = gone.clone();
    process.kernel.subscribe(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        false
    });
    let counted = staying.clone();
    process.kernel.subscribe(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        true
    });
    process
        .kernel
        .start(Some(Credentials::RefreshToken(Secret::new("rt-0"))));
    process.pump();
    assert_eq!(bearer(&process.token()), "Bearer at-1");
    assert!(
        staying.load(Ordering::SeqCst) > 1,
        "several events: a refresh, a token, its save"
    );
    assert_eq!(gone.load(Ordering::SeqCst), 1, "called once, then dropped");
}
