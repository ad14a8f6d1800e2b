//! The stores of the scenarios: a file store that fails or panics when told, and one
//! that does not coordinate processes.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use silent_refresh::{Expiry, Secret, Token};
use silent_refresh_driver::Error;
use silent_refresh_driver::store::{FileStore, Saved, TokenStore};
use tokio::sync::mpsc;

/// A token issued now on the wall clock, living `lifetime`: `at-{n}`, `rt-{n}`.
pub(crate) fn stored(n: usize, lifetime: Duration) -> Token {
    let now = SystemTime::now();
    let mut token = Token::bearer(format!("at-{n}"), Expiry::At(now + lifetime))
        .with_refresh_token(format!("rt-{n}"));
    token.issued_at = Some(now);
    token
}

pub(crate) fn load(path: &Path) -> Token {
    FileStore::new(path)
        .load()
        .expect("the file parses")
        .expect("the file holds a session")
}

pub(crate) fn refresh_of(token: &Token) -> Option<&str> {
    token.refresh_token.as_ref().map(Secret::expose)
}

/// A [`FileStore`] whose next saves fail or panic, as many times as told, and which
/// reports each call on a channel.
pub(crate) struct Flaky {
    file: FileStore,
    pub(crate) fail: AtomicUsize,
    pub(crate) panic: AtomicUsize,
    pub(crate) saves: AtomicUsize,
    calls: mpsc::UnboundedSender<&'static str>,
}

impl Flaky {
    pub(crate) fn new(path: &Path) -> (Arc<Self>, mpsc::UnboundedReceiver<&'static str>) {
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

    pub(crate) fn saves(&self) -> usize {
        self.saves.load(Ordering::SeqCst)
    }

    fn take_one(counter: &AtomicUsize) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// The source owns its store; the test keeps a handle on the same one.
pub(crate) struct Shared(pub(crate) Arc<Flaky>);

impl TokenStore for Shared {
    fn load(&self) -> Result<Option<Token>, Error> {
        let _ = self.0.calls.send("load");
        self.0.file.load()
    }

    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, Error> {
        self.0.saves.fetch_add(1, Ordering::SeqCst);
        let _ = self.0.calls.send("save");
        if Flaky::take_one(&self.0.panic) {
            panic!("the test store panics");
        }
        if Flaky::take_one(&self.0.fail) {
            return Err(Error::StoreIo {
                action: "written",
                path: self.0.file.path().display().to_string(),
                source: std::io::Error::other("the disk is full (a test failure)"),
            });
        }
        self.0.file.save(token, from)
    }

    fn forget(&self) -> Result<(), Error> {
        let result = self.0.file.forget();
        let _ = self.0.calls.send("forget");
        result
    }
}

/// A file store that does not coordinate processes (no refresh lock): only its
/// compare-and-swap stands between two writers.
pub(crate) struct Uncoordinated(pub(crate) FileStore);

impl TokenStore for Uncoordinated {
    fn load(&self) -> Result<Option<Token>, Error> {
        self.0.load()
    }

    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, Error> {
        self.0.save(token, from)
    }

    fn forget(&self) -> Result<(), Error> {
        self.0.forget()
    }
}

/// Asserts a seed was stored.
pub(crate) fn assert_stored(saved: Saved) {
    assert!(
        matches!(saved, Saved::Stored),
        "expected Stored, got {saved:?}"
    );
}
