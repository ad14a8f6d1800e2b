//! The refresh exchange stays on the configured token URL: no redirect is followed
//! (a second server on 127.0.0.1 must receive nothing), plain `http` is refused beyond
//! loopback, and every exchange has a timeout. And the send helper's errors name no
//! URL's query.
//!
//! Real sockets on 127.0.0.1 and real time; the only wait is the 200 ms timeout under
//! test.

#![cfg(feature = "reqwest")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::post;
use http::Uri;
use silent_refresh_tokio::oauth2::RefreshGrant;
use silent_refresh_tokio::silent_refresh::{Config, Credentials, FailureKind, Secret};
use silent_refresh_tokio::{AuthorizedClient, Error, OAuth2Refresher, Refresher, TokenSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const REFRESH_TOKEN: &str = "rt-SECRET-never-leaves-the-first-server";
const CLIENT_SECRET: &str = "cs-SECRET-4b1d";
/// Put in the `Location`'s query: it must not show in any message.
const QUERY_SECRET: &str = "q-SECRET-in-the-location";

/// A server on 127.0.0.1 that counts the connections it accepts. With `answer`, it
/// reads each request (kept in `requests`) and answers it; without, it holds each
/// connection open and never answers.
struct CountingServer {
    base: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl CountingServer {
    async fn start(answer: Option<&'static str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                match answer {
                    None => held.push(stream),
                    Some(body) => {
                        tokio::spawn(serve(stream, body, seen.clone()));
                    }
                }
            }
        });
        Self {
            base,
            connections,
            requests,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("requests").clone()
    }
}

/// Reads one request (head and `Content-Length` body), records it, answers `body` as
/// JSON.
async fn serve(mut stream: TcpStream, body: &'static str, seen: Arc<Mutex<Vec<String>>>) {
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
    seen.lock()
        .expect("requests")
        .push(String::from_utf8_lossy(&request).into_owned());
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
}

/// A server that would hand out a token, so that a followed redirect would look like
/// a success: it must never be reached.
async fn elsewhere() -> CountingServer {
    CountingServer::start(Some(
        r#"{"access_token":"at-from-the-wrong-server","token_type":"bearer","expires_in":3600}"#,
    ))
    .await
}

/// A token endpoint at `/token` that answers every request with `status` and a
/// `Location` on `target`'s `/final/token`, with a query holding a secret; and the
/// number of requests it got.
async fn redirecting(status: u16, target: &CountingServer) -> (String, Arc<AtomicUsize>) {
    let location = format!(
        "{}?refresh_token={QUERY_SECRET}&code={QUERY_SECRET}",
        target.url("/final/token")
    );
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let status = StatusCode::from_u16(status).expect("status");
    let app = Router::new().route(
        "/token",
        post(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let location = location.clone();
            async move { (status, [(header::LOCATION, location)]) }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/token", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

fn grant(url: &str) -> RefreshGrant {
    RefreshGrant::new(url, "test-client").client_secret(CLIENT_SECRET)
}

fn assert_no_secret(text: &str) {
    for secret in [REFRESH_TOKEN, CLIENT_SECRET, QUERY_SECRET, "refresh_token="] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

/// Why the refresher takes a `ClientBuilder` and not a `Client`: reqwest's default
/// policy sends the form (the refresh credential) again to the `Location` of a 307.
/// This also shows that the second server would see a followed redirect.
#[tokio::test]
async fn a_default_reqwest_client_would_send_the_refresh_credential_to_the_location() {
    let target = elsewhere().await;
    let (url, _) = redirecting(307, &target).await;
    let response = reqwest::Client::new()
        .post(&url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&refresh_token={REFRESH_TOKEN}"
        ))
        .send()
        .await
        .expect("followed");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(target.connections(), 1);
    assert!(target.requests()[0].contains(REFRESH_TOKEN));
}

#[tokio::test]
async fn a_307_or_308_is_never_followed_and_fails_as_misconfigured_naming_the_location() {
    for status in [307, 308, 301, 302, 303] {
        let target = elsewhere().await;
        let (url, hits) = redirecting(status, &target).await;
        let refresher = OAuth2Refresher::new(grant(&url)).expect("a loopback token URL");
        let failure = refresher
            .refresh(Some(Secret::new(REFRESH_TOKEN)))
            .await
            .expect_err("a redirect is not a token");

        assert_eq!(hits.load(Ordering::SeqCst), 1, "{status}: one exchange");
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

#[tokio::test]
async fn a_redirect_is_not_followed_whatever_the_callers_client_builder_says() {
    let target = elsewhere().await;
    let (url, _) = redirecting(308, &target).await;
    let refresher = OAuth2Refresher::builder(grant(&url))
        .client(reqwest::Client::builder().redirect(reqwest::redirect::Policy::limited(10)))
        .build()
        .expect("a loopback token URL");
    let failure = refresher
        .refresh(Some(Secret::new(REFRESH_TOKEN)))
        .await
        .expect_err("a redirect is not a token");
    assert_eq!(target.connections(), 0, "the second server got nothing");
    assert_eq!(failure.kind, FailureKind::Misconfigured, "{failure}");
    assert_no_secret(&failure.to_string());
}

#[tokio::test]
async fn a_redirecting_token_endpoint_fails_requests_fast_without_asking_for_a_sign_in() {
    let target = elsewhere().await;
    let (url, _) = redirecting(307, &target).await;
    let source = TokenSource::builder(
        Config::builder()
            .request_timeout(Duration::from_secs(10))
            .build()
            .expect("config"),
    )
    .credentials(Credentials::RefreshToken(REFRESH_TOKEN.into()))
    .refresher(OAuth2Refresher::new(grant(&url)).expect("a loopback token URL"))
    .build()
    .expect("inside a runtime");
    let started = Instant::now();
    let error = source
        .token()
        .await
        .expect_err("no token behind a redirect");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fails fast, not at the request's deadline"
    );
    assert_eq!(target.connections(), 0, "the second server got nothing");
    assert!(!error.needs_sign_in(), "{error}");
    let text = format!("{error} {error:?}");
    assert!(text.contains(&target.url("/final/token")), "{text}");
    assert_no_secret(&text);
}

#[tokio::test]
async fn plain_http_token_urls_are_refused_beyond_loopback_unless_allowed() {
    for url in [
        "http://auth.example.com/token",
        "http://10.0.0.1/token",
        "http://[fe80::1]/token",
    ] {
        let refused = OAuth2Refresher::new(grant(url)).expect_err(url);
        assert!(matches!(refused, Error::InsecureHttp { .. }), "{refused:?}");
        let message = refused.to_string();
        assert!(message.contains("allow_insecure_http"), "{message}");
        assert!(!message.contains("/token"), "origin only: {message}");
        assert!(
            OAuth2Refresher::builder(grant(url))
                .allow_insecure_http(true)
                .build()
                .is_ok(),
            "{url}"
        );
    }
    for url in [
        "http://127.0.0.1:8080/token",
        "http://127.1.2.3/token",
        "http://localhost:9000/token",
        "http://[::1]:9000/token",
        "https://auth.example.com/token",
    ] {
        assert!(OAuth2Refresher::new(grant(url)).is_ok(), "{url}");
    }
    assert!(matches!(
        OAuth2Refresher::new(grant("auth.example.com/token")),
        Err(Error::InvalidUrl { .. })
    ));
}

#[tokio::test]
async fn the_default_timeout_is_thirty_seconds_and_zero_is_refused() {
    let refresher = OAuth2Refresher::new(grant("https://auth.example.com/token")).expect("https");
    assert_eq!(refresher.timeout(), Duration::from_secs(30));
    let refused = OAuth2Refresher::builder(grant("https://auth.example.com/token"))
        .timeout(Duration::ZERO)
        .build()
        .expect_err("a zero timeout fails every exchange");
    assert!(
        matches!(
            refused,
            Error::Token(silent_refresh_tokio::silent_refresh::Error::InvalidConfig(
                _
            ))
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn the_timeout_ends_an_exchange_with_a_hung_server_as_a_transient_failure() {
    const TIMEOUT: Duration = Duration::from_millis(200);
    let hung = CountingServer::start(None).await;
    let check = |refresher: OAuth2Refresher| async move {
        assert_eq!(refresher.timeout(), TIMEOUT);
        let started = Instant::now();
        let failure = refresher
            .refresh(Some(Secret::new(REFRESH_TOKEN)))
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
    };
    check(
        OAuth2Refresher::builder(grant(&hung.url("/token")))
            .timeout(TIMEOUT)
            .build()
            .expect("a loopback token URL"),
    )
    .await;
    // The caller's builder sets an hour: the refresher's timeout applies per request.
    check(
        OAuth2Refresher::builder(grant(&hung.url("/token")))
            .client(reqwest::Client::builder().timeout(Duration::from_secs(3600)))
            .timeout(TIMEOUT)
            .build()
            .expect("a loopback token URL"),
    )
    .await;
    assert_eq!(hung.connections(), 2);
}

/// Item 5 of issue 11: the send helper passes the caller's errors on without the
/// request's query (nor a user), which may hold secrets.
#[tokio::test]
async fn send_errors_name_no_query() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::RefreshToken("rt".into()))
        .refresher(|_: Option<Secret>| async {
            Ok(silent_refresh_tokio::silent_refresh::Token::bearer(
                "at",
                silent_refresh_tokio::silent_refresh::Expiry::In(Duration::from_secs(600)),
            ))
        })
        .build()
        .expect("inside a runtime");
    let origin = format!("http://{closed}");
    let client = AuthorizedClient::builder(source)
        .allow_origin(&origin)
        .build()
        .expect("loopback");
    let url = format!("{origin}/v1/items?api_key={QUERY_SECRET}");

    // A reqwest error carries the URL: it is dropped.
    let http = reqwest::Client::new();
    let error = client
        .send(&http::Method::GET, &url, |uri: Uri, headers| {
            let request = http
                .get(uri.to_string())
                .header(header::AUTHORIZATION, headers.authorization);
            async move { request.send().await }
        })
        .await
        .expect_err("nobody listens");
    assert!(matches!(error, Error::Send(_)), "{error:?}");
    let text = format!("{error} {error:?}");
    assert_no_secret(&text);
    assert!(!text.contains("api_key"), "{text}");

    // Any other error that prints the URL: cut to origin and path.
    let error = client
        .send(&http::Method::GET, &url, |uri: Uri, _| async move {
            Err::<StatusCode, _>(std::io::Error::other(format!(
                "GET {uri} failed; retry https://user:pw@mirror.example/v1/items?api_key={QUERY_SECRET}"
            )))
        })
        .await
        .expect_err("it failed");
    let text = format!("{error} {error:?}");
    assert_no_secret(&text);
    for hidden in ["api_key", "user", "pw@"] {
        assert!(!text.contains(hidden), "{hidden} in {text}");
    }
    assert!(text.contains(&format!("{origin}/v1/items")), "{text}");
    assert!(text.contains("https://mirror.example/v1/items"), "{text}");
}
