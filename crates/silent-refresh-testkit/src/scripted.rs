//! A scripted HTTP/1.1 server on `127.0.0.1` (port 0), for tests that need to see
//! exactly what a client sent and to choose exactly what it gets back: plain `std`
//! networking, one thread per connection, no runtime.
//!
//! - [`TestServer`] answers each request with what a handler returns for it
//!   ([`Reply`]) and records every request it read ([`Recorded`]).
//! - [`CountingServer`] counts the connections it accepts (for a host that must
//!   receive nothing), and either gives one fixed answer or never answers (a hung
//!   server, for timeouts).
//!
//! ```
//! use silent_refresh_testkit::scripted::{Reply, TestServer};
//!
//! let server = TestServer::start(|request| Reply::text(200, request.path()));
//! assert!(server.origin().starts_with("http://127.0.0.1:"));
//! assert!(server.requests().is_empty());
//! ```

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How long a connection may stay quiet while its request is read.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One request the server read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The method, as sent (`GET`, `POST`, …).
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// The header fields in the order sent, names as sent, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body (a chunked body is read whole and de-chunked).
    pub body: Vec<u8>,
}

impl Recorded {
    /// The value of the first header field named `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The target's path, without the query.
    #[must_use]
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The first value of the query parameter `name`, decoded.
    #[must_use]
    pub fn query_value(&self, name: &str) -> Option<String> {
        let (_, query) = self.target.split_once('?')?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The body read as an `application/x-www-form-urlencoded` form: its pairs, decoded,
    /// in order (for token requests).
    #[must_use]
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    /// The first value of the form field `name`, decoded.
    #[must_use]
    pub fn form_value(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(&self.body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// What the server answers: a status, header fields and a body. The server adds
/// `Content-Length` and `Connection: close`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Header fields, sent in this order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A reply with this status, no header field and an empty body.
    #[must_use]
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A JSON reply (`Content-Type: application/json`).
    #[must_use]
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    /// A plain-text reply (`Content-Type: text/plain`).
    #[must_use]
    pub fn text(status: u16, text: &str) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: text.as_bytes().to_vec(),
        }
    }

    /// The same reply with one more header field.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// The requests a server read, in the order it read them.
type Log = Arc<Mutex<Vec<Recorded>>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A real HTTP/1.1 server on `127.0.0.1`, port 0, answering each request on its own
/// connection (`Connection: close`) with the handler's reply, and recording every
/// request it read. Dropping it stops it.
pub struct TestServer {
    addr: SocketAddr,
    requests: Log,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// Starts it: `handler` gives the reply to each request, on the connection's own
    /// thread (so it may block, and may be called from several threads at once).
    ///
    /// # Panics
    ///
    /// When `127.0.0.1:0` cannot be bound or the accepting thread cannot start.
    pub fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("the bound address");
        let requests = Log::default();
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept = {
            let requests = requests.clone();
            let stop = stop.clone();
            thread::Builder::new()
                .name("scripted-server".to_owned())
                .spawn(move || {
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
                .expect("start the accepting thread")
        };
        Self {
            addr,
            requests,
            stop,
            accept: Some(accept),
        }
    }

    /// The address it listens on (always `127.0.0.1`).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its origin, `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT{path}`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// The requests read so far, in order.
    #[must_use]
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.requests).clone()
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

/// Reads one request from `stream`, records it, and writes the handler's reply.
fn serve(stream: TcpStream, handler: &Handler, requests: &Mutex<Vec<Recorded>>) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    lock(requests).push(request.clone());
    let reply = handler(&request);
    let mut head = format!("HTTP/1.1 {} Status\r\n", reply.status);
    for (name, value) in &reply.headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let _ = write!(
        head,
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        reply.body.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&reply.body);
    let _ = stream.flush();
}

/// Reads a request head and its body (by `Content-Length`, or chunked).
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
            body.extend_from_slice(chunk.get(..size)?);
        }
    }
    Some(Recorded {
        method,
        target,
        headers,
        body,
    })
}

/// A server on `127.0.0.1`, port 0, that counts the connections it accepts (not only
/// the requests it reads): for a host that must receive nothing. With an answer, it
/// reads each request and gives that answer; without one, it holds each connection
/// open and never answers (a hung server, for timeouts) until it is dropped.
pub struct CountingServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Log,
    held: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for CountingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingServer")
            .field("addr", &self.addr)
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

impl CountingServer {
    /// Starts it: `answer` for every request, or `None` never to answer.
    ///
    /// # Panics
    ///
    /// When `127.0.0.1:0` cannot be bound or the accepting thread cannot start.
    #[must_use]
    pub fn start(answer: Option<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("the bound address");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Log::default();
        let held = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (connections, requests, held, stop) = (
                connections.clone(),
                requests.clone(),
                held.clone(),
                stop.clone(),
            );
            thread::Builder::new()
                .name("counting-server".to_owned())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(stream) = stream else { continue };
                        connections.fetch_add(1, Ordering::SeqCst);
                        match answer.clone() {
                            None => lock(&held).push(stream),
                            Some(reply) => {
                                let requests = requests.clone();
                                thread::spawn(move || {
                                    serve(stream, &move |_: &Recorded| reply.clone(), &requests);
                                });
                            }
                        }
                    }
                })
                .expect("start the accepting thread")
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

    /// The address it listens on (always `127.0.0.1`).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Its origin, `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The connections accepted so far.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The requests read so far (only when it answers).
    #[must_use]
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.requests).clone()
    }
}

impl Drop for CountingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        lock(&self.held).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Sends `request` raw and reads the whole answer (the server closes).
    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.write_all(request).expect("write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        answer
    }

    #[test]
    fn records_the_request_and_writes_the_reply() {
        let server = TestServer::start(|request| {
            Reply::text(201, &request.form_value("b").unwrap_or_default()).header("X-Seen", "1")
        });
        let answer = exchange(
            server.addr(),
            b"POST /p?to=http%3A%2F%2Fx%2Fy HTTP/1.1\r\nHost: h\r\nContent-Length: 13\r\n\r\na=1&b=tw+o%21",
        );
        assert!(answer.starts_with("HTTP/1.1 201 "), "{answer}");
        assert!(answer.contains("X-Seen: 1\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\ntw o!"), "{answer}");
        let seen = server.requests();
        assert_eq!(seen.len(), 1);
        let request = seen.first().expect("one request");
        assert_eq!(request.method, "POST");
        assert_eq!(request.path(), "/p");
        assert_eq!(request.query_value("to").as_deref(), Some("http://x/y"));
        assert_eq!(request.header("content-length"), Some("13"));
        assert_eq!(
            request.form(),
            [
                ("a".to_owned(), "1".to_owned()),
                ("b".into(), "tw o!".into())
            ]
        );
    }

    #[test]
    fn reads_a_chunked_body() {
        let server = TestServer::start(|_| Reply::status(204));
        let answer = exchange(
            server.addr(),
            b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        );
        assert!(answer.starts_with("HTTP/1.1 204 "), "{answer}");
        let seen = server.requests();
        assert_eq!(seen.first().map(|r| r.body.as_slice()), Some(&b"abcde"[..]));
    }

    #[test]
    fn a_counting_server_counts_connections_even_when_it_never_answers() {
        let server = CountingServer::start(None);
        let stream = TcpStream::connect(server.addr()).expect("connect");
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        while server.connections() < 1 {
            assert!(std::time::Instant::now() < give_up, "never accepted");
            thread::yield_now();
        }
        assert!(server.requests().is_empty());
        drop(stream);
    }
}
