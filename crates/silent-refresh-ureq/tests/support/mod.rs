//! Shared test helpers: a small HTTP/1.1 server on 127.0.0.1 port 0, refresher
//! stand-ins, and a configuration with short deadlines.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use silent_refresh_ureq::{Config, ConfigBuilder, TokenSource};

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The form body as pairs (for token requests).
    pub fn form(&self) -> Vec<(String, String)> {
        String::from_utf8_lossy(&self.body)
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(k), decode(v))
            })
            .collect()
    }

    pub fn form_value(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the server answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    pub fn text(status: u16, text: &str) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: text.as_bytes().to_vec(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// A real HTTP/1.1 server on 127.0.0.1, port 0, answering each request on its own
/// connection (`Connection: close`) with the handler's reply.
pub struct TestServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept = {
            let requests = requests.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let requests = requests.clone();
                    let handler = handler.clone();
                    thread::spawn(move || serve(stream, &*handler, &requests));
                }
            })
        };
        Self {
            addr,
            requests,
            stop,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:port`
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("requests").clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn serve(stream: TcpStream, handler: &Handler, requests: &Mutex<Vec<Recorded>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    requests.lock().expect("requests").push(request.clone());
    let reply = handler(&request);
    let mut out = format!("HTTP/1.1 {} Status\r\n", reply.status);
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        reply.body.len()
    ));
    let mut stream = stream;
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.write_all(&reply.body);
    let _ = stream.flush();
}

fn read_request(reader: &mut impl BufRead) -> Option<Recorded> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let method = words.next()?.to_owned();
    let target = words.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = find("content-length") {
        let len: usize = len.parse().ok()?;
        body.resize(len, 0);
        reader.read_exact(&mut body).ok()?;
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    Some(Recorded {
        method,
        target,
        headers,
        body,
    })
}

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

/// The client secret the stand-in authorization server expects.
pub const CLIENT_SECRET: &str = "cs-SECRET-7f3a9c";

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
        silent_refresh_ureq::RefreshGrant::new(self.token_url(), "test-client")
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
            let to = request.target.split_once("to=").map(|(_, to)| decode(to));
            return Reply::status(302).header("Location", &to.unwrap_or_default());
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

/// A server on 127.0.0.1, port 0, that counts the connections it accepts (not only the
/// requests it reads): for a host that must receive nothing. With an answer, it reads
/// each request and gives that answer; without one, it holds each connection open and
/// never answers (a hung server, for timeouts) until it is dropped.
pub struct CountingServer {
    addr: SocketAddr,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl CountingServer {
    /// Starts it: `answer` for every request, or `None` never to answer.
    pub fn start(answer: Option<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let held = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (connections, requests, held, stop) = (
                connections.clone(),
                requests.clone(),
                held.clone(),
                stop.clone(),
            );
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    connections.fetch_add(1, Ordering::SeqCst);
                    match answer.clone() {
                        None => held.lock().expect("held").push(stream),
                        Some(reply) => {
                            let requests = requests.clone();
                            thread::spawn(move || {
                                serve(stream, &move |_: &Recorded| reply.clone(), &requests)
                            });
                        }
                    }
                }
            })
        };
        Self {
            addr,
            connections,
            requests,
            held,
            stop,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:port{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://127.0.0.1:port`
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The requests read so far (only when it answers).
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("requests").clone()
    }
}

impl Drop for CountingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        self.held.lock().expect("held").clear();
    }
}
