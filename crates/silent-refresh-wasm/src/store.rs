//! One session for every tab of an origin: [`TabsStore`] keeps it in IndexedDB, orders
//! the tabs' refreshes with an exclusive Web Lock named after it, and announces each new
//! token on a `BroadcastChannel`.
//!
//! It is the driver's [`TokenStore`] and [`StoreLock`], as the file and Redis stores
//! are, so the kernel's rules hold between tabs as they hold between processes: before
//! a refresh the tab takes the lock and re-reads the session, and adopts a newer token
//! there instead of spending the refresh credential again; every save is a
//! compare-and-swap on the refresh credential the token was refreshed from. Nothing in
//! the browser can block, so the asynchronous part of each call (the lock, the read)
//! runs first ([`TokenStore::ready`]), and the call itself answers from what was read
//! under the lock, which this tab alone may change until it lets the lock go.
//!
//! A write is an IndexedDB transaction made before the call returns; the lock is let go
//! only once every write made under it has committed. So the next tab to take the lock
//! reads the new session: the session is handed over with the lock. (`localStorage`
//! cannot do this: Chromium hands a write to the other tabs' processes asynchronously,
//! so a tab that takes the lock right after can still read the spent refresh token.)

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::Duration;

use js_sys::{Function, Object, Promise, Reflect};
use silent_refresh::{Secret, Token};
use silent_refresh_driver::Error;
use silent_refresh_driver::runtime::wasm::Wasm;
use silent_refresh_driver::runtime::{BlockingWork, Runtime};
use silent_refresh_driver::store::record;
use silent_refresh_driver::store::{Saved, StoreLock, StoreReady, TokenStore};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::spawn_local;
use web_sys::{BroadcastChannel, IdbDatabase, IdbFactory, IdbTransactionMode};

use crate::js;

/// The IndexedDB object store that holds the sessions, by name.
const OBJECT_STORE: &str = "sessions";

/// What names the lock and the channel (after it, the session's name).
const PREFIX: &str = "silent-refresh:";

/// The default name of the IndexedDB database.
const DEFAULT_DATABASE: &str = "silent-refresh";

/// How long a tab waits for the lock by default: the core's default refresh timeout
/// (another tab's exchange may hold it that long).
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// The session shared by the tabs of this origin, in IndexedDB. Clones share one store.
///
/// Before a refresh a tab takes an exclusive Web Lock named after the session and
/// re-reads the session under it, and adopts another tab's newer token instead of
/// spending the refresh credential again; every save is a compare-and-swap on the
/// refresh credential the token was refreshed from. A write is an IndexedDB transaction,
/// and the lock is let go only once it has committed, so the next tab to take the lock
/// reads the new session. Each new session is then announced on a `BroadcastChannel`
/// ([`follow`](Self::follow) adopts it without a request).
///
/// ```no_run
/// use silent_refresh_wasm::{Config, TabsStore, TokenSource};
///
/// let store = TabsStore::new("my-app"); // one name per session
/// let source = TokenSource::builder(Config::default())
///     .store(store.clone())
///     // .refresher(OAuth2Refresher::builder(grant).build()?)
///     .build()?;
/// // Adopt the tokens the other tabs refresh, as they announce them.
/// store.follow(&source);
/// # Ok::<(), silent_refresh_wasm::Error>(())
/// ```
///
/// Any script running on the page can read the session in IndexedDB (as it can read
/// the page's memory): see the crate docs on XSS.
#[derive(Clone)]
pub struct TabsStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The session's name: its key in IndexedDB, and (prefixed) its lock and channel.
    name: String,
    database: String,
    lock_timeout: Duration,
    /// Its JS side in [`JS`].
    id: u64,
    state: Mutex<State>,
}

/// Where this tab stands with the lock and the session.
struct State {
    phase: Phase,
    /// What holds this tab's hold on the lock: store calls about to run, and the
    /// kernel's [`StoreLock`]s. The lock is let go when none is left.
    users: usize,
    /// Store calls waiting for the lock (a dropped one no longer counts).
    wanting: usize,
    /// The number of the current (or last) request for the lock.
    attempt: u64,
    /// The last request that failed, and why.
    failed: Option<(u64, String)>,
    /// The session read under the lock, and changed by this tab's saves since (valid
    /// while the lock is held).
    session: Result<Option<Token>, String>,
    /// The newest version of the session this tab has seen (read, written, or
    /// announced): it only grows.
    version: u64,
    wakers: Vec<Waker>,
}

#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
enum Phase {
    /// The lock is not this tab's, and not asked for.
    #[default]
    Free,
    /// Asked for, or granted and the session being read.
    Acquiring,
    /// This tab holds the lock and has read the session.
    Held,
}

/// The JS side of a store: what cannot be `Send`, kept in this thread's table.
#[derive(Default)]
struct Js {
    /// Lets the Web Lock go (resolves the promise its callback returned).
    release: Option<Function>,
    /// The writes made under the lock, each settling when its transaction commits.
    writes: Vec<Promise>,
    database: Option<IdbDatabase>,
    channel: Option<BroadcastChannel>,
    /// Keeps the channel's listener alive.
    on_message: Option<Closure<dyn FnMut(web_sys::MessageEvent)>>,
    /// Called with each newer session another tab announces.
    followers: Vec<Box<dyn Fn(Token)>>,
}

thread_local! {
    static JS: RefCell<HashMap<u64, Js>> = RefCell::new(HashMap::new());
    static NEXT_STORE: Cell<u64> = const { Cell::new(0) };
}

/// Runs `f` on the JS side of store `id`.
fn with_js<T>(id: u64, f: impl FnOnce(&mut Js) -> T) -> T {
    JS.with(|table| f(table.borrow_mut().entry(id).or_default()))
}

impl TabsStore {
    /// The session named `name` (one name per session an app keeps: the tabs that use
    /// the same name share it), in the IndexedDB database `silent-refresh`.
    pub fn new(name: impl Into<String>) -> Self {
        Self::with_database(name, DEFAULT_DATABASE)
    }

    /// As [`new`](Self::new), in the IndexedDB database `database`.
    pub fn with_database(name: impl Into<String>, database: impl Into<String>) -> Self {
        let id = NEXT_STORE.with(|next| {
            let id = next.get();
            next.set(id + 1);
            id
        });
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                database: database.into(),
                lock_timeout: DEFAULT_LOCK_TIMEOUT,
                id,
                state: Mutex::new(State {
                    phase: Phase::Free,
                    users: 0,
                    wanting: 0,
                    attempt: 0,
                    failed: None,
                    session: Ok(None),
                    version: 0,
                    wakers: Vec::new(),
                }),
            }),
        }
    }

    /// How long a tab waits for the lock another tab holds before its refresh fails
    /// (transient, tried again after a backoff). Default: 30 s, the core's default
    /// refresh timeout. Set it on a new store, before any clone is given away.
    #[must_use]
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.lock_timeout = timeout;
        }
        self
    }

    /// The session's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The session as the tabs share it now, read under the lock (to tell, before a
    /// source is built, whether some tab holds a session or this one must sign in).
    ///
    /// # Errors
    ///
    /// [`Error::StoreUnavailable`] when the lock or IndexedDB cannot be had.
    pub async fn stored(&self) -> Result<Option<Token>, Error> {
        let guard = TokenStore::ready(self, BlockingWork::StoreIo);
        let guard = match guard {
            Some(ready) => Some(ready.await),
            None => None,
        };
        let stored = self.inner.load();
        drop(guard);
        stored
    }

    /// Calls `adopt` with each newer session another tab announces on the channel (a
    /// refreshed token, before this tab's own refresh window opens). Sessions are
    /// numbered: one older than what this tab has seen is never handed out.
    pub fn on_announced(&self, adopt: impl Fn(Token) + 'static) {
        self.inner.listen();
        with_js(self.inner.id, |js| js.followers.push(Box::new(adopt)));
    }

    /// Makes `source` adopt each newer session another tab announces, through its
    /// machine ([`TokenSource::sign_in`](crate::TokenSource::sign_in) with
    /// [`Credentials::Stored`](silent_refresh::Credentials::Stored): the token is the
    /// store's already, and is not saved again), so that it needs no request of its
    /// own. Keeps a clone of `source` as long as the page lives.
    pub fn follow(&self, source: &crate::TokenSource) {
        let source = source.clone();
        self.on_announced(move |token| {
            source.sign_in(silent_refresh::Credentials::Stored(token));
        });
    }
}

impl fmt::Debug for TabsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.state();
        f.debug_struct("TabsStore")
            .field("name", &self.inner.name)
            .field("database", &self.inner.database)
            .field("phase", &state.phase)
            .field("version", &state.version)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake_all(state: &mut State) {
        for waker in state.wakers.drain(..) {
            waker.wake();
        }
    }

    fn unavailable(&self, action: &'static str, reason: String) -> Error {
        Error::StoreUnavailable {
            store: format!("IndexedDB {}/{}", self.database, self.name),
            action,
            source: reason.into(),
        }
    }

    /// Joins this tab's hold on the lock: asks for it if nobody here holds or asks for
    /// it, and waits until it is held and the session read. `Err`: the lock or the
    /// session could not be had (the calls then fail).
    async fn join(self: &Arc<Self>) -> Result<(), String> {
        let mut waited_on = None;
        let mut wanting = Wanting(self.clone(), false);
        poll_fn(|cx| {
            let mut state = self.state();
            match state.phase {
                Phase::Held => {
                    state.users += 1;
                    if wanting.1 {
                        wanting.1 = false;
                        state.wanting -= 1;
                    }
                    return Poll::Ready(Ok(()));
                }
                Phase::Free => {
                    if let (Some((attempt, reason)), Some(mine)) = (&state.failed, waited_on)
                        && *attempt == mine
                    {
                        return Poll::Ready(Err(reason.clone()));
                    }
                    state.phase = Phase::Acquiring;
                    state.attempt += 1;
                    let attempt = state.attempt;
                    drop(state);
                    self.request(attempt);
                    state = self.state();
                }
                Phase::Acquiring => {}
            }
            if !wanting.1 {
                wanting.1 = true;
                state.wanting += 1;
            }
            waited_on = Some(state.attempt);
            state.wakers.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// One user fewer; the last one lets the lock go.
    fn leave(self: &Arc<Self>) {
        let mut state = self.state();
        state.users = state.users.saturating_sub(1);
        if state.users == 0 && state.wanting == 0 && state.phase == Phase::Held {
            self.release(&mut state);
        }
    }

    /// Lets the lock go once every write made under it has committed; the session read
    /// under it is forgotten (the next holder reads it again).
    fn release(&self, state: &mut State) {
        state.phase = Phase::Free;
        state.session = Ok(None);
        let (release, writes) = with_js(self.id, |js| {
            (js.release.take(), std::mem::take(&mut js.writes))
        });
        spawn_local(async move {
            for write in writes {
                // A failed write was logged where it was made.
                let _ = js::settle(write).await;
            }
            if let Some(release) = release {
                let _ = release.call0(&JsValue::UNDEFINED);
            }
        });
        Self::wake_all(state);
    }

    /// The request `attempt` for the Web Lock failed (or the session could not be
    /// read): the calls waiting on it fail, and the next call asks again.
    fn failed(&self, attempt: u64, reason: String) {
        let mut state = self.state();
        if state.attempt == attempt && state.phase == Phase::Acquiring {
            tracing::warn!(session = %self.name, %reason, "the lock between tabs could not be taken");
            state.phase = Phase::Free;
            state.failed = Some((attempt, reason));
            Self::wake_all(&mut state);
        }
    }

    /// Asks for the Web Lock (request `attempt`), giving up after the lock timeout;
    /// once granted, reads the session, then lets the waiting calls in.
    fn request(self: &Arc<Self>, attempt: u64) {
        let locks = js::global("navigator").map(|navigator| js::get(&navigator, "locks"));
        let Some(locks) = locks.filter(|l| !l.is_undefined()) else {
            self.failed(
                attempt,
                "this page has no Web Locks (navigator.locks)".to_owned(),
            );
            return;
        };
        let Some(request) = js::method(&locks, "request") else {
            self.failed(
                attempt,
                "navigator.locks.request is not a function".to_owned(),
            );
            return;
        };
        let controller = match web_sys::AbortController::new() {
            Ok(controller) => controller,
            Err(error) => return self.failed(attempt, js::describe(&error)),
        };
        let options = Object::new();
        let _ = Reflect::set(&options, &"signal".into(), &controller.signal());
        let granted = self.clone();
        let callback = Closure::once_into_js(move |_lock: JsValue| -> JsValue {
            // Held until `release` resolves this promise.
            let held = Promise::new(&mut |resolve, _reject| {
                with_js(granted.id, |js| js.release = Some(resolve));
            });
            let reading = granted.clone();
            spawn_local(async move { reading.granted(attempt).await });
            held.into()
        });
        let name = JsValue::from_str(&format!("{PREFIX}{}", self.name));
        let asked = request.call3(&locks, &name, &options, &callback);
        let promise = match asked.map(JsCast::dyn_into::<Promise>) {
            Ok(Ok(promise)) => promise,
            Ok(Err(_)) => return self.failed(attempt, "locks.request gave no promise".to_owned()),
            Err(error) => return self.failed(attempt, js::describe(&error)),
        };
        let on_end = self.clone();
        spawn_local(async move {
            // Settles when the lock is let go, or rejects if it was never granted (the
            // timeout aborted the request).
            if let Err(reason) = js::settle(promise).await {
                on_end.failed(
                    attempt,
                    format!("waited {:?}: {reason}", on_end.lock_timeout),
                );
            }
        });
        let timeout = self.lock_timeout;
        spawn_local(async move {
            Wasm.sleep(timeout).await;
            // Aborts the request if it is still waiting; a granted lock is not affected.
            controller.abort();
        });
    }

    /// The lock is granted (request `attempt`): read the session, then let the waiting
    /// calls in (or let the lock go at once if nobody waits any more).
    async fn granted(self: Arc<Self>, attempt: u64) {
        let read = self.read().await;
        let mut state = self.state();
        if state.attempt != attempt || state.phase != Phase::Acquiring {
            return;
        }
        state.session = match read {
            Ok(Some((version, token))) => {
                state.version = state.version.max(version);
                Ok(token)
            }
            Ok(None) => Ok(None),
            Err(reason) => Err(reason),
        };
        state.phase = Phase::Held;
        if state.wanting == 0 && state.users == 0 {
            self.release(&mut state);
        } else {
            Self::wake_all(&mut state);
        }
    }

    /// The IndexedDB database, opened (and its object store created) once per page.
    async fn database(&self) -> Result<IdbDatabase, String> {
        if let Some(database) = with_js(self.id, |js| js.database.clone()) {
            return Ok(database);
        }
        let factory: IdbFactory = js::global("indexedDB")
            .ok_or("this page has no IndexedDB")?
            .unchecked_into();
        let open = factory
            .open_with_u32(&self.database, 1)
            .map_err(|e| js::describe(&e))?;
        let upgrading = open.clone();
        let on_upgrade = Closure::<dyn FnMut()>::new(move || {
            if let Ok(result) = upgrading.result() {
                let database: IdbDatabase = result.unchecked_into();
                // Version 1 is the first: its upgrade makes the object store.
                let _ = database.create_object_store(OBJECT_STORE);
            }
        });
        open.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
        let opened = js::request_done(&open).await;
        open.set_onupgradeneeded(None);
        drop(on_upgrade);
        let database: IdbDatabase = opened?.unchecked_into();
        with_js(self.id, |js| js.database = Some(database.clone()));
        Ok(database)
    }

    /// The stored session and its version, read in one transaction.
    async fn read(&self) -> Result<Option<(u64, Option<Token>)>, String> {
        let database = self.database().await?;
        let transaction = database
            .transaction_with_str(OBJECT_STORE)
            .map_err(|e| js::describe(&e))?;
        let store = transaction
            .object_store(OBJECT_STORE)
            .map_err(|e| js::describe(&e))?;
        let request = store
            .get(&JsValue::from_str(&self.name))
            .map_err(|e| js::describe(&e))?;
        let value = js::request_done(&request).await?;
        if value.is_undefined() || value.is_null() {
            return Ok(None);
        }
        decode(&value).map(Some)
    }

    /// Writes `token` (`None`: no session) as version `version`, in a transaction made
    /// now, so that it commits before any later one; the lock waits for it, and the
    /// other tabs hear of it once it has committed.
    fn write(self: &Arc<Self>, version: u64, token: Option<&Token>) -> Result<(), Error> {
        let record = match token {
            Some(token) => Some(
                record::encode(token).map_err(|e| self.unavailable("written", e.to_string()))?,
            ),
            None => None,
        };
        let record = record
            .as_ref()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned());
        let value = Object::new();
        let _ = Reflect::set(
            &value,
            &"version".into(),
            &JsValue::from_f64(version as f64),
        );
        let _ = Reflect::set(
            &value,
            &"record".into(),
            &record.as_deref().map_or(JsValue::NULL, JsValue::from_str),
        );
        let database = with_js(self.id, |js| js.database.clone())
            .ok_or_else(|| self.unavailable("written", "the database is not open".to_owned()))?;
        let failed = |e: JsValue| self.unavailable("written", js::describe(&e));
        let transaction = database
            .transaction_with_str_and_mode(OBJECT_STORE, IdbTransactionMode::Readwrite)
            .map_err(failed)?;
        transaction
            .object_store(OBJECT_STORE)
            .map_err(failed)?
            .put_with_key(&value, &JsValue::from_str(&self.name))
            .map_err(failed)?;
        let committed = Promise::new(&mut |resolve, reject| {
            let done = Closure::once_into_js(move || {
                let _ = resolve.call0(&JsValue::UNDEFINED);
            });
            let rejected = reject.clone();
            let error = Closure::once_into_js(move || {
                let _ = rejected.call0(&JsValue::UNDEFINED);
            });
            let aborted = Closure::once_into_js(move || {
                let _ = reject.call0(&JsValue::UNDEFINED);
            });
            transaction.set_oncomplete(Some(done.unchecked_ref()));
            transaction.set_onerror(Some(error.unchecked_ref()));
            transaction.set_onabort(Some(aborted.unchecked_ref()));
        });
        with_js(self.id, |js| js.writes.push(committed.clone()));
        let this = self.clone();
        spawn_local(async move {
            match js::settle(committed).await {
                Ok(_) => this.announce(&value),
                Err(_) => tracing::error!(
                    session = %this.name,
                    version,
                    "the session could not be written to IndexedDB: the other tabs keep the previous one"
                ),
            }
        });
        Ok(())
    }

    /// Tells the other tabs of a new session (their [`TabsStore::on_announced`]).
    fn announce(self: &Arc<Self>, value: &Object) {
        self.listen();
        let channel = with_js(self.id, |js| js.channel.clone());
        if let Some(channel) = channel
            && let Err(error) = channel.post_message(value)
        {
            tracing::warn!(session = %self.name, error = %js::describe(&error), "could not announce the new session to the other tabs");
        }
    }

    /// Opens the channel and listens to the other tabs' announcements (once).
    fn listen(self: &Arc<Self>) {
        if with_js(self.id, |js| js.channel.is_some()) {
            return;
        }
        let Ok(channel) = BroadcastChannel::new(&format!("{PREFIX}{}", self.name)) else {
            tracing::warn!(session = %self.name, "no BroadcastChannel: tabs adopt each other's tokens at their next refresh only");
            return;
        };
        let weak = Arc::downgrade(self);
        let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(
            move |event: web_sys::MessageEvent| {
                if let Some(inner) = weak.upgrade() {
                    inner.announced(&event.data());
                }
            },
        );
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        with_js(self.id, |js| {
            js.channel = Some(channel);
            js.on_message = Some(on_message);
        });
    }

    /// Another tab announced a session: a newer one than this tab has seen goes to the
    /// followers.
    fn announced(&self, value: &JsValue) {
        let Ok((version, Some(token))) = decode(value) else {
            return;
        };
        {
            let mut state = self.state();
            if version <= state.version {
                return;
            }
            state.version = version;
        }
        tracing::debug!(session = %self.name, version, "another tab announced a newer session");
        // Taken out while they run: a follower may call into this store.
        let followers = with_js(self.id, |js| std::mem::take(&mut js.followers));
        for follow in &followers {
            follow(token.clone());
        }
        with_js(self.id, |js| {
            let added = std::mem::replace(&mut js.followers, followers);
            js.followers.extend(added);
        });
    }

    /// The session as read under the lock (which this tab must hold).
    fn load(&self) -> Result<Option<Token>, Error> {
        let state = self.state();
        if state.phase != Phase::Held {
            return Err(self.unavailable("read", "the lock between tabs is not held".to_owned()));
        }
        state
            .session
            .clone()
            .map_err(|reason| self.unavailable("read", reason))
    }

    /// Saves `token` with compare-and-swap on `from`, under the lock.
    fn save(self: &Arc<Self>, token: &Token, from: Option<&Secret>) -> Result<Saved, Error> {
        let version = {
            let mut state = self.state();
            if state.phase != Phase::Held {
                return Err(
                    self.unavailable("written", "the lock between tabs is not held".to_owned())
                );
            }
            let stored = state
                .session
                .clone()
                .map_err(|reason| self.unavailable("read", reason))?;
            if record::conflicts(stored.as_ref(), token, from)
                && let Some(stored) = stored
            {
                return Ok(Saved::Conflict(Box::new(stored)));
            }
            state.version += 1;
            state.session = Ok(Some(token.clone()));
            state.version
        };
        self.write(version, Some(token))?;
        Ok(Saved::Stored)
    }

    fn forget(self: &Arc<Self>) -> Result<(), Error> {
        let version = {
            let mut state = self.state();
            if state.phase != Phase::Held {
                return Err(
                    self.unavailable("written", "the lock between tabs is not held".to_owned())
                );
            }
            state.version += 1;
            state.session = Ok(None);
            state.version
        };
        self.write(version, None)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let js = JS.with(|table| table.borrow_mut().remove(&self.id));
        if let Some(js) = js {
            if let Some(channel) = &js.channel {
                channel.set_onmessage(None);
                channel.close();
            }
            if let Some(release) = js.release {
                let _ = release.call0(&JsValue::UNDEFINED);
            }
        }
    }
}

/// A store call that waits for the lock: it stops counting when dropped.
struct Wanting(Arc<Inner>, bool);

impl Drop for Wanting {
    fn drop(&mut self) {
        if self.1 {
            let mut state = self.0.state();
            state.wanting -= 1;
            if state.users == 0 && state.wanting == 0 && state.phase == Phase::Held {
                self.0.release(&mut state);
            }
        }
    }
}

/// A hold on the lock for one store call, let go when the call returned.
struct Guard(Arc<Inner>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// Reads `{version, record}` as IndexedDB and the channel carry it.
fn decode(value: &JsValue) -> Result<(u64, Option<Token>), String> {
    let version = js::get(value, "version")
        .as_f64()
        .ok_or("the stored session has no version")?;
    let token = match js::get(value, "record").as_string() {
        Some(record) => Some(record::decode(record.as_bytes())?),
        None => None,
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok((version as u64, token))
}

impl TokenStore for TabsStore {
    fn load(&self) -> Result<Option<Token>, Error> {
        self.inner.load()
    }

    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, Error> {
        self.inner.save(token, from)
    }

    fn forget(&self) -> Result<(), Error> {
        self.inner.forget()
    }

    fn lock_for_refresh(&self, _timeout: Duration) -> Result<Option<Box<dyn StoreLock>>, Error> {
        // Taken already (`ready`); the kernel keeps this hold until the token the
        // exchange brings is saved.
        let mut state = self.inner.state();
        if state.phase != Phase::Held {
            let reason = state.failed.as_ref().map_or_else(
                || "the lock between tabs is not held".to_owned(),
                |(_, r)| r.clone(),
            );
            return Err(self.inner.unavailable("locked", reason));
        }
        state.users += 1;
        Ok(Some(Box::new(Hold(self.inner.clone()))))
    }

    fn ready(&self, work: BlockingWork) -> Option<StoreReady> {
        let _ = work;
        let inner = self.inner.clone();
        Some(Box::pin(async move {
            let guard: Box<dyn Any> = match inner.join().await {
                Ok(()) => Box::new(Guard(inner)),
                // The call runs all the same, and fails, saying why.
                Err(_) => Box::new(()),
            };
            guard
        }))
    }
}

/// The kernel's hold on the lock across a refresh: the session under it, as the
/// store's calls see it; let go when dropped.
struct Hold(Arc<Inner>);

impl StoreLock for Hold {
    fn load(&self) -> Result<Option<Token>, Error> {
        self.0.load()
    }

    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, Error> {
        self.0.save(token, from)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.leave();
    }
}
