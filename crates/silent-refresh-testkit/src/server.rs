//! An embedded OAuth 2.0 authorization server and protected resource, for the demo
//! and the tests: real HTTP (axum) on `127.0.0.1`, random port.
//!
//! It behaves like the servers the library meets in production, only faster:
//! - **Short-lived access tokens** (opaque, a few seconds by default), checked by the
//!   protected resource, which answers `401` with `WWW-Authenticate: Bearer
//!   error="invalid_token"` to a missing, unknown, expired or revoked token.
//! - **Rotating refresh tokens**: each refresh token works once; the answer carries
//!   the next one.
//! - **Reuse detection**: presenting a refresh token that was already used revokes
//!   the whole grant (every refresh token and access token descended from the
//!   sign-in), as Auth0, Okta and others do; later refreshes get `invalid_grant`.
//! - **Client authentication** with `client_secret_basic`, `client_secret_post`,
//!   `client_secret_jwt` (HS256 with the client secret) or `private_key_jwt` (RFC 7523
//!   §2.2, with the public key registered in [`ServerConfig::client_public_key`]). A
//!   client assertion is checked for real: its signature with the key, `iss` and `sub`
//!   the client id, `aud` this token endpoint, `exp` not passed and no more than an hour
//!   after `iat`, and a `jti` never seen before (a replay is refused).
//! - **Other grants**, each checked for real: `client_credentials` (an access token and
//!   no refresh token); the JWT bearer grant (RFC 7523 §2.1: the `assertion` checked
//!   like a client assertion, with the issuer and key of
//!   [`ServerConfig::jwt_bearer_issuer`]); token exchange (RFC 8693: the
//!   `subject_token` must be one this server issued with
//!   [`AuthServer::issue_subject_token`], signed and unexpired, as a Kubernetes API
//!   server checks a projected service-account token). Their tokens count as one grant
//!   per principal ([`AuthServer::service_grant`]).
//! - **Switches** for the failure cases: the token endpoint answers `503` (with
//!   `Retry-After`) while [`AuthServer::set_token_endpoint_failing`] is on, and
//!   [`AuthServer::revoke_access_tokens`] invalidates every access token issued so
//!   far (a signing-key rotation).
//! - **Modes** of the token endpoint, in [`ServerConfig`] or switched at run time:
//!   - *slow*: it answers after [`ServerConfig::token_latency`] (say 12 s), the
//!     request counting as in flight the whole time
//!     ([`AuthServer::set_token_latency`]);
//!   - *faulty*: a fraction of its requests ([`ServerConfig::failure_rate`], say 30 %)
//!     are answered `503` before any refresh credential is looked at, chosen by a
//!     seeded generator so a run is reproducible ([`AuthServer::set_failure_rate`]);
//!   - *redirecting*: it answers `307` or `308` with a `Location` on another origin
//!     ([`ServerConfig::token_redirect`], [`AuthServer::redirect_to_second_origin`]):
//!     a [`SecondOrigin`] on `127.0.0.1` counts whatever it receives, so a test can
//!     check that no credential followed the redirect.
//!   - *outage*: the token endpoint (on an origin of its own, apart from the
//!     resource) refuses connections for a window: its listening socket is closed
//!     and its open connections cut, then it listens again on the same port
//!     ([`ServerConfig::outage`], [`AuthServer::outage`]); the server notes when it
//!     came back and when it issued its first token after that
//!     ([`AuthServer::outage_recovery`]).
//! - **A rejecting API**: while [`AuthServer::set_resource_rejects_all`] is on (or
//!   [`ServerConfig::resource_rejects_all`]), the resource answers `401 invalid_token`
//!   to every token, even one just issued (a wrong audience, a revoked client at the
//!   API): a client that refreshes on every `401` storms the token endpoint.
//! - **Measurements**: [`AuthServer::take_stats`] counts refreshes, errors, `401`s,
//!   redirects, what the second origin received, and the most token requests ever
//!   in flight at once, measured inside the handler from the moment a request
//!   arrives until its answer leaves (or the client gives up on it).
//!
//! Tokens are random enough for a demo (std's randomly keyed hasher), not for
//! production. Secrets never leave the server except in HTTP answers.

use crate::serve::Served;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};

use crate::keys::PublicKey;

mod apis;
pub use apis::{ApiServer, ApiStats};
mod dpop;
pub use dpop::{DpopConfig, DpopStats};
pub mod signin;
mod web;

/// The path of the token endpoint.
pub const TOKEN_PATH: &str = "/oauth/token";
/// The path of the protected resource.
pub const RESOURCE_PATH: &str = "/api/resource";

/// The `grant_type` of the JWT bearer grant.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The `grant_type` of token exchange.
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The `client_assertion_type` of a JWT client assertion.
const JWT_CLIENT_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The issuer of the subject tokens this server makes (a stand-in Kubernetes API server).
pub const SUBJECT_TOKEN_ISSUER: &str = "embedded-kubernetes";
/// The longest lifetime (`exp` − `iat`) an assertion may claim.
const MAX_ASSERTION_SECS: u64 = 3600;
/// Clock skew allowed on `exp` and `iat`, in seconds.
const LEEWAY_SECS: u64 = 5;

/// How the embedded server behaves.
#[derive(Clone)]
pub struct ServerConfig {
    /// How long an access token lives. `expires_in` says it in whole seconds
    /// (rounded down), so a client never believes a token lives longer than it does,
    /// unless [`exact_expires_in`](Self::exact_expires_in) is on.
    pub token_lifetime: Duration,
    /// `expires_in` says the lifetime exactly, in fractional seconds (`0.2` for
    /// 200 ms), for tests that run several expiries within a second. RFC 6749 says an
    /// integer; the client library reads any non-negative number. Off by default.
    pub exact_expires_in: bool,
    /// How long the token endpoint takes to answer (so that refreshes overlap
    /// requests, as over a real network). The *slow mode* is this set high (a
    /// 12 s identity provider): the request counts as in flight all along, and the
    /// refresh credential is looked at only when the delay is over.
    pub token_latency: Duration,
    /// How long a refresh's answer takes to come back once the server has processed
    /// it (rotated the refresh token), as over a slow network: a client that gives up
    /// or exits meanwhile has spent its refresh token without learning its successor.
    /// Zero by default.
    pub answer_latency: Duration,
    /// The registered client's id.
    pub client_id: String,
    /// The registered client's secret (`None`: a public client).
    pub client_secret: Option<String>,
    /// The `Retry-After` (whole seconds) sent with a `503`; `None` sends none.
    pub retry_after: Option<u64>,
    /// The *faulty mode*: the fraction (0 to 1) of token requests answered `503
    /// temporarily_unavailable`, before the client or the refresh credential is
    /// looked at (so a `503` never spends a refresh token). 0 turns it off.
    pub failure_rate: f64,
    /// The seed that picks which token requests fail in the faulty mode: the
    /// `n`-th token request fails or not as a function of `(seed, n)` alone, so a
    /// client that sends one refresh at a time meets the same failures every run.
    pub fault_seed: u64,
    /// The *redirecting mode*: the token endpoint answers every request with this
    /// redirect to the token URL of a [`SecondOrigin`] the server starts with it.
    pub token_redirect: Option<RedirectStatus>,
    /// The client's registered public key, for `private_key_jwt`. Without it only
    /// the secret-based methods authenticate.
    pub client_public_key: Option<PublicKey>,
    /// The issuer (`iss`) the JWT bearer grant trusts, and its public key. Without it
    /// the grant is refused (`unauthorized_client`).
    pub jwt_bearer_issuer: Option<(String, PublicKey)>,
    /// The *outage*: `(after, length)`: from `after` past the start the token
    /// endpoint refuses connections for `length`, then listens again.
    pub outage: Option<(Duration, Duration)>,
    /// The *rejecting API*: the resource answers `401` to every token.
    pub resource_rejects_all: bool,
    /// The *DPoP mode* (RFC 9449, see [`DpopConfig`]): proofs on every token request,
    /// DPoP-bound tokens, proofs at the resource, server nonces. Off by default.
    pub dpop: Option<DpopConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            token_lifetime: Duration::from_secs(3),
            exact_expires_in: false,
            token_latency: Duration::from_millis(100),
            answer_latency: Duration::ZERO,
            client_id: "demo-client".to_owned(),
            client_secret: Some("demo-client-secret".to_owned()),
            retry_after: Some(1),
            failure_rate: 0.0,
            fault_seed: 0,
            token_redirect: None,
            client_public_key: None,
            jwt_bearer_issuer: None,
            outage: None,
            resource_rejects_all: false,
            dpop: None,
        }
    }
}

/// The status of a redirecting token endpoint: both keep the method and the body,
/// so a client that follows them sends its credentials to the `Location`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RedirectStatus {
    /// `307 Temporary Redirect`.
    Temporary,
    /// `308 Permanent Redirect`.
    Permanent,
}

impl RedirectStatus {
    /// The HTTP status.
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            Self::Temporary => StatusCode::TEMPORARY_REDIRECT,
            Self::Permanent => StatusCode::PERMANENT_REDIRECT,
        }
    }
}

/// Where and how the token endpoint redirects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRedirect {
    /// `307` or `308`.
    pub status: RedirectStatus,
    /// The `Location` (an absolute URL).
    pub location: String,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("token_lifetime", &self.token_lifetime)
            .field("exact_expires_in", &self.exact_expires_in)
            .field("token_latency", &self.token_latency)
            .field("answer_latency", &self.answer_latency)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("retry_after", &self.retry_after)
            .field("failure_rate", &self.failure_rate)
            .field("fault_seed", &self.fault_seed)
            .field("token_redirect", &self.token_redirect)
            .field("client_public_key", &self.client_public_key)
            .field(
                "jwt_bearer_issuer",
                &self.jwt_bearer_issuer.as_ref().map(|(issuer, _)| issuer),
            )
            .field("outage", &self.outage)
            .field("resource_rejects_all", &self.resource_rejects_all)
            .field("dpop", &self.dpop)
            .finish()
    }
}

/// A sign-in: the grant's id and its first refresh token.
pub struct Grant {
    /// The grant's id (a family of rotating refresh tokens).
    pub id: u64,
    /// The first refresh token (a secret: do not print it).
    pub refresh_token: String,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("id", &self.id)
            .field("refresh_token", &"[redacted]")
            .finish()
    }
}

/// Something notable the server did, for a timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A refresh succeeded: the grant's token number `serial` was issued.
    Issued {
        /// The grant.
        grant: u64,
        /// 1 for the grant's first access token, 2 for the next, …
        serial: u64,
    },
    /// The token endpoint answered `503` (the failure switch is on).
    Unavailable,
    /// A refresh token was presented a second time: the grant is revoked.
    ReuseDetected {
        /// The revoked grant.
        grant: u64,
    },
    /// A refresh was refused with `invalid_grant` (unknown token or revoked grant).
    InvalidGrant {
        /// The grant, if the token was known.
        grant: Option<u64>,
    },
    /// Every access token issued so far was revoked.
    AccessTokensRevoked,
    /// The token endpoint answered with a redirect (the redirecting mode).
    Redirected,
}

/// Counts since the last [`AuthServer::take_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests to the token endpoint, whatever their answer.
    pub token_requests: u64,
    /// Access tokens issued (successful refreshes).
    pub issued: u64,
    /// `503` answers of the token endpoint (the failure switch and the faulty
    /// mode).
    pub unavailable: u64,
    /// Redirects answered by the token endpoint (the redirecting mode).
    pub redirected: u64,
    /// `invalid_grant` answers (including those that detected a reuse).
    pub invalid_grant: u64,
    /// `invalid_client` answers.
    pub invalid_client: u64,
    /// Refresh tokens presented a second time (each revoked its grant).
    pub reuse_detected: u64,
    /// Token requests that authenticated the client with HTTP Basic.
    pub auth_basic: u64,
    /// Token requests that authenticated the client in the form body.
    pub auth_post: u64,
    /// Token requests that authenticated the client with an HS256 assertion
    /// (`client_secret_jwt`).
    pub auth_secret_jwt: u64,
    /// Token requests that authenticated the client with an assertion signed by its
    /// registered key (`private_key_jwt`).
    pub auth_private_key_jwt: u64,
    /// JWT bearer or token-exchange requests that sent no client authentication.
    pub auth_none: u64,
    /// Access tokens issued by the client-credentials grant.
    pub client_credentials_issued: u64,
    /// Access tokens issued by the JWT bearer grant.
    pub jwt_bearer_issued: u64,
    /// Access tokens issued by token exchange.
    pub token_exchange_issued: u64,
    /// Assertions (client or grant) refused: bad signature, wrong `iss`, `sub` or
    /// `aud`, `exp` passed or too far, missing claims.
    pub assertion_refused: u64,
    /// Assertions refused because their `jti` was seen before (replays).
    pub assertion_replayed: u64,
    /// Subject tokens refused (unknown signature, expired, wrong type).
    pub subject_token_refused: u64,
    /// The most token requests in flight at once (inside the handler, the whole
    /// delay of the slow mode included): the refresh exchanges on the wire.
    pub max_token_in_flight: u64,
    /// Resource requests answered `200`.
    pub resource_ok: u64,
    /// Resource requests answered `401`.
    pub resource_unauthorized: u64,
    /// Resource requests with a token issued for another API (RFC 8707 audience).
    pub wrong_audience: u64,
    /// TCP connections the [`SecondOrigin`] accepted (0 if it never started).
    pub second_origin_connections: u64,
    /// HTTP requests the [`SecondOrigin`] received.
    pub second_origin_requests: u64,
    /// Requests the [`SecondOrigin`] received that carried a credential (a
    /// `refresh_token`, a `client_secret` or an `Authorization` header).
    pub second_origin_credentials: u64,
    /// The DPoP mode's counts (all zero when it is off).
    pub dpop: DpopStats,
    /// Discovery, the device and code flows, revocation.
    pub signin: signin::SignInStats,
}

/// The running server. Dropping it stops it.
pub struct AuthServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    second_origin: OnceLock<SecondOrigin>,
    /// The token endpoint's origin: its own listener, so that an outage can close it
    /// while the resource stays up.
    auth: Arc<AuthOrigin>,
    /// Ends a scheduled outage early when dropped (the server is going away).
    outages: Mutex<Vec<OutageThread>>,
    /// Stops the resource's server when dropped.
    _served: Served,
}

/// The token endpoint's listener, closed during an outage.
struct AuthOrigin {
    addr: SocketAddr,
    app: Router,
    served: Mutex<Option<Served>>,
    /// When the last outage ended, and when the first token was issued after it.
    returned: Mutex<Option<Instant>>,
}

/// A thread that takes the token endpoint down and brings it back; dropping it wakes
/// the thread early (its channel closes) and joins it.
struct OutageThread {
    cancel: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for OutageThread {
    fn drop(&mut self) {
        drop(self.cancel.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl AuthOrigin {
    fn start(listener: TcpListener, app: Router) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let served = Served::start("embedded token endpoint", listener, app.clone())?;
        Ok(Self {
            addr,
            app,
            served: Mutex::new(Some(served)),
            returned: Mutex::new(None),
        })
    }

    /// Closes the listener and every open connection: connections are refused.
    fn go_down(&self) {
        let served = self
            .served
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(served);
    }

    /// Listens again on the same port.
    fn come_back(&self) -> io::Result<()> {
        let listener = TcpListener::bind(self.addr)?;
        listener.set_nonblocking(true)?;
        let served = Served::start("embedded token endpoint", listener, self.app.clone())?;
        *self.served.lock().unwrap_or_else(PoisonError::into_inner) = Some(served);
        *self.returned.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        Ok(())
    }
}

impl fmt::Debug for AuthServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthServer")
            .field("addr", &self.addr)
            .field("config", &self.state.config)
            .finish_non_exhaustive()
    }
}

type Observer = Arc<dyn Fn(&ServerEvent) + Send + Sync>;

struct ServerState {
    config: ServerConfig,
    /// This token endpoint's URL: the `aud` every assertion must name.
    token_url: String,
    /// The rejecting API is on.
    rejects_all: AtomicBool,
    /// The APIs registered with [`AuthServer::start_api`] (their audiences).
    apis: Mutex<Vec<apis::Registered>>,
    /// When the first token was issued (since the last outage ended).
    first_issue: Mutex<Option<Instant>>,
    /// The key this server signs subject tokens with (a stand-in for a cluster's).
    subject_key: Vec<u8>,
    tables: Mutex<Tables>,
    failing: AtomicBool,
    /// The token endpoint's delay, in microseconds.
    latency_us: AtomicU64,
    /// [`ServerConfig::answer_latency`].
    answer_latency: Duration,
    /// The faulty mode's fraction, in millionths.
    failure_ppm: AtomicU64,
    fault_seed: AtomicU64,
    /// Token requests numbered for the faulty mode.
    fault_serial: AtomicU64,
    redirect: Mutex<Option<TokenRedirect>>,
    in_flight: AtomicU64,
    counters: Counters,
    observer: Mutex<Option<Observer>>,
    keys: RandomState,
    next_id: AtomicU64,
    /// The DPoP mode, when on.
    dpop: Option<dpop::DpopState>,
    /// Discovery, the device and code flows, revocation (see [`signin`]).
    signin: signin::SignIn,
    /// The folder of static files served on the resource's origin, if any.
    folder: Mutex<Option<std::path::PathBuf>>,
}

#[derive(Default)]
struct Counters {
    token_requests: AtomicU64,
    issued: AtomicU64,
    unavailable: AtomicU64,
    redirected: AtomicU64,
    invalid_grant: AtomicU64,
    invalid_client: AtomicU64,
    reuse_detected: AtomicU64,
    auth_basic: AtomicU64,
    auth_post: AtomicU64,
    auth_secret_jwt: AtomicU64,
    auth_private_key_jwt: AtomicU64,
    auth_none: AtomicU64,
    client_credentials_issued: AtomicU64,
    jwt_bearer_issued: AtomicU64,
    token_exchange_issued: AtomicU64,
    assertion_refused: AtomicU64,
    assertion_replayed: AtomicU64,
    subject_token_refused: AtomicU64,
    max_token_in_flight: AtomicU64,
    resource_ok: AtomicU64,
    resource_unauthorized: AtomicU64,
    wrong_audience: AtomicU64,
}

#[derive(Default)]
struct Tables {
    grants: HashMap<u64, GrantState>,
    refresh: HashMap<String, RefreshEntry>,
    access: HashMap<String, AccessEntry>,
    next_grant: u64,
    /// The grant of each service principal (client credentials, a JWT bearer
    /// subject, a token-exchange subject), made at its first token.
    services: HashMap<String, u64>,
    /// The `jti` of every assertion accepted, until its `exp` (replays are refused).
    seen_jti: HashMap<String, u64>,
}

struct GrantState {
    /// Access tokens issued so far.
    serial: u64,
    revoked: bool,
    scope: Option<String>,
    /// `served[k]`: requests the resource answered with the grant's token `k + 1`.
    served: Vec<u64>,
}

struct RefreshEntry {
    grant: u64,
    used: bool,
    /// The grant's serial when it was issued (0: at the sign-in).
    serial: u64,
}

struct AccessEntry {
    grant: u64,
    serial: u64,
    expires: Instant,
    /// The API it is for (RFC 8707 `resource`; `None`: this server's own resource).
    audience: Option<String>,
    /// The scope it was issued with.
    scope: Option<String>,
}

/// How many access tokens are kept before expired ones are swept out.
const SWEEP_ABOVE: usize = 1024;

impl AuthServer {
    /// Starts the server on `127.0.0.1`, on a port the system picks, with a tokio
    /// runtime of its own (on a thread of its own), so blocking and async callers
    /// alike can use it.
    ///
    /// # Errors
    ///
    /// When the socket cannot be bound or the runtime cannot start.
    pub fn start(config: ServerConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        // The token endpoint's own origin (found first, so its URL can be the `aud`).
        // Kept bound until it serves: a port let go here could be taken by another
        // test's server before it is bound again (AddrInUse, seen in CI).
        let auth_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let auth_addr = auth_listener.local_addr()?;
        let redirect = config.token_redirect;
        let outage = config.outage;
        let keys = RandomState::new();
        let subject_key = (0u8..4)
            .flat_map(|i| keys.hash_one(("subject key", i)).to_le_bytes())
            .collect();
        let token_url = format!("http://{auth_addr}{TOKEN_PATH}");
        let dpop = config.dpop.clone().map(|mode| {
            let public = config.client_secret.is_none();
            dpop::DpopState::new(mode, &token_url, format!("http://{addr}"), public)
        });
        let state = Arc::new(ServerState {
            token_url,
            rejects_all: AtomicBool::new(config.resource_rejects_all),
            apis: Mutex::new(Vec::new()),
            first_issue: Mutex::new(None),
            subject_key,
            latency_us: AtomicU64::new(micros(config.token_latency)),
            answer_latency: config.answer_latency,
            failure_ppm: AtomicU64::new(ppm(config.failure_rate)),
            fault_seed: AtomicU64::new(config.fault_seed),
            fault_serial: AtomicU64::new(0),
            redirect: Mutex::new(None),
            config,
            tables: Mutex::new(Tables::default()),
            failing: AtomicBool::new(false),
            in_flight: AtomicU64::new(0),
            counters: Counters::default(),
            observer: Mutex::new(None),
            keys,
            next_id: AtomicU64::new(1),
            dpop,
            signin: signin::SignIn::default(),
            folder: Mutex::new(None),
        });
        let auth_app = signin::routes(Router::new().route(TOKEN_PATH, post(token_endpoint)))
            .layer(axum::middleware::from_fn(web::cors))
            .with_state(state.clone());
        let auth = Arc::new(AuthOrigin::start(auth_listener, auth_app)?);
        let app = Router::new()
            .route(RESOURCE_PATH, any(resource))
            .fallback(web::static_file)
            .layer(axum::middleware::from_fn(web::cors))
            .with_state(state.clone());
        let served = Served::start("embedded OAuth server", listener, app)?;
        let server = Self {
            addr,
            state,
            second_origin: OnceLock::new(),
            auth,
            outages: Mutex::new(Vec::new()),
            _served: served,
        };
        if let Some(status) = redirect {
            server.redirect_to_second_origin(status)?;
        }
        if let Some((after, length)) = outage {
            server.outage(after, length)?;
        }
        Ok(server)
    }

    /// The outage: `after` from now, the token endpoint refuses connections (its
    /// listener closed, its open connections cut) for `length`, then listens again on
    /// the same port. The resource stays up.
    ///
    /// # Errors
    ///
    /// When the thread that runs it cannot start.
    pub fn outage(&self, after: Duration, length: Duration) -> io::Result<()> {
        let (cancel, cancelled) = std::sync::mpsc::channel::<()>();
        let auth = self.auth.clone();
        let state = self.state.clone();
        let thread = std::thread::Builder::new()
            .name("embedded outage".to_owned())
            .spawn(move || {
                use std::sync::mpsc::RecvTimeoutError;
                // Waits `d`, or less if the server is dropped meanwhile.
                let wait = |d: Duration| {
                    matches!(cancelled.recv_timeout(d), Err(RecvTimeoutError::Timeout))
                };
                if !wait(after) {
                    return;
                }
                auth.go_down();
                // Back at the end of the window, or at once if the server is dropped.
                wait(length);
                *state
                    .first_issue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                if let Err(error) = auth.come_back() {
                    eprintln!("the embedded token endpoint cannot listen again: {error}");
                }
            })?;
        self.outages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(OutageThread {
                cancel: Some(cancel),
                thread: Some(thread),
            });
        Ok(())
    }

    /// After an outage: how long after the token endpoint came back it issued its
    /// first token (`None` before an outage ended, or before that token).
    #[must_use]
    pub fn outage_recovery(&self) -> Option<Duration> {
        let returned = (*self
            .auth
            .returned
            .lock()
            .unwrap_or_else(PoisonError::into_inner))?;
        let first = (*self
            .state
            .first_issue
            .lock()
            .unwrap_or_else(PoisonError::into_inner))?;
        Some(first.saturating_duration_since(returned))
    }

    /// The rejecting API: while on, the resource answers `401 invalid_token` to every
    /// token.
    pub fn set_resource_rejects_all(&self, on: bool) {
        self.state.rejects_all.store(on, Ordering::SeqCst);
    }

    /// The address the server listens on (always `127.0.0.1`).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The resource's origin, `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token endpoint's origin: a port of its own, so that an outage can close it
    /// while the resource stays up.
    #[must_use]
    pub fn auth_origin(&self) -> String {
        format!("http://{}", self.auth.addr)
    }

    /// The token endpoint's URL.
    #[must_use]
    pub fn token_url(&self) -> String {
        self.state.token_url.clone()
    }

    /// The protected resource's URL.
    #[must_use]
    pub fn resource_url(&self) -> String {
        format!("{}{RESOURCE_PATH}", self.origin())
    }

    /// The configuration it runs with.
    #[must_use]
    pub fn config(&self) -> &ServerConfig {
        &self.state.config
    }

    /// A user signs in (the authorization-code step, done out of band): a new grant
    /// and its first refresh token. `scope` is what the grant allows.
    #[must_use]
    pub fn sign_in(&self, scope: Option<&str>) -> Grant {
        let refresh_token = self.state.random_token("rt");
        let mut tables = self.state.tables();
        tables.next_grant += 1;
        let id = tables.next_grant;
        tables.grants.insert(
            id,
            GrantState {
                serial: 0,
                revoked: false,
                scope: scope.map(str::to_owned),
                served: Vec::new(),
            },
        );
        tables.refresh.insert(
            refresh_token.clone(),
            RefreshEntry {
                grant: id,
                used: false,
                serial: 0,
            },
        );
        Grant { id, refresh_token }
    }

    /// A subject token for token exchange, as a Kubernetes API server projects one: a
    /// JWT signed by this server for `subject`, valid for `lifetime` (whole seconds,
    /// at least one). A secret: do not print it.
    #[must_use]
    pub fn issue_subject_token(&self, subject: &str, lifetime: Duration) -> String {
        let now = unix_now();
        self.state
            .subject_token(subject, now, now + lifetime.as_secs().max(1))
    }

    /// A subject token signed by this server whose `exp` passed a minute ago (what a
    /// client with a clock behind would still believe valid).
    #[must_use]
    pub fn issue_expired_subject_token(&self, subject: &str) -> String {
        let now = unix_now();
        self.state.subject_token(subject, now - 120, now - 60)
    }

    /// A function that makes subject tokens as [`issue_subject_token`](Self::issue_subject_token)
    /// does, for a thread that rotates a token file while the server runs.
    pub fn subject_token_maker(&self) -> impl Fn(&str, Duration) -> String + Send + 'static {
        let state = self.state.clone();
        move |subject, lifetime| {
            let now = unix_now();
            state.subject_token(subject, now, now + lifetime.as_secs().max(1))
        }
    }

    /// Writes a new subject token for `subject` into `path` the way the kubelet
    /// rotates a projected token: a new file renamed over the old one, so a reader
    /// sees the old token or the new one, never half of one. Returns the token.
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn rotate_subject_token(
        &self,
        path: &Path,
        subject: &str,
        lifetime: Duration,
    ) -> io::Result<String> {
        let token = self.issue_subject_token(subject, lifetime);
        let temporary = path.with_extension("rotating");
        std::fs::write(&temporary, &token)?;
        std::fs::rename(&temporary, path)?;
        Ok(token)
    }

    /// The grant that counts the tokens of a service principal: `client_credentials`
    /// for the client-credentials grant, `jwt_bearer:SUB` and `token_exchange:SUB` for
    /// the others (`served_by` and the serials work as for a user's grant).
    #[must_use]
    pub fn service_grant(&self, principal: &str) -> Option<u64> {
        self.state.tables().services.get(principal).copied()
    }

    /// Turns the failure switch on or off: while on, the token endpoint answers
    /// `503 temporarily_unavailable` (with `Retry-After` if configured).
    pub fn set_token_endpoint_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    /// The slow mode: from now on the token endpoint answers after `latency`
    /// (each request counts as in flight meanwhile).
    pub fn set_token_latency(&self, latency: Duration) {
        self.state
            .latency_us
            .store(micros(latency), Ordering::SeqCst);
    }

    /// The faulty mode: from now on the fraction `rate` (0 to 1, clamped) of token
    /// requests is answered `503`, picked by a generator seeded with `seed` (see
    /// [`ServerConfig::fault_seed`]; the requests are numbered from 0 again).
    pub fn set_failure_rate(&self, rate: f64, seed: u64) {
        self.state.fault_seed.store(seed, Ordering::SeqCst);
        self.state.fault_serial.store(0, Ordering::SeqCst);
        self.state.failure_ppm.store(ppm(rate), Ordering::SeqCst);
    }

    /// The redirecting mode: from now on the token endpoint answers every request
    /// with `redirect` (`None` turns it off).
    pub fn set_token_redirect(&self, redirect: Option<TokenRedirect>) {
        *self
            .state
            .redirect
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = redirect;
    }

    /// The redirecting mode towards this server's [`SecondOrigin`] (started on
    /// first use): the token endpoint answers `status` with a `Location` on the
    /// second origin's token URL. Returns that URL.
    ///
    /// # Errors
    ///
    /// When the second origin cannot be started.
    pub fn redirect_to_second_origin(&self, status: RedirectStatus) -> io::Result<String> {
        let location = self.second_origin()?.token_url();
        self.set_token_redirect(Some(TokenRedirect {
            status,
            location: location.clone(),
        }));
        Ok(location)
    }

    /// The second origin, started on first use: it counts what it receives (see
    /// [`Stats::second_origin_requests`]).
    ///
    /// # Errors
    ///
    /// When it cannot be started.
    pub fn second_origin(&self) -> io::Result<&SecondOrigin> {
        if let Some(origin) = self.second_origin.get() {
            return Ok(origin);
        }
        let started = SecondOrigin::start()?;
        // Another thread may have won the race: its server is kept, ours dropped.
        Ok(self.second_origin.get_or_init(|| started))
    }

    /// Revokes every access token issued so far (a signing-key rotation): the
    /// resource answers `401` to them. Refresh tokens stay valid.
    pub fn revoke_access_tokens(&self) {
        self.state.tables().access.clear();
        self.state.emit(&ServerEvent::AccessTokensRevoked);
    }

    /// Calls `observer` with each [`ServerEvent`], from the server's threads.
    pub fn observe(&self, observer: impl Fn(&ServerEvent) + Send + Sync + 'static) {
        *self
            .state
            .observer
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(observer));
    }

    /// The counts since the last call (or the start), and resets them.
    pub fn take_stats(&self) -> Stats {
        let c = &self.state.counters;
        let take = |counter: &AtomicU64| counter.swap(0, Ordering::SeqCst);
        let second = self.second_origin.get();
        Stats {
            token_requests: take(&c.token_requests),
            issued: take(&c.issued),
            unavailable: take(&c.unavailable),
            redirected: take(&c.redirected),
            invalid_grant: take(&c.invalid_grant),
            invalid_client: take(&c.invalid_client),
            reuse_detected: take(&c.reuse_detected),
            auth_basic: take(&c.auth_basic),
            auth_post: take(&c.auth_post),
            auth_secret_jwt: take(&c.auth_secret_jwt),
            auth_private_key_jwt: take(&c.auth_private_key_jwt),
            auth_none: take(&c.auth_none),
            client_credentials_issued: take(&c.client_credentials_issued),
            jwt_bearer_issued: take(&c.jwt_bearer_issued),
            token_exchange_issued: take(&c.token_exchange_issued),
            assertion_refused: take(&c.assertion_refused),
            assertion_replayed: take(&c.assertion_replayed),
            subject_token_refused: take(&c.subject_token_refused),
            max_token_in_flight: take(&c.max_token_in_flight),
            resource_ok: take(&c.resource_ok),
            resource_unauthorized: take(&c.resource_unauthorized),
            wrong_audience: take(&c.wrong_audience),
            second_origin_connections: second.map_or(0, |o| take(&o.counts.connections)),
            second_origin_requests: second.map_or(0, |o| take(&o.counts.requests)),
            second_origin_credentials: second.map_or(0, |o| take(&o.counts.credentials)),
            dpop: dpop::take_stats(&self.state),
            signin: self.state.signin.take_stats(),
        }
    }

    /// How many requests the resource served with each of the grant's access tokens:
    /// `(serial, count)` for the tokens that served any, in order. The serial of a
    /// grant's token is the generation the client library gives it when every
    /// refresh result is adopted.
    #[must_use]
    pub fn served_by(&self, grant: u64) -> Vec<(u64, u64)> {
        let tables = self.state.tables();
        let Some(state) = tables.grants.get(&grant) else {
            return Vec::new();
        };
        (1u64..)
            .zip(state.served.iter().copied())
            .filter(|&(_, n)| n > 0)
            .collect()
    }

    /// Presents `refresh_token` for a refresh as a second party holding a stolen copy
    /// would, but straight to the refresh logic rather than through the token
    /// endpoint, so that the endpoint's counts of requests and of refreshes in flight
    /// measure the client library alone. Reuse detection and the other counters
    /// apply as usual.
    ///
    /// # Errors
    ///
    /// The OAuth error the token endpoint would answer, e.g. `invalid_grant: the
    /// refresh token was already used; the grant is revoked`.
    pub fn replay_refresh_token(&self, refresh_token: &str) -> Result<(), String> {
        refresh(&self.state, refresh_token, None, None)
            .map(drop)
            .map_err(|refused| format!("{}: {}", refused.error, refused.description))
    }

    /// Where `refresh_token` stands in its grant's rotation: `Some(0)` for the newest
    /// one the grant issued (still good), `Some(k)` when `k` newer ones were issued
    /// since; `None` for a token this server never issued.
    #[must_use]
    pub fn refresh_tokens_since(&self, refresh_token: &str) -> Option<u64> {
        let tables = self.state.tables();
        let entry = tables.refresh.get(refresh_token)?;
        let grant = tables.grants.get(&entry.grant)?;
        Some(grant.serial.saturating_sub(entry.serial))
    }

    /// When the access token `access_token`, issued here, expires by the server's
    /// clock; `None` for a token this server never issued, or one revoked since (by
    /// [`revoke_access_tokens`](Self::revoke_access_tokens) or reuse detection).
    #[must_use]
    pub fn access_token_expiry(&self, access_token: &str) -> Option<Instant> {
        self.state
            .tables()
            .access
            .get(access_token)
            .map(|entry| entry.expires)
    }

    /// Whether the grant was revoked (by reuse detection).
    #[must_use]
    pub fn is_revoked(&self, grant: u64) -> bool {
        self.state
            .tables()
            .grants
            .get(&grant)
            .is_some_and(|g| g.revoked)
    }
}

impl ServerState {
    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn emit(&self, event: &ServerEvent) {
        let observer = self
            .observer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(observer) = observer {
            observer(event);
        }
    }

    /// Notes when the first token (since the last outage) was issued.
    fn note_issue(&self) {
        self.first_issue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(Instant::now);
    }

    /// Whether the faulty mode fails this token request.
    fn fails_this_one(&self) -> bool {
        let ppm = self.failure_ppm.load(Ordering::SeqCst);
        if ppm == 0 {
            return false;
        }
        let n = self.fault_serial.fetch_add(1, Ordering::SeqCst);
        let seed = self.fault_seed.load(Ordering::SeqCst);
        splitmix64(seed ^ splitmix64(n)) % 1_000_000 < ppm
    }

    fn unavailable(&self) -> Response {
        self.counters.unavailable.fetch_add(1, Ordering::SeqCst);
        self.emit(&ServerEvent::Unavailable);
        let mut response = oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "down for maintenance",
        );
        if let Some(after) = self.config.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(after));
        }
        response
    }

    /// A subject token issued at `iat`, expiring at `exp` (Unix seconds).
    fn subject_token(&self, subject: &str, iat: u64, exp: u64) -> String {
        let claims = serde_json::json!({
            "iss": SUBJECT_TOKEN_ISSUER,
            "sub": subject,
            "aud": self.token_url,
            "iat": iat,
            "exp": exp,
            "jti": self.random_token("st"),
        });
        // HS256 with a non-empty key and JSON claims: encoding cannot fail.
        EncodingKey::from_secret(&self.subject_key)
            .and_then(|key| {
                jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), &claims, &key)
            })
            .unwrap_or_default()
    }

    fn random_token(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let a = self.keys.hash_one((n, 1u8));
        let b = self.keys.hash_one((n, 2u8));
        format!("{prefix}_{a:016x}{b:016x}")
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit function of `x`.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// A fraction in millionths, clamped to `0..=1` (NaN is 0).
fn ppm(fraction: f64) -> u64 {
    if fraction.is_nan() {
        return 0;
    }
    // In 0..=1e6 after the clamp: the cast is exact enough and cannot wrap.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ppm = (fraction.clamp(0.0, 1.0) * 1e6).round() as u64;
    ppm
}

/// Decrements the in-flight count when the handler ends, however it ends.
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = serde_json::json!({ "error": error, "error_description": description });
    (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(body),
    )
        .into_response()
}

/// The client's credentials, as sent.
struct ClientCredentials {
    id: String,
    secret: Option<String>,
    basic: bool,
}

/// Reads `client_secret_basic` (RFC 6749 §2.3.1: the id and secret form-urlencoded,
/// then base64) or `client_secret_post`.
fn client_credentials(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Option<ClientCredentials> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, encoded) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        return Some(ClientCredentials {
            id: form_decode(id),
            secret: Some(form_decode(secret)),
            basic: true,
        });
    }
    Some(ClientCredentials {
        id: form.get("client_id")?.clone(),
        secret: form.get("client_secret").cloned(),
        basic: false,
    })
}

fn form_decode(text: &str) -> String {
    form_urlencoded::parse(format!("v={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn token_endpoint(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now_in_flight = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _in_flight = InFlight(&state.in_flight);
    let counters = &state.counters;
    counters
        .max_token_in_flight
        .fetch_max(now_in_flight, Ordering::SeqCst);
    counters.token_requests.fetch_add(1, Ordering::SeqCst);
    // The network and the server's work: refreshes take a while (the slow mode:
    // a long while). A client that gives up closes the connection, hyper drops this
    // future, and the request stops counting as in flight.
    let latency = Duration::from_micros(state.latency_us.load(Ordering::SeqCst));
    tokio::time::sleep(latency).await;

    let redirect = state
        .redirect
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let Some(redirect) = redirect {
        counters.redirected.fetch_add(1, Ordering::SeqCst);
        state.emit(&ServerEvent::Redirected);
        let location = HeaderValue::from_str(&redirect.location)
            .unwrap_or_else(|_| HeaderValue::from_static("/"));
        return (redirect.status.status(), [(header::LOCATION, location)]).into_response();
    }
    if state.failing.load(Ordering::SeqCst) || state.fails_this_one() {
        return state.unavailable();
    }
    // The DPoP mode: a proof (and its nonce) before anything else is looked at.
    let proven = match dpop::token_request(&state, &headers) {
        Ok(proven) => proven,
        Err(refused) => return *refused,
    };

    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    if let Some(answer) = signin::token_request(&state, &headers, &form, proven.as_ref()) {
        return answer;
    }
    let grant_type = form.get("grant_type").map_or("", String::as_str);
    // The JWT bearer grant authenticates by its assertion; the client may add its own.
    let method = match authenticate(&state, &headers, &form, grant_type == JWT_BEARER) {
        Ok(method) => method,
        Err(why) => return invalid_client(&state, why),
    };
    let counter = match method {
        Method::Basic => &counters.auth_basic,
        Method::Post => &counters.auth_post,
        Method::SecretJwt => &counters.auth_secret_jwt,
        Method::PrivateKeyJwt => &counters.auth_private_key_jwt,
        Method::None => &counters.auth_none,
    };
    counter.fetch_add(1, Ordering::SeqCst);

    let requested_scope = form.get("scope").map(String::as_str);
    match grant_type {
        "refresh_token" => {
            let Some(presented) = form.get("refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token is missing",
                );
            };
            if let Err(refused) = dpop::check_refresh_token(&state, presented, proven.as_ref()) {
                return *refused;
            }
            let resource = form.get("resource").map(String::as_str);
            match refresh(&state, presented, requested_scope, resource) {
                Ok(issued) => {
                    // Rotated already: an answer lost on its way back spends the
                    // presented refresh token all the same.
                    if !state.answer_latency.is_zero() {
                        tokio::time::sleep(state.answer_latency).await;
                    }
                    dpop::issue(&state, issued, proven.as_ref())
                }
                Err(refused) => {
                    oauth_error(StatusCode::BAD_REQUEST, refused.error, refused.description)
                }
            }
        }
        "client_credentials" => dpop::issue(
            &state,
            issue_service(
                &state,
                "client_credentials",
                requested_scope,
                &counters.client_credentials_issued,
            ),
            proven.as_ref(),
        ),
        JWT_BEARER => jwt_bearer(&state, &form, requested_scope),
        TOKEN_EXCHANGE => token_exchange(&state, &form, requested_scope),
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "this server does refresh_token, client_credentials, the JWT bearer grant and token exchange",
        ),
    }
}

/// How a token request authenticated its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Basic,
    Post,
    SecretJwt,
    PrivateKeyJwt,
    /// No client authentication (allowed for the JWT bearer grant only).
    None,
}

/// `401 invalid_client` with a challenge, counted.
fn invalid_client(state: &ServerState, description: &str) -> Response {
    state.counters.invalid_client.fetch_add(1, Ordering::SeqCst);
    let mut response = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"demo\""),
    );
    response
}

/// Authenticates the client of a token request: a client assertion
/// (`client_secret_jwt`, `private_key_jwt`), HTTP Basic or the form body. Without any
/// client credentials, `optional` lets it through as [`Method::None`]. A refusal says
/// why, for an `invalid_client` answer.
fn authenticate(
    state: &ServerState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    optional: bool,
) -> Result<Method, &'static str> {
    let config = &state.config;
    if let Some(kind) = form.get("client_assertion_type") {
        let assertion = form
            .get("client_assertion")
            .filter(|_| kind == JWT_CLIENT_ASSERTION)
            .ok_or("unknown client_assertion_type, or no client_assertion")?;
        if form
            .get("client_id")
            .is_some_and(|id| *id != config.client_id)
        {
            return Err("client_id is not the assertion's client");
        }
        let alg = jsonwebtoken::decode_header(assertion)
            .map_err(|_| "the client assertion is not a JWT")?
            .alg;
        let (key, method) = match (alg, &config.client_secret, &config.client_public_key) {
            (Algorithm::HS256, Some(secret), _) => (
                DecodingKey::from_secret(secret.as_bytes())
                    .map_err(|_| "this client has an empty secret")?,
                Method::SecretJwt,
            ),
            (alg, _, Some(public)) if alg == public.algorithm => {
                (public.key.clone(), Method::PrivateKeyJwt)
            }
            _ => {
                return Err("no key of this client verifies the assertion's algorithm");
            }
        };
        return match verify_assertion(state, assertion, &key, alg, &config.client_id, true) {
            Ok(_) => Ok(method),
            Err(Rejected::Replayed) => Err("the client assertion's jti was already used"),
            Err(Rejected::Invalid) => Err("the client assertion is not valid"),
        };
    }
    let Some(client) = client_credentials(headers, form) else {
        return if optional {
            Ok(Method::None)
        } else {
            Err("client authentication failed")
        };
    };
    let authenticated = client.id == config.client_id
        && match &config.client_secret {
            Some(secret) => client.secret.as_deref() == Some(secret.as_str()),
            None => true,
        };
    if !authenticated {
        return Err("client authentication failed");
    }
    Ok(if client.basic {
        Method::Basic
    } else {
        Method::Post
    })
}

/// Why an assertion was refused.
enum Rejected {
    /// Bad signature, claims or times.
    Invalid,
    /// Its `jti` was accepted before.
    Replayed,
}

/// Checks an assertion (RFC 7523 §3): the signature with `key`, `iss` (and, for a
/// client assertion, `sub`) the `issuer`, `aud` this token endpoint, `exp` not passed,
/// `iat` not in the future and at most an hour before `exp`, and a `jti` never seen
/// before. Returns its claims; counts what it refuses.
fn verify_assertion(
    state: &ServerState,
    assertion: &str,
    key: &DecodingKey,
    alg: Algorithm,
    issuer: &str,
    client: bool,
) -> Result<serde_json::Value, Rejected> {
    let counters = &state.counters;
    let invalid = || {
        counters.assertion_refused.fetch_add(1, Ordering::SeqCst);
        Rejected::Invalid
    };
    let mut validation = Validation::new(alg);
    validation.set_audience(&[&state.token_url]);
    validation.set_issuer(&[issuer]);
    if client {
        validation.sub = Some(issuer.to_owned());
    }
    validation.set_required_spec_claims(&["exp", "aud", "iss"]);
    validation.leeway = LEEWAY_SECS;
    let claims = jsonwebtoken::decode::<serde_json::Value>(assertion, key, &validation)
        .map_err(|_| invalid())?
        .claims;
    let now = unix_now();
    let (Some(exp), Some(iat), Some(jti)) = (
        claims["exp"].as_u64(),
        claims["iat"].as_u64(),
        claims["jti"].as_str(),
    ) else {
        return Err(invalid());
    };
    if iat > now + LEEWAY_SECS || exp.saturating_sub(iat) > MAX_ASSERTION_SECS {
        return Err(invalid());
    }
    let mut tables = state.tables();
    if tables.seen_jti.len() >= SWEEP_ABOVE {
        tables.seen_jti.retain(|_, exp| *exp + LEEWAY_SECS >= now);
    }
    let seen = format!("{issuer} {jti}");
    if tables.seen_jti.contains_key(&seen) {
        drop(tables);
        counters.assertion_replayed.fetch_add(1, Ordering::SeqCst);
        return Err(Rejected::Replayed);
    }
    tables.seen_jti.insert(seen, exp);
    Ok(claims)
}

/// The JWT bearer grant: the assertion of the trusted issuer, checked for real.
fn jwt_bearer(
    state: &ServerState,
    form: &HashMap<String, String>,
    requested_scope: Option<&str>,
) -> Response {
    let Some((issuer, public)) = &state.config.jwt_bearer_issuer else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "this server trusts no issuer for the JWT bearer grant",
        );
    };
    let Some(assertion) = form.get("assertion") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "assertion is missing",
        );
    };
    match verify_assertion(
        state,
        assertion,
        &public.key,
        public.algorithm,
        issuer,
        false,
    ) {
        Ok(claims) => {
            let subject = claims["sub"].as_str().unwrap_or(issuer);
            issue_service(
                state,
                &format!("jwt_bearer:{subject}"),
                requested_scope.or_else(|| claims["scope"].as_str()),
                &state.counters.jwt_bearer_issued,
            )
            .into_response()
        }
        Err(rejected) => {
            state.counters.invalid_grant.fetch_add(1, Ordering::SeqCst);
            let description = match rejected {
                Rejected::Replayed => "the assertion's jti was already used",
                Rejected::Invalid => "the assertion is not valid",
            };
            oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
        }
    }
}

/// Token exchange: a subject token this server issued, signed and unexpired.
fn token_exchange(
    state: &ServerState,
    form: &HashMap<String, String>,
    requested_scope: Option<&str>,
) -> Response {
    let known_type = matches!(
        form.get("subject_token_type").map(String::as_str),
        Some(
            "urn:ietf:params:oauth:token-type:jwt"
                | "urn:ietf:params:oauth:token-type:access_token"
        )
    );
    let Some(subject_token) = form.get("subject_token").filter(|_| known_type) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "subject_token or a known subject_token_type is missing",
        );
    };
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[SUBJECT_TOKEN_ISSUER]);
    validation.set_audience(&[&state.token_url]);
    // A subject token past its exp is refused, whatever the client's clock says.
    validation.leeway = 0;
    let verified = DecodingKey::from_secret(&state.subject_key).and_then(|key| {
        jsonwebtoken::decode::<serde_json::Value>(subject_token, &key, &validation)
    });
    let Ok(data) = verified else {
        state
            .counters
            .subject_token_refused
            .fetch_add(1, Ordering::SeqCst);
        // RFC 8693 §2.2.2: an invalid subject token is an invalid request.
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the subject token is not valid (unknown signer, or expired)",
        );
    };
    let subject = data.claims["sub"].as_str().unwrap_or("unknown");
    let mut issued = issue_service(
        state,
        &format!("token_exchange:{subject}"),
        requested_scope,
        &state.counters.token_exchange_issued,
    );
    issued.issued_token_type = Some("urn:ietf:params:oauth:token-type:access_token");
    issued.into_response()
}

/// An access token (and no refresh token) for a service principal's grant.
fn issue_service(
    state: &ServerState,
    principal: &str,
    scope: Option<&str>,
    counter: &AtomicU64,
) -> Issued {
    let access_token = state.random_token("at");
    let lifetime = state.config.token_lifetime;
    let now = Instant::now();
    let mut tables = state.tables();
    let grant_id = match tables.services.get(principal) {
        Some(id) => *id,
        None => {
            tables.next_grant += 1;
            let id = tables.next_grant;
            tables.grants.insert(
                id,
                GrantState {
                    serial: 0,
                    revoked: false,
                    scope: scope.map(str::to_owned),
                    served: Vec::new(),
                },
            );
            tables.services.insert(principal.to_owned(), id);
            id
        }
    };
    let serial = tables.grants.get_mut(&grant_id).map_or(1, |grant| {
        grant.serial += 1;
        grant.serial
    });
    if tables.access.len() >= SWEEP_ABOVE {
        tables.access.retain(|_, a| a.expires > now);
    }
    tables.access.insert(
        access_token.clone(),
        AccessEntry {
            grant: grant_id,
            serial,
            expires: now + lifetime,
            audience: None,
            scope: scope.map(str::to_owned),
        },
    );
    drop(tables);
    state.counters.issued.fetch_add(1, Ordering::SeqCst);
    state.note_issue();
    counter.fetch_add(1, Ordering::SeqCst);
    state.emit(&ServerEvent::Issued {
        grant: grant_id,
        serial,
    });
    Issued {
        access_token,
        refresh_token: None,
        expires_in: lifetime.as_secs(),
        exact_lifetime: state.config.exact_expires_in.then_some(lifetime),
        scope: scope.map(str::to_owned),
        issued_token_type: None,
    }
}

/// Seconds since the Unix epoch, by the system clock.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// A refused refresh: the OAuth error code and its description (HTTP 400).
struct Refused {
    error: &'static str,
    description: &'static str,
}

/// A successful refresh: what the token endpoint answers.
struct Issued {
    access_token: String,
    /// None for the grants that keep no refresh token.
    refresh_token: Option<String>,
    expires_in: u64,
    /// The lifetime `expires_in` states exactly ([`ServerConfig::exact_expires_in`]).
    exact_lifetime: Option<Duration>,
    scope: Option<String>,
    /// Token exchange's `issued_token_type`.
    issued_token_type: Option<&'static str>,
}

impl Issued {
    fn into_response(self) -> Response {
        self.into_response_as("Bearer")
    }

    /// The answer, with this `token_type`.
    fn into_response_as(self, token_type: &str) -> Response {
        let mut body = serde_json::json!({
            "access_token": self.access_token,
            "token_type": token_type,
            "expires_in": self.exact_lifetime.map_or_else(
                || serde_json::Value::from(self.expires_in),
                |lifetime| serde_json::Value::from(lifetime.as_secs_f64()),
            ),
        });
        if let Some(refresh_token) = self.refresh_token {
            body["refresh_token"] = serde_json::Value::String(refresh_token);
        }
        if let Some(issued_token_type) = self.issued_token_type {
            body["issued_token_type"] = serde_json::Value::from(issued_token_type);
        }
        if let Some(scope) = self.scope {
            body["scope"] = serde_json::Value::String(scope);
        }
        (
            StatusCode::OK,
            [
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (header::PRAGMA, HeaderValue::from_static("no-cache")),
            ],
            axum::Json(body),
        )
            .into_response()
    }
}

/// The refresh itself: rotation, reuse detection, issuing.
fn refresh(
    state: &ServerState,
    presented: &str,
    requested_scope: Option<&str>,
    resource: Option<&str>,
) -> Result<Issued, Refused> {
    // RFC 8707: a token for one of the registered APIs, or for this server's own.
    if let Some(resource) = resource
        && !apis::is_registered(state, resource)
    {
        return Err(Refused {
            error: "invalid_target",
            description: "the resource is not an API this server issues tokens for",
        });
    }
    let counters = &state.counters;
    let new_access = state.random_token("at");
    let new_refresh = state.random_token("rt");
    let lifetime = state.config.token_lifetime;
    let mut tables = state.tables();
    let Some(entry) = tables.refresh.get_mut(presented) else {
        drop(tables);
        counters.invalid_grant.fetch_add(1, Ordering::SeqCst);
        state.emit(&ServerEvent::InvalidGrant { grant: None });
        return Err(Refused {
            error: "invalid_grant",
            description: "the refresh token is unknown",
        });
    };
    let grant_id = entry.grant;
    if entry.used {
        // A refresh token is good for one refresh: a second use means two parties
        // hold it, so the whole grant is revoked.
        let newly_revoked = tables
            .grants
            .get_mut(&grant_id)
            .is_some_and(|g| !std::mem::replace(&mut g.revoked, true));
        if newly_revoked {
            tables.access.retain(|_, a| a.grant != grant_id);
        }
        drop(tables);
        counters.reuse_detected.fetch_add(1, Ordering::SeqCst);
        counters.invalid_grant.fetch_add(1, Ordering::SeqCst);
        state.emit(&ServerEvent::ReuseDetected { grant: grant_id });
        return Err(Refused {
            error: "invalid_grant",
            description: "the refresh token was already used; the grant is revoked",
        });
    }
    let Some(grant) = tables.grants.get_mut(&grant_id).filter(|g| !g.revoked) else {
        drop(tables);
        counters.invalid_grant.fetch_add(1, Ordering::SeqCst);
        state.emit(&ServerEvent::InvalidGrant {
            grant: Some(grant_id),
        });
        return Err(Refused {
            error: "invalid_grant",
            description: "the grant was revoked",
        });
    };
    if let Some(requested) = requested_scope {
        let allowed = grant.scope.as_deref().unwrap_or("");
        if !requested
            .split_whitespace()
            .all(|s| allowed.split_whitespace().any(|a| a == s))
        {
            return Err(Refused {
                error: "invalid_scope",
                description: "the requested scope exceeds the scope granted",
            });
        }
    }
    grant.serial += 1;
    let serial = grant.serial;
    let scope = requested_scope
        .map(str::to_owned)
        .or_else(|| grant.scope.clone());
    if let Some(entry) = tables.refresh.get_mut(presented) {
        entry.used = true;
    }
    tables.refresh.insert(
        new_refresh.clone(),
        RefreshEntry {
            grant: grant_id,
            used: false,
            serial,
        },
    );
    let now = Instant::now();
    if tables.access.len() >= SWEEP_ABOVE {
        tables.access.retain(|_, a| a.expires > now);
    }
    tables.access.insert(
        new_access.clone(),
        AccessEntry {
            grant: grant_id,
            serial,
            expires: now + lifetime,
            audience: resource.map(str::to_owned),
            scope: scope.clone(),
        },
    );
    drop(tables);
    counters.issued.fetch_add(1, Ordering::SeqCst);
    state.note_issue();
    state.emit(&ServerEvent::Issued {
        grant: grant_id,
        serial,
    });
    Ok(Issued {
        access_token: new_access,
        refresh_token: Some(new_refresh),
        expires_in: lifetime.as_secs(),
        exact_lifetime: state.config.exact_expires_in.then_some(lifetime),
        scope,
        issued_token_type: None,
    })
}

async fn resource(
    State(state): State<Arc<ServerState>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    // The DPoP mode: a DPoP-bound token comes with its proof.
    let proven = match dpop::resource_token(&state, &method, uri.path(), &headers) {
        Ok(proven) => proven,
        Err(refused) => return *refused,
    };
    let token = proven.as_deref().or_else(|| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
    });
    let rejects_all = state.rejects_all.load(Ordering::SeqCst);
    let served = token.filter(|_| !rejects_all).and_then(|token| {
        let now = Instant::now();
        let mut tables = state.tables();
        let entry = tables.access.get(token).filter(|a| now < a.expires)?;
        if entry.audience.is_some() {
            // A token for another API (RFC 8707): not for this one.
            state.counters.wrong_audience.fetch_add(1, Ordering::SeqCst);
            return None;
        }
        let (grant, serial) = (entry.grant, entry.serial);
        let state = tables.grants.get_mut(&grant).filter(|g| !g.revoked)?;
        let index = usize::try_from(serial.saturating_sub(1)).unwrap_or(usize::MAX);
        if state.served.len() <= index {
            state.served.resize(index.saturating_add(1), 0);
        }
        if let Some(count) = state.served.get_mut(index) {
            *count += 1;
        }
        Some((grant, serial))
    });
    match served {
        Some((grant, serial)) => {
            state.counters.resource_ok.fetch_add(1, Ordering::SeqCst);
            let mut response =
                axum::Json(serde_json::json!({ "grant": grant, "token": serial })).into_response();
            dpop::stamp_resource(&state, &mut response);
            response
        }
        None => {
            state
                .counters
                .resource_unauthorized
                .fetch_add(1, Ordering::SeqCst);
            (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer error=\"invalid_token\", error_description=\"the access token is missing, unknown, expired or revoked\"",
                    ),
                )],
            )
                .into_response()
        }
    }
}

/// A second server on `127.0.0.1`, another origin than the [`AuthServer`]'s: the
/// target of the redirecting mode. It counts every connection and request it gets,
/// and whether a request carried a credential (never the credential itself), and
/// answers each request `200` with a token, as an attacker's endpoint would, so that
/// a client that follows the redirect does not notice.
///
/// Plain `std` networking on a thread of its own, one thread per connection.
/// Dropping it stops it.
pub struct SecondOrigin {
    addr: SocketAddr,
    counts: Arc<OriginCounts>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct OriginCounts {
    connections: AtomicU64,
    requests: AtomicU64,
    credentials: AtomicU64,
}

impl fmt::Debug for SecondOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecondOrigin")
            .field("addr", &self.addr)
            .field("connections", &self.connections())
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

/// The most of a request head the second origin reads.
const MAX_HEAD: usize = 64 * 1024;

impl SecondOrigin {
    /// Starts it on `127.0.0.1`, on a port the system picks.
    ///
    /// # Errors
    ///
    /// When the socket cannot be bound or the thread cannot start.
    pub fn start() -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(OriginCounts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (counts, stop) = (counts.clone(), stop.clone());
            std::thread::Builder::new()
                .name("second-origin".to_owned())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        counts.connections.fetch_add(1, Ordering::SeqCst);
                        let Ok(stream) = stream else { continue };
                        let counts = counts.clone();
                        let _ = std::thread::Builder::new()
                            .name("second-origin-conn".to_owned())
                            .spawn(move || serve_connection(stream, &counts));
                    }
                })?
        };
        Ok(Self {
            addr,
            counts,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (always `127.0.0.1`).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its token URL: `http://127.0.0.1:PORT/oauth/token`.
    #[must_use]
    pub fn token_url(&self) -> String {
        format!("http://{}{TOKEN_PATH}", self.addr)
    }

    /// Connections accepted since it started, or since the owning server's last
    /// [`AuthServer::take_stats`] (which takes these counts too).
    #[must_use]
    pub fn connections(&self) -> u64 {
        self.counts.connections.load(Ordering::SeqCst)
    }

    /// Requests received, counted as [`connections`](Self::connections) are.
    #[must_use]
    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::SeqCst)
    }
}

impl Drop for SecondOrigin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop; it sees the flag and ends without counting this.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads requests on one connection (keep-alive), counting each, until the client
/// closes it or goes quiet for two seconds.
fn serve_connection(mut stream: TcpStream, counts: &OriginCounts) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // The head, up to the blank line.
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if buffer.len() > MAX_HEAD {
                return;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0)
            .min(MAX_HEAD);
        while buffer.len() < head_end + length {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buffer.len().min(head_end + length);
        let body = String::from_utf8_lossy(&buffer[head_end..end]).to_ascii_lowercase();
        counts.requests.fetch_add(1, Ordering::SeqCst);
        let credential = head.lines().any(|l| l.starts_with("authorization:"))
            || body.contains("refresh_token=")
            || body.contains("client_secret=");
        if credential {
            counts.credentials.fetch_add(1, Ordering::SeqCst);
        }
        buffer.drain(..end);
        let body = serde_json::json!({
            "access_token": "at_from_the_second_origin",
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": "rt_from_the_second_origin",
        })
        .to_string();
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: no-store\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refresh over plain HTTP/1.1 (Basic client authentication): the answer's body.
    fn refresh_over_http(server: &AuthServer, refresh_token: &str) -> serde_json::Value {
        let config = server.config();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            config.client_id,
            config.client_secret.as_deref().unwrap_or_default()
        ));
        let body = format!("grant_type=refresh_token&refresh_token={refresh_token}");
        let auth_addr = server
            .auth_origin()
            .trim_start_matches("http://")
            .to_owned();
        let mut stream = TcpStream::connect(&auth_addr).expect("connect to the token endpoint");
        write!(
            stream,
            "POST {TOKEN_PATH} HTTP/1.1\r\nHost: {auth_addr}\r\nAuthorization: Basic {basic}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("send the request");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read the answer");
        let (_, json) = answer.split_once("\r\n\r\n").expect("a head and a body");
        serde_json::from_str(json).expect("a JSON body")
    }

    #[test]
    fn exact_expires_in_states_a_sub_second_lifetime_and_the_expiry_is_known() {
        let server = AuthServer::start(ServerConfig {
            token_lifetime: Duration::from_millis(200),
            token_latency: Duration::ZERO,
            exact_expires_in: true,
            ..ServerConfig::default()
        })
        .expect("start");
        let grant = server.sign_in(None);
        let asked_at = Instant::now();
        let answer = refresh_over_http(&server, &grant.refresh_token);
        assert_eq!(answer["expires_in"].as_f64(), Some(0.2), "{answer}");
        let access = answer["access_token"].as_str().expect("an access token");
        let expiry = server.access_token_expiry(access).expect("issued here");
        assert!(asked_at + Duration::from_millis(200) <= expiry);
        assert!(expiry <= Instant::now() + Duration::from_millis(200));
        assert_eq!(server.access_token_expiry("at_unknown"), None);
        server.revoke_access_tokens();
        assert_eq!(server.access_token_expiry(access), None, "revoked");
    }

    #[test]
    fn expires_in_is_whole_seconds_by_default() {
        let server = AuthServer::start(ServerConfig {
            token_lifetime: Duration::from_millis(2500),
            token_latency: Duration::ZERO,
            ..ServerConfig::default()
        })
        .expect("start");
        let grant = server.sign_in(None);
        let answer = refresh_over_http(&server, &grant.refresh_token);
        assert_eq!(answer["expires_in"].as_u64(), Some(2), "{answer}");
    }
}
