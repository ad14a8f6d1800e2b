//! Shared test helpers: the test kit's scripted HTTP/1.1 server, a stand-in
//! authorization server and API on it, refresher stand-ins, and a configuration with
//! short deadlines.

#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use silent_refresh_testkit::scripted::{Recorded, Reply, TestServer};
use silent_refresh_testkit::server as kit;
use silent_refresh_ureq::{Config, ConfigBuilder, TokenSource};

/// The core's error inside a failed `token()` call; any other outcome fails the test.
pub fn core_error(
    result: Result<Arc<silent_refresh_ureq::AccessToken>, silent_refresh_ureq::Error>,
) -> silent_refresh::Error {
    match result {
        Err(silent_refresh_ureq::Error::Token(error)) => error,
        other => panic!("expected a token error, got {other:?}"),
    }
}

/// A configuration with short deadlines, so failures show within a test's time.
pub fn short_config() -> ConfigBuilder {
    Config::builder()
        .request_timeout(Duration::from_millis(300))
        .refresh_timeout(Duration::from_millis(300))
        .backoff_initial(Duration::from_millis(20))
        .backoff_max(Duration::from_millis(40))
}

/// Waits (yielding, bounded) until `source` has `n` callers waiting for a token.
pub fn until_waiting(source: &TokenSource, n: usize) {
    let give_up = Instant::now() + Duration::from_secs(10);
    while source.waiting() < n {
        assert!(
            Instant::now() < give_up,
            "only {} of {n} callers parked",
            source.waiting()
        );
        thread::yield_now();
    }
}

/// The client secret the stand-in authorization server and the test kit's server
/// expect.
pub const CLIENT_SECRET: &str = "cs-SECRET-7f3a9c";
/// The client id the test kit's server expects.
pub const CLIENT_ID: &str = "test-client";

/// The test kit's OAuth 2.0 server (rotating refresh tokens, reuse revocation): tokens
/// living `lifetime` (stated exactly in `expires_in`, sub-second lifetimes included),
/// answering at once, for this crate's client; and a user's grant on it.
pub fn kit_server(lifetime: Duration) -> (kit::AuthServer, kit::Grant) {
    let server = kit::AuthServer::start(kit::ServerConfig {
        token_lifetime: lifetime,
        exact_expires_in: true,
        token_latency: Duration::ZERO,
        client_id: CLIENT_ID.to_owned(),
        client_secret: Some(CLIENT_SECRET.to_owned()),
        ..kit::ServerConfig::default()
    })
    .expect("the test kit's server starts on 127.0.0.1");
    let grant = server.sign_in(None);
    (server, grant)
}

/// A refresher for the test kit's server (client secret in HTTP Basic).
pub fn kit_refresher(server: &kit::AuthServer) -> silent_refresh_ureq::OAuth2Refresher {
    let grant = silent_refresh_ureq::RefreshGrant::new(server.token_url(), CLIENT_ID)
        .client_secret(CLIENT_SECRET);
    silent_refresh_ureq::OAuth2Refresher::builder(grant)
        .build()
        .expect("a loopback token endpoint is allowed")
}

/// State of the stand-in authorization server.
#[derive(Debug)]
pub struct AuthState {
    /// The only refresh credential it accepts; it rotates on each refresh.
    pub current_refresh: String,
    /// A reused refresh credential revokes the whole family (as OAuth 2.1 advises).
    pub revoked: bool,
    pub refreshes: u64,
    pub reuses: u64,
    /// Access tokens issued, with when and for how long.
    pub issued: Vec<(String, Instant, Duration)>,
    pub lifetime: Duration,
    /// Replies to give instead of the next refreshes (for failures).
    pub scripted: std::collections::VecDeque<Reply>,
}

impl AuthState {
    /// When `access`, issued here, expires by the server's clock.
    pub fn expiry_of(&self, access: &str) -> Option<Instant> {
        self.issued
            .iter()
            .find(|(token, _, _)| token == access)
            .map(|(_, at, lifetime)| *at + *lifetime)
    }

    /// Whether `access` was issued here and has not expired by the server's clock.
    pub fn accepts(&self, access: &str) -> bool {
        self.issued
            .iter()
            .any(|(token, at, lifetime)| token == access && at.elapsed() < *lifetime)
    }
}

/// A token endpoint at `/token` with rotating refresh tokens that revoke on reuse.
pub struct AuthServer {
    pub server: TestServer,
    pub state: Arc<Mutex<AuthState>>,
}

impl AuthServer {
    pub fn start(first_refresh: &str, lifetime: Duration) -> Self {
        let state = Arc::new(Mutex::new(AuthState {
            current_refresh: first_refresh.to_owned(),
            revoked: false,
            refreshes: 0,
            reuses: 0,
            issued: Vec::new(),
            lifetime,
            scripted: Default::default(),
        }));
        let server = {
            let state = state.clone();
            TestServer::start(move |request| token_endpoint(&state, request))
        };
        Self { server, state }
    }

    pub fn token_url(&self) -> String {
        self.server.url("/token")
    }

    pub fn grant(&self) -> silent_refresh_ureq::RefreshGrant {
        silent_refresh_ureq::RefreshGrant::new(self.token_url(), CLIENT_ID)
            .client_secret(CLIENT_SECRET)
    }

    pub fn refresher(&self) -> silent_refresh_ureq::OAuth2Refresher {
        silent_refresh_ureq::OAuth2Refresher::builder(self.grant())
            .build()
            .expect("a loopback token endpoint is allowed")
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.state.lock().expect("auth state")
    }
}

fn invalid_grant(description: &str) -> Reply {
    Reply::json(
        400,
        &serde_json::json!({"error": "invalid_grant", "error_description": description}),
    )
}

fn token_endpoint(state: &Mutex<AuthState>, request: &Recorded) -> Reply {
    let mut state = state.lock().expect("auth state");
    if request.method != "POST" || request.path() != "/token" {
        return Reply::status(404);
    }
    if let Some(reply) = state.scripted.pop_front() {
        return reply;
    }
    if request
        .header("authorization")
        .is_none_or(|v| !v.starts_with("Basic "))
    {
        return Reply::json(401, &serde_json::json!({"error": "invalid_client"}));
    }
    if request.form_value("grant_type").as_deref() != Some("refresh_token") {
        return Reply::json(400, &serde_json::json!({"error": "unsupported_grant_type"}));
    }
    let presented = request.form_value("refresh_token").unwrap_or_default();
    if state.revoked {
        return invalid_grant("the refresh token family was revoked");
    }
    if presented != state.current_refresh {
        state.reuses += 1;
        state.revoked = true;
        return invalid_grant("refresh token reused; the family is revoked");
    }
    state.refreshes += 1;
    let n = state.refreshes;
    let access = format!("at-SECRET-{n}");
    state.current_refresh = format!("rt-SECRET-{}", n + 1);
    let lifetime = state.lifetime;
    state
        .issued
        .push((access.clone(), Instant::now(), lifetime));
    Reply::json(
        200,
        &serde_json::json!({
            "access_token": access,
            "token_type": "bearer",
            "expires_in": lifetime.as_secs_f64(),
            "refresh_token": state.current_refresh,
        }),
    )
}

/// An API at `/data` that answers 200 to a bearer the authorization server issued
/// and that has not expired, 401 otherwise; `/redirect?to=URL` answers 302.
pub fn api_server(auth: &AuthServer) -> TestServer {
    let state = auth.state.clone();
    TestServer::start(move |request| {
        if request.path() == "/redirect" {
            let to = request.query_value("to").unwrap_or_default();
            return Reply::status(302).header("Location", &to);
        }
        let bearer = request
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        match bearer {
            Some(token) if state.lock().expect("auth state").accepts(&token) => {
                Reply::text(200, &format!("ok {} bytes", request.body.len()))
            }
            _ => Reply::status(401).header("WWW-Authenticate", "Bearer error=\"invalid_token\""),
        }
    })
}

/// The generations the token-change callback persisted, in order.
pub struct Adoptions {
    persisted: std::sync::mpsc::Receiver<u64>,
}

impl Adoptions {
    /// A callback for `on_token_change` and the receiving end.
    pub fn new() -> (
        impl Fn(&silent_refresh_ureq::TokenChange) + Send + Sync + 'static,
        Self,
    ) {
        let (tx, persisted) = std::sync::mpsc::channel();
        let tx = Mutex::new(tx);
        let callback = move |change: &silent_refresh_ureq::TokenChange| {
            if let silent_refresh_ureq::TokenChange::Persist { generation, .. } = change {
                let _ = tx.lock().expect("tx").send(generation.0);
            }
        };
        (callback, Self { persisted })
    }

    /// Waits (bounded) until generation `n` has been persisted: a refresh started by
    /// the last calls of a test may still be running when its threads end.
    pub fn wait_for(&self, n: u64) {
        loop {
            let generation = self
                .persisted
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|_| panic!("generation {n} never persisted"));
            if generation >= n {
                return;
            }
        }
    }
}
