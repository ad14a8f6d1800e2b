//! The logic of `oauth2_client`, a load and smoke tool for a real OAuth 2.0 server:
//! parse the command line and the environment, keep `N` authorized requests in
//! flight through the chosen adapter, and report one JSON line.
//!
//! The example's `main` is [`cli_main`]; tests call it, or [`run`], directly.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use silent_refresh::oauth2::{ClientAuth, RefreshGrant};
use silent_refresh::{Config, Credentials, Secret};

use crate::probe::{self, Count401, ProbeError};

/// The environment variable holding the client secret (optional: without it the
/// client is a public client).
pub const ENV_CLIENT_SECRET: &str = "OAUTH_CLIENT_SECRET";
/// The environment variable holding the refresh token (required).
pub const ENV_REFRESH_TOKEN: &str = "OAUTH_REFRESH_TOKEN";

/// How long one resource request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Exit status: a usage error.
pub const EXIT_USAGE: i32 = 2;
/// Exit status: some requests failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit status: the refresh token is dead; sign in again.
pub const EXIT_SIGN_IN: i32 = 3;

/// The help text.
pub const USAGE: &str = "\
oauth2_client: keep N authorized requests in flight against an OAuth 2.0 protected
resource, refreshing the access token with silent-refresh, and report one JSON line.

USAGE:
  OAUTH_CLIENT_SECRET=... OAUTH_REFRESH_TOKEN=... \\
  cargo run --release --example oauth2_client -- \\
    --token-url URL --client-id ID --resource URL \\
    --runtime tokio|blocking --concurrency N (--duration SECS | --requests N) \\
    [--auth basic|post] [--scope S]

OPTIONS:
  --token-url URL        the authorization server's token endpoint
  --client-id ID         the client's id
  --resource URL         the protected resource to GET with the bearer token
  --runtime RUNTIME      tokio (silent-refresh-tokio, reqwest) or blocking
                         (silent-refresh-ureq, one thread per request in flight)
  --concurrency N        requests in flight at once (1 to 10000)
  --duration SECS        run this long (seconds, may be fractional), or
  --requests N           send this many requests in all
  --auth basic|post      how the client authenticates: client_secret_basic
                         (default) or client_secret_post
  --scope S              the scope to ask for at each refresh
  -h, --help             this text

ENVIRONMENT (secrets never go on the command line: other users can read it):
  OAUTH_REFRESH_TOKEN    the refresh token to start from (required). A server that
                         rotates refresh tokens has spent it after the first refresh.
  OAUTH_CLIENT_SECRET    the client secret (optional: a public client without it)

OUTPUT:
  one line on stdout at the end:
  {\"runtime\":...,\"requests\":...,\"ok\":...,\"failed\":...,\"retried_401\":...,\"refreshes\":...,\"elapsed_ms\":...}

EXIT STATUS:
  0  every request succeeded (failed == 0)
  1  some requests failed
  2  usage error, or the client could not be set up
  3  the refresh token is dead (e.g. invalid_grant): sign-in required; the tool
     stops at once
";

/// Which adapter drives the requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `silent-refresh-tokio` with reqwest, one task per request in flight.
    Tokio,
    /// `silent-refresh-ureq`, one thread per request in flight.
    Blocking,
}

impl Runtime {
    /// The name on the command line and in the report.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Tokio => "tokio",
            Self::Blocking => "blocking",
        }
    }
}

/// When the run ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// After this long (requests in flight then are completed).
    Duration(Duration),
    /// After this many requests in all.
    Requests(u64),
}

/// Everything a run needs. `Debug` hides the secrets.
#[derive(Clone, Debug)]
pub struct Options {
    /// The token endpoint.
    pub token_url: String,
    /// The client's id.
    pub client_id: String,
    /// The client secret (`None`: a public client).
    pub client_secret: Option<Secret>,
    /// The refresh token to start from.
    pub refresh_token: Secret,
    /// The resource to `GET`.
    pub resource: String,
    /// Which adapter.
    pub runtime: Runtime,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// When to stop.
    pub limit: Limit,
    /// How the client authenticates.
    pub auth: ClientAuth,
    /// The scope to ask for.
    pub scope: Option<String>,
}

impl Options {
    /// The refresh grant these options describe.
    #[must_use]
    pub fn grant(&self) -> RefreshGrant {
        let mut grant = RefreshGrant::new(self.token_url.as_str(), self.client_id.as_str());
        if let Some(secret) = &self.client_secret {
            grant = grant.client_secret(secret.clone()).auth(self.auth);
        }
        if let Some(scope) = &self.scope {
            grant = grant.scope(scope.as_str());
        }
        grant
    }
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    /// Print the help.
    Help,
    /// Run.
    Run(Options),
}

/// Parses the arguments (without the program name) and reads the secrets from
/// `env`.
///
/// # Errors
///
/// A message saying what is wrong with the command line or the environment.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, String> {
    let mut token_url = None;
    let mut client_id = None;
    let mut resource = None;
    let mut runtime = None;
    let mut concurrency = None;
    let mut duration = None;
    let mut requests = None;
    let mut auth = None;
    let mut scope = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let slot = match name.as_str() {
            "--token-url" => &mut token_url,
            "--client-id" => &mut client_id,
            "--resource" => &mut resource,
            "--runtime" => &mut runtime,
            "--concurrency" => &mut concurrency,
            "--duration" => &mut duration,
            "--requests" => &mut requests,
            "--auth" => &mut auth,
            "--scope" => &mut scope,
            "--client-secret" | "--refresh-token" => {
                return Err(format!(
                    "{name} is not accepted: secrets on the command line are visible to other users; set {ENV_CLIENT_SECRET} and {ENV_REFRESH_TOKEN} in the environment"
                ));
            }
            _ => return Err(format!("unknown argument `{arg}`; see --help")),
        };
        let value = match inline {
            Some(value) => value,
            None => args
                .next()
                .ok_or_else(|| format!("{name} needs a value; see --help"))?,
        };
        if slot.replace(value).is_some() {
            return Err(format!("{name} is given twice"));
        }
    }
    let required = |value: Option<String>, name: &str| {
        value.ok_or_else(|| format!("{name} is required; see --help"))
    };
    let token_url = required(token_url, "--token-url")?;
    let client_id = required(client_id, "--client-id")?;
    let resource = required(resource, "--resource")?;
    let runtime = match required(runtime, "--runtime")?.as_str() {
        "tokio" => Runtime::Tokio,
        "blocking" => Runtime::Blocking,
        other => {
            return Err(format!(
                "--runtime must be tokio or blocking, not `{other}`"
            ));
        }
    };
    let concurrency = required(concurrency, "--concurrency")?;
    let concurrency = concurrency
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| {
            format!("--concurrency must be a number from 1 to 10000, not `{concurrency}`")
        })?;
    let limit = match (duration, requests) {
        (Some(_), Some(_)) => return Err("give --duration or --requests, not both".to_owned()),
        (None, None) => return Err("give --duration SECS or --requests N; see --help".to_owned()),
        (Some(secs), None) => Limit::Duration(
            secs.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s <= 1e6)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    format!("--duration must be a positive number of seconds, not `{secs}`")
                })?,
        ),
        (None, Some(n)) => Limit::Requests(
            n.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("--requests must be a positive number, not `{n}`"))?,
        ),
    };
    let auth = match auth.as_deref() {
        None | Some("basic") => ClientAuth::Basic,
        Some("post") => ClientAuth::Post,
        Some(other) => return Err(format!("--auth must be basic or post, not `{other}`")),
    };
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let refresh_token = env(ENV_REFRESH_TOKEN).ok_or_else(|| {
        format!("{ENV_REFRESH_TOKEN} is not set: put the refresh token in the environment")
    })?;
    Ok(Command::Run(Options {
        token_url,
        client_id,
        client_secret: env(ENV_CLIENT_SECRET).map(Secret::new),
        refresh_token: Secret::new(refresh_token),
        resource,
        runtime,
        concurrency,
        limit,
        auth,
        scope,
    }))
}

/// The counts of a run: the JSON line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
}

impl Report {
    /// The one JSON line, keys in a fixed order.
    #[must_use]
    pub fn to_json(&self) -> String {
        format!(
            "{{\"runtime\":{},\"requests\":{},\"ok\":{},\"failed\":{},\"retried_401\":{},\"refreshes\":{},\"elapsed_ms\":{}}}",
            serde_json::Value::from(self.runtime),
            self.requests,
            self.ok,
            self.failed,
            self.retried_401,
            self.refreshes,
            self.elapsed_ms
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
        report: Report,
    },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Setup(message) => write!(f, "could not set up the client: {message}"),
            Self::SignInRequired { message, .. } => write!(
                f,
                "stopped at once: {message}; then put the new refresh token in {ENV_REFRESH_TOKEN}"
            ),
        }
    }
}

impl std::error::Error for RunError {}

/// Counters shared by the workers.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    retried_401: AtomicU64,
    refreshes: AtomicU64,
    /// Requests claimed, for `--requests`.
    claimed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Tally {
    /// Claims the next request; `false` when the run is over.
    fn claim(&self, limit: Limit, end: Instant) -> bool {
        match limit {
            Limit::Duration(_) => Instant::now() < end,
            Limit::Requests(n) => self.claimed.fetch_add(1, Ordering::SeqCst) < n,
        }
    }

    fn failure(&self, error: &str) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some(error.to_owned());
        }
    }

    fn answer(&self, ok: bool, retried: bool, status: u16) {
        if retried {
            self.retried_401.fetch_add(1, Ordering::SeqCst);
        }
        if ok {
            self.ok.fetch_add(1, Ordering::SeqCst);
        } else {
            self.failure(&format!("the resource answered HTTP {status}"));
        }
    }

    fn report(&self, runtime: Runtime, started: Instant) -> Report {
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
        }
    }

    fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The library's configuration for the tool: the defaults, with a jitter seed of
/// this process's own.
fn config() -> Config {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = u64::from(std::process::id()) << 32 | u64::from(nanos);
    Config::builder()
        .seed(seed)
        .build()
        .unwrap_or_else(|_| Config::default())
}

/// Runs the load: `options.concurrency` requests in flight until the limit, or until
/// the credentials turn out dead.
///
/// # Errors
///
/// [`RunError::SignInRequired`] within a second or two of a terminal refresh
/// failure, [`RunError::Setup`] when the client cannot be built.
pub fn run(options: Options) -> Result<(Report, Option<String>), RunError> {
    match options.runtime {
        Runtime::Tokio => run_tokio(options),
        Runtime::Blocking => run_blocking(options),
    }
}

fn run_tokio(options: Options) -> Result<(Report, Option<String>), RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Setup(format!("cannot start a tokio runtime: {e}")))?;
    let result = runtime.block_on(tokio_load(options));
    // Requests still in flight after a stop are not waited for.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

async fn tokio_load(options: Options) -> Result<(Report, Option<String>), RunError> {
    use silent_refresh_tokio::{AuthorizedClient, OAuth2Refresher, TokenChange, TokenSource};

    let setup = |e: &dyn fmt::Display| RunError::Setup(e.to_string());
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| setup(&e))?;
    let tally = Arc::new(Tally::default());
    let refreshes = tally.clone();
    let source = TokenSource::builder(config())
        .credentials(Credentials::RefreshToken(options.refresh_token.clone()))
        .refresher(OAuth2Refresher::with_client(http.clone(), options.grant()))
        .on_token_change(move |change| {
            if let TokenChange::Persist { .. } = change {
                refreshes.refreshes.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .map_err(|e| setup(&e))?;
    let client = AuthorizedClient::builder(source)
        .allow_origin(probe::origin_of(&options.resource).map_err(|e| setup(&e))?)
        .build()
        .map_err(|e| setup(&e))?;
    let url: Arc<str> = options.resource.as_str().into();
    let started = Instant::now();
    let end = match options.limit {
        Limit::Duration(d) => started + d,
        Limit::Requests(_) => started,
    };
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..options.concurrency {
        let (client, http, url, tally) = (client.clone(), http.clone(), url.clone(), tally.clone());
        let limit = options.limit;
        workers.spawn(async move {
            while tally.claim(limit, end) {
                match probe::tokio_get(&client, &http, &url).await {
                    Ok(answer) => tally.answer(
                        answer.status.is_success(),
                        answer.retried_401,
                        answer.status.as_u16(),
                    ),
                    Err(ProbeError::SignInRequired(message)) => {
                        tally.failure(&message);
                        return Some(message);
                    }
                    Err(ProbeError::Other(message)) => tally.failure(&message),
                }
            }
            None
        });
    }
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(Some(message)) => {
                workers.abort_all();
                return Err(RunError::SignInRequired {
                    message,
                    report: tally.report(options.runtime, started),
                });
            }
            Ok(None) => {}
            Err(error) if error.is_panic() => {
                tally.failure("a worker task panicked");
            }
            Err(_cancelled) => {}
        }
    }
    Ok((tally.report(options.runtime, started), tally.first_error()))
}

fn run_blocking(options: Options) -> Result<(Report, Option<String>), RunError> {
    use silent_refresh_ureq::{OAuth2Refresher, TokenChange, TokenSource};

    let setup = |e: &dyn fmt::Display| RunError::Setup(e.to_string());
    let tally = Arc::new(Tally::default());
    let refreshes = tally.clone();
    let refresher = OAuth2Refresher::builder(options.grant())
        .build()
        .map_err(|e| setup(&e))?;
    let source = Arc::new(
        TokenSource::builder(config())
            .credentials(Credentials::RefreshToken(options.refresh_token.clone()))
            .refresher(refresher)
            .on_token_change(move |change| {
                if let TokenChange::Persist { .. } = change {
                    refreshes.refreshes.fetch_add(1, Ordering::SeqCst);
                }
            })
            .build(),
    );
    let retries = Count401::default();
    let agent = probe::ureq_agent(source, &options.resource, REQUEST_TIMEOUT, retries.clone())
        .map_err(|e| setup(&e))?;
    let url: Arc<str> = options.resource.as_str().into();
    let started = Instant::now();
    let end = match options.limit {
        Limit::Duration(d) => started + d,
        Limit::Requests(_) => started,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (done, finished) = mpsc::channel::<Option<String>>();
    let mut spawned = 0;
    for i in 0..options.concurrency {
        let (agent, url, tally, stopped, done) = (
            agent.clone(),
            url.clone(),
            tally.clone(),
            stop.clone(),
            done.clone(),
        );
        let limit = options.limit;
        let worker = move || {
            let mut terminal = None;
            while !stopped.load(Ordering::SeqCst) && tally.claim(limit, end) {
                match probe::ureq_get(&agent, &url) {
                    Ok(status) => tally.answer(status.is_success(), false, status.as_u16()),
                    Err(ProbeError::SignInRequired(message)) => {
                        tally.failure(&message);
                        terminal = Some(message);
                        break;
                    }
                    Err(ProbeError::Other(message)) => tally.failure(&message),
                }
            }
            let _ = done.send(terminal);
        };
        match std::thread::Builder::new()
            .name(format!("oauth2-client-{i}"))
            .spawn(worker)
        {
            Ok(_) => spawned += 1,
            Err(error) => {
                stop.store(true, Ordering::SeqCst);
                return Err(RunError::Setup(format!("cannot start a thread: {error}")));
            }
        }
    }
    drop(done);
    for _ in 0..spawned {
        match finished.recv() {
            Ok(Some(message)) => {
                // Stop at once: the other threads see the flag after their request;
                // those waiting for a token were already rejected by the source.
                stop.store(true, Ordering::SeqCst);
                let mut report = tally.report(options.runtime, started);
                report.retried_401 = retries.count();
                return Err(RunError::SignInRequired { message, report });
            }
            Ok(None) => {}
            Err(_) => break,
        }
    }
    let mut report = tally.report(options.runtime, started);
    report.retried_401 = retries.count();
    Ok((report, tally.first_error()))
}

/// The whole tool: parses `args` (without the program name) and `env`, runs, writes
/// the JSON line to `stdout` and messages to `stderr`, and returns the exit status.
pub fn cli_main(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    let options = match parse(args, env) {
        Ok(Command::Help) => {
            let _ = write!(stdout, "{USAGE}");
            return 0;
        }
        Ok(Command::Run(options)) => options,
        Err(message) => {
            let _ = writeln!(stderr, "oauth2_client: {message}");
            return EXIT_USAGE;
        }
    };
    match run(options) {
        Ok((report, first_error)) => {
            let _ = writeln!(stdout, "{}", report.to_json());
            if report.refreshes > 0 {
                let _ = writeln!(
                    stderr,
                    "oauth2_client: note: {} refreshes; if the server rotates refresh tokens, the one in {ENV_REFRESH_TOKEN} is spent now",
                    report.refreshes
                );
            }
            if report.failed == 0 {
                0
            } else {
                let _ = writeln!(
                    stderr,
                    "oauth2_client: {} of {} requests failed; the first: {}",
                    report.failed,
                    report.requests,
                    first_error.as_deref().unwrap_or("(unknown)")
                );
                EXIT_FAILED
            }
        }
        Err(error @ RunError::Setup(_)) => {
            let _ = writeln!(stderr, "oauth2_client: {error}");
            EXIT_USAGE
        }
        Err(error @ RunError::SignInRequired { .. }) => {
            if let RunError::SignInRequired { report, .. } = &error {
                let _ = writeln!(stdout, "{}", report.to_json());
            }
            let _ = writeln!(stderr, "oauth2_client: {error}");
            EXIT_SIGN_IN
        }
    }
}
