//! The OAuth 2.0 refresher over each adapter's HTTP client, once for both: reqwest on
//! tokio (`silent-refresh-tokio`) and a ureq agent on threads (`silent-refresh-ureq`),
//! against token endpoints on 127.0.0.1.
//!
//! The exchange stays on the configured token URL: no redirect is followed (a second
//! server must receive nothing), plain `http` is refused beyond loopback, and every
//! exchange has a timeout. The grants other than refresh-token send what they should
//! and keep no refresh credential; an unreachable endpoint fails fast.
//!
//! Real sockets and real time (tokio on a runtime that is not paused: its clock would
//! run ahead while a socket waits); the only wait is the 200 ms timeout under test.

use std::future::Future;
use std::net::TcpListener as StdListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use silent_refresh::{
    AccessToken, Config, Credentials, FailureKind, RefreshFailure, Secret, Status, Token,
};
use silent_refresh_driver::driver::Spawn;
use silent_refresh_driver::exports::{
    ClientAuth, RefreshGrant, SubjectTokenSource, TokenChange, TokenExchange,
};
use silent_refresh_driver::oauth2_refresher::{HttpClient, OAuth2Refresher};
use silent_refresh_driver::runtime::threads::Threads;
use silent_refresh_driver::runtime::tokio::Tokio;
use silent_refresh_driver::runtime::{Caller, RunsRefresher};
use silent_refresh_driver::{Error, TokenSource};
use silent_refresh_oauth2::SigningKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REFRESH_TOKEN: &str = "rt-SECRET-never-leaves-the-first-server";
const CLIENT_SECRET: &str = "cs-SECRET-4b1d";
/// Put in the `Location`'s query: it must not show in any message.
const QUERY_SECRET: &str = "q-SECRET-in-the-location";

/// An adapter as the scenarios use it: its runtime and its HTTP client.
trait Adapter: 'static {
    type Rt: Caller + RunsRefresher<OAuth2Refresher<Self::Http>> + Spawn + Default;
    type Http: HttpClient;

    /// Runs `scenario` to its end.
    fn run<F: Future<Output = ()>>(scenario: impl FnOnce() -> F);

    /// One exchange.
    fn refresh(
        refresher: &OAuth2Refresher<Self::Http>,
        refresh_token: Option<Secret>,
    ) -> impl Future<Output = Result<Token, RefreshFailure>>;

    /// `source.token()`.
    fn token(
        source: &TokenSource<Self::Rt>,
    ) -> impl Future<Output = Result<Arc<AccessToken>, Error>>;

    /// Client settings that follow redirects (and, where they can, report error
    /// statuses as errors).
    fn following_redirects() -> <Self::Http as HttpClient>::Settings;

    /// Client settings with a timeout of an hour, or none, of their own.
    fn slow() -> <Self::Http as HttpClient>::Settings;
}

struct OnTokio;

impl Adapter for OnTokio {
    type Rt = Tokio;
    type Http = silent_refresh_tokio::Reqwest;

    fn run<F: Future<Output = ()>>(scenario: impl FnOnce() -> F) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(scenario());
    }

    async fn refresh(
        refresher: &OAuth2Refresher<Self::Http>,
        refresh_token: Option<Secret>,
    ) -> Result<Token, RefreshFailure> {
        silent_refresh_driver::runtime::tokio::Refresher::refresh(refresher, refresh_token).await
    }

    async fn token(source: &TokenSource<Tokio>) -> Result<Arc<AccessToken>, Error> {
        source.token().await
    }

    fn following_redirects() -> reqwest::ClientBuilder {
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::limited(10))
    }

    fn slow() -> reqwest::ClientBuilder {
        reqwest::Client::builder().timeout(Duration::from_secs(3600))
    }
}

struct OnThreads;

impl Adapter for OnThreads {
    type Rt = Threads;
    type Http = silent_refresh_ureq::UreqAgent;

    fn run<F: Future<Output = ()>>(scenario: impl FnOnce() -> F) {
        silent_refresh_driver::runtime::threads::block_on(scenario());
    }

    async fn refresh(
        refresher: &OAuth2Refresher<Self::Http>,
        refresh_token: Option<Secret>,
    ) -> Result<Token, RefreshFailure> {
        silent_refresh_driver::runtime::threads::Refresher::refresh(refresher, refresh_token)
    }

    async fn token(source: &TokenSource<Threads>) -> Result<Arc<AccessToken>, Error> {
        source.token()
    }

    fn following_redirects() -> ureq::Agent {
        let config = ureq::Agent::config_builder().max_redirects(10);
        config.http_status_as_error(true).build().new_agent()
    }

    fn slow() -> ureq::Agent {
        ureq::Agent::new_with_defaults()
    }
}

/// Runs every scenario named, once on each adapter.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod on_tokio {
            $( #[test] fn $name() { <super::OnTokio as super::Adapter>::run(super::$name::<super::OnTokio>) } )*
        }
        mod on_threads {
            $( #[test] fn $name() { <super::OnThreads as super::Adapter>::run(super::$name::<super::OnThreads>) } )*
        }
    };
}

on_both!(
    a_redirect_is_never_followed_and_fails_as_misconfigured_naming_the_location,
    a_redirect_is_not_followed_whatever_the_callers_client_settings_say,
    a_redirecting_token_endpoint_fails_requests_fast_without_asking_for_a_sign_in,
    plain_http_token_urls_are_refused_beyond_loopback_unless_allowed,
    the_default_timeout_is_thirty_seconds_and_zero_is_refused,
    the_timeout_ends_an_exchange_with_a_hung_server_as_a_transient_failure,
    client_credentials_sends_scope_resource_and_audience_and_keeps_no_refresh_credential,
    a_grant_that_needs_no_refresh_credential_implies_its_credentials,
    token_exchange_rereads_the_subject_token_file_on_every_exchange,
    a_grant_that_can_never_work_is_refused_when_the_refresher_is_built,
    private_key_jwt_signs_a_new_assertion_for_every_exchange,
    an_unreachable_token_endpoint_fails_fast_and_the_status_says_so,
);

// ----- the servers --------------------------------------------------------------------

/// One request a [`Server`] read: its body.
#[derive(Clone, Debug)]
struct Request {
    body: String,
}

impl Request {
    /// A field of the form body, decoded.
    fn form(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.body.as_bytes())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// An answer: status, extra headers, JSON body.
type Reply = (u16, Vec<(&'static str, String)>, String);

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// A server on 127.0.0.1, on a thread and tokio runtime of its own (so that clients of
/// either runtime can use it), that counts the connections it accepts and keeps the
/// requests it reads. With a handler it answers each request; without, it holds each
/// connection open and never answers (a hung server). Dropping it stops it.
struct Server {
    base: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Request>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    fn start(handler: Option<Handler>) -> Self {
        let listener = StdListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (count, seen) = (connections.clone(), requests.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let accept = async {
                    let mut held = Vec::new();
                    while let Ok((stream, _)) = listener.accept().await {
                        count.fetch_add(1, Ordering::SeqCst);
                        match &handler {
                            None => held.push(stream),
                            Some(handler) => {
                                tokio::spawn(serve(stream, handler.clone(), seen.clone()));
                            }
                        }
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stopped => {}
                }
            });
        });
        Self {
            base,
            connections,
            requests,
            _stop: stop,
        }
    }

    /// A server that answers every request with `reply`.
    fn answering(reply: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        Self::start(Some(Arc::new(reply)))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests").clone()
    }
}

/// Reads one request (head and `Content-Length` body), records it, answers it.
async fn serve(
    mut stream: tokio::net::TcpStream,
    handler: Handler,
    seen: Arc<Mutex<Vec<Request>>>,
) {
    let mut request = Vec::new();
    let mut buf = [0; 4096];
    let head_end = loop {
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < head_end + length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let body = String::from_utf8_lossy(&request[head_end..]).into_owned();
    let request = Request { body };
    let (status, headers, body) = handler(&request);
    seen.lock().expect("requests").push(request);
    let mut reply = format!("HTTP/1.1 {status} Status\r\nContent-Type: application/json\r\n");
    for (name, value) in headers {
        reply.push_str(&format!("{name}: {value}\r\n"));
    }
    reply.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    let _ = stream.write_all(reply.as_bytes()).await;
}

/// A server that would hand out a token, so that a followed redirect would look like
/// a success: it must never be reached.
fn elsewhere() -> Server {
    Server::answering(|_| {
        let token = r#"{"access_token":"at-from-the-wrong-server","token_type":"bearer","expires_in":3600}"#;
        (200, Vec::new(), token.to_owned())
    })
}

/// A token endpoint that answers every request with `status` and a `Location` on
/// `target`'s `/final/token`, with a query holding a secret.
fn redirecting(status: u16, target: &Server) -> Server {
    let location = format!(
        "{}?refresh_token={QUERY_SECRET}&code={QUERY_SECRET}",
        target.url("/final/token")
    );
    Server::answering(move |_| (status, vec![("Location", location.clone())], String::new()))
}

/// A token endpoint that issues `at-N` with a refresh token, which the grants other
/// than refresh-token must drop.
fn issuing() -> Server {
    let issued = AtomicUsize::new(0);
    Server::answering(move |_| {
        let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
        let token = serde_json::json!({"access_token": format!("at-{n}"), "token_type": "Bearer",
            "expires_in": 3600, "refresh_token": "rt-never-kept"});
        (200, Vec::new(), token.to_string())
    })
}

/// A port nothing listens on: bound, read, released.
fn closed_port() -> std::net::SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

fn grant(url: &str) -> RefreshGrant {
    RefreshGrant::new(url, "test-client").client_secret(CLIENT_SECRET)
}

fn refresher_of<A: Adapter>(grant: RefreshGrant) -> OAuth2Refresher<A::Http> {
    OAuth2Refresher::builder(grant)
        .build()
        .expect("a loopback token URL is allowed")
}

fn assert_no_secret(text: &str) {
    for secret in [REFRESH_TOKEN, CLIENT_SECRET, QUERY_SECRET, "refresh_token="] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

// ----- no redirect, loopback only, a timeout ------------------------------------------

async fn a_redirect_is_never_followed_and_fails_as_misconfigured_naming_the_location<A: Adapter>() {
    for status in [307, 308, 301, 302, 303] {
        let target = elsewhere();
        let token_endpoint = redirecting(status, &target);
        let refresher = refresher_of::<A>(grant(&token_endpoint.url("/token")));
        let failure = A::refresh(&refresher, Some(Secret::new(REFRESH_TOKEN)))
            .await
            .expect_err("a redirect is not a token");

        assert_eq!(token_endpoint.requests().len(), 1, "{status}: one exchange");
        assert_eq!(
            target.connections(),
            0,
            "{status}: the second server got nothing"
        );
        assert_eq!(
            failure.kind,
            FailureKind::Misconfigured,
            "{status}: {failure}"
        );
        let text = format!("{failure} {failure:?}");
        assert!(
            text.contains(&target.url("/final/token")),
            "{status}: names the location: {text}"
        );
        assert!(
            text.contains("token URL"),
            "{status}: says what to fix: {text}"
        );
        assert_no_secret(&text);
    }
}

async fn a_redirect_is_not_followed_whatever_the_callers_client_settings_say<A: Adapter>() {
    let target = elsewhere();
    let token_endpoint = redirecting(307, &target);
    let refresher = OAuth2Refresher::<A::Http>::builder(grant(&token_endpoint.url("/token")))
        .client(A::following_redirects())
        .build()
        .expect("a loopback token URL is allowed");
    let failure = A::refresh(&refresher, Some(Secret::new(REFRESH_TOKEN)))
        .await
        .expect_err("a redirect is not a token");
    assert_eq!(target.connections(), 0, "the second server got nothing");
    assert_eq!(failure.kind, FailureKind::Misconfigured, "{failure}");
    assert_no_secret(&failure.to_string());
}

async fn a_redirecting_token_endpoint_fails_requests_fast_without_asking_for_a_sign_in<
    A: Adapter,
>() {
    for status in [307, 308] {
        let target = elsewhere();
        let token_endpoint = redirecting(status, &target);
        let config = Config::builder()
            .request_timeout(Duration::from_secs(10))
            .build()
            .expect("config");
        let source = TokenSource::<A::Rt>::builder(config)
            .credentials(Credentials::RefreshToken(REFRESH_TOKEN.into()))
            .refresher(refresher_of::<A>(grant(&token_endpoint.url("/token"))))
            .build()
            .expect("the source starts");
        let started = Instant::now();
        let error = A::token(&source)
            .await
            .expect_err("no token behind a redirect");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{status}: fails fast, not at the request's deadline"
        );
        assert_eq!(
            target.connections(),
            0,
            "{status}: the second server got nothing"
        );
        assert!(!error.needs_sign_in(), "{status}: {error}");
        let text = format!("{error} {error:?}");
        assert!(
            text.contains(&target.url("/final/token")),
            "{status}: {text}"
        );
        assert_no_secret(&text);
    }
}

async fn plain_http_token_urls_are_refused_beyond_loopback_unless_allowed<A: Adapter>() {
    for url in [
        "http://auth.example.com/token",
        "http://10.0.0.1/token",
        "http://[fe80::1]/token",
    ] {
        let refused = OAuth2Refresher::<A::Http>::new(grant(url)).expect_err(url);
        assert!(matches!(refused, Error::InsecureHttp { .. }), "{refused:?}");
        let message = refused.to_string();
        assert!(message.contains("allow_insecure_http"), "{message}");
        assert!(!message.contains("/token"), "origin only: {message}");
        let allowed = OAuth2Refresher::<A::Http>::builder(grant(url)).allow_insecure_http(true);
        assert!(allowed.build().is_ok(), "{url}");
    }
    for url in [
        "http://127.0.0.1:8080/token",
        "http://127.1.2.3/token",
        "http://localhost:9000/token",
        "http://[::1]:9000/token",
        "https://auth.example.com/token",
    ] {
        assert!(OAuth2Refresher::<A::Http>::new(grant(url)).is_ok(), "{url}");
    }
    assert!(matches!(
        OAuth2Refresher::<A::Http>::new(grant("auth.example.com/token")),
        Err(Error::InvalidUrl { .. })
    ));
}

async fn the_default_timeout_is_thirty_seconds_and_zero_is_refused<A: Adapter>() {
    let refresher = refresher_of::<A>(grant("https://auth.example.com/token"));
    assert_eq!(refresher.timeout(), Duration::from_secs(30));
    let refused = OAuth2Refresher::<A::Http>::builder(grant("https://auth.example.com/token"))
        .timeout(Duration::ZERO)
        .build()
        .expect_err("a zero timeout fails every exchange");
    assert!(
        matches!(
            refused,
            Error::Token(silent_refresh::Error::InvalidConfig(_))
        ),
        "{refused:?}"
    );
}

async fn the_timeout_ends_an_exchange_with_a_hung_server_as_a_transient_failure<A: Adapter>() {
    const TIMEOUT: Duration = Duration::from_millis(200);
    let hung = Server::start(None);
    // The second's client settings have a long timeout, or none: the refresher's
    // applies per request.
    for settings in [None, Some(A::slow())] {
        let mut builder = OAuth2Refresher::<A::Http>::builder(grant(&hung.url("/token")));
        if let Some(settings) = settings {
            builder = builder.client(settings);
        }
        let refresher = builder
            .timeout(TIMEOUT)
            .build()
            .expect("a loopback token URL");
        assert_eq!(refresher.timeout(), TIMEOUT);
        let started = Instant::now();
        let failure = A::refresh(&refresher, Some(Secret::new(REFRESH_TOKEN)))
            .await
            .expect_err("the server never answers");
        let took = started.elapsed();
        assert_eq!(failure.kind, FailureKind::Transient, "{failure}");
        assert!(failure.message.contains("timeout"), "{failure}");
        assert_no_secret(&failure.to_string());
        assert!(took >= TIMEOUT, "{took:?}");
        assert!(
            took < Duration::from_secs(5),
            "the timeout applied: {took:?}"
        );
    }
    assert_eq!(hung.connections(), 2);
}

// ----- the other grants ----------------------------------------------------------------

async fn client_credentials_sends_scope_resource_and_audience_and_keeps_no_refresh_credential<
    A: Adapter,
>() {
    let server = issuing();
    let grant = RefreshGrant::client_credentials(server.url("/token"), "svc")
        .client_secret("s3cret")
        .auth(ClientAuth::Post)
        .scope("orders:read")
        .resource("https://orders.example.com/")
        .audience("orders-api");
    let refresher = refresher_of::<A>(grant);
    // Even handed a refresh credential, the grant sends none and keeps none.
    let token = A::refresh(&refresher, Some(Secret::new("rt-stale")))
        .await
        .expect("a token");
    assert_eq!(token.access_token.expose(), "at-1");
    assert_eq!(token.refresh_token, None);
    assert_eq!(
        server.requests()[0].body,
        "grant_type=client_credentials&scope=orders%3Aread\
         &resource=https%3A%2F%2Forders.example.com%2F&audience=orders-api\
         &client_id=svc&client_secret=s3cret"
    );

    // Through a token source: no refresh credential is ever given or stored.
    let persisted = Arc::new(Mutex::new(Vec::new()));
    let saved = persisted.clone();
    let source = TokenSource::<A::Rt>::builder(Config::default())
        .credentials(Credentials::ClientCredentials { token: None })
        .refresher(refresher)
        .on_token_change(move |change| {
            if let TokenChange::Persist { token, .. } = change {
                saved
                    .lock()
                    .expect("persisted")
                    .push(token.refresh_token.is_some());
            }
        })
        .build()
        .expect("the source starts");
    let token = A::token(&source).await.expect("a token");
    assert_eq!(token.secret.expose(), "at-2");
    // The callback runs before any caller gets the token it saves.
    let persisted = persisted.lock().expect("persisted").clone();
    assert_eq!(
        persisted,
        vec![false],
        "one save, with no refresh credential"
    );
}

/// A source given a client-credentials refresher and no credentials starts as if given
/// `Credentials::ClientCredentials { token: None }`: its first call gets a token at
/// once, instead of waiting its whole deadline for a sign-in.
async fn a_grant_that_needs_no_refresh_credential_implies_its_credentials<A: Adapter>() {
    let server = issuing();
    let grant = RefreshGrant::client_credentials(server.url("/token"), "svc")
        .client_secret("s3cret")
        .auth(ClientAuth::Post);
    let source = TokenSource::<A::Rt>::builder(Config::default())
        .refresher(refresher_of::<A>(grant))
        .build()
        .expect("the source starts");
    let token = A::token(&source)
        .await
        .expect("a token, with no credentials given");
    assert_eq!(token.secret.expose(), "at-1");
    assert_eq!(server.requests().len(), 1, "one exchange");
}

async fn token_exchange_rereads_the_subject_token_file_on_every_exchange<A: Adapter>() {
    let server = issuing();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("token");
    let grant = RefreshGrant::token_exchange(
        server.url("/token"),
        "workload",
        TokenExchange::new(SubjectTokenSource::file(&path)),
    )
    .audience("orders-api");
    let refresher = refresher_of::<A>(grant);
    // No file yet: misconfigured, naming the token.
    let failure = A::refresh(&refresher, None).await.expect_err("no file yet");
    assert_eq!(failure.kind, FailureKind::Misconfigured);
    assert!(failure.message.contains("token"), "{}", failure.message);
    for n in 1..=3 {
        // The kubelet rotates the file in place.
        std::fs::write(&path, format!("subject-{n}\n")).expect("write");
        let token = A::refresh(&refresher, None).await.expect("a token");
        assert_eq!(token.refresh_token, None);
        let sent = server.requests().pop().expect("a request");
        assert_eq!(sent.form("subject_token"), Some(format!("subject-{n}")));
        assert_eq!(
            sent.form("grant_type").as_deref(),
            Some("urn:ietf:params:oauth:grant-type:token-exchange")
        );
    }
    // A closure source is called on every exchange, too.
    let calls = Arc::new(Mutex::new(0));
    let counted = calls.clone();
    let grant = RefreshGrant::token_exchange(
        server.url("/token"),
        "workload",
        TokenExchange::new(SubjectTokenSource::from_fn(move || {
            let mut calls = counted.lock().expect("calls");
            *calls += 1;
            Ok(Secret::new(format!("from-fn-{calls}")))
        })),
    );
    let refresher = refresher_of::<A>(grant);
    A::refresh(&refresher, None).await.expect("first");
    A::refresh(&refresher, None).await.expect("second");
    assert_eq!(*calls.lock().expect("calls"), 2);
    let sent = server.requests().pop().expect("a request");
    assert_eq!(sent.form("subject_token").as_deref(), Some("from-fn-2"));
}

async fn a_grant_that_can_never_work_is_refused_when_the_refresher_is_built<A: Adapter>() {
    for (name, value) in [
        ("subject_token", "hand-made"),
        ("client_assertion", "hand-made"),
    ] {
        let grant =
            RefreshGrant::client_credentials("http://127.0.0.1:9/token", "svc").param(name, value);
        let error = OAuth2Refresher::<A::Http>::builder(grant)
            .build()
            .expect_err("refused");
        assert!(
            matches!(error, Error::Token(silent_refresh::Error::InvalidConfig(_))),
            "{name}: {error}"
        );
    }
}

async fn private_key_jwt_signs_a_new_assertion_for_every_exchange<A: Adapter>() {
    let keys = [
        include_str!("../../silent-refresh-oauth2/src/testdata/rs256.pem"),
        include_str!("../../silent-refresh-oauth2/src/testdata/es256.pem"),
    ];
    for pem in keys {
        let server = issuing();
        let key = SigningKey::from_pem(pem).expect("key");
        let grant =
            RefreshGrant::client_credentials(server.url("/token"), "svc").private_key_jwt(key);
        let refresher = refresher_of::<A>(grant);
        A::refresh(&refresher, None).await.expect("first");
        A::refresh(&refresher, None).await.expect("second");
        let requests = server.requests();
        let assertions: Vec<String> = requests
            .iter()
            .map(|r| r.form("client_assertion").expect("an assertion"))
            .collect();
        assert_eq!(assertions.len(), 2);
        assert_ne!(
            assertions[0], assertions[1],
            "a fresh assertion per exchange"
        );
        assert_eq!(
            requests[1].form("client_assertion_type").as_deref(),
            Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        );
        let claims = |jws: &str| -> serde_json::Value {
            use base64::Engine as _;
            let part = jws.split('.').nth(1).expect("claims");
            let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part);
            serde_json::from_slice(&json.expect("base64url")).expect("json")
        };
        let (first, second) = (claims(&assertions[0]), claims(&assertions[1]));
        assert_ne!(first["jti"], second["jti"]);
        assert_eq!(first["aud"], server.url("/token").as_str());
        assert_eq!(first["iss"], "svc");
    }
}

async fn an_unreachable_token_endpoint_fails_fast_and_the_status_says_so<A: Adapter>() {
    let url = format!("http://{}/token", closed_port());
    let refresher = refresher_of::<A>(RefreshGrant::new(url, "client").client_secret("cs"));
    let failure = A::refresh(&refresher, Some(Secret::new("rt")))
        .await
        .expect_err("nobody listens");
    assert_eq!(failure.kind, FailureKind::Transient, "{failure}");
    assert!(failure.unreachable, "a refused connection: {failure}");
    assert!(
        failure
            .message
            .contains("could not connect to the token endpoint"),
        "{failure}"
    );

    // A long deadline: the caller must get its error from the failed attempt, not from
    // waiting it out (that would be `DeadlineExceeded`).
    let config = Config::builder()
        .request_timeout(Duration::from_secs(600))
        .build()
        .expect("config");
    let source = TokenSource::<A::Rt>::builder(config)
        .credentials(Credentials::RefreshToken("rt".into()))
        .refresher(refresher)
        .build()
        .expect("the source starts");
    let first = A::token(&source).await.expect_err("nobody listens");
    assert!(first.is_unreachable(), "{first}");
    assert!(
        matches!(source.status(), Status::Unreachable { ref reason, .. }
            if reason.contains("could not connect")),
        "{:?}",
        source.status()
    );
    // While the backoff runs, the next caller without a token fails at once.
    let second = A::token(&source).await.expect_err("still unreachable");
    assert!(second.is_unreachable(), "{second}");
}

// ----- reqwest alone ---------------------------------------------------------------------

/// Why the tokio adapter's refresher takes a `ClientBuilder` and not a `Client`:
/// reqwest's default policy sends the form (the refresh credential) again to the
/// `Location` of a 307. This also shows that the second server would see a followed
/// redirect.
#[test]
fn a_default_reqwest_client_would_send_the_refresh_credential_to_the_location() {
    <OnTokio as Adapter>::run(|| async {
        let target = elsewhere();
        let token_endpoint = redirecting(307, &target);
        let response = reqwest::Client::new()
            .post(token_endpoint.url("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=refresh_token&refresh_token={REFRESH_TOKEN}"
            ))
            .send()
            .await
            .expect("followed");
        assert_eq!(response.status(), 200);
        assert_eq!(target.connections(), 1);
        assert!(target.requests()[0].body.contains(REFRESH_TOKEN));
    });
}
