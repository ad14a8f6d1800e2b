//! The logic of `oauth2_client`, a load and smoke tool for a real OAuth 2.0 server:
//! parse the command line and the environment, keep `N` authorized requests in
//! flight through the chosen adapter, and report one JSON line.
//!
//! The example's `main` is [`cli_main`]; tests call it, or [`run`] and
//! [`run_embedded`], directly.
//!
//! With `--embedded-server` it starts the [embedded server](silent_refresh_testkit::server) itself, in
//! the mode asked for (slow, faulty, redirecting), and adds the server's own counts
//! to the JSON line: the way to reproduce a scenario by hand.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use silent_refresh::{Config, Secret};
use silent_refresh_driver::driver::Spawn;
use silent_refresh_driver::exports::TokenChange;
use silent_refresh_driver::oauth2_refresher::{HttpClient, OAuth2Refresher};
use silent_refresh_driver::runtime::{Caller, RunsRefresher};
use silent_refresh_oauth2::RefreshGrant;
use silent_refresh_tokio::{Reqwest, Tokio};
use silent_refresh_ureq::{Threads, UreqAgent};

use crate::dpop_key::DpopChoice;
use crate::grants::{self, GrantChoice, Service};
use crate::probe::{self, Count401, ProbeError};
use crate::resources::Rotation;
use silent_refresh_testkit::server::AuthServer;

pub use crate::cli::{
    Command, ENV_CLIENT_SECRET, ENV_REFRESH_TOKEN, EXIT_FAILED, EXIT_MISCONFIGURED, EXIT_SIGN_IN,
    EXIT_USAGE, EmbeddedOptions, Limit, Options, Runtime, Tuning, USAGE, parse, parse_duration,
};
pub use crate::report::{Report, RunError, ServerReport};
use crate::report::{Stop, Tally};
use crate::session_store::SessionStore;

/// How long one resource request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a worker pauses after a failed request before its next one: a request
/// that fails fast (the token endpoint unreachable, say) would otherwise spin.
const FAILURE_PAUSE: Duration = Duration::from_millis(10);

/// The library's configuration for the tool: the defaults scaled by
/// `tuning.time_scale`, the refresh timeout asked for, and a jitter seed of this
/// process's own.
///
/// # Errors
///
/// When the library refuses the result.
pub fn config(tuning: Tuning) -> Result<Config, String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = u64::from(std::process::id()) << 32 | u64::from(nanos);
    let defaults = Config::default();
    let scale = |d: Duration| d.mul_f64(tuning.time_scale);
    let mut builder = Config::builder().seed(seed);
    if (tuning.time_scale - 1.0).abs() > f64::EPSILON {
        builder = builder
            .refresh_threshold(scale(defaults.refresh_threshold()))
            .safety_margin(scale(defaults.safety_margin()))
            .refresh_timeout(scale(defaults.refresh_timeout()))
            .request_timeout(scale(defaults.request_timeout()))
            .backoff_initial(scale(defaults.backoff_initial()))
            .backoff_max(scale(defaults.backoff_max()))
            .max_retry_after(scale(defaults.max_retry_after()));
    }
    if let Some(timeout) = tuning.refresh_timeout {
        builder = builder.refresh_timeout(timeout);
    }
    builder.build().map_err(|e| e.to_string())
}

/// Runs the load: `options.concurrency` requests in flight until the limit, or until
/// the credentials turn out dead.
///
/// # Errors
///
/// [`RunError::SignInRequired`] within a second or two of a terminal refresh
/// failure, [`RunError::Misconfigured`] as soon as the token endpoint refuses the
/// client's configuration, [`RunError::Setup`] when the client cannot be built.
pub fn run(options: Options) -> Result<(Report, Option<String>), RunError> {
    run_with(options, &Service::default())
}

/// [`run`] with another grant or client authentication ([`Service`]).
///
/// # Errors
///
/// As [`run`].
pub fn run_with(options: Options, service: &Service) -> Result<(Report, Option<String>), RunError> {
    match options.runtime {
        Runtime::Tokio => run_tokio(options, service),
        Runtime::Blocking => run_blocking(options, service),
    }
}

/// The grant of `options` and `service`.
fn service_grant(options: &Options, service: &Service) -> Result<RefreshGrant, RunError> {
    service
        .grant(
            &options.token_url,
            &options.client_id,
            options.client_secret.as_ref(),
            options.auth,
            options.scope.as_deref(),
        )
        .map_err(RunError::Setup)
}

fn run_tokio(options: Options, service: &Service) -> Result<(Report, Option<String>), RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Setup(format!("cannot start a tokio runtime: {e}")))?;
    let result = runtime.block_on(tokio_load(options, service));
    // Requests still in flight after a stop are not waited for.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

async fn tokio_load(
    options: Options,
    service: &Service,
) -> Result<(Report, Option<String>), RunError> {
    let setup = |e: &dyn fmt::Display| RunError::Setup(e.to_string());
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| setup(&e))?;
    let tally = Arc::new(Tally::default());
    let (source, exit_wait) = run_source::<Tokio, Reqwest>(&options, service, &tally)?;
    let session = source.clone();
    let mut events = source.subscribe();
    let marks = tally.clone();
    let _timeline = tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match events.recv().await {
                Ok(event) => marks.event(&event),
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            }
        }
    });
    let client =
        crate::resources::tokio_client(source, &options.targets()).map_err(|e| setup(&e))?;
    let urls = Arc::new(Rotation::new(&options.targets()));
    let started = Instant::now();
    let end = match options.limit {
        Limit::Duration(d) => started + d,
        Limit::Requests(_) => started,
    };
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..options.concurrency {
        let (client, http, urls, tally) =
            (client.clone(), http.clone(), urls.clone(), tally.clone());
        let limit = options.limit;
        workers.spawn(async move {
            while tally.claim(limit, end) {
                let sent = Instant::now();
                let result = probe::tokio_get(&client, &http, &urls.next()).await;
                let took = sent.elapsed();
                match result {
                    Ok(answer) => tally.answer(
                        took,
                        answer.status.is_success(),
                        answer.retried_401,
                        answer.status.as_u16(),
                    ),
                    Err(ProbeError::SignInRequired(message)) => {
                        tally.failed_after(took, &message);
                        return Some(Stop::SignIn(message));
                    }
                    Err(ProbeError::Misconfigured(message)) => {
                        tally.failed_after(took, &message);
                        return Some(Stop::Misconfigured(message));
                    }
                    Err(ProbeError::Other(message)) => {
                        tally.failed_after(took, &message);
                        tokio::time::sleep(FAILURE_PAUSE).await;
                    }
                }
            }
            None
        });
    }
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(Some(stop)) => {
                workers.abort_all();
                let report = tally.report(options.runtime, started);
                if options.keeps_session() {
                    let _ = session.shutdown(exit_wait).await;
                }
                tally.keep_timeline(options.timeline.as_deref());
                return Err(stop.into_error(report));
            }
            Ok(None) => {}
            Err(error) if error.is_panic() => {
                tally.failure("a worker task panicked");
            }
            Err(_cancelled) => {}
        }
    }
    let report = tally.report(options.runtime, started);
    if options.keeps_session() {
        let _ = session.shutdown(exit_wait).await;
    }
    tally.keep_timeline(options.timeline.as_deref());
    Ok((report, tally.first_error()))
}

/// How long a run with `--token-file` (or `--redis-url`) waits at its end, beyond the
/// refresh exchange's own timeout, for the newest token to be saved: `shutdown` waits
/// for an exchange still on the wire (its answer holds the rotated refresh token the
/// next run needs) and for the save, and starts no refresh after it.
const SAVE_WAIT: Duration = Duration::from_secs(3);

fn run_blocking(options: Options, service: &Service) -> Result<(Report, Option<String>), RunError> {
    let setup = |e: &dyn fmt::Display| RunError::Setup(e.to_string());
    let tally = Arc::new(Tally::default());
    let (source, exit_wait) = run_source::<Threads, UreqAgent>(&options, service, &tally)?;
    let retries = Count401::default();
    let session = source.clone();
    let events = source.subscribe();
    let marks = tally.clone();
    // Ends when the source (and so the channel's sender) is gone.
    std::thread::Builder::new()
        .name("oauth2-client-timeline".to_owned())
        .spawn(move || {
            for event in events {
                marks.event(&event);
            }
        })
        .map_err(|e| setup(&e))?;
    let auth = crate::resources::ureq_auth(source, &options.targets()).map_err(|e| setup(&e))?;
    let agent = probe::ureq_agent_with(auth, REQUEST_TIMEOUT, retries.clone());
    let urls = Arc::new(Rotation::new(&options.targets()));
    let started = Instant::now();
    let end = match options.limit {
        Limit::Duration(d) => started + d,
        Limit::Requests(_) => started,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (done, finished) = mpsc::channel::<Option<Stop>>();
    let mut spawned = 0;
    for i in 0..options.concurrency {
        let (agent, urls, tally, stopped, done) = (
            agent.clone(),
            urls.clone(),
            tally.clone(),
            stop.clone(),
            done.clone(),
        );
        let limit = options.limit;
        let worker = move || {
            let mut terminal = None;
            while !stopped.load(Ordering::SeqCst) && tally.claim(limit, end) {
                let sent = Instant::now();
                let result = probe::ureq_get(&agent, &urls.next());
                let took = sent.elapsed();
                match result {
                    Ok(status) => tally.answer(took, status.is_success(), false, status.as_u16()),
                    Err(ProbeError::SignInRequired(message)) => {
                        tally.failed_after(took, &message);
                        terminal = Some(Stop::SignIn(message));
                        break;
                    }
                    Err(ProbeError::Misconfigured(message)) => {
                        tally.failed_after(took, &message);
                        terminal = Some(Stop::Misconfigured(message));
                        break;
                    }
                    Err(ProbeError::Other(message)) => {
                        tally.failed_after(took, &message);
                        std::thread::sleep(FAILURE_PAUSE);
                    }
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
            Ok(Some(terminal)) => {
                // Stop at once: the other threads see the flag after their request;
                // those waiting for a token were already rejected by the source.
                stop.store(true, Ordering::SeqCst);
                let mut report = tally.report(options.runtime, started);
                report.retried_401 = retries.count();
                if options.keeps_session() {
                    let _ = session.shutdown(exit_wait);
                }
                tally.keep_timeline(options.timeline.as_deref());
                return Err(terminal.into_error(report));
            }
            Ok(None) => {}
            Err(_) => break,
        }
    }
    let mut report = tally.report(options.runtime, started);
    report.retried_401 = retries.count();
    if options.keeps_session() {
        let _ = session.shutdown(exit_wait);
    }
    tally.keep_timeline(options.timeline.as_deref());
    Ok((report, tally.first_error()))
}

/// The run's token source on runtime `Rt`, the same for both runtimes: the OAuth
/// refresher over the adapter's client `C` (built by the library: no redirect followed
/// with the credential; the exchange's timeout the configuration's), the session's
/// store and DPoP key, the credentials given, and a count of the tokens it persists.
/// With it, how long the run waits at exit for a refresh on the wire and its save.
fn run_source<Rt, C>(
    options: &Options,
    service: &Service,
    tally: &Arc<Tally>,
) -> Result<(silent_refresh_driver::TokenSource<Rt>, Duration), RunError>
where
    Rt: Caller + Default + Spawn + RunsRefresher<OAuth2Refresher<C>>,
    C: HttpClient,
{
    let setup = |e: &dyn fmt::Display| RunError::Setup(e.to_string());
    let config = config(options.tuning).map_err(|e| setup(&e))?;
    let exit_wait = config.refresh_timeout() + SAVE_WAIT;
    let store = session_store(options)?;
    let mut refresher = OAuth2Refresher::<C>::builder(service_grant(options, service)?)
        .timeout(config.refresh_timeout());
    if let Some(dpop) = dpop_session(service, store.as_ref())? {
        refresher = refresher.dpop(dpop);
    }
    let refresher = refresher.build().map_err(|e| setup(&e))?;
    let mut builder = silent_refresh_driver::TokenSource::<Rt>::builder(config);
    if let Some(store) = store {
        builder = builder.store(store);
    }
    if let Some(credentials) = service.credentials(options.refresh_token.as_ref()) {
        builder = builder.credentials(credentials);
    }
    let refreshes = tally.clone();
    let source = builder
        .refresher(refresher)
        .on_token_change(move |change| {
            if let TokenChange::Persist { .. } = change {
                refreshes.refreshes.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .map_err(|e| setup(&e))?;
    Ok((source, exit_wait))
}

/// The store of `--token-file` or `--redis-url`, once it is known to hold a session
/// this tool can read (or to be empty while `OAUTH_REFRESH_TOKEN` gives one): a store
/// it cannot read stops the run before anything is sent, and is left as it is.
fn session_store(options: &Options) -> Result<Option<SessionStore>, RunError> {
    use silent_refresh_tokio::{FileStore, TokenStore};

    let (store, name) = match (&options.token_file, &options.redis) {
        (Some(path), _) => (
            SessionStore::File(FileStore::new(path)),
            path.display().to_string(),
        ),
        (None, Some((url, key))) => {
            let store = silent_refresh_redis::RedisStore::builder(url, key)
                .build()
                .map_err(|error| RunError::Setup(error.to_string()))?;
            let name = store.describe().to_owned();
            (SessionStore::Redis(store), name)
        }
        (None, None) => return Ok(None),
    };
    match store.load() {
        Ok(Some(_)) => Ok(Some(store)),
        Ok(None) if options.refresh_token.is_some() => Ok(Some(store)),
        Ok(None) => Err(RunError::Setup(format!(
            "{name} holds no session yet: put the refresh token in {ENV_REFRESH_TOKEN} for the first run"
        ))),
        Err(error) => Err(RunError::Setup(error.to_string())),
    }
}

/// The DPoP session of a run: `--dpop` or `--dpop-key`; without them, a new key when
/// the kept session is bound to one (the stored key then replaces it), so a session
/// signed in with `login --dpop` goes on being proven by runs that do not say `--dpop`.
fn dpop_session(
    service: &Service,
    store: Option<&SessionStore>,
) -> Result<Option<silent_refresh_oauth2::dpop::DpopSession>, RunError> {
    use silent_refresh_tokio::TokenStore;
    let bound = || {
        store
            .and_then(|store| store.load().ok().flatten())
            .is_some_and(|token| token.dpop_key.is_some())
    };
    let choice = if !service.dpop.is_on() && bound() {
        &DpopChoice::NewKey
    } else {
        &service.dpop
    };
    choice.session().map_err(RunError::Setup)
}

/// What a run against the embedded server gives.
#[derive(Debug)]
pub struct EmbeddedOutcome {
    /// The run's result, as [`run`] gives it.
    pub result: Result<(Report, Option<String>), RunError>,
    /// What the server counted meanwhile.
    pub server: ServerReport,
}

/// Starts the embedded server in the mode `options.server` asks for, signs in, runs
/// the load against it, and takes the server's counts.
///
/// # Errors
///
/// [`RunError::Setup`] when the server cannot start; the run's own errors are in
/// [`EmbeddedOutcome::result`].
pub fn run_embedded(options: EmbeddedOptions) -> Result<EmbeddedOutcome, RunError> {
    let mut server_config = options.server.clone();
    options.service.configure_server(&mut server_config);
    let server = AuthServer::start(server_config)
        .map_err(|e| RunError::Setup(format!("cannot start the embedded OAuth server: {e}")))?;
    let grant = server.sign_in(options.scope.as_deref());
    let config = server.config();
    let mut service = options.service.clone();
    // Token exchange: the server writes the projected token and rotates it.
    let _rotator = match service.grant {
        GrantChoice::TokenExchange => {
            let (rotator, path) = grants::Rotator::start(
                &server,
                service.subject_token_file.as_deref(),
                config.token_lifetime * 2,
            )
            .map_err(RunError::Setup)?;
            service.subject_token_file = Some(path);
            Some(rotator)
        }
        _ => None,
    };
    let result = run_with(
        Options {
            token_url: server.token_url(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone().map(Secret::new),
            refresh_token: Some(Secret::new(grant.refresh_token.as_str())),
            resource: server.resource_url(),
            resources: Vec::new(),
            runtime: options.runtime,
            concurrency: options.concurrency,
            limit: options.limit,
            auth: options.auth,
            scope: options.scope,
            tuning: options.tuning,
            token_file: None,
            redis: None,
            timeline: options.timeline,
        },
        &service,
    );
    let server = ServerReport {
        stats: server.take_stats(),
        grant_revoked: server.is_revoked(grant.id),
        outage_recovery: server.outage_recovery(),
    };
    Ok(EmbeddedOutcome { result, server })
}

/// What to tell the user after `refreshes` refreshes (never a secret): where the
/// session is kept (`--token-file`, or Redis's key), if anywhere.
fn spent_note(refreshes: u64, token_file: Option<&Path>, redis_key: Option<&str>) -> String {
    match (token_file, redis_key) {
        (Some(path), _) => format!(
            "oauth2_client: note: {refreshes} refreshes; the newest session is saved in {}: run again with --token-file to continue it",
            path.display()
        ),
        (None, Some(key)) => format!(
            "oauth2_client: note: {refreshes} refreshes; the newest session is saved in Redis under `{key}`: run again with --redis-url to continue it"
        ),
        (None, None) => format!(
            "oauth2_client: note: {refreshes} refreshes; if the server rotates refresh tokens, the one in {ENV_REFRESH_TOKEN} is spent now (keep the session with --token-file)"
        ),
    }
}

/// For tests that run the tool as a child process (the test binary started again):
/// if the environment variable `var` holds the tool's arguments (one per line), runs
/// the tool with them and the real environment and exits with its status; otherwise
/// returns, so the test does nothing when it is not the child.
pub fn run_as_child(var: &str) {
    let Ok(args) = std::env::var(var) else {
        return;
    };
    let code = cli_main(
        args.lines().map(str::to_owned),
        |name| std::env::var(name).ok(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(code);
}

/// The whole tool: parses `args` (without the program name) and `env`, runs, writes
/// the JSON line to `stdout` and messages to `stderr`, and returns the exit status.
pub fn cli_main(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    let args: Vec<String> = args.into_iter().collect();
    if crate::login::is_subcommand(&args) {
        return crate::login::main(args, env, stdout, stderr);
    }
    let args = match crate::login::resolve_issuer(args) {
        Ok(args) => args,
        Err(message) => {
            let _ = writeln!(stderr, "oauth2_client: {message}");
            return EXIT_USAGE;
        }
    };
    let mut token_file: Option<PathBuf> = None;
    let mut redis_key: Option<String> = None;
    let (result, server) = match parse(args, env) {
        Ok(Command::Help) => {
            let _ = write!(stdout, "{USAGE}");
            return 0;
        }
        Ok(Command::Run(options)) => {
            token_file.clone_from(&options.token_file);
            redis_key = options.redis.as_ref().map(|(_, key)| key.clone());
            (run(*options), None)
        }
        Ok(Command::RunService(options, service)) => {
            token_file.clone_from(&options.token_file);
            redis_key = options.redis.as_ref().map(|(_, key)| key.clone());
            (run_with(*options, &service), None)
        }
        Ok(Command::Embedded(options)) => match run_embedded(*options) {
            Ok(outcome) => (outcome.result, Some(outcome.server)),
            Err(error) => (Err(error), None),
        },
        Err(message) => {
            let _ = writeln!(stderr, "oauth2_client: {message}");
            return EXIT_USAGE;
        }
    };
    let line = |report: &Report| match &server {
        Some(server) => report.to_json_with_server(server),
        None => report.to_json(),
    };
    match result {
        Ok((report, first_error)) => {
            let _ = writeln!(stdout, "{}", line(&report));
            if report.refreshes > 0 && server.is_none() {
                let _ = writeln!(
                    stderr,
                    "{}",
                    spent_note(
                        report.refreshes,
                        token_file.as_deref(),
                        redis_key.as_deref()
                    )
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
        Err(error) => {
            if let Some(report) = error.report() {
                let _ = writeln!(stdout, "{}", line(report));
            }
            let _ = writeln!(stderr, "oauth2_client: {error}");
            match error {
                RunError::Misconfigured { .. } => EXIT_MISCONFIGURED,
                _ => EXIT_SIGN_IN,
            }
        }
    }
}
