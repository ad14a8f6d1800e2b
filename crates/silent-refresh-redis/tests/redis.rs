//! The Redis store against a real `redis-server` that each test starts on 127.0.0.1
//! (skipped, saying so, where it is not installed; required in CI).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use silent_refresh::{Credentials, Expiry, RefreshFailure, Secret, Token};
use silent_refresh_driver::Error as StoreError;
use silent_refresh_driver::store::{Saved, TokenStore};
use silent_refresh_redis::testing::RedisServer;
use silent_refresh_redis::{EncryptionKey, RedisStore};

const KEY: &str = "test:oauth:session";

fn store(server: &RedisServer) -> RedisStore {
    RedisStore::builder(&server.url(), KEY)
        .build()
        .expect("a valid store")
}

fn raw(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .and_then(|client| client.get_connection())
        .expect("a raw connection")
}

fn session(n: u32) -> Token {
    Token::bearer(
        format!("at-{n}"),
        Expiry::At(SystemTime::now() + Duration::from_secs(600)),
    )
    .with_refresh_token(format!("rt-{n}"))
}

fn refresh_of(token: &Token) -> Option<&str> {
    token.refresh_token.as_ref().map(Secret::expose)
}

fn version(server: &RedisServer) -> Option<String> {
    redis::cmd("HGET")
        .arg(KEY)
        .arg("version")
        .query(&mut raw(server))
        .expect("HGET")
}

#[test]
fn saves_are_compare_and_swap_on_the_session_refreshed_from() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (one, other) = (store(&server), store(&server));
    assert!(one.load().expect("load").is_none());
    assert!(matches!(one.save_if_empty(&session(1)), Ok(Saved::Stored)));
    match other.save_if_empty(&session(9)) {
        Ok(Saved::Conflict(held)) => assert_eq!(refresh_of(&held), Some("rt-1")),
        other => panic!("a second seed must not overwrite: {other:?}"),
    }
    let rt1 = Secret::new("rt-1");
    assert!(matches!(
        other.save(&session(2), Some(&rt1)),
        Ok(Saved::Stored)
    ));
    // A save refreshed from rt-1 again (a sibling that spent it too) is refused.
    match one.save(&session(3), Some(&rt1)) {
        Ok(Saved::Conflict(held)) => assert_eq!(refresh_of(&held), Some("rt-2")),
        other => panic!("a stale save must not overwrite: {other:?}"),
    }
    // The same token again is no conflict.
    assert!(matches!(
        one.save(&session(2), Some(&rt1)),
        Ok(Saved::Stored)
    ));
    let loaded = one.load().expect("load").expect("a session");
    assert_eq!(refresh_of(&loaded), Some("rt-2"));
    assert_eq!(loaded.access_token.expose(), "at-2");
    assert_eq!(version(&server).as_deref(), Some("3"));
    // Forgetting keeps the counter growing, so a version is never seen twice.
    other.forget().expect("forget");
    assert!(one.load().expect("load").is_none());
    assert_eq!(version(&server).as_deref(), Some("4"));
    assert!(matches!(one.save(&session(5), None), Ok(Saved::Stored)));
    assert_eq!(version(&server).as_deref(), Some("5"));
}

#[test]
fn an_encrypted_session_holds_no_secret_in_redis_and_opens_with_its_key_only() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let key = |byte| EncryptionKey::from_bytes(&[byte; 32]).expect("32 bytes");
    let sealed = RedisStore::builder(&server.url(), KEY)
        .encryption_key(key(1))
        .build()
        .expect("store");
    assert!(matches!(sealed.save(&session(1), None), Ok(Saved::Stored)));
    let bytes: Vec<u8> = redis::cmd("HGET")
        .arg(KEY)
        .arg("session")
        .query(&mut raw(&server))
        .expect("HGET");
    for secret in [&b"at-1"[..], b"rt-1"] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret));
    }
    let loaded = sealed.load().expect("load").expect("a session");
    assert_eq!(refresh_of(&loaded), Some("rt-1"));
    let wrong = RedisStore::builder(&server.url(), KEY)
        .encryption_key(key(2))
        .build()
        .expect("store");
    for reader in [wrong, store(&server)] {
        let error = reader.load().expect_err("does not open");
        assert!(
            matches!(error, StoreError::StoreUnreadable { .. }),
            "{error}"
        );
        let printed = format!("{error} {error:?}");
        assert!(
            !printed.contains("at-1") && !printed.contains("rt-1"),
            "{printed}"
        );
        // Nothing it cannot read is overwritten.
        assert!(reader.save(&session(2), None).is_err());
    }
}

#[test]
fn one_lease_at_a_time_handed_on_at_release() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (one, other) = (store(&server), store(&server));
    let held = one.lease(Duration::from_secs(5)).expect("the lease");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{KEY}:lease"))
        .query(&mut raw(&server))
        .expect("PTTL");
    let longest = (Duration::from_secs(5) + RedisStore::DEFAULT_LEASE_MARGIN).as_millis();
    assert!(ttl > 0 && i128::from(ttl) <= i128::try_from(longest).expect("fits"));
    match other.lease(Duration::from_millis(50)) {
        Err(StoreError::StoreLocked { .. }) => {}
        other => panic!("the lease is taken: {other:?}"),
    }
    let (taken_tx, taken_rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let lease = other.lease(Duration::from_secs(20));
        taken_tx.send(()).expect("send");
        lease.map(drop)
    });
    // The waiter cannot take it while it is held...
    assert!(taken_rx.recv_timeout(Duration::from_millis(100)).is_err());
    drop(held);
    // ... and takes it once released.
    waiter
        .join()
        .expect("joined")
        .expect("taken after the release");
}

#[test]
fn a_holder_whose_lease_expired_cannot_overwrite_the_next_holders_session() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (stale, next) = (store(&server), store(&server));
    assert!(matches!(stale.save(&session(1), None), Ok(Saved::Stored)));
    let stale_lease = stale.lease(Duration::from_secs(5)).expect("lease");
    let read = stale_lease.load().expect("load").expect("a session");
    let rt1 = read.refresh_token.clone().expect("rt-1");
    // The lease expires (deleted here, as Redis would at its deadline) while its
    // holder is stuck; another process takes it and refreshes.
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{KEY}:lease"))
        .query(&mut raw(&server))
        .expect("DEL");
    let next_lease = next.lease(Duration::from_secs(1)).expect("lease");
    assert!(matches!(
        next_lease.save(&session(2), Some(&rt1)),
        Ok(Saved::Stored)
    ));
    drop(next_lease);
    // The stale holder's save is refused by the fence, with the newer session.
    match stale_lease.save(&session(3), Some(&rt1)) {
        Ok(Saved::Conflict(held)) => assert_eq!(refresh_of(&held), Some("rt-2")),
        other => panic!("the fence must refuse it: {other:?}"),
    }
    drop(stale_lease);
    let kept = next.load().expect("load").expect("a session");
    assert_eq!(refresh_of(&kept), Some("rt-2"));
}

/// Run as a child process by the next test: takes the lease, says so, and waits to be
/// killed.
#[test]
fn lease_holder_child() {
    let Ok(url) = std::env::var("SILENT_REFRESH_TEST_REDIS_URL") else {
        return;
    };
    let store = RedisStore::builder(&url, KEY)
        .lease_margin(Duration::ZERO)
        .build()
        .expect("store");
    let lease = store.lease(Duration::from_millis(400)).expect("lease");
    println!("leased");
    let mut line = String::new();
    let _ = std::io::stdin().read_to_string(&mut line);
    drop(lease);
}

#[test]
fn a_lease_holder_killed_mid_refresh_holds_the_others_up_only_until_its_lease_expires() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "lease_holder_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SILENT_REFRESH_TEST_REDIS_URL", server.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("child");
    let stdout = child.stdout.take().expect("stdout");
    let leased = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("leased"));
    assert!(leased, "the child took the lease");
    child.kill().expect("killed");
    child.wait().expect("reaped");
    // The dead holder's lease is still there (nothing released it)...
    let exists: i64 = redis::cmd("EXISTS")
        .arg(format!("{KEY}:lease"))
        .query(&mut raw(&server))
        .expect("EXISTS");
    assert_eq!(exists, 1);
    // ... until it expires, and then the next holder gets it.
    let started = Instant::now();
    let lease = store(&server)
        .lease(Duration::from_secs(10))
        .expect("taken after the dead holder's lease expired");
    drop(lease);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn unreachable_redis_fails_loud_without_secrets_and_the_session_survives_a_restart() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let url = format!("redis://:hunter2@127.0.0.1:{}/", server.port());
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("hunter2")
        .query(&mut raw(&server))
        .expect("password set");
    let waits = RedisStore::builder(&url, KEY)
        .io_timeout(Duration::from_millis(500))
        .build()
        .expect("store");
    let alone = RedisStore::builder(&url, KEY)
        .io_timeout(Duration::from_millis(500))
        .refresh_alone_when_unreachable(true)
        .build()
        .expect("store");
    assert!(matches!(waits.save(&session(1), None), Ok(Saved::Stored)));
    // requirepass is not in the append-only file: set it again after the restart.
    server.kill();
    for error in [
        waits.load().expect_err("down"),
        waits.save(&session(2), None).expect_err("down"),
        waits
            .lock_for_refresh(Duration::from_secs(1))
            .map(|_| ())
            .expect_err("refreshes wait for Redis by default"),
    ] {
        assert!(
            matches!(error, StoreError::StoreUnavailable { .. }),
            "{error}"
        );
        let printed = format!("{error} {error:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("127.0.0.1"), "{printed}");
    }
    assert!(
        alone
            .lock_for_refresh(Duration::from_secs(1))
            .expect("refreshes alone, as configured")
            .is_none()
    );
    server.restart();
    let reader = store(&server);
    let kept = reader.load().expect("load").expect("the session survived");
    assert_eq!(refresh_of(&kept), Some("rt-1"));
}

/// An identity server that rotates refresh tokens and revokes the grant when a spent
/// one comes back.
struct IdentityServer {
    state: Mutex<Grant>,
    issued: AtomicUsize,
    reused: AtomicUsize,
    lifetime: Duration,
    on_issue: Mutex<mpsc::Sender<usize>>,
}

struct Grant {
    live: Option<String>,
    spent: HashSet<String>,
}

impl IdentityServer {
    fn refresh(&self, sent: Option<Secret>) -> Result<Token, RefreshFailure> {
        let sent = sent.map(|s| s.expose().to_owned()).unwrap_or_default();
        let mut grant = self.state.lock().expect("server");
        if grant.spent.contains(&sent) {
            self.reused.fetch_add(1, Ordering::SeqCst);
            grant.live = None;
            return Err(RefreshFailure::terminal(
                "invalid_grant: refresh token reused",
            ));
        }
        if grant.live.as_deref() != Some(sent.as_str()) {
            return Err(RefreshFailure::terminal("invalid_grant"));
        }
        grant.spent.insert(sent);
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let next = format!("rt-{n}");
        grant.live = Some(next.clone());
        let _ = self.on_issue.lock().expect("server").send(n);
        Ok(Token::bearer(format!("at-{n}"), Expiry::In(self.lifetime)).with_refresh_token(next))
    }
}

#[test]
fn many_sources_in_tasks_and_threads_share_one_session_through_a_redis_restart() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_test_writer()
        .try_init();
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let (issued_tx, issued_rx) = mpsc::channel();
    let identity = Arc::new(IdentityServer {
        state: Mutex::new(Grant {
            live: Some("rt-0".to_owned()),
            spent: HashSet::new(),
        }),
        issued: AtomicUsize::new(0),
        reused: AtomicUsize::new(0),
        lifetime: Duration::from_secs(2),
        on_issue: Mutex::new(issued_tx),
    });
    // Callers ride out the restart (they wait for Redis instead of being told at once
    // that it is down, the default): on a busy machine the restart can outlast the
    // 2 s tokens, and this test is about no request failing and nothing spent twice
    // across it. Failing fast while the store is down is tested on its own
    // (`a_source_whose_redis_is_down_says_so_and_fails_fast_once_its_token_is_spent`).
    let config = || {
        silent_refresh::Config::builder()
            .backoff_initial(Duration::from_millis(50))
            .backoff_max(Duration::from_millis(400))
            .fail_fast_unreachable(false)
            .build()
            .expect("config")
    };
    let url = server.url();
    let redis_store = || {
        RedisStore::builder(&url, KEY)
            .io_timeout(Duration::from_millis(500))
            .build()
            .expect("store")
    };
    let seed = || Credentials::RefreshToken(Secret::new("rt-0"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = runtime.enter();
    let tokio_sources: Vec<_> = (0..2)
        .map(|_| {
            let identity = identity.clone();
            silent_refresh_tokio::TokenSource::builder(config())
                .credentials(seed())
                .store(redis_store())
                .refresher(move |sent: Option<Secret>| {
                    let identity = identity.clone();
                    async move { identity.refresh(sent) }
                })
                .build()
                .expect("tokio source")
        })
        .collect();
    let ureq_sources: Vec<_> = (0..2)
        .map(|_| {
            let identity = identity.clone();
            silent_refresh_ureq::TokenSource::builder(config())
                .credentials(seed())
                .store(redis_store())
                .refresher(move |sent: Option<Secret>| identity.refresh(sent))
                .build()
                .expect("ureq source")
        })
        .collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let granted = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut callers = Vec::new();
    for source in &ureq_sources {
        for _ in 0..4 {
            let (source, stop) = (source.clone(), stop.clone());
            let (granted, failures) = (granted.clone(), failures.clone());
            callers.push(thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match source.token_within(Duration::from_secs(10)) {
                        Ok(_) => granted.fetch_add(1, Ordering::SeqCst),
                        Err(error) => {
                            failures.lock().expect("failures").push(error.to_string());
                            0
                        }
                    };
                }
            }));
        }
    }
    let mut tasks = Vec::new();
    for source in &tokio_sources {
        for _ in 0..4 {
            let (source, stop) = (source.clone(), stop.clone());
            let (granted, failures) = (granted.clone(), failures.clone());
            tasks.push(runtime.spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match source.token_within(Duration::from_secs(10)).await {
                        Ok(_) => {
                            granted.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(error) => failures.lock().expect("failures").push(error.to_string()),
                    }
                    tokio::task::yield_now().await;
                }
            }));
        }
    }
    // Redis crashes and comes back after the second rotation; the run ends at the
    // sixth (each waited for with a deadline).
    let wait_for = |n: usize| loop {
        let issued = issued_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the sources keep refreshing");
        if issued >= n {
            break;
        }
    };
    wait_for(2);
    server.restart();
    wait_for(6);
    stop.store(true, Ordering::SeqCst);
    for caller in callers {
        caller.join().expect("caller");
    }
    for task in tasks {
        runtime.block_on(task).expect("task");
    }
    let failures = failures.lock().expect("failures");
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert_eq!(
        identity.reused.load(Ordering::SeqCst),
        0,
        "a refresh token was spent twice"
    );
    assert!(granted.load(Ordering::SeqCst) > 0);
    // Redis holds the server's newest session: a refresh may be running when the
    // callers stop, so look until a moment when none is (each look waits for the
    // sources' saves, with a deadline).
    let reader = redis_store();
    let in_step = (0..100).any(|_| {
        let live = identity.state.lock().expect("server").live.clone();
        let stored = reader.load().expect("load").expect("a session");
        if refresh_of(&stored) == live.as_deref() {
            return true;
        }
        for source in &ureq_sources {
            let _ = source.until_durable(Duration::from_millis(100));
        }
        false
    });
    assert!(in_step, "Redis kept the newest session");
}

/// A blocking source on a manual clock over `server`, started from a stored session
/// (`at-1`, `rt-1`) that expires 600 s after that clock's now, and granted it once;
/// its refresher counts its calls and never succeeds (no test here may reach it).
///
/// The session's expiry comes from the source's clock: that clock stands still while
/// the test runs, so an expiry taken from the real wall clock would grow by however
/// long the machine took to get here.
fn stored_session_source(
    server: &RedisServer,
) -> (
    silent_refresh_ureq::TokenSource,
    silent_refresh_driver::clock::ManualClock,
    Arc<AtomicUsize>,
) {
    let clock = silent_refresh_driver::clock::ManualClock::new();
    let now = silent_refresh_driver::clock::Clock::wall(&clock);
    let mut stored = Token::bearer("at-1", Expiry::At(now + Duration::from_secs(600)))
        .with_refresh_token("rt-1");
    stored.issued_at = Some(now);
    assert!(matches!(
        store(server).save(&stored, None),
        Ok(Saved::Stored)
    ));
    let refreshed = Arc::new(AtomicUsize::new(0));
    let counted = refreshed.clone();
    let source = silent_refresh_ureq::TokenSource::builder(silent_refresh::Config::default())
        .store(
            RedisStore::builder(&server.url(), KEY)
                .io_timeout(Duration::from_millis(500))
                .build()
                .expect("store"),
        )
        .clock(clock.clone())
        .refresher(move |_: Option<Secret>| {
            counted.fetch_add(1, Ordering::SeqCst);
            Err(RefreshFailure::transient("not reached"))
        })
        .build()
        .expect("source");
    let token = source
        .token_within(Duration::from_secs(5))
        .expect("the stored token");
    assert_eq!(token.secret.expose(), "at-1");
    (source, clock, refreshed)
}

#[test]
fn a_source_whose_redis_is_down_says_so_and_fails_fast_once_its_token_is_spent() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let (source, clock, refreshed) = stored_session_source(&server);
    // Redis goes down; the token is spent (its 600 s pass on the source's clock).
    server.kill();
    clock.advance(Duration::from_secs(601));
    let (done, outcome) = mpsc::channel();
    let caller = source.clone();
    thread::spawn(move || {
        let _ = done.send(caller.token_within(Duration::from_secs(3600)));
    });
    // Told at once, not at its (manual-clock) deadline, and without a refresh sent
    // without the lease.
    let error = outcome
        .recv_timeout(Duration::from_secs(20))
        .expect("answered without its deadline passing")
        .expect_err("no usable token, and Redis is down");
    assert!(error.is_unreachable(), "{error}");
    assert!(error.to_string().contains("127.0.0.1"), "{error}");
    assert!(
        matches!(source.status(), silent_refresh::Status::Unreachable { .. }),
        "{:?}",
        source.status()
    );
    assert_eq!(
        refreshed.load(Ordering::SeqCst),
        0,
        "no refresh without the lease"
    );
}

/// Redis loses writes (here `FLUSHALL`; also eviction, a restart without persistence,
/// a failover to a replica behind): a sibling may have rotated the refresh token this
/// source holds, and the proof is gone. The source does not present it on a guess: the
/// store says its version went back, and the refresh ends as "sign in again".
#[test]
fn a_store_that_lost_sessions_is_not_refreshed_from_on_a_guess() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (source, clock, refreshed) = stored_session_source(&server);
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut raw(&server))
        .expect("FLUSHALL");
    // at-1 is spent: its refresh reads the store under the lease, and finds less than
    // it saw there.
    clock.advance(Duration::from_secs(601));
    let error = source
        .token_within(Duration::from_secs(20))
        .expect_err("no token: the store lost the session");
    assert!(error.needs_sign_in(), "{error}");
    assert!(error.to_string().contains("lost"), "{error}");
    assert_eq!(refreshed.load(Ordering::SeqCst), 0, "nothing presented");
    assert!(
        matches!(
            store(&server)
                .lease(Duration::from_secs(1))
                .map(|l| l.load()),
            Ok(Ok(None))
        ),
        "a new store (a restart, a new sign-in) starts afresh"
    );
}
