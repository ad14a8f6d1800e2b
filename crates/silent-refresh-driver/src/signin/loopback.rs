//! The one-shot loopback listener of the browser sign-in (RFC 8252 §7.3): a socket on
//! `127.0.0.1` at a port the system picks, waiting for the browser to come back to the
//! redirect URI. Written with std threads, so that it is the same on every runtime: a
//! thread accepts, a short-lived thread per connection reads its request, and what
//! they find reaches the flow through handoffs that wake it.
//!
//! The listener is closed in every case: the flow closes it when it ends (and waits
//! until it is), and so does dropping it (a cancelled flow).

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::Error;
use crate::runtime::threads::{Deliver, Handoff, handoff};

/// How long a connection may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest request head read (a redirect's URL is a few hundred bytes).
const MAX_HEAD: u64 = 16 * 1024;
/// How long closing waits to connect to its own listener (to wake its accept).
const WAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// The browser came back to the redirect URI: the request's target (path and query:
/// it holds the authorization code, a secret), and how to answer it.
pub(super) struct Arrival {
    /// `/callback?code=…&state=…&iss=…`.
    pub(super) target: String,
    /// The page to answer with, once the flow knows how the sign-in ended.
    page: SyncSender<&'static str>,
    /// Delivered once the page is written (or could not be).
    written: Handoff<()>,
}

impl Arrival {
    /// Answers the browser with `page`; the handoff completes once it is written.
    pub(super) fn answer(self, page: &'static str) -> Handoff<()> {
        // The connection's thread may be gone (its read timed out): nothing to answer.
        let _ = self.page.send(page);
        self.written
    }
}

/// The listener: its thread, what it found, and how to close it.
pub(super) struct Loopback {
    port: u16,
    stop: Arc<AtomicBool>,
    arrival: Handoff<Arrival>,
    closed: Option<Handoff<()>>,
}

impl Loopback {
    /// Listens on `127.0.0.1` at a free port for a `GET` of `path`; a connection that
    /// comes back there waits at most `page_wait` for its page. Other paths (a
    /// browser's `/favicon.ico`) get a 404.
    ///
    /// # Errors
    ///
    /// [`Error::Loopback`] when no socket can be had, or no thread started.
    pub(super) fn bind(path: &str, page_wait: Duration) -> Result<Self, Error> {
        let loopback = |error: std::io::Error| Error::Loopback {
            reason: error.to_string(),
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(loopback)?;
        let port = listener.local_addr().map_err(loopback)?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let (deliver, arrival) = handoff();
        let (closing, closed) = handoff();
        let deliver = Arc::new(Mutex::new(Some(deliver)));
        let accepting = Accept {
            listener,
            path: path.to_owned(),
            stop: stop.clone(),
            deliver,
            page_wait,
        };
        std::thread::Builder::new()
            .name("silent-refresh-loopback".into())
            .spawn(move || {
                accepting.run();
                // The listener is closed (dropped by `run`).
                closing.finish(Some(()));
            })
            .map_err(loopback)?;
        Ok(Self {
            port,
            stop,
            arrival,
            closed: Some(closed),
        })
    }

    /// The port the system gave.
    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// The browser's arrival at the redirect URI (`None`: the listener ended without
    /// one, its accept failing).
    pub(super) fn poll_arrival(&mut self, cx: &mut Context<'_>) -> Poll<Option<Arrival>> {
        std::pin::Pin::new(&mut self.arrival).poll(cx)
    }

    /// Closes the listener (no new connection is accepted from now on); the handoff
    /// completes once its socket is closed.
    pub(super) fn close(&mut self) -> Option<Handoff<()>> {
        if !self.stop.swap(true, Ordering::SeqCst) {
            // Wakes the accepting thread, which sees `stop` and drops the listener.
            let own = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
            if let Err(error) = TcpStream::connect_timeout(&own, WAKE_TIMEOUT) {
                tracing::debug!(%error, "the loopback listener was closed already");
            }
        }
        self.closed.take()
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// The accepting thread's part.
struct Accept {
    listener: TcpListener,
    path: String,
    stop: Arc<AtomicBool>,
    /// Taken by the first connection that comes back to the redirect URI.
    deliver: Arc<Mutex<Option<Deliver<Arrival>>>>,
    page_wait: Duration,
}

impl Accept {
    /// Accepts until closed, each connection on a thread of its own (a browser's
    /// speculative connection that sends nothing does not hold up the real one).
    fn run(self) {
        loop {
            let accepted = self.listener.accept();
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors or memory: the flow ends by its time limit.
                    tracing::error!(%error, "the sign-in's loopback listener failed");
                    if let Some(deliver) = take(&self.deliver) {
                        deliver.finish(None);
                    }
                    return;
                }
            };
            let (path, deliver, page_wait) =
                (self.path.clone(), self.deliver.clone(), self.page_wait);
            let spawned = std::thread::Builder::new()
                .name("silent-refresh-loopback-connection".into())
                .spawn(move || serve(stream, &path, &deliver, page_wait));
            if let Err(error) = spawned {
                tracing::warn!(%error, "no thread for a connection to the loopback listener");
            }
        }
    }
}

fn take(deliver: &Mutex<Option<Deliver<Arrival>>>) -> Option<Deliver<Arrival>> {
    deliver
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
}

/// Serves one connection: the redirect URI's first `GET` is handed to the flow, and
/// answered with the page it sends back; anything else gets a 404.
fn serve(
    stream: TcpStream,
    path: &str,
    deliver: &Mutex<Option<Deliver<Arrival>>>,
    page_wait: Duration,
) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    let Some(target) = read_target(&stream) else {
        return;
    };
    let callback = target
        .split(['?', '#'])
        .next()
        .is_some_and(|asked| asked == path);
    let delivery = if callback { take(deliver) } else { None };
    let Some(deliver) = delivery else {
        respond(&stream, "404 Not Found", "text/plain", "not found\n");
        return;
    };
    let (page, chosen) = mpsc::sync_channel(1);
    let (done, written) = handoff();
    deliver.finish(Some(Arrival {
        target,
        page,
        written,
    }));
    let page = chosen
        .recv_timeout(page_wait)
        .unwrap_or(silent_refresh_oauth2::SIGN_IN_FAILED_PAGE);
    respond(&stream, "200 OK", "text/html; charset=utf-8", page);
    done.finish(Some(()));
}

/// The target of a `GET` request (its head read to the end), or `None`.
fn read_target(stream: &TcpStream) -> Option<String> {
    let mut reader = BufReader::new(stream.take(MAX_HEAD));
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let (method, target) = (words.next()?, words.next()?.to_owned());
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return None,
            Ok(_) if header.trim().is_empty() => break,
            Ok(_) => {}
        }
    }
    (method == "GET").then_some(target)
}

fn respond(mut stream: &TcpStream, status: &str, content_type: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let written = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .and_then(|()| stream.flush());
    if let Err(error) = written {
        tracing::debug!(%error, "could not answer the browser");
    }
}
