//! The demo's acts: the embedded OAuth server, driven through both adapters, with a
//! timeline and a summary. The example's `main` parses the options and prints; a
//! test runs a short version.
//!
//! 1. **tokio**: hundreds of tasks share one `TokenSource` across several expiries:
//!    a cold start (every task parks, one refresh releases them all), proactive
//!    refreshes while the old token keeps serving, and a signing-key rotation (a
//!    storm of 401s, one refresh).
//! 2. **ureq**: a dozen threads through the `BearerAuth` middleware, across
//!    several expiries.
//! 3. **failure**: the token endpoint answers 503 for a while: the old token keeps
//!    serving while it can, then parked requests are released with a clear error at
//!    their deadline instead of hanging, and the library recovers with the endpoint.
//!    Then a stolen copy of a spent refresh token is replayed: the server revokes the
//!    grant, the next refresh gets `invalid_grant`, and every task stops at once with
//!    "sign-in required".

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use silent_refresh::{Config, Credentials, Generation, RefreshFailure, Secret, Token};
use silent_refresh_oauth2::RefreshGrant;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::timeline::Timeline;
use silent_refresh_testkit::server::{AuthServer, ServerConfig, ServerEvent, Stats};
use silent_refresh_tool::probe::{self, Count401, ProbeError};

/// The demo's settings.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Concurrent tasks in the tokio act (the failure act uses a third of them).
    pub tasks: usize,
    /// Threads in the ureq act.
    pub threads: usize,
    /// How long the server's access tokens live; the acts' lengths follow from it.
    pub lifetime: Duration,
    /// Print nothing (for tests).
    pub quiet: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            tasks: 300,
            threads: 12,
            lifetime: Duration::from_secs(3),
            quiet: false,
        }
    }
}

/// The demo's help text.
pub const USAGE: &str = "\
demo: an OAuth 2.0 server on 127.0.0.1 (short-lived tokens, rotating refresh tokens,
reuse detection), driven by silent-refresh through tokio and through ureq.

USAGE:
  cargo run --example demo [-- OPTIONS]

OPTIONS:
  --tasks N       concurrent tokio tasks (default 300, 1 to 5000)
  --threads N     ureq threads (default 12, 1 to 200)
  --lifetime S    access-token lifetime in seconds (default 3, 1 to 30); the acts
                  last a few lifetimes each
  -h, --help      this text
";

/// What the command line asked for.
#[derive(Debug)]
pub enum DemoCommand {
    /// Print the help.
    Help,
    /// Run with these options.
    Run(DemoOptions),
}

/// Parses the demo's arguments (without the program name).
///
/// # Errors
///
/// A message saying what is wrong.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<DemoCommand, String> {
    let mut options = DemoOptions::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        if name == "-h" || name == "--help" {
            return Ok(DemoCommand::Help);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value; see --help"))
        };
        let number = |text: String, low: u64, high: u64| {
            text.parse::<u64>()
                .ok()
                .filter(|n| (low..=high).contains(n))
                .ok_or_else(|| {
                    format!("{name} must be a number from {low} to {high}, not `{text}`")
                })
        };
        match name.as_str() {
            "--tasks" => options.tasks = usize::try_from(number(value()?, 1, 5000)?).unwrap_or(1),
            "--threads" => {
                options.threads = usize::try_from(number(value()?, 1, 200)?).unwrap_or(1);
            }
            "--lifetime" => options.lifetime = Duration::from_secs(number(value()?, 1, 30)?),
            _ => return Err(format!("unknown argument `{arg}`; see --help")),
        }
    }
    Ok(DemoCommand::Run(options))
}

/// What one act counted.
#[derive(Clone, Debug, Default)]
pub struct ActSummary {
    /// The act's name.
    pub name: String,
    /// How many tasks or threads sent requests.
    pub workers: usize,
    /// Requests answered 2xx (counted by the clients).
    pub ok: u64,
    /// Requests that failed: an error status after the retry, or no token.
    pub failed: u64,
    /// Requests retried after a 401 (counted by the clients).
    pub retried_401: u64,
    /// Tasks or threads stopped by "sign-in required".
    pub sign_in_stops: u64,
    /// Tasks or threads that did not end by the act's end plus a grace period: a hang.
    pub hung: usize,
    /// What the server counted during the act.
    pub server: Stats,
    /// Requests served per access token of the act's grant: `(generation, count)`.
    pub served_by: Vec<(u64, u64)>,
    /// Requests that succeeded after the token endpoint came back (failure act).
    pub ok_after_recovery: Option<u64>,
    /// From the replay of the stolen refresh token to the last task stopped
    /// (failure act).
    pub stop_after_revocation: Option<Duration>,
    /// The distinct errors requests were released with, in order, with counts.
    pub errors: Vec<(String, u64)>,
}

/// The whole demo's counts.
#[derive(Clone, Debug, Default)]
pub struct DemoReport {
    /// One summary per act, in order.
    pub acts: Vec<ActSummary>,
    /// Wall time of the acts.
    pub elapsed: Duration,
}

/// The library's configuration for the demo, scaled to the token lifetime `l`: a
/// request waits at most `wait` for a token; backoff from a tenth to a third of `l`.
fn demo_config(l: Duration, wait: Duration, seed: u64) -> Result<Config, String> {
    Config::builder()
        .request_timeout(wait)
        .refresh_timeout(l / 2)
        .backoff_initial(l / 10)
        .backoff_max(l / 3)
        .seed(seed)
        .build()
        .map_err(|e| e.to_string())
}

/// What the acts wait for, without polling: every event bumps a version that
/// [`Signals::wait_for`] wakes on, and the counters say what happened.
struct Signals {
    changes: watch::Sender<u64>,
    /// `503` answers of the token endpoint.
    unavailable: AtomicU64,
    /// Tokens adopted by the current act's source.
    adopted: AtomicU64,
}

impl Signals {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            changes: watch::channel(0).0,
            unavailable: AtomicU64::new(0),
            adopted: AtomicU64::new(0),
        })
    }

    fn bump(&self) {
        self.changes
            .send_modify(|version| *version = version.wrapping_add(1));
    }

    /// Waits until `ready` holds (re-checked after every event) or `deadline`
    /// passes; says whether it holds.
    async fn wait_for(&self, deadline: Instant, ready: impl Fn() -> bool) -> bool {
        let mut changes = self.changes.subscribe();
        let deadline = tokio::time::Instant::from_std(deadline);
        loop {
            if ready() {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return ready(),
            }
        }
    }
}

/// The counters the tasks of one act share.
struct ActTally {
    signals: Arc<Signals>,
    ok: AtomicU64,
    failed: AtomicU64,
    retried_401: AtomicU64,
    sign_in_stops: AtomicU64,
    last_stop: Mutex<Option<Instant>>,
    errors: Mutex<Vec<(String, u64)>>,
}

impl ActTally {
    fn new(signals: &Arc<Signals>) -> Arc<Self> {
        Arc::new(Self {
            signals: signals.clone(),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried_401: AtomicU64::new(0),
            sign_in_stops: AtomicU64::new(0),
            last_stop: Mutex::new(None),
            errors: Mutex::new(Vec::new()),
        })
    }

    fn error(&self, message: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        {
            let mut errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
            match errors.iter_mut().find(|(m, _)| *m == message) {
                Some((_, n)) => *n += 1,
                None => errors.push((message, 1)),
            }
        }
        self.signals.bump();
    }

    fn sign_in_stop(&self, message: String) {
        *self
            .last_stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        self.sign_in_stops.fetch_add(1, Ordering::SeqCst);
        self.error(message);
    }

    fn answer(&self, success: bool, status: u16) {
        if success {
            self.ok.fetch_add(1, Ordering::SeqCst);
        } else {
            self.error(format!("the resource answered HTTP {status}"));
        }
    }

    fn summary(&self, name: String) -> ActSummary {
        ActSummary {
            name,
            ok: self.ok.load(Ordering::SeqCst),
            failed: self.failed.load(Ordering::SeqCst),
            retried_401: self.retried_401.load(Ordering::SeqCst),
            sign_in_stops: self.sign_in_stops.load(Ordering::SeqCst),
            errors: self
                .errors
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            ..ActSummary::default()
        }
    }
}

/// What the timeline says about refreshes, shared by the refresher wrapper (which
/// sees each attempt start and end) and the token-change callback (which sees each
/// adoption).
struct RefreshLog {
    timeline: Timeline,
    signals: Arc<Signals>,
    attempts: AtomicU64,
    /// Of the last successful attempt: its number, duration, and how many requests
    /// were parked when its answer came.
    last_attempt: AtomicU64,
    last_ms: AtomicU64,
    parked_at_answer: AtomicUsize,
    /// The source's waiting count and generation (zero once the act is over).
    peek: Box<dyn Fn() -> (usize, Generation) + Send + Sync>,
}

impl RefreshLog {
    /// A log for one act; `peek` reads the act's source (waiting count, generation).
    fn new(
        timeline: &Timeline,
        signals: &Arc<Signals>,
        peek: impl Fn() -> (usize, Generation) + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            timeline: timeline.clone(),
            signals: signals.clone(),
            attempts: AtomicU64::new(0),
            last_attempt: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
            parked_at_answer: AtomicUsize::new(0),
            peek: Box::new(peek),
        })
    }

    fn started(&self) -> (u64, Instant) {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        let (parked, generation) = (self.peek)();
        self.timeline.say(
            "client",
            format!(
                "refresh #{attempt} started (current: gen {}, {})",
                generation.0,
                plural(parked, "request parked", "requests parked")
            ),
        );
        (attempt, Instant::now())
    }

    fn answered(&self, attempt: u64, started: Instant, result: &Result<Token, RefreshFailure>) {
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (parked, _) = (self.peek)();
        match result {
            Ok(_) => {
                self.last_attempt.store(attempt, Ordering::SeqCst);
                self.last_ms.store(ms, Ordering::SeqCst);
                self.parked_at_answer.store(parked, Ordering::SeqCst);
            }
            Err(failure) if failure.is_terminal() => self.timeline.say(
                "client",
                format!(
                    "refresh #{attempt} failed for good after {ms} ms ({failure}); {} get \"sign-in required\", new ones fail fast",
                    plural(parked, "parked request", "parked requests")
                ),
            ),
            Err(failure) => self.timeline.say(
                "client",
                format!(
                    "refresh #{attempt} failed after {ms} ms ({failure}); backing off, {}",
                    plural(parked, "request parked", "requests parked")
                ),
            ),
        }
    }

    fn adopted(&self, generation: Generation) {
        self.signals.adopted.fetch_add(1, Ordering::SeqCst);
        self.signals.bump();
        self.timeline.say(
            "client",
            format!(
                "refresh #{} answered in {} ms: gen {} adopted, its rotated refresh token stored; {} released",
                self.last_attempt.load(Ordering::SeqCst),
                self.last_ms.load(Ordering::SeqCst),
                generation.0,
                plural(
                    self.parked_at_answer.swap(0, Ordering::SeqCst),
                    "parked request",
                    "parked requests"
                ),
            ),
        );
    }
}

/// `n` and the noun, singular or plural.
fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A tokio refresher that reports to the timeline around the real one.
struct LoggedTokio {
    inner: silent_refresh_tokio::OAuth2Refresher,
    log: Arc<RefreshLog>,
}

impl silent_refresh_tokio::Refresher for LoggedTokio {
    async fn refresh(&self, refresh_token: Option<Secret>) -> Result<Token, RefreshFailure> {
        let (attempt, started) = self.log.started();
        let result = self.inner.refresh(refresh_token).await;
        self.log.answered(attempt, started, &result);
        result
    }

    fn token_endpoint(&self) -> Option<&str> {
        silent_refresh_tokio::Refresher::token_endpoint(&self.inner)
    }
}

/// A tokio token source, its send helper, and the handle that lets the timeline peek
/// at it (cleared at the end of the act, so the source can drop).
struct TokioClient {
    client: silent_refresh_tokio::AuthorizedClient,
    http: reqwest::Client,
    peek_slot: Arc<Mutex<Option<silent_refresh_tokio::TokenSource>>>,
}

impl TokioClient {
    fn new(
        server: &AuthServer,
        grant: &silent_refresh_testkit::server::Grant,
        config: Config,
        timeline: &Timeline,
        signals: &Arc<Signals>,
    ) -> Result<Self, String> {
        use silent_refresh_tokio::{AuthorizedClient, OAuth2Refresher, TokenChange, TokenSource};

        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let peek_slot: Arc<Mutex<Option<TokenSource>>> = Arc::default();
        let slot = peek_slot.clone();
        let log = RefreshLog::new(timeline, signals, move || {
            slot.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map_or((0, Generation(0)), |s| (s.waiting(), s.generation()))
        });
        let on_change = log.clone();
        let inner = OAuth2Refresher::builder(demo_grant(server))
            .timeout(config.refresh_timeout())
            .build()
            .map_err(|e| e.to_string())?;
        let source = TokenSource::builder(config)
            .credentials(Credentials::RefreshToken(Secret::new(
                grant.refresh_token.clone(),
            )))
            .refresher(LoggedTokio { inner, log })
            .on_token_change(move |change| {
                if let TokenChange::Persist { generation, .. } = change {
                    on_change.adopted(generation);
                }
            })
            .build()
            .map_err(|e| e.to_string())?;
        *peek_slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(source.clone());
        let client = AuthorizedClient::builder(source)
            .allow_origin(server.origin())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            http,
            peek_slot,
        })
    }

    fn close(&self) {
        self.peek_slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

/// The refresh grant of the embedded server's demo client.
fn demo_grant(server: &AuthServer) -> RefreshGrant {
    let config = server.config();
    let mut grant = RefreshGrant::new(server.token_url(), config.client_id.as_str());
    if let Some(secret) = &config.client_secret {
        grant = grant.client_secret(secret.as_str());
    }
    grant
}

/// A pause between a task's requests: `pace` give or take half, varied per task.
fn pause(pace: Duration, state: &mut u64) -> Duration {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    let percent = u32::try_from((*state >> 33) % 100).unwrap_or(50);
    pace / 2 + pace * percent / 100
}

async fn tokio_task(
    client: silent_refresh_tokio::AuthorizedClient,
    http: reqwest::Client,
    url: Arc<str>,
    until: Instant,
    pace: Duration,
    tally: Arc<ActTally>,
    seed: u64,
) {
    let mut state = seed;
    // Tasks start spread over one pace, as real traffic does.
    tokio::time::sleep(pause(pace, &mut state) / 2).await;
    while Instant::now() < until {
        match probe::tokio_get(&client, &http, &url).await {
            Ok(answer) => {
                if answer.retried_401 {
                    tally.retried_401.fetch_add(1, Ordering::SeqCst);
                }
                tally.answer(answer.status.is_success(), answer.status.as_u16());
            }
            Err(ProbeError::SignInRequired(message)) => {
                tally.sign_in_stop(message);
                return;
            }
            Err(ProbeError::Misconfigured(message) | ProbeError::Other(message)) => {
                tally.error(message);
            }
        }
        tokio::time::sleep(pause(pace, &mut state)).await;
    }
}

/// Joins the tasks, giving them `grace` past `until`; the ones still running then
/// are counted as hung and aborted.
async fn join_tasks(tasks: &mut JoinSet<()>, until: Instant, grace: Duration) -> usize {
    let deadline = tokio::time::Instant::from_std(until + grace);
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(_)) => {}
            Ok(None) => return 0,
            Err(_elapsed) => {
                let hung = tasks.len();
                tasks.abort_all();
                return hung;
            }
        }
    }
}

fn print_served(timeline: &Timeline, served: &[(u64, u64)]) {
    let mut line = String::from("requests served, per token (counted at the resource):");
    for (generation, count) in served {
        let _ = write!(line, "  gen {generation} ×{count}");
    }
    timeline.line(format!("           {line}"));
}

async fn act_tokio(
    server: &AuthServer,
    options: &DemoOptions,
    timeline: &Timeline,
    signals: &Arc<Signals>,
) -> Result<ActSummary, String> {
    let l = options.lifetime;
    let name = format!("1 tokio, {} tasks", options.tasks);
    timeline.line(format!(
        "\nAct 1 · tokio: {} tasks share one TokenSource for {:.1} s (tokens live {} s)",
        options.tasks,
        l.mul_f64(1.45).as_secs_f64(),
        l.as_secs_f64()
    ));
    let grant = server.sign_in(Some("api:read"));
    let _ = server.take_stats();
    timeline.restart();
    let client = TokioClient::new(server, &grant, demo_config(l, l, 1)?, timeline, signals)?;
    timeline.say(
        "client",
        format!(
            "{} tasks start with only a refresh token: their first requests park until one refresh ends",
            options.tasks
        ),
    );
    let start = Instant::now();
    let until = start + l.mul_f64(1.45);
    let tally = ActTally::new(signals);
    let url: Arc<str> = server.resource_url().into();
    let pace = Duration::from_millis(150);
    let mut tasks = JoinSet::new();
    for i in 0..options.tasks {
        tasks.spawn(tokio_task(
            client.client.clone(),
            client.http.clone(),
            url.clone(),
            until,
            pace,
            tally.clone(),
            i as u64 + 1,
        ));
    }
    tokio::time::sleep_until(tokio::time::Instant::from_std(start + l.mul_f64(1.2))).await;
    server.revoke_access_tokens();
    timeline.say(
        "server",
        "signing key rotated: every access token issued so far now gets 401 (many 401s, one refresh)",
    );
    let hung = join_tasks(&mut tasks, until, l).await;
    client.close();
    let mut summary = tally.summary(name);
    summary.workers = options.tasks;
    summary.hung = hung;
    summary.server = server.take_stats();
    summary.served_by = server.served_by(grant.id);
    print_served(timeline, &summary.served_by);
    Ok(summary)
}

/// The ureq act: a dozen threads through the `BearerAuth` middleware.
fn act_ureq(
    server: &AuthServer,
    options: &DemoOptions,
    timeline: &Timeline,
    signals: &Arc<Signals>,
) -> Result<ActSummary, String> {
    use silent_refresh_ureq::{OAuth2Refresher, TokenChange, TokenSource};

    let l = options.lifetime;
    let name = format!("2 ureq, {} threads", options.threads);
    timeline.line(format!(
        "\nAct 2 · ureq: {} threads share one TokenSource through the BearerAuth middleware for {:.1} s",
        options.threads,
        l.mul_f64(1.2).as_secs_f64()
    ));
    let grant = server.sign_in(Some("api:read"));
    let _ = server.take_stats();
    timeline.restart();

    let cell: Arc<OnceLock<Weak<TokenSource>>> = Arc::default();
    let peek_cell = cell.clone();
    let log = RefreshLog::new(timeline, signals, move || {
        peek_cell
            .get()
            .and_then(Weak::upgrade)
            .map_or((0, Generation(0)), |s| (s.waiting(), s.generation()))
    });
    let config = demo_config(l, l, 2)?;
    let inner = OAuth2Refresher::builder(demo_grant(server))
        .timeout(config.refresh_timeout())
        .build()
        .map_err(|e| e.to_string())?;
    let refresh_log = log.clone();
    let refresher = move |refresh_token: Option<Secret>| {
        let (attempt, started) = refresh_log.started();
        let result = silent_refresh_ureq::Refresher::refresh(&inner, refresh_token);
        refresh_log.answered(attempt, started, &result);
        result
    };
    let on_change = log.clone();
    let source = Arc::new(
        TokenSource::builder(config)
            .credentials(Credentials::RefreshToken(Secret::new(
                grant.refresh_token.clone(),
            )))
            .refresher(refresher)
            .on_token_change(move |change| {
                if let TokenChange::Persist { generation, .. } = change {
                    on_change.adopted(generation);
                }
            })
            .build()
            .map_err(|e| e.to_string())?,
    );
    let _ = cell.set(Arc::downgrade(&source));
    let retries = Count401::default();
    let agent = probe::ureq_agent(
        TokenSource::clone(&source),
        &server.resource_url(),
        Duration::from_secs(10),
        retries.clone(),
    )?;
    timeline.say(
        "client",
        format!(
            "{} threads start with only a refresh token: their first requests park until one refresh ends",
            options.threads
        ),
    );
    let start = Instant::now();
    let until = start + l.mul_f64(1.2);
    let tally = ActTally::new(signals);
    let url = server.resource_url();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let mut spawned = 0;
    for i in 0..options.threads {
        let (agent, url, tally, done) = (agent.clone(), url.clone(), tally.clone(), done.clone());
        let thread = std::thread::Builder::new()
            .name(format!("demo-ureq-{i}"))
            .spawn(move || {
                let mut state = i as u64 + 1;
                let pace = Duration::from_millis(20);
                while Instant::now() < until {
                    match probe::ureq_get(&agent, &url) {
                        Ok(status) => tally.answer(status.is_success(), status.as_u16()),
                        Err(ProbeError::SignInRequired(message)) => {
                            tally.sign_in_stop(message);
                            break;
                        }
                        Err(ProbeError::Misconfigured(message) | ProbeError::Other(message)) => {
                            tally.error(message);
                        }
                    }
                    std::thread::sleep(pause(pace, &mut state));
                }
                let _ = done.send(());
            });
        if thread.is_ok() {
            spawned += 1;
        }
    }
    drop(done);
    std::thread::sleep((start + l.mul_f64(0.75)).saturating_duration_since(Instant::now()));
    server.revoke_access_tokens();
    timeline.say(
        "server",
        "signing key rotated: every access token issued so far now gets 401 (the middleware retries once)",
    );
    let mut hung = spawned;
    let deadline = until + l;
    while hung > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if finished.recv_timeout(left).is_err() {
            break;
        }
        hung -= 1;
    }
    let mut summary = tally.summary(name);
    summary.workers = spawned;
    summary.hung = hung;
    summary.retried_401 = retries.count();
    summary.server = server.take_stats();
    summary.served_by = server.served_by(grant.id);
    print_served(timeline, &summary.served_by);
    Ok(summary)
}

async fn act_failure(
    server: &AuthServer,
    options: &DemoOptions,
    timeline: &Timeline,
    signals: &Arc<Signals>,
) -> Result<ActSummary, String> {
    let l = options.lifetime;
    let tasks = (options.tasks / 3).max(1);
    let name = format!("3 tokio, {tasks} tasks, failures");
    let retry_after = server
        .config()
        .retry_after
        .map_or(String::new(), |s| format!(" (Retry-After: {s} s)"));
    timeline.line(format!(
        "\nAct 3 · failure: the token endpoint goes down, then a stolen refresh token is replayed ({tasks} tokio tasks; a request waits at most {:.2} s for a token)",
        (l / 4).as_secs_f64()
    ));
    let grant = server.sign_in(Some("api:read"));
    let stolen = Secret::new(grant.refresh_token.clone());
    let _ = server.take_stats();
    timeline.restart();
    let adopted_before = signals.adopted.load(Ordering::SeqCst);
    let client = TokioClient::new(server, &grant, demo_config(l, l / 4, 3)?, timeline, signals)?;
    let start = Instant::now();
    // The tasks stop on "sign-in required" long before this cap.
    let until = start + l * 4;
    let tally = ActTally::new(signals);
    let url: Arc<str> = server.resource_url().into();
    let pace = Duration::from_millis(100);
    let mut set = JoinSet::new();
    for i in 0..tasks {
        set.spawn(tokio_task(
            client.client.clone(),
            client.http.clone(),
            url.clone(),
            until,
            pace,
            tally.clone(),
            i as u64 + 1,
        ));
    }
    let adopted = || signals.adopted.load(Ordering::SeqCst);
    let unavailable = || signals.unavailable.load(Ordering::SeqCst);
    let in_lifetimes = |n: f64| Instant::now() + l.mul_f64(n);

    // Gen 1 serves for a moment, then the endpoint goes down.
    signals
        .wait_for(in_lifetimes(1.0), || adopted() > adopted_before)
        .await;
    tokio::time::sleep_until(tokio::time::Instant::from_std(start + l.mul_f64(0.15))).await;
    server.set_token_endpoint_failing(true);
    timeline.say(
        "server",
        format!(
            "token endpoint down: every refresh now gets 503 temporarily_unavailable{retry_after}"
        ),
    );
    // It stays down until two refreshes failed and every task had a request
    // released with an error at its deadline: the old token served while it could,
    // then nothing hung.
    let down_since = unavailable();
    let failed = || tally.failed.load(Ordering::SeqCst);
    signals
        .wait_for(in_lifetimes(3.0), || {
            unavailable() >= down_since + 2 && failed() >= tasks as u64
        })
        .await;
    let first_error = tally
        .errors
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .first()
        .map(|(message, _)| message.clone())
        .unwrap_or_default();
    timeline.say(
        "client",
        format!(
            "{} requests were released with an error at their deadline, none left hanging: {first_error}",
            failed()
        ),
    );
    server.set_token_endpoint_failing(false);
    timeline.say("server", "token endpoint back up");
    let ok_at_recovery = tally.ok.load(Ordering::SeqCst);

    // The next retry gets a token; let it serve a while.
    let before = adopted();
    signals
        .wait_for(in_lifetimes(2.0), || adopted() > before)
        .await;
    tokio::time::sleep(l.mul_f64(0.3)).await;
    let ok_at_replay = tally.ok.load(Ordering::SeqCst);
    timeline.say(
        "demo",
        "someone replays a stolen copy of this grant's first refresh token (rotated long ago)",
    );
    let replayed_at = Instant::now();
    let answer = match server.replay_refresh_token(stolen.expose()) {
        Ok(()) => "a new token: the server did not notice the reuse".to_owned(),
        Err(refusal) => refusal,
    };
    timeline.say("demo", format!("the replay got: {answer}"));
    let stopped = || tally.sign_in_stops.load(Ordering::SeqCst) == tasks as u64;
    signals.wait_for(in_lifetimes(1.0), stopped).await;

    let hung = join_tasks(&mut set, Instant::now(), l).await;
    client.close();
    let mut summary = tally.summary(name);
    summary.workers = tasks;
    summary.hung = hung;
    summary.server = server.take_stats();
    summary.served_by = server.served_by(grant.id);
    summary.ok_after_recovery = Some(ok_at_replay.saturating_sub(ok_at_recovery));
    let last_stop = *tally
        .last_stop
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    summary.stop_after_revocation =
        last_stop.map(|stop| stop.saturating_duration_since(replayed_at));
    if let Some(after) = summary.stop_after_revocation {
        timeline.say(
            "client",
            format!(
                "{} of {tasks} tasks stopped with \"sign-in required\", the last {} ms after the replay; none hung",
                summary.sign_in_stops,
                after.as_millis()
            ),
        );
    }
    print_served(timeline, &summary.served_by);
    Ok(summary)
}

/// Runs the three acts against a fresh embedded server.
///
/// # Errors
///
/// When the server or a client cannot be set up.
pub fn run(options: &DemoOptions) -> Result<DemoReport, String> {
    let timeline = Timeline::new(options.quiet);
    let l = options.lifetime;
    let server = AuthServer::start(ServerConfig {
        token_lifetime: l,
        token_latency: (l / 30).min(Duration::from_millis(100)),
        ..ServerConfig::default()
    })
    .map_err(|e| format!("cannot start the embedded OAuth server: {e}"))?;
    let signals = Signals::new();
    {
        let timeline = timeline.clone();
        let signals = signals.clone();
        server.observe(move |event| match event {
            ServerEvent::Unavailable => {
                signals.unavailable.fetch_add(1, Ordering::SeqCst);
                signals.bump();
            }
            ServerEvent::ReuseDetected { grant } => timeline.say(
                "server",
                format!("refresh token reuse detected: grant #{grant} revoked, with every token descended from it"),
            ),
            ServerEvent::InvalidGrant { grant: Some(grant) } => timeline.say(
                "server",
                format!("refused a refresh of revoked grant #{grant}: invalid_grant"),
            ),
            _ => {}
        });
    }
    timeline.line(format!(
        "silent-refresh demo: an OAuth 2.0 server at {} (access tokens live {} s; refresh tokens rotate; reusing one revokes the grant)",
        server.origin(),
        l.as_secs_f64()
    ));
    timeline.line("Tokens never appear below: only generations and counts.");
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    let first = runtime.block_on(act_tokio(&server, options, &timeline, &signals))?;
    let second = act_ureq(&server, options, &timeline, &signals)?;
    let third = runtime.block_on(act_failure(&server, options, &timeline, &signals))?;
    runtime.shutdown_timeout(Duration::from_millis(200));
    Ok(DemoReport {
        acts: vec![first, second, third],
        elapsed: started.elapsed(),
    })
}

/// The summary table.
#[must_use]
pub fn summary_table(report: &DemoReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nSummary (ok, failed, retried: counted by the clients; the rest at the server)"
    );
    let _ = writeln!(
        out,
        "  {:<28} {:>11} {:>7} {:>8} {:>9} {:>13} {:>5} {:>17} {:>7}",
        "act",
        "requests ok",
        "failed",
        "retried",
        "refreshes",
        "refresh fails",
        "401s",
        "max refreshes in",
        "reuse"
    );
    let _ = writeln!(
        out,
        "  {:<28} {:>11} {:>7} {:>8} {:>9} {:>13} {:>5} {:>17} {:>7}",
        "", "", "", "", "", "", "", "flight (server)", "caught"
    );
    for act in &report.acts {
        let s = &act.server;
        let _ = writeln!(
            out,
            "  {:<28} {:>11} {:>7} {:>8} {:>9} {:>13} {:>5} {:>17} {:>7}",
            act.name,
            act.ok,
            act.failed,
            act.retried_401,
            s.issued,
            s.unavailable + s.invalid_grant + s.invalid_client,
            s.resource_unauthorized,
            s.max_token_in_flight,
            s.reuse_detected
        );
    }
    for act in &report.acts {
        for (message, count) in &act.errors {
            let _ = writeln!(out, "  act {}: {count} × {message}", act.name);
        }
        if act.hung > 0 {
            let _ = writeln!(out, "  act {}: {} tasks HUNG", act.name, act.hung);
        }
    }
    let _ = writeln!(
        out,
        "  (act 3's failures are by design: requests parked while the endpoint was down were released at their deadline, and the revoked grant stopped every task)"
    );
    let _ = writeln!(out, "Done in {:.1} s.", report.elapsed.as_secs_f64());
    out
}

/// Whether the report shows what the demo promises: no hang, at most one refresh in
/// flight, no reuse caused by the library, zero failures in the healthy acts, a
/// recovery after the outage, and every task of the last act stopped by sign-in.
///
/// # Errors
///
/// What went wrong, for the exit message.
pub fn check(report: &DemoReport) -> Result<(), String> {
    let mut problems = Vec::new();
    for act in &report.acts {
        if act.hung > 0 {
            problems.push(format!("act {}: {} tasks hung", act.name, act.hung));
        }
        if act.server.max_token_in_flight > 1 {
            problems.push(format!(
                "act {}: {} refreshes in flight at once",
                act.name, act.server.max_token_in_flight
            ));
        }
        if act.ok == 0 {
            problems.push(format!("act {}: no request succeeded", act.name));
        }
    }
    for act in report.acts.iter().take(2) {
        if act.failed > 0 || act.server.reuse_detected > 0 {
            problems.push(format!(
                "act {}: {} failed requests, {} reuses detected",
                act.name, act.failed, act.server.reuse_detected
            ));
        }
    }
    if let Some(act) = report.acts.get(2) {
        if act.ok_after_recovery == Some(0) {
            problems.push("act 3: no request succeeded after the endpoint came back".to_owned());
        }
        if act.server.reuse_detected != 1 {
            problems.push(format!(
                "act 3: {} reuses detected; only the replay should be",
                act.server.reuse_detected
            ));
        }
        if act.sign_in_stops != act.workers as u64 {
            problems.push(format!(
                "act 3: {} of {} tasks stopped with \"sign-in required\" after the grant was revoked",
                act.sign_in_stops, act.workers
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
