//! What the integration benchmarks share (`silent-refresh-http`'s `integrations` and
//! `silent-refresh-ureq`'s `middleware`, which includes this file): a minimal hyper
//! server on 127.0.0.1, the token both sides of a comparison send, and the interleaved
//! measurement whose ratios the benchmarks print after criterion's runs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use silent_refresh::{Expiry, Token};

/// The bound of issue 19: an integration's request over the fixed-header one.
const BOUND: f64 = 1.05;
/// The interleaved measurement: rounds, and requests per batch.
const ROUNDS: usize = 200;
const BATCH: u32 = 100;

/// The access token of the sources, and so of the fixed header: both sides of a
/// comparison send the same bytes.
pub(crate) const ACCESS_TOKEN: &str = "at-bench";

/// The fixed header of the baselines: `Bearer` and [`ACCESS_TOKEN`].
pub(crate) const FIXED_AUTHORIZATION: &str = "Bearer at-bench";

/// The token of the sources: [`ACCESS_TOKEN`], fresh for an hour, so every request
/// takes the fast path (its refresh token is never used).
pub(crate) fn hour_token() -> Token {
    Token::bearer(ACCESS_TOKEN, Expiry::In(Duration::from_secs(3600)))
        .with_refresh_token("rt-bench")
}

/// The line above the ratios.
pub(crate) fn heading() -> String {
    format!(
        "\nEach integration against its fixed-header request, interleaved (median of \
         {ROUNDS} batches of {BATCH} requests):"
    )
}

/// Starts the server on its own thread (a current-thread tokio runtime, so the client
/// and the server each have one of the machine's cores) and returns its address. It
/// answers every request `200 ok` when it carries a bearer token, `400` when not (so a
/// benchmark that lost its header fails instead of measuring something else); HTTP/1.1
/// with keep-alive, one connection per client. The thread ends with the process.
pub(crate) fn start_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port on 127.0.0.1");
    listener.set_nonblocking(true).expect("non-blocking");
    let address = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the server's runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(
                    http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service_fn(answer)),
                );
            }
        });
    });
    address
}

/// `200 ok` to a request with a bearer token, `400` to one without.
async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let bearer = request
        .headers()
        .get(AUTHORIZATION)
        .is_some_and(|value| value.as_bytes().starts_with(b"Bearer "));
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
    if !bearer {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

/// The interleaved measurement of one comparison, in microseconds per request.
pub(crate) struct Interleaved {
    /// The median batch of the fixed-header requests.
    pub(crate) fixed: f64,
    /// The median batch of the integration's requests.
    pub(crate) integration: f64,
    /// The ratio of each round's integration batch to its fixed-header batch, sorted.
    pub(crate) paired: Vec<f64>,
}

impl Interleaved {
    /// The integration's median batch over the fixed-header one.
    pub(crate) fn ratio(&self) -> f64 {
        self.integration / self.fixed
    }

    /// The paired ratio at quantile `q` (0 to 1).
    pub(crate) fn paired_at(&self, q: f64) -> f64 {
        let last = self.paired.len().saturating_sub(1);
        // A quantile of at most a few hundred rounds: the cast cannot lose anything.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let at = ((last as f64) * q).round() as usize;
        self.paired[at.min(last)]
    }

    /// One line for the benchmark's output: the medians, the ratio and the spread of
    /// the paired ratios, against [`BOUND`].
    pub(crate) fn line(&self, name: &str) -> String {
        let ratio = self.ratio();
        format!(
            "  {name}: fixed_header {:.1} µs, integration {:.1} µs; ratio {ratio:.3} ({} the \
             {BOUND} bound); paired ratios: median {:.3}, quartiles {:.3}-{:.3}",
            self.fixed,
            self.integration,
            if ratio <= BOUND { "within" } else { "OVER" },
            self.paired_at(0.5),
            self.paired_at(0.25),
            self.paired_at(0.75),
        )
    }
}

/// [`ROUNDS`] rounds of a batch of [`BATCH`] fixed-header requests and a batch of as
/// many requests through the integration, in alternating order (fixed first in even rounds,
/// the integration first in odd ones), so that a change of the machine's load during
/// the run, or a cost of going second, tilts neither side. Each closure sends `n`
/// requests, one after another, and checks their answers.
pub(crate) fn interleaved(
    mut fixed: impl FnMut(u32),
    mut integration: impl FnMut(u32),
) -> Interleaved {
    let timed = |send: &mut dyn FnMut(u32)| {
        let started = Instant::now();
        send(BATCH);
        micros_per_request(started.elapsed(), BATCH)
    };
    let (mut fixed_times, mut integration_times, mut paired) = (vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let (f, i) = if round % 2 == 0 {
            let f = timed(&mut fixed);
            (f, timed(&mut integration))
        } else {
            let i = timed(&mut integration);
            (timed(&mut fixed), i)
        };
        fixed_times.push(f);
        integration_times.push(i);
        paired.push(i / f);
    }
    paired.sort_by(f64::total_cmp);
    Interleaved {
        fixed: median(fixed_times),
        integration: median(integration_times),
        paired,
    }
}

fn micros_per_request(elapsed: Duration, requests: u32) -> f64 {
    elapsed.as_secs_f64() * 1e6 / f64::from(requests)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
