//! A cancelled exchange that holds a Redis lease, on a current-thread tokio runtime: the
//! lease's release (a Redis command, which blocks) never runs on the runtime's thread.
//! The store lock never leaves the kernel, which releases it through its own store I/O
//! on tokio's blocking pool; before, the lease was dropped inside the aborted exchange
//! future, on the runtime's one thread.
//!
//! Each test starts its own `redis-server` on 127.0.0.1 (skipped, saying so, where it
//! is not installed; required in CI).

use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

use silent_refresh::{Config, Credentials, Expiry, Secret, Token};
use silent_refresh_driver::Error as StoreError;
use silent_refresh_driver::store::{Saved, StoreLock, TokenStore};
use silent_refresh_redis::RedisStore;
use silent_refresh_redis::testing::RedisServer;
use silent_refresh_tokio::{Event, ManualClock, RefreshFailure, TokenSource};
use tokio::sync::mpsc;

const KEY: &str = "test:oauth:session";

/// Where each lease was released: the thread, sent as it happens.
type Releases = mpsc::UnboundedSender<ThreadId>;

/// The Redis store, with leases that report the thread they are released on.
struct Recording {
    inner: RedisStore,
    releases: Releases,
}

/// A Redis lease that reports its release.
struct RecordingLease {
    inner: Option<Box<dyn StoreLock>>,
    releases: Releases,
}

impl RecordingLease {
    fn inner(&self) -> &dyn StoreLock {
        self.inner.as_deref().expect("held until dropped")
    }
}

impl Drop for RecordingLease {
    /// Releases the lease (a Redis command), then says on which thread it ran.
    fn drop(&mut self) {
        drop(self.inner.take());
        let _ = self.releases.send(thread::current().id());
    }
}

impl StoreLock for RecordingLease {
    fn load(&self) -> Result<Option<Token>, StoreError> {
        self.inner().load()
    }

    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, StoreError> {
        self.inner().save(token, from)
    }

    fn still_held(&self) -> bool {
        self.inner().still_held()
    }
}

impl TokenStore for Recording {
    fn load(&self) -> Result<Option<Token>, StoreError> {
        self.inner.load()
    }

    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, StoreError> {
        self.inner.save(token, from)
    }

    fn forget(&self) -> Result<(), StoreError> {
        self.inner.forget()
    }

    fn lock_for_refresh(
        &self,
        timeout: Duration,
    ) -> Result<Option<Box<dyn StoreLock>>, StoreError> {
        Ok(self
            .inner
            .lock_for_refresh(timeout)?
            .map(|inner| -> Box<dyn StoreLock> {
                Box::new(RecordingLease {
                    inner: Some(inner),
                    releases: self.releases.clone(),
                })
            }))
    }
}

/// Whether Redis holds the refresh lease.
fn leased(server: &RedisServer) -> bool {
    let exists: i64 = redis::Client::open(server.url())
        .and_then(|client| client.get_connection())
        .and_then(|mut c| {
            redis::cmd("EXISTS")
                .arg(format!("{KEY}:lease"))
                .query(&mut c)
        })
        .expect("EXISTS");
    exists == 1
}

/// A source on this thread's current-thread runtime whose exchanges never answer: each
/// says it is on the wire (holding the lease) and then waits forever.
fn hanging_source(
    server: &RedisServer,
    clock: Option<ManualClock>,
) -> (
    TokenSource,
    mpsc::UnboundedReceiver<()>,
    mpsc::UnboundedReceiver<ThreadId>,
) {
    let (releases, released) = mpsc::unbounded_channel();
    let (on_wire, sent) = mpsc::unbounded_channel();
    let store = Recording {
        inner: RedisStore::builder(&server.url(), KEY)
            .build()
            .expect("a valid store"),
        releases,
    };
    let on_wire = Arc::new(Mutex::new(on_wire));
    let mut builder = TokenSource::builder(Config::default())
        .store(store)
        .credentials(Credentials::RefreshToken("rt-1".into()))
        .refresher(move |_: Option<Secret>| {
            let on_wire = on_wire.clone();
            async move {
                let _ = on_wire.lock().expect("sender").send(());
                std::future::pending::<Result<Token, RefreshFailure>>().await
            }
        });
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    (builder.build().expect("inside a runtime"), sent, released)
}

#[tokio::test(flavor = "current_thread")]
async fn an_exchange_superseded_by_a_sign_in_releases_its_lease_off_the_runtime_thread() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let runtime_thread = thread::current().id();
    let (source, mut sent, mut released) = hanging_source(&server, None);

    // A caller needs a token: the refresh takes the lease and goes on the wire.
    let waiting = tokio::spawn({
        let source = source.clone();
        async move { source.token_within(Duration::from_secs(3600)).await }
    });
    sent.recv().await.expect("the exchange went on the wire");
    assert!(leased(&server), "the exchange holds the lease");

    // New credentials (a usable token: nothing to refresh) supersede it: the driver
    // cancels (drops) the exchange.
    source.sign_in(Credentials::Token(Token::bearer(
        "at-new",
        Expiry::In(Duration::from_secs(3600)),
    )));
    let thread = released.recv().await.expect("the lease is released");
    assert_ne!(
        thread, runtime_thread,
        "the lease's release (a blocking Redis command) ran on the runtime's only thread"
    );
    assert!(!leased(&server), "released in Redis, not left to expire");
    let granted = waiting.await.expect("the caller's task").expect("a token");
    assert_eq!(granted.secret.expose(), "at-new");
    let _ = source.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "current_thread")]
async fn an_exchange_past_its_hard_limit_releases_its_lease_off_the_runtime_thread() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let runtime_thread = thread::current().id();
    let clock = ManualClock::new();
    let (source, mut sent, mut released) = hanging_source(&server, Some(clock.clone()));

    let waiting = tokio::spawn({
        let source = source.clone();
        async move { source.token_within(Duration::from_secs(3600)).await }
    });
    sent.recv().await.expect("the exchange went on the wire");
    assert!(leased(&server), "the exchange holds the lease");

    // Past refresh_timeout (30 s) it is overdue and runs on; a closure refresher has no
    // timeout of its own, so at twice refresh_timeout the driver cancels it.
    let mut events = source.subscribe();
    clock.advance(Duration::from_secs(31));
    loop {
        match events.recv().await.expect("the source's events") {
            Event::RefreshOverdue { .. } => break,
            _ => continue,
        }
    }
    assert!(source.refresh_overdue(), "overdue, still on the wire");
    assert!(leased(&server), "an overdue exchange keeps its lease");
    assert!(
        released.try_recv().is_err(),
        "an overdue exchange keeps its lease"
    );
    clock.advance(Duration::from_secs(30));
    let thread = released.recv().await.expect("the lease is released");
    assert_ne!(
        thread, runtime_thread,
        "the lease's release (a blocking Redis command) ran on the runtime's only thread"
    );
    assert!(!source.refresh_overdue(), "the exchange is over");
    assert!(!leased(&server), "released in Redis, not left to expire");
    waiting.abort();
    let _ = source.shutdown(Duration::ZERO).await;
}
