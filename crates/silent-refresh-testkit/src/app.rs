//! The application side of `custom_refresh` (the browser pattern, ported): an
//! application's own JSON login and refresh API (not OAuth 2.0), and the counts of a
//! run. The client side, what a reader copies (a closure refresher for each adapter that
//! reads failures with [`silent_refresh_oauth2::classify`], the adapters' integrations,
//! the workers), is all in `examples/custom_refresh.rs`.
//!
//! The system this library generalises is an axios interceptor that calls the app's
//! `POST /auth/refresh` when a token runs out. Here:
//! - [`ApiServer`]: on `127.0.0.1`, a random port. `POST /auth/login`
//!   `{"username","password"}` and `POST /auth/refresh` `{"refreshToken"}` both answer
//!   `{"accessToken","refreshToken","expiresIn"}`; refresh tokens rotate, and one
//!   presented twice ends its session (`401 {"message":"session expired"}`, every
//!   token of the session revoked). `GET /api/me` wants `Authorization: Bearer …` and
//!   answers `401` to a token that is expired, unknown or revoked. It counts refreshes,
//!   the most refresh requests in flight at once, reuses, and refresh requests that
//!   carried an access token (none should).
//! - [`Scenario`]: how many workers call `GET /api/me`, for how long, against which
//!   server settings.
//! - [`Tally`] and [`Report`]: what the workers and the server saw.
//!
//! The tokio refresher in a dozen lines (the README's), here against the embedded API
//! with a refresh token it never issued, so the session is over at once:
//!
//! ```
//! use std::time::Duration;
//! use serde_json::{Value, json};
//! use silent_refresh_oauth2::classify;
//! use silent_refresh::{Config, Credentials, Expiry, RefreshFailure, Secret, Token};
//! use silent_refresh_tokio::TokenSource;
//! # use silent_refresh_testkit::app::{ApiConfig, ApiServer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = ApiServer::start(ApiConfig::default())?;
//! # let refresh_url = server.refresh_url();
//! let http = reqwest::Client::new();
//! let source = TokenSource::builder(Config::default())
//!     .credentials(Credentials::RefreshToken("rt-from-an-old-login".into()))
//!     .refresher(move |rt: Option<Secret>| {
//!         let (http, url) = (http.clone(), refresh_url.clone());
//!         async move {
//!             let rt = rt.ok_or_else(|| RefreshFailure::terminal("signed out"))?;
//!             let net = |e: reqwest::Error| RefreshFailure::transient(e.without_url().to_string());
//!             let answer = http.post(url).header("content-type", "application/json")
//!                 .body(json!({ "refreshToken": rt.expose() }).to_string()).send().await.map_err(net)?;
//!             let (status, headers) = (answer.status(), answer.headers().clone());
//!             let body = answer.bytes().await.map_err(net)?;
//!             if status == 401 { return Err(RefreshFailure::terminal("session expired: sign in again")) }
//!             classify(status, &headers, &body, &[&rt])?; // 5xx, 429: retried; 404, 3xx: misconfigured
//!             let v: Value = serde_json::from_slice(&body).unwrap_or_default();
//!             let (Some(at), Some(secs)) = (v["accessToken"].as_str(), v["expiresIn"].as_u64()) else {
//!                 return Err(RefreshFailure::transient("the refresh answer holds no token"));
//!             };
//!             let token = Token::bearer(at, Expiry::In(Duration::from_secs(secs)));
//!             Ok(match v["refreshToken"].as_str() { Some(next) => token.with_refresh_token(next), None => token })
//!         }
//!     })
//!     .build()?;
//! let error = source.token().await.expect_err("a refresh token the API never issued");
//! assert!(error.needs_sign_in(), "{error}");
//! # Ok(())
//! # }
//! ```
//!
//! Tokens are random enough for a demo (std's randomly keyed hasher), not for
//! production. No secret is printed: reports and errors hold counts and messages only.

use crate::serve::Served;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use silent_refresh::Config;

pub use crate::Runtime;

/// The login route.
pub const LOGIN_PATH: &str = "/auth/login";
/// The refresh route.
pub const REFRESH_PATH: &str = "/auth/refresh";
/// The API route that wants a bearer token.
pub const ME_PATH: &str = "/api/me";
/// The one user's name.
pub const USERNAME: &str = "demo";
/// The one user's password (a demo's: known to both sides).
pub const PASSWORD: &str = "demo-password";

// ---------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------

/// How the [`ApiServer`] behaves.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// How long an access token lives; `expiresIn` says it in whole seconds (rounded
    /// down), and the server holds to that.
    pub token_lifetime: Duration,
    /// How long `POST /auth/refresh` takes to answer, so that two refreshes would
    /// overlap if a client sent them.
    pub refresh_latency: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            token_lifetime: Duration::from_secs(2),
            refresh_latency: Duration::from_millis(50),
        }
    }
}

/// What the [`ApiServer`] counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApiStats {
    /// Successful logins.
    pub logins: u64,
    /// Requests to `POST /auth/refresh`, answered or not.
    pub refresh_requests: u64,
    /// Refreshes answered with a new token set.
    pub refreshes: u64,
    /// Refreshes refused (`401 session expired` or `400`).
    pub refused_refreshes: u64,
    /// The most refresh requests in flight at once, from arrival to answer.
    pub max_refreshes_in_flight: u64,
    /// Refresh tokens presented a second time (each ends its session).
    pub reuses: u64,
    /// Refresh requests that carried an `Authorization` header (an access token sent
    /// where it has no business).
    pub tokens_at_refresh: u64,
    /// `GET /api/me` answered `200`.
    pub me_ok: u64,
    /// `GET /api/me` answered `401`.
    pub me_unauthorized: u64,
}

/// The application's API on `127.0.0.1`, on a tokio runtime of its own (on a thread of
/// its own), so that blocking and async clients alike can use it. Dropping it stops it.
pub struct ApiServer {
    addr: SocketAddr,
    state: Arc<ApiState>,
    /// Stops the server when dropped.
    _served: Served,
}

impl fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiServer")
            .field("addr", &self.addr)
            .field("config", &self.state.config)
            .finish_non_exhaustive()
    }
}

struct ApiState {
    config: ApiConfig,
    tables: Mutex<Tables>,
    keys: RandomState,
    next_id: AtomicU64,
    in_flight: AtomicU64,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    logins: AtomicU64,
    refresh_requests: AtomicU64,
    refreshes: AtomicU64,
    refused_refreshes: AtomicU64,
    max_refreshes_in_flight: AtomicU64,
    reuses: AtomicU64,
    tokens_at_refresh: AtomicU64,
    me_ok: AtomicU64,
    me_unauthorized: AtomicU64,
}

#[derive(Default)]
struct Tables {
    /// Session id → revoked.
    sessions: HashMap<u64, bool>,
    refresh: HashMap<String, RefreshEntry>,
    access: HashMap<String, AccessEntry>,
}

struct RefreshEntry {
    session: u64,
    used: bool,
}

struct AccessEntry {
    session: u64,
    expires: Instant,
}

/// Expired access tokens are swept out past this many.
const SWEEP_ABOVE: usize = 1024;

impl ApiServer {
    /// Starts the server on `127.0.0.1`, on a port the system picks.
    ///
    /// # Errors
    ///
    /// When the socket cannot be bound or the runtime cannot start.
    pub fn start(config: ApiConfig) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ApiState {
            config,
            tables: Mutex::new(Tables::default()),
            keys: RandomState::new(),
            next_id: AtomicU64::new(1),
            in_flight: AtomicU64::new(0),
            counters: Counters::default(),
        });
        let app = Router::new()
            .route(LOGIN_PATH, post(login))
            .route(REFRESH_PATH, post(refresh))
            .route(ME_PATH, get(me))
            .with_state(state.clone());
        let served = Served::start("custom API server", listener, app)?;
        Ok(Self {
            addr,
            state,
            _served: served,
        })
    }

    /// `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The refresh route's URL.
    #[must_use]
    pub fn refresh_url(&self) -> String {
        format!("{}{REFRESH_PATH}", self.origin())
    }

    /// The API route's URL.
    #[must_use]
    pub fn me_url(&self) -> String {
        format!("{}{ME_PATH}", self.origin())
    }

    /// Ends every session: its refresh token and access tokens stop working, as when
    /// a user signs out elsewhere or an administrator revokes the session.
    pub fn revoke_sessions(&self) {
        for revoked in self.state.tables().sessions.values_mut() {
            *revoked = true;
        }
    }

    /// What the server counted so far.
    #[must_use]
    pub fn stats(&self) -> ApiStats {
        let c = &self.state.counters;
        let load = |n: &AtomicU64| n.load(Ordering::SeqCst);
        ApiStats {
            logins: load(&c.logins),
            refresh_requests: load(&c.refresh_requests),
            refreshes: load(&c.refreshes),
            refused_refreshes: load(&c.refused_refreshes),
            max_refreshes_in_flight: load(&c.max_refreshes_in_flight),
            reuses: load(&c.reuses),
            tokens_at_refresh: load(&c.tokens_at_refresh),
            me_ok: load(&c.me_ok),
            me_unauthorized: load(&c.me_unauthorized),
        }
    }
}

impl ApiState {
    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn random_token(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let a = self.keys.hash_one((n, 1u8));
        let b = self.keys.hash_one((n, 2u8));
        format!("{prefix}_{a:016x}{b:016x}")
    }

    /// A new access and refresh token for `session`, as the JSON answer.
    fn issue(&self, tables: &mut Tables, session: u64) -> Response {
        let now = Instant::now();
        if tables.access.len() > SWEEP_ABOVE {
            tables.access.retain(|_, a| now < a.expires);
        }
        let lifetime = self.config.token_lifetime;
        let access = self.random_token("at");
        let refresh = self.random_token("rt");
        tables.access.insert(
            access.clone(),
            AccessEntry {
                session,
                expires: now + lifetime,
            },
        );
        tables.refresh.insert(
            refresh.clone(),
            RefreshEntry {
                session,
                used: false,
            },
        );
        axum::Json(serde_json::json!({
            "accessToken": access,
            "refreshToken": refresh,
            "expiresIn": lifetime.as_secs(),
        }))
        .into_response()
    }
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "message": text }))).into_response()
}

/// A string field of a JSON body.
fn field(body: &[u8], name: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get(name)?.as_str().map(str::to_owned)
}

async fn login(State(state): State<Arc<ApiState>>, body: Bytes) -> Response {
    let (Some(username), Some(password)) = (field(&body, "username"), field(&body, "password"))
    else {
        return message(
            StatusCode::BAD_REQUEST,
            "username and password are required",
        );
    };
    if username != USERNAME || password != PASSWORD {
        return message(StatusCode::UNAUTHORIZED, "invalid username or password");
    }
    state.counters.logins.fetch_add(1, Ordering::SeqCst);
    let session = state.next_id.fetch_add(1, Ordering::Relaxed);
    let mut tables = state.tables();
    tables.sessions.insert(session, false);
    state.issue(&mut tables, session)
}

/// Decrements the in-flight count when the handler ends, however it ends.
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn refresh(State(state): State<Arc<ApiState>>, headers: HeaderMap, body: Bytes) -> Response {
    let counters = &state.counters;
    let now_in_flight = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _in_flight = InFlight(&state.in_flight);
    counters
        .max_refreshes_in_flight
        .fetch_max(now_in_flight, Ordering::SeqCst);
    counters.refresh_requests.fetch_add(1, Ordering::SeqCst);
    if headers.contains_key(header::AUTHORIZATION) {
        counters.tokens_at_refresh.fetch_add(1, Ordering::SeqCst);
    }
    tokio::time::sleep(state.config.refresh_latency).await;

    let Some(presented) = field(&body, "refreshToken") else {
        counters.refused_refreshes.fetch_add(1, Ordering::SeqCst);
        return message(StatusCode::BAD_REQUEST, "refreshToken is required");
    };
    let mut guard = state.tables();
    let tables = &mut *guard;
    let session = match tables.refresh.get_mut(&presented) {
        Some(entry) if entry.used => {
            // Reuse: someone holds a copy. End the whole session.
            counters.reuses.fetch_add(1, Ordering::SeqCst);
            let session = entry.session;
            tables.sessions.insert(session, true);
            None
        }
        Some(entry) => {
            entry.used = true;
            Some(entry.session)
        }
        None => None,
    };
    let live = session.filter(|s| tables.sessions.get(s) == Some(&false));
    match live {
        Some(session) => {
            counters.refreshes.fetch_add(1, Ordering::SeqCst);
            state.issue(tables, session)
        }
        None => {
            counters.refused_refreshes.fetch_add(1, Ordering::SeqCst);
            message(StatusCode::UNAUTHORIZED, "session expired")
        }
    }
}

async fn me(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let valid = token.is_some_and(|token| {
        let tables = state.tables();
        tables.access.get(token).is_some_and(|a| {
            Instant::now() < a.expires && tables.sessions.get(&a.session) == Some(&false)
        })
    });
    if valid {
        state.counters.me_ok.fetch_add(1, Ordering::SeqCst);
        axum::Json(serde_json::json!({ "username": USERNAME })).into_response()
    } else {
        state
            .counters
            .me_unauthorized
            .fetch_add(1, Ordering::SeqCst);
        let mut response = message(StatusCode::UNAUTHORIZED, "token expired");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        response
    }
}

// ---------------------------------------------------------------------------------
// The counts
// ---------------------------------------------------------------------------------

/// Why a call got no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    /// The session is over: the user must sign in again.
    pub sign_in_required: bool,
    /// What happened (no secret).
    pub message: String,
}

impl CallError {
    /// A failure that says whether the user must sign in again.
    pub fn new(sign_in_required: bool, message: impl fmt::Display) -> Self {
        Self {
            sign_in_required,
            message: message.to_string(),
        }
    }

    /// Any other failure (the network, a body that could not be read).
    pub fn other(message: impl fmt::Display) -> Self {
        Self::new(false, message)
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CallError {}

// ---------------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------------

/// One run: `workers` tasks or threads call `GET /api/me` for `duration`.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Which adapter.
    pub runtime: Runtime,
    /// Tasks (tokio) or threads (blocking) calling the API at once.
    pub workers: usize,
    /// How long they call it.
    pub duration: Duration,
    /// Each worker's pause between two calls (pacing, so the load stays modest).
    pub pause: Duration,
    /// The server's settings (token lifetime, refresh latency).
    pub server: ApiConfig,
}

impl Scenario {
    /// The example's run: 16 workers for 4 s with 2-second tokens, so several tokens
    /// expire (a refresh about every second).
    #[must_use]
    pub fn example(runtime: Runtime) -> Self {
        Self {
            runtime,
            workers: 16,
            duration: Duration::from_secs(4),
            pause: Duration::from_millis(10),
            server: ApiConfig::default(),
        }
    }

    /// One line for people: what the run does.
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "{}: {} workers call GET {ME_PATH} for {:?}, with {:?} access tokens",
            self.runtime.name(),
            self.workers,
            self.duration,
            self.server.token_lifetime,
        )
    }

    /// The client's configuration: the library's defaults (a token is refreshed
    /// after half its lifetime and not handed out in its last tenth), with a request
    /// deadline short enough that a stuck run ends.
    #[must_use]
    pub fn config(&self) -> Config {
        let timeout = self.duration.max(Duration::from_secs(5));
        Config::builder()
            .request_timeout(timeout)
            .refresh_timeout(timeout)
            .build()
            .unwrap_or_default()
    }
}

/// What one run saw: the client's counts and the server's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Which adapter.
    pub runtime: Runtime,
    /// Calls made.
    pub requests: u64,
    /// Calls answered `200`.
    pub ok: u64,
    /// Calls that failed or were answered otherwise.
    pub failed: u64,
    /// The first failure's message, if any (no secret).
    pub first_failure: Option<String>,
    /// What the server counted.
    pub server: ApiStats,
}

impl Report {
    /// Whether the run went as it should: every call answered, one refresh at a time,
    /// no refresh token spent twice, the access token never sent to the refresh route.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.failed == 0
            && self.server.max_refreshes_in_flight == 1
            && self.server.reuses == 0
            && self.server.tokens_at_refresh == 0
    }

    /// One JSON line: runtime, requests, ok, failed, refreshes, max refreshes in
    /// flight, reuses.
    #[must_use]
    pub fn json(&self) -> String {
        // Written by hand to keep the fields in this order (the runtime's name is a
        // fixed word that needs no escaping).
        format!(
            r#"{{"runtime":"{}","requests":{},"ok":{},"failed":{},"refreshes":{},"max_refreshes_in_flight":{},"reuses":{}}}"#,
            self.runtime.name(),
            self.requests,
            self.ok,
            self.failed,
            self.server.refreshes,
            self.server.max_refreshes_in_flight,
            self.server.reuses,
        )
    }

    /// A short summary for people.
    #[must_use]
    pub fn summary(&self) -> String {
        let s = &self.server;
        let mut text = format!(
            "{}: {} requests, {} ok, {} failed; {} refreshes (at most {} in flight), {} reused refresh tokens, {} access tokens sent to {REFRESH_PATH}; the API answered 401 {} times",
            self.runtime.name(),
            self.requests,
            self.ok,
            self.failed,
            s.refreshes,
            s.max_refreshes_in_flight,
            s.reuses,
            s.tokens_at_refresh,
            s.me_unauthorized,
        );
        if let Some(failure) = &self.first_failure {
            text.push_str(&format!("; first failure: {failure}"));
        }
        text
    }
}

/// What the workers counted: shared by them, then turned into a [`Report`].
#[derive(Debug, Default)]
pub struct Tally {
    requests: AtomicU64,
    ok: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

impl Tally {
    /// Counts one call of `GET /api/me` and its answer.
    pub fn record(&self, result: Result<StatusCode, CallError>) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let failure = match result {
            Ok(StatusCode::OK) => {
                self.ok.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Ok(status) => format!("GET {ME_PATH} answered {status}"),
            Err(error) => error.message,
        };
        self.first_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(failure);
    }

    /// The report of a run: the calls counted here and what the server counted.
    #[must_use]
    pub fn report(&self, runtime: Runtime, server: ApiStats) -> Report {
        let requests = self.requests.load(Ordering::SeqCst);
        let ok = self.ok.load(Ordering::SeqCst);
        Report {
            runtime,
            requests,
            ok,
            failed: requests - ok,
            first_failure: self
                .first_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            server,
        }
    }
}
