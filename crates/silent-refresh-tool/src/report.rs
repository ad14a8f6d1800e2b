//! What a run of `oauth2_client` reports: its counts and latencies as one JSON line
//! ([`Report`], [`ServerReport`] for the embedded server's side), why it stopped
//! ([`RunError`]), and the counters its workers share while it runs.

use crate::cli::{ENV_CLIENT_SECRET, ENV_REFRESH_TOKEN, Limit, Runtime};
use crate::measure::{self, Histogram, Mark, Percentiles, Timeline};
use silent_refresh_testkit::server::Stats;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The counts of a run: the JSON line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// `tokio` or `blocking`.
    pub runtime: &'static str,
    /// Requests completed (`ok + failed`).
    pub requests: u64,
    /// Requests answered with a 2xx status.
    pub ok: u64,
    /// Requests that failed: another status (also after the retry), no token, or a
    /// network error.
    pub failed: u64,
    /// Requests whose first answer was 401 and that were sent again with a new token.
    pub retried_401: u64,
    /// Tokens adopted (successful refreshes).
    pub refreshes: u64,
    /// Wall time of the run.
    pub elapsed_ms: u64,
    /// How long the requests that succeeded took (`None`: there were none).
    pub latency_ok: Option<Percentiles>,
    /// How long the requests that failed took to fail (`None`: there were none).
    pub latency_failed: Option<Percentiles>,
}

impl Report {
    /// The one JSON line, keys in a fixed order.
    #[must_use]
    pub fn to_json(&self) -> String {
        format!(
            "{{\"runtime\":{},\"requests\":{},\"ok\":{},\"failed\":{},\"retried_401\":{},\"refreshes\":{},\"elapsed_ms\":{},\"latency_ms\":{{\"ok\":{},\"failed\":{}}}}}",
            serde_json::Value::from(self.runtime),
            self.requests,
            self.ok,
            self.failed,
            self.retried_401,
            self.refreshes,
            self.elapsed_ms,
            measure::percentiles_json(self.latency_ok),
            measure::percentiles_json(self.latency_failed),
        )
    }

    /// The JSON line with the embedded server's counts as one more field, `server`.
    #[must_use]
    pub fn to_json_with_server(&self, server: &ServerReport) -> String {
        let mut line = self.to_json();
        line.pop();
        line.push_str(",\"server\":");
        line.push_str(&server.to_json());
        line.push('}');
        line
    }
}

/// What the embedded server counted during a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerReport {
    /// The server's counts.
    pub stats: Stats,
    /// Whether the grant the run started from was revoked (reuse detected).
    pub grant_revoked: bool,
    /// After an outage (`--outage`): how long after the token endpoint came back it
    /// issued its first token.
    pub outage_recovery: Option<Duration>,
}

impl ServerReport {
    /// `{"token_requests":…,…}`, keys in a fixed order.
    #[must_use]
    pub fn to_json(&self) -> String {
        let s = &self.stats;
        format!(
            "{{\"token_requests\":{},\"max_refreshes_in_flight\":{},\"reuse_detected\":{},\"refreshes_served\":{},\"unavailable_503\":{},\"invalid_grant\":{},\"redirected\":{},\"second_origin_requests\":{},\"second_origin_connections\":{},\"grant_revoked\":{},\"outage_recovery_ms\":{}}}",
            s.token_requests,
            s.max_token_in_flight,
            s.reuse_detected,
            s.issued,
            s.unavailable,
            s.invalid_grant,
            s.redirected,
            s.second_origin_requests,
            s.second_origin_connections,
            self.grant_revoked,
            self.outage_recovery
                .map_or_else(|| "null".to_owned(), |d| d.as_millis().to_string()),
        )
    }
}

/// Why a run stopped early.
#[derive(Debug)]
pub enum RunError {
    /// The client could not be set up (a bad URL, TLS, a runtime).
    Setup(String),
    /// A refresh failed for good (e.g. `invalid_grant`): the refresh token is dead
    /// and the user must sign in again. The run stopped at once.
    SignInRequired {
        /// The library's error message.
        message: String,
        /// The counts up to the stop.
        report: Box<Report>,
    },
    /// The token endpoint refused the client's configuration (a redirect, a wrong
    /// token URL, client id or secret, authentication method, scope). The refresh
    /// token is still good. The run stopped at once.
    Misconfigured {
        /// The library's error message, naming what to fix.
        message: String,
        /// The counts up to the stop.
        report: Box<Report>,
    },
}

impl RunError {
    /// The counts up to the stop, if the run started.
    #[must_use]
    pub fn report(&self) -> Option<&Report> {
        match self {
            Self::Setup(_) => None,
            Self::SignInRequired { report, .. } | Self::Misconfigured { report, .. } => {
                Some(report)
            }
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Setup(message) => write!(f, "could not set up the client: {message}"),
            Self::SignInRequired { message, .. } => write!(
                f,
                "stopped at once: {message}; then put the new refresh token in {ENV_REFRESH_TOKEN}"
            ),
            Self::Misconfigured { message, .. } => write!(
                f,
                "stopped at once, the client's configuration is wrong: {message}. Here that is --token-url, --client-id, --auth, --scope or {ENV_CLIENT_SECRET}; the refresh token in {ENV_REFRESH_TOKEN} was not spent by this failure"
            ),
        }
    }
}

/// Why a worker stopped the run.
pub(crate) enum Stop {
    SignIn(String),
    Misconfigured(String),
}

impl Stop {
    pub(crate) fn into_error(self, report: Report) -> RunError {
        let report = Box::new(report);
        match self {
            Self::SignIn(message) => RunError::SignInRequired { message, report },
            Self::Misconfigured(message) => RunError::Misconfigured { message, report },
        }
    }
}

impl std::error::Error for RunError {}

/// Counters shared by the workers.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) ok: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried_401: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    /// Requests claimed, for `--requests`.
    pub(crate) claimed: AtomicU64,
    pub(crate) first_error: Mutex<Option<String>>,
    pub(crate) latency_ok: Histogram,
    pub(crate) latency_failed: Histogram,
    pub(crate) timeline: Timeline,
}

impl Tally {
    /// Claims the next request; `false` when the run is over.
    pub(crate) fn claim(&self, limit: Limit, end: Instant) -> bool {
        match limit {
            Limit::Duration(_) => Instant::now() < end,
            Limit::Requests(n) => self.claimed.fetch_add(1, Ordering::SeqCst) < n,
        }
    }

    /// A request failed after `took`.
    pub(crate) fn failed_after(&self, took: Duration, error: &str) {
        self.latency_failed.record(took);
        self.failure(error);
    }

    pub(crate) fn failure(&self, error: &str) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        self.timeline.mark(Mark::Failed);
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some(error.to_owned());
        }
    }

    pub(crate) fn answer(&self, took: Duration, ok: bool, retried: bool, status: u16) {
        if retried {
            self.retried_401.fetch_add(1, Ordering::SeqCst);
        }
        if ok {
            self.latency_ok.record(took);
            self.ok.fetch_add(1, Ordering::SeqCst);
            self.timeline.mark(Mark::Ok);
        } else {
            self.failed_after(took, &format!("the resource answered HTTP {status}"));
        }
    }

    /// Marks a refresh event in the timeline.
    pub(crate) fn event(&self, event: &silent_refresh::Event) {
        match event {
            silent_refresh::Event::RefreshStarted { .. } => {
                self.timeline.mark(Mark::RefreshStarted);
            }
            silent_refresh::Event::TokenAdopted {
                attempt: Some(_), ..
            } => self.timeline.mark(Mark::RefreshSucceeded),
            _ => {}
        }
    }

    /// Writes the timeline to `path`, if asked for (a failure is said on stderr: the
    /// run's counts still stand).
    pub(crate) fn keep_timeline(&self, path: Option<&Path>) {
        if let Some(path) = path
            && let Err(error) = self.timeline.write(path)
        {
            eprintln!(
                "oauth2_client: cannot write the timeline to {}: {error}",
                path.display()
            );
        }
    }

    pub(crate) fn report(&self, runtime: Runtime, started: Instant) -> Report {
        let ok = self.ok.load(Ordering::SeqCst);
        let failed = self.failed.load(Ordering::SeqCst);
        Report {
            runtime: runtime.name(),
            requests: ok + failed,
            ok,
            failed,
            retried_401: self.retried_401.load(Ordering::SeqCst),
            refreshes: self.refreshes.load(Ordering::SeqCst),
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            latency_ok: self.latency_ok.percentiles(),
            latency_failed: self.latency_failed.percentiles(),
        }
    }

    pub(crate) fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
