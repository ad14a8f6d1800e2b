//! An API server on 127.0.0.1 for the tower layer's and the middleware's tests: it
//! records what each request carried, answers 401 to the tokens it was told to reject,
//! and can hold one request until the test releases it.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use silent_refresh_tokio::{
    AuthorizedClient, Config, Credentials, Expiry, RefreshFailure, Refresher, Secret, Token,
    TokenSource,
};
use tokio::sync::Notify;

/// One request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
}

#[derive(Default)]
pub struct Api {
    seen: Mutex<Vec<Seen>>,
    rejected: Mutex<HashSet<String>>,
    /// `/slow`'s first request has arrived.
    pub slow_arrived: Notify,
    /// Lets `/slow`'s first request be answered.
    pub slow_release: Notify,
    slow_held: AtomicBool,
}

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A server on an ephemeral port of 127.0.0.1.
#[derive(Clone)]
pub struct Server {
    pub api: Arc<Api>,
    pub base: String,
}

impl Server {
    pub async fn start() -> Self {
        let api = Arc::new(Api::default());
        let app = Router::new().fallback(answer).with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            api,
            base: format!("http://{addr}"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answers 401 to requests carrying `Bearer {token}`.
    pub fn reject(&self, token: &str) {
        lock(&self.api.rejected).insert(format!("Bearer {token}"));
    }

    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.api.seen).clone()
    }

    /// The `Authorization` headers of the requests for `path`, in order.
    pub fn authorizations(&self, path: &str) -> Vec<Option<String>> {
        self.seen()
            .into_iter()
            .filter(|s| s.path == path)
            .map(|s| s.authorization)
            .collect()
    }
}

async fn answer(
    State(api): State<Arc<Api>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    lock(&api.seen).push(Seen {
        path: uri.path().to_owned(),
        authorization: authorization.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    if uri.path() == "/slow" && !api.slow_held.swap(true, Ordering::SeqCst) {
        api.slow_arrived.notify_one();
        api.slow_release.notified().await;
    }
    let rejected = authorization
        .as_ref()
        .is_some_and(|a| lock(&api.rejected).contains(a));
    if rejected {
        (StatusCode::UNAUTHORIZED, "expired".to_owned())
    } else {
        (StatusCode::OK, "ok".to_owned())
    }
}

/// A refresher that hands out `at-1`, `at-2`, … and names its token endpoint.
pub struct Numbered {
    endpoint: String,
    pub calls: Arc<AtomicUsize>,
}

impl Refresher for Numbered {
    fn refresh(
        &self,
        _refresh_token: Option<Secret>,
    ) -> impl Future<Output = Result<Token, RefreshFailure>> + Send {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            Ok(
                Token::bearer(format!("at-{n}"), Expiry::In(Duration::from_secs(3600)))
                    .with_refresh_token("rt"),
            )
        }
    }

    fn token_endpoint(&self) -> Option<&str> {
        Some(&self.endpoint)
    }
}

/// A token source whose token endpoint is `{server}/oauth/token`, the number of
/// refreshes it ran, and a client allowing the server's origin (given as a URL).
pub fn client(server: &Server) -> (AuthorizedClient, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::RefreshToken("rt".into()))
        .refresher(Numbered {
            endpoint: server.url("/oauth/token"),
            calls: calls.clone(),
        })
        .build()
        .expect("inside a runtime");
    let client = AuthorizedClient::builder(source)
        .allow_url(server.url("/v1/"))
        .build()
        .expect("a loopback origin");
    (client, calls)
}
