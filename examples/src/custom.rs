//! The browser pattern, ported: an application's own JSON login and refresh API (not
//! OAuth 2.0), and a closure refresher for each adapter that calls it, reading failures
//! with the public classifier [`silent_refresh_oauth2::classify`].
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
//! - [`tokio_refresher`] and [`blocking_refresher`]: the closures, one per adapter.
//! - [`TokioClient`] and [`BlockingClient`]: sign in, then `GET /api/me` through
//!   `AuthorizedClient` (reqwest) or the `BearerAuth` ureq middleware.
//! - [`run`]: many tasks or threads call `GET /api/me` across several expiries and
//!   the [`Report`] says what the client and the server saw.
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
//! # use silent_refresh_examples::custom::{ApiConfig, ApiServer};
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
use silent_refresh::{Config, Credentials, Expiry, RefreshFailure, Secret, Token};
use silent_refresh_oauth2::classify;

pub use crate::client::Runtime;

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
// The refreshers
// ---------------------------------------------------------------------------------

/// Reads the answer of `POST /auth/refresh` (or `/auth/login`): a token set, or the
/// failure for the token machine.
///
/// For this API a bare `401` means the session is over, so it is terminal (sign-in
/// required); the classifier would call it transient. Everything else that is not a
/// success is classified by [`classify`]: `5xx` and `429` transient, a redirect or
/// `404` misconfigured, … `sent` is the refresh token the request carried, kept out
/// of every message.
///
/// # Errors
///
/// The failure the answer stands for.
pub fn read_answer(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    sent: &Secret,
) -> Result<Token, RefreshFailure> {
    if status == StatusCode::UNAUTHORIZED {
        return Err(RefreshFailure::terminal(
            "the session has ended; sign in again",
        ));
    }
    classify(status, headers, body, &[sent])?;
    let unusable = || RefreshFailure::transient("the refresh answer holds no token");
    let body: serde_json::Value = serde_json::from_slice(body).map_err(|_| unusable())?;
    let access = body["accessToken"].as_str().ok_or_else(unusable)?;
    let expires_in = body["expiresIn"].as_u64().ok_or_else(unusable)?;
    let token = Token::bearer(access, Expiry::In(Duration::from_secs(expires_in)));
    Ok(match body["refreshToken"].as_str() {
        Some(refresh) => token.with_refresh_token(refresh),
        None => token,
    })
}

/// The JSON body `{"refreshToken": …}`.
fn refresh_body(refresh_token: &Secret) -> Vec<u8> {
    serde_json::json!({ "refreshToken": refresh_token.expose() })
        .to_string()
        .into_bytes()
}

fn signed_out() -> RefreshFailure {
    RefreshFailure::terminal("no refresh token: sign in first")
}

/// The tokio adapter's refresher: a closure that POSTs `refresh_url` with `http` (a
/// client that follows no redirect and has a timeout) and reads the answer with
/// [`read_answer`].
pub fn tokio_refresher(
    http: reqwest::Client,
    refresh_url: String,
) -> impl silent_refresh_tokio::Refresher {
    move |refresh_token: Option<Secret>| {
        let (http, url) = (http.clone(), refresh_url.clone());
        async move {
            let sent = refresh_token.ok_or_else(signed_out)?;
            let network =
                |e: reqwest::Error| RefreshFailure::transient(e.without_url().to_string());
            let answer = http
                .post(url)
                .header(header::CONTENT_TYPE, "application/json")
                .body(refresh_body(&sent))
                .send()
                .await
                .map_err(network)?;
            let (status, headers) = (answer.status(), answer.headers().clone());
            let body = answer.bytes().await.map_err(network)?;
            read_answer(status, &headers, &body, &sent)
        }
    }
}

/// The blocking adapter's refresher: a closure that POSTs `refresh_url` with `agent`
/// (one that hands error statuses back as answers, follows no redirect and has a
/// timeout) and reads the answer with [`read_answer`].
pub fn blocking_refresher(
    agent: ureq::Agent,
    refresh_url: String,
) -> impl Fn(Option<Secret>) -> Result<Token, RefreshFailure> + Send + Sync + 'static {
    move |refresh_token: Option<Secret>| {
        let sent = refresh_token.ok_or_else(signed_out)?;
        let network = |e: ureq::Error| RefreshFailure::transient(e.to_string());
        let mut answer = agent
            .post(&refresh_url)
            .header(header::CONTENT_TYPE, "application/json")
            .send(&refresh_body(&sent)[..])
            .map_err(network)?;
        let (status, headers) = (answer.status(), answer.headers().clone());
        let body = answer.body_mut().read_to_vec().map_err(network)?;
        read_answer(status, &headers, &body, &sent)
    }
}

/// A refresher that names its token endpoint, so that `AuthorizedClient` never sends
/// the access token there. A closure cannot name it, and the tokio adapter's
/// `AuthorizedClientBuilder` has no `exclude` (the ureq `BearerAuthBuilder` has).
struct NamedEndpoint<R> {
    refresher: R,
    endpoint: String,
}

impl<R: silent_refresh_tokio::Refresher> silent_refresh_tokio::Refresher for NamedEndpoint<R> {
    fn refresh(
        &self,
        refresh_token: Option<Secret>,
    ) -> impl Future<Output = Result<Token, RefreshFailure>> + Send {
        self.refresher.refresh(refresh_token)
    }

    fn token_endpoint(&self) -> Option<&str> {
        Some(&self.endpoint)
    }
}

// ---------------------------------------------------------------------------------
// The clients
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
    fn other(message: impl fmt::Display) -> Self {
        Self {
            sign_in_required: false,
            message: message.to_string(),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CallError {}

/// The body of `POST /auth/login`.
fn login_body() -> Vec<u8> {
    serde_json::json!({ "username": USERNAME, "password": PASSWORD })
        .to_string()
        .into_bytes()
}

/// A login answer as the credentials to sign in with: its lifetime counts from when
/// the login was sent, so the client never believes the token lives longer than the
/// server does.
fn login_credentials(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    sent_at: Instant,
) -> Result<Credentials, CallError> {
    if status == StatusCode::UNAUTHORIZED {
        return Err(CallError::other(
            "login failed: invalid username or password",
        ));
    }
    let mut token = read_answer(status, headers, body, &Secret::new(PASSWORD))
        .map_err(|failure| CallError::other(format!("login failed: {}", failure.message)))?;
    if let Expiry::In(lifetime) = token.expiry {
        token.expiry = Expiry::In(lifetime.saturating_sub(sent_at.elapsed()));
    }
    Ok(Credentials::Token(token))
}

/// A session in the tokio adapter: an `AuthorizedClient` over reqwest.
#[derive(Clone, Debug)]
pub struct TokioClient {
    client: silent_refresh_tokio::AuthorizedClient,
    http: reqwest::Client,
    me_url: String,
}

impl TokioClient {
    /// Logs in at `origin` and starts a token source whose refresher calls the
    /// refresh route; the refresh route is the refresher's named endpoint, so the
    /// client refuses to send the access token there.
    ///
    /// # Errors
    ///
    /// When the login fails, or the source or client cannot be built.
    pub async fn sign_in(origin: &str, config: Config) -> Result<Self, CallError> {
        let refresh_http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.refresh_timeout())
            .build()
            .map_err(CallError::other)?;
        let sent_at = Instant::now();
        let answer = refresh_http
            .post(format!("{origin}{LOGIN_PATH}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(login_body())
            .send()
            .await
            .map_err(|e| CallError::other(e.without_url()))?;
        let (status, headers) = (answer.status(), answer.headers().clone());
        let body = answer
            .bytes()
            .await
            .map_err(|e| CallError::other(e.without_url()))?;
        let credentials = login_credentials(status, &headers, &body, sent_at)?;

        let refresh_url = format!("{origin}{REFRESH_PATH}");
        let source = silent_refresh_tokio::TokenSource::builder(config)
            .credentials(credentials)
            .refresher(NamedEndpoint {
                refresher: tokio_refresher(refresh_http, refresh_url.clone()),
                endpoint: refresh_url,
            })
            .build()
            .map_err(CallError::other)?;
        let client = silent_refresh_tokio::AuthorizedClient::builder(source)
            .allow_origin(origin)
            .build()
            .map_err(CallError::other)?;
        Ok(Self {
            client,
            http: reqwest::Client::new(),
            me_url: format!("{origin}{ME_PATH}"),
        })
    }

    /// The authorized client (its token source, its origin checks).
    #[must_use]
    pub fn authorized(&self) -> &silent_refresh_tokio::AuthorizedClient {
        &self.client
    }

    /// `GET /api/me` with the token; a `401` is reported and the request sent once
    /// more with a new token.
    ///
    /// # Errors
    ///
    /// When no token can be had (`sign_in_required` when the session is over) or the
    /// request fails.
    pub async fn get_me(&self) -> Result<StatusCode, CallError> {
        let request = self
            .http
            .get(&self.me_url)
            .build()
            .map_err(|e| CallError::other(e.without_url()))?;
        match self.client.execute(&self.http, request).await {
            Ok(response) => {
                let status = response.status();
                // Read the body so the connection goes back to the pool.
                response
                    .bytes()
                    .await
                    .map_err(|e| CallError::other(e.without_url()))?;
                Ok(status)
            }
            Err(error) => Err(CallError {
                sign_in_required: error.needs_sign_in(),
                message: error.to_string(),
            }),
        }
    }
}

/// A session in the blocking adapter: a ureq agent with the `BearerAuth` middleware.
#[derive(Debug)]
pub struct BlockingClient {
    source: silent_refresh_ureq::TokenSource,
    agent: ureq::Agent,
    me_url: String,
}

impl BlockingClient {
    /// Logs in at `origin` and starts a token source whose refresher calls the
    /// refresh route, which the middleware excludes: it never gets the access token.
    ///
    /// # Errors
    ///
    /// When the login fails, or the source or middleware cannot be built.
    pub fn sign_in(origin: &str, config: Config) -> Result<Self, CallError> {
        let refresh_agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(config.refresh_timeout()))
            .build()
            .into();
        let sent_at = Instant::now();
        let mut answer = refresh_agent
            .post(format!("{origin}{LOGIN_PATH}"))
            .header(header::CONTENT_TYPE, "application/json")
            .send(&login_body()[..])
            .map_err(CallError::other)?;
        let (status, headers) = (answer.status(), answer.headers().clone());
        let body = answer.body_mut().read_to_vec().map_err(CallError::other)?;
        let credentials = login_credentials(status, &headers, &body, sent_at)?;

        let refresh_url = format!("{origin}{REFRESH_PATH}");
        let request_timeout = config.request_timeout();
        let source = silent_refresh_ureq::TokenSource::builder(config)
            .credentials(credentials)
            .refresher(blocking_refresher(refresh_agent, refresh_url.clone()))
            .build()
            .map_err(CallError::other)?;
        let auth = silent_refresh_ureq::BearerAuth::builder(source.clone())
            .allow_origin(origin)
            .exclude(refresh_url)
            .build()
            .map_err(CallError::other)?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(request_timeout))
            .middleware(auth)
            .build()
            .into();
        Ok(Self {
            source,
            agent,
            me_url: format!("{origin}{ME_PATH}"),
        })
    }

    /// The token source.
    #[must_use]
    pub fn source(&self) -> &silent_refresh_ureq::TokenSource {
        &self.source
    }

    /// The agent with the middleware: requests to the API's origin get the token,
    /// except those to the refresh route.
    #[must_use]
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// `GET /api/me` with the token; a `401` is reported and the request sent once
    /// more with a new token.
    ///
    /// # Errors
    ///
    /// When no token can be had (`sign_in_required` when the session is over) or the
    /// request fails.
    pub fn get_me(&self) -> Result<StatusCode, CallError> {
        match self.agent.get(&self.me_url).call() {
            Ok(mut response) => {
                let status = response.status();
                // Read the body so the connection goes back to the pool.
                response
                    .body_mut()
                    .read_to_vec()
                    .map_err(CallError::other)?;
                Ok(status)
            }
            Err(ureq::Error::Other(error)) => {
                match error.downcast_ref::<silent_refresh_ureq::Error>() {
                    Some(error) => Err(CallError {
                        sign_in_required: error.needs_sign_in(),
                        message: error.to_string(),
                    }),
                    None => Err(CallError::other(error)),
                }
            }
            Err(error) => Err(CallError::other(error)),
        }
    }
}

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

/// What the workers counted.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    ok: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

impl Tally {
    fn record(&self, result: Result<StatusCode, CallError>) {
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

    fn report(&self, runtime: Runtime, server: ApiStats) -> Report {
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

/// Starts an [`ApiServer`], signs in, and has the scenario's workers call
/// `GET /api/me` until its time is up.
///
/// # Errors
///
/// When the server cannot start, or signing in fails.
pub fn run(scenario: &Scenario) -> io::Result<Report> {
    let server = ApiServer::start(scenario.server.clone())?;
    let tally = Arc::new(Tally::default());
    match scenario.runtime {
        Runtime::Tokio => run_tokio(scenario, &server, &tally)?,
        Runtime::Blocking => run_blocking(scenario, &server, &tally)?,
    }
    Ok(tally.report(scenario.runtime, server.stats()))
}

fn run_tokio(scenario: &Scenario, server: &ApiServer, tally: &Arc<Tally>) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = TokioClient::sign_in(&server.origin(), scenario.config())
            .await
            .map_err(io::Error::other)?;
        let end = tokio::time::Instant::now() + scenario.duration;
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..scenario.workers {
            let (client, tally, pause) = (client.clone(), tally.clone(), scenario.pause);
            workers.spawn(async move {
                while tokio::time::Instant::now() < end {
                    tally.record(client.get_me().await);
                    tokio::time::sleep(pause).await;
                }
            });
        }
        while let Some(joined) = workers.join_next().await {
            joined.map_err(io::Error::other)?;
        }
        Ok(())
    })
}

fn run_blocking(scenario: &Scenario, server: &ApiServer, tally: &Tally) -> io::Result<()> {
    let client =
        BlockingClient::sign_in(&server.origin(), scenario.config()).map_err(io::Error::other)?;
    let end = Instant::now() + scenario.duration;
    std::thread::scope(|scope| {
        for _ in 0..scenario.workers {
            scope.spawn(|| {
                while Instant::now() < end {
                    tally.record(client.get_me());
                    std::thread::sleep(scenario.pause);
                }
            });
        }
    });
    Ok(())
}
