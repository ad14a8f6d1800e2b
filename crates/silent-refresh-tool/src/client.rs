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

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use silent_refresh::{Config, Secret, Token};
use silent_refresh_oauth2::{ClientAuth, RefreshGrant};

use crate::dpop_key::{self, DpopChoice};
use crate::grants::{self, GrantChoice, Service};
use crate::measure::{self, Histogram, Mark, Percentiles, Timeline};
use crate::probe::{self, Count401, ProbeError};
use crate::resources::{Resource, Rotation};
use silent_refresh_testkit::server::{AuthServer, RedirectStatus, ServerConfig, Stats};

/// The environment variable holding the client secret (optional: without it the
/// client is a public client).
pub const ENV_CLIENT_SECRET: &str = "OAUTH_CLIENT_SECRET";
/// The environment variable holding the refresh token (required, unless
/// `--token-file` names a file that holds a session).
pub const ENV_REFRESH_TOKEN: &str = "OAUTH_REFRESH_TOKEN";

/// How long one resource request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a worker pauses after a failed request before its next one: a request
/// that fails fast (the token endpoint unreachable, say) would otherwise spin.
const FAILURE_PAUSE: Duration = Duration::from_millis(10);

/// Exit status: a usage error.
pub const EXIT_USAGE: i32 = 2;
/// Exit status: some requests failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit status: the refresh token is dead; sign in again.
pub const EXIT_SIGN_IN: i32 = 3;
/// Exit status: the token endpoint refused the client's configuration (a redirect,
/// a wrong token URL, client id or secret, authentication method, scope); the
/// refresh token is still good.
pub const EXIT_MISCONFIGURED: i32 = 4;

/// The help text.
pub const USAGE: &str = "\
oauth2_client: keep N authorized requests in flight against an OAuth 2.0 protected
resource, refreshing the access token with silent-refresh, and report one JSON line.

USAGE:
  OAUTH_CLIENT_SECRET=... OAUTH_REFRESH_TOKEN=... \\
  cargo run --release --example oauth2_client -- \\
    (--token-url URL | --issuer URL) --client-id ID --resource URL \\
    --runtime tokio|blocking --concurrency N (--duration SECS | --requests N) \\
    [--auth basic|post|none|private_key_jwt] [--private-key PATH] [--scope S] \\
    [--grant refresh_token|client_credentials|jwt_bearer|token_exchange] \\
    [--subject-token-file PATH] [--time-scale F] [--refresh-timeout DUR] \\
    [--token-file PATH] [--timeline PATH] [--dpop | --dpop-key PATH]

  cargo run --release --example oauth2_client -- --embedded-server \\
    [--token-lifetime DUR] [--token-delay DUR] [--failure-rate F] [--fault-seed N] \\
    [--redirect 307|308] [--outage AFTER+LENGTH] [--api-rejects-all] [--dpop] \\
    --runtime tokio|blocking --concurrency N (--duration SECS | --requests N)

  cargo run --example oauth2_client -- login|logout --help   (sign in, sign out)

OPTIONS:
  --token-url URL        the authorization server's token endpoint
  --issuer URL           instead of --token-url: the issuer, whose metadata names
                         the token endpoint
  --client-id ID         the client's id
  --resource URL         the protected resource to GET with the bearer token;
                         repeat it for several APIs of one session (requests go to
                         each in turn)
  --indicator URI        the RFC 8707 resource indicator of the --resource before it:
                         its requests get a token asked for that resource (without
                         one, a resource gets the session's default token)
  --runtime RUNTIME      tokio (silent-refresh-tokio, reqwest) or blocking
                         (silent-refresh-ureq, one thread per request in flight)
  --concurrency N        requests in flight at once (1 to 10000)
  --duration SECS        run this long (seconds, may be fractional), or
  --requests N           send this many requests in all
  --auth METHOD          how the client authenticates: basic (client_secret_basic,
                         default), post (client_secret_post), none (a public client:
                         its id in the body, no secret) or private_key_jwt (an
                         assertion signed with --private-key for each exchange)
  --grant GRANT          refresh_token (default: OAUTH_REFRESH_TOKEN or --token-file),
                         client_credentials, jwt_bearer (an assertion issued by the
                         client id, signed with --private-key) or token_exchange (the
                         token in --subject-token-file, read again for each exchange)
  --private-key PATH     a PEM private key (PKCS#8 RSA or P-256, or PKCS#1 RSA), for
                         private_key_jwt and jwt_bearer; with --embedded-server one
                         is generated when it is not given
  --subject-token-file PATH
                         the subject token of token_exchange (a Kubernetes projected
                         service-account token); with --embedded-server the server
                         writes and rotates it (a temporary file when not given)
  --scope S              the scope to ask for at each refresh
  --time-scale F         multiply every duration of the library's configuration
                         (refresh threshold, safety margin, refresh timeout,
                         request deadline, backoff, longest Retry-After) by F, to
                         replay a scenario faster (0.1: 10 times faster); default 1
  --refresh-timeout DUR  cancel a refresh exchange after DUR (after --time-scale);
                         default: the library's
  --token-file PATH      keep the session in PATH (JSON, created 0600): loaded at
                         start when it holds one (then OAUTH_REFRESH_TOKEN is not
                         needed, and ignored), and every rotated refresh token is
                         saved to it before it is used, so the next run continues
                         the session. A file this tool cannot read is an error,
                         and is never overwritten. Processes sharing one file
                         refresh one at a time, under the file's lock
  --redis-url URL        keep the session in Redis instead (redis://host:port/db):
                         processes and hosts sharing it refresh one at a time
                         under a lease in Redis, and adopt each other's tokens
  --redis-key KEY        the Redis key of the session (default derived from the
                         token URL and the client id)
  --dpop                 bind the session to a key (DPoP, RFC 9449): a proof on
                         every token and API request, `Authorization: DPoP`; a new
                         P-256 key, or the stored session's (--token-file, Redis);
                         with --embedded-server its DPoP mode is turned on too
  --dpop-key PATH        as --dpop, with the key in PATH (PKCS#8 PEM), made there
                         (0600) when the file does not exist; a stored session's
                         key still wins. Without either, a kept session bound to a
                         key (login --dpop) is proven with its stored key
  --timeline PATH        write a CSV timeline to PATH: one line per 100 ms with
                         t_ms,ok,failed,refreshes_started,refreshes_succeeded
  (a worker whose request failed without an HTTP answer pauses 10 ms before its
  next one, so that requests failing fast do not spin)
  -h, --help             this text

EMBEDDED SERVER (no --token-url, --client-id, --resource or environment needed):
  --embedded-server      start the embedded OAuth 2.0 server on 127.0.0.1 (rotating
                         refresh tokens, reuse detection revoking the grant), sign
                         in, and run against it; the JSON line gets its counts
  --token-lifetime DUR   how long its access tokens live (default 3s)
  --token-delay DUR      the slow mode: its token endpoint answers after DUR
                         (default 100ms)
  --failure-rate F       the faulty mode: this fraction (0 to 1, or 30%) of token
                         requests is answered 503, with no Retry-After
  --fault-seed N         which requests fail in the faulty mode (default 0)
  --redirect 307|308     the redirecting mode: its token endpoint redirects to a
                         second origin, which counts what it receives
  --outage AFTER+LENGTH  the outage: AFTER into the run its token endpoint refuses
                         connections for LENGTH (e.g. 2s+8s), then listens again;
                         the JSON line says how long after its return it issued
                         its first token (outage_recovery_ms)
  --api-rejects-all      the rejecting API: its resource answers 401 to every
                         token, even one just issued

  DUR is a number of seconds, or a number with a unit: 1.2s, 500ms, 2m.

ENVIRONMENT (secrets never go on the command line: other users can read it):
  OAUTH_REFRESH_TOKEN    the refresh token to start from (required unless
                         --token-file holds a session). A server that rotates
                         refresh tokens has spent it after the first refresh: keep
                         the session with --token-file.
  OAUTH_CLIENT_SECRET    the client secret (optional: a public client without it)

OUTPUT:
  one line on stdout at the end:
  {\"runtime\":...,\"requests\":...,\"ok\":...,\"failed\":...,\"retried_401\":...,\"refreshes\":...,\"elapsed_ms\":...,
   \"latency_ms\":{\"ok\":{\"p50\":...,\"p99\":...,\"max\":...},\"failed\":{...}}}
  (each latency null when there was no such request)
  with --embedded-server, one more field, the server's counts:
  \"server\":{\"token_requests\":...,\"max_refreshes_in_flight\":...,\"reuse_detected\":...,
  \"refreshes_served\":...,\"unavailable_503\":...,\"invalid_grant\":...,\"redirected\":...,
  \"second_origin_requests\":...,\"second_origin_connections\":...,\"grant_revoked\":...,
  \"outage_recovery_ms\":...}

EXIT STATUS:
  0  every request succeeded (failed == 0)
  1  some requests failed
  2  usage error, or the client could not be set up
  3  the refresh token is dead (e.g. invalid_grant): sign-in required; the tool
     stops at once
  4  the token endpoint refused the client's configuration (a redirect, a wrong
     token URL, client id or secret, --auth, --scope): fix it; the refresh token
     is still good; the tool stops at once
";

pub use silent_refresh_testkit::Runtime;

/// When the run ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// After this long (requests in flight then are completed).
    Duration(Duration),
    /// After this many requests in all.
    Requests(u64),
}

/// Timing knobs of the library's configuration, for replaying a scenario.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tuning {
    /// Every duration of the library's default configuration (refresh threshold,
    /// safety margin, refresh timeout, request deadline, backoff, longest
    /// `Retry-After`) is multiplied by this: 0.1 replays a scenario ten times faster.
    pub time_scale: f64,
    /// The refresh timeout, after the scaling (`None`: the library's, scaled).
    pub refresh_timeout: Option<Duration>,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            time_scale: 1.0,
            refresh_timeout: None,
        }
    }
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
    /// The refresh token to start from (`None`: the session in `token_file`).
    pub refresh_token: Option<Secret>,
    /// The resource to `GET`.
    pub resource: String,
    /// Every `--resource` in order, with its `--indicator` (rule 13: one session, a
    /// token per API); empty: `resource` alone, with the default token.
    pub resources: Vec<Resource>,
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
    /// The library's timing.
    pub tuning: Tuning,
    /// Where the session is kept between runs (`--token-file`): loaded at start when it
    /// holds one (it wins over `refresh_token`), and every new token saved to it.
    pub token_file: Option<PathBuf>,
    /// Keep the session in Redis instead (`--redis-url`, `--redis-key`): the URL and
    /// the key.
    pub redis: Option<(String, String)>,
    /// Where to write the CSV timeline (`--timeline`).
    pub timeline: Option<PathBuf>,
}

impl Options {
    /// The resources requests go to in turn, each with its indicator (see
    /// [`resources`](Self::resources)).
    #[must_use]
    pub fn targets(&self) -> Vec<Resource> {
        if self.resources.is_empty() {
            vec![Resource::new(self.resource.as_str())]
        } else {
            self.resources.clone()
        }
    }

    /// Whether the session is kept (in a file or in Redis) between runs.
    #[must_use]
    pub fn keeps_session(&self) -> bool {
        self.token_file.is_some() || self.redis.is_some()
    }

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

/// A run against the embedded server, which the run starts for itself.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// The server's mode: token lifetime, delay (slow mode), failure rate and seed
    /// (faulty mode), redirect (redirecting mode). Its client is the one registered
    /// in it.
    pub server: ServerConfig,
    /// Which adapter.
    pub runtime: Runtime,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// When to stop.
    pub limit: Limit,
    /// How the client authenticates.
    pub auth: ClientAuth,
    /// The scope of the sign-in, asked for again at each refresh.
    pub scope: Option<String>,
    /// The library's timing.
    pub tuning: Tuning,
    /// The grant and its keys (`--grant`, `--private-key`, `--subject-token-file`).
    pub service: Service,
    /// Where to write the CSV timeline (`--timeline`).
    pub timeline: Option<PathBuf>,
}

impl EmbeddedOptions {
    /// The embedded server's default mode, and the library's timing.
    #[must_use]
    pub fn new(runtime: Runtime, concurrency: usize, limit: Limit) -> Self {
        Self {
            server: ServerConfig::default(),
            runtime,
            concurrency,
            limit,
            auth: ClientAuth::Basic,
            scope: None,
            tuning: Tuning::default(),
            service: Service::default(),
            timeline: None,
        }
    }
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    /// Print the help.
    Help,
    /// Run against a server given on the command line.
    Run(Box<Options>),
    /// Start the embedded server and run against it.
    Embedded(Box<EmbeddedOptions>),
    /// Run against a server given on the command line with another grant or a signed
    /// client authentication (`--grant`, `--auth private_key_jwt`).
    RunService(Box<Options>, Box<Service>),
}

/// The options that take a value.
const VALUED: &[&str] = &[
    "--token-url",
    "--client-id",
    "--resource",
    "--runtime",
    "--concurrency",
    "--duration",
    "--requests",
    "--auth",
    "--scope",
    "--time-scale",
    "--refresh-timeout",
    "--token-lifetime",
    "--token-delay",
    "--failure-rate",
    "--fault-seed",
    "--redirect",
    "--token-file",
    "--redis-url",
    "--redis-key",
    "--timeline",
    "--outage",
    dpop_key::KEY_OPTION,
    grants::OPTIONS[0],
    grants::OPTIONS[1],
    grants::OPTIONS[2],
];

/// The options of the embedded server alone.
const SERVER_ONLY: &[&str] = &[
    "--token-lifetime",
    "--token-delay",
    "--failure-rate",
    "--fault-seed",
    "--redirect",
    "--outage",
];

/// The options that name a server, refused with `--embedded-server`.
const SERVER_NAMING: &[&str] = &[
    "--token-url",
    "--client-id",
    "--resource",
    "--token-file",
    "--redis-url",
    "--redis-key",
];

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
    let mut values: HashMap<&'static str, String> = HashMap::new();
    let mut embedded = false;
    let mut rejects_all = false;
    let mut dpop_flag = false;
    let (args, resources) = crate::resources::extract(args)?;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        if arg == "--embedded-server" {
            embedded = true;
            continue;
        }
        if arg == "--api-rejects-all" {
            rejects_all = true;
            continue;
        }
        if arg == dpop_key::FLAG {
            dpop_flag = true;
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        if name == "--client-secret" || name == "--refresh-token" {
            return Err(format!(
                "{name} is not accepted: secrets on the command line are visible to other users; set {ENV_CLIENT_SECRET} and {ENV_REFRESH_TOKEN} in the environment"
            ));
        }
        let Some(&key) = VALUED.iter().find(|&&known| known == name) else {
            return Err(format!("unknown argument `{arg}`; see --help"));
        };
        let value = match inline {
            Some(value) => value,
            None => args
                .next()
                .ok_or_else(|| format!("{name} needs a value; see --help"))?,
        };
        if values.insert(key, value).is_some() {
            return Err(format!("{name} is given twice"));
        }
    }
    if let Some(first) = resources.first() {
        values.insert("--resource", first.url.clone());
    }
    if embedded {
        if let Some(name) = SERVER_NAMING.iter().find(|n| values.contains_key(*n)) {
            return Err(format!(
                "{name} is not accepted with --embedded-server, which runs against a server of its own"
            ));
        }
    } else if let Some(name) = SERVER_ONLY.iter().find(|n| values.contains_key(*n)) {
        return Err(format!(
            "{name} configures the embedded server: give --embedded-server too"
        ));
    } else if rejects_all {
        return Err(
            "--api-rejects-all configures the embedded server: give --embedded-server too"
                .to_owned(),
        );
    }
    let mut take = |name: &str| values.remove(name);
    let required = |value: Option<String>, name: &str| {
        value.ok_or_else(|| format!("{name} is required; see --help"))
    };
    let runtime = match required(take("--runtime"), "--runtime")?.as_str() {
        "tokio" => Runtime::Tokio,
        "blocking" => Runtime::Blocking,
        other => {
            return Err(format!(
                "--runtime must be tokio or blocking, not `{other}`"
            ));
        }
    };
    let concurrency = required(take("--concurrency"), "--concurrency")?;
    let concurrency = concurrency
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| {
            format!("--concurrency must be a number from 1 to 10000, not `{concurrency}`")
        })?;
    let limit = match (take("--duration"), take("--requests")) {
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
    let auth = grants::parse_auth(take("--auth").as_deref())?;
    let mut service = Service::parse(
        take("--grant").as_deref(),
        auth,
        take("--private-key").as_deref(),
        take("--subject-token-file").as_deref(),
        embedded,
    )?;
    service.dpop = DpopChoice::from_args(dpop_flag, take(dpop_key::KEY_OPTION));
    let scope = take("--scope");
    let timeline = take("--timeline").map(PathBuf::from);
    let mut tuning = Tuning::default();
    if let Some(scale) = take("--time-scale") {
        tuning.time_scale = scale
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= 1000.0)
            .ok_or_else(|| {
                format!("--time-scale must be a number above 0, at most 1000, not `{scale}`")
            })?;
    }
    if let Some(timeout) = take("--refresh-timeout") {
        tuning.refresh_timeout = Some(
            parse_duration(&timeout)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    format!("--refresh-timeout must be a positive duration, not `{timeout}`")
                })?,
        );
    }
    if embedded {
        let mut server = ServerConfig {
            // Backoff, not Retry-After, paces the retries of the faulty mode, so
            // that --time-scale scales them too.
            retry_after: None,
            ..ServerConfig::default()
        };
        if let Some(lifetime) = take("--token-lifetime") {
            server.token_lifetime = parse_duration(&lifetime)
                .filter(|d| *d >= Duration::from_secs(1))
                .ok_or_else(|| {
                    format!(
                        "--token-lifetime must be a duration of at least 1s (expires_in is whole seconds), not `{lifetime}`"
                    )
                })?;
        }
        if let Some(delay) = take("--token-delay") {
            server.token_latency = parse_duration(&delay)
                .ok_or_else(|| format!("--token-delay must be a duration, not `{delay}`"))?;
        }
        if let Some(rate) = take("--failure-rate") {
            server.failure_rate = parse_fraction(&rate).ok_or_else(|| {
                format!(
                    "--failure-rate must be a fraction from 0 to 1 (or 0% to 100%), not `{rate}`"
                )
            })?;
        }
        if let Some(seed) = take("--fault-seed") {
            server.fault_seed = seed
                .parse::<u64>()
                .map_err(|_| format!("--fault-seed must be a whole number, not `{seed}`"))?;
        }
        if let Some(redirect) = take("--redirect") {
            server.token_redirect = Some(match redirect.as_str() {
                "307" => RedirectStatus::Temporary,
                "308" => RedirectStatus::Permanent,
                other => return Err(format!("--redirect must be 307 or 308, not `{other}`")),
            });
        }
        if let Some(outage) = take("--outage") {
            server.outage = Some(
                outage
                    .split_once('+')
                    .and_then(|(after, length)| {
                        Some((parse_duration(after)?, parse_duration(length)?))
                    })
                    .filter(|(_, length)| !length.is_zero())
                    .ok_or_else(|| {
                        format!("--outage must be AFTER+LENGTH, such as 2s+8s, not `{outage}`")
                    })?,
            );
        }
        server.resource_rejects_all = rejects_all;
        return Ok(Command::Embedded(Box::new(EmbeddedOptions {
            server,
            runtime,
            concurrency,
            limit,
            auth,
            scope,
            tuning,
            service,
            timeline,
        })));
    }
    let token_url = required(take("--token-url"), "--token-url")?;
    let client_id = required(take("--client-id"), "--client-id")?;
    let resource = required(take("--resource"), "--resource")?;
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let token_file = take("--token-file").map(PathBuf::from);
    let redis_key = take("--redis-key");
    let redis = match take("--redis-url") {
        Some(url) => {
            let key = redis_key
                .unwrap_or_else(|| format!("silent-refresh:session:{client_id}:{token_url}"));
            Some((url, key))
        }
        None if redis_key.is_some() => return Err("--redis-key needs --redis-url".to_owned()),
        None => None,
    };
    if token_file.is_some() && redis.is_some() {
        return Err("choose one place for the session: --token-file or --redis-url".to_owned());
    }
    let refresh_token = env(ENV_REFRESH_TOKEN).map(Secret::new);
    if (token_file.is_some() || redis.is_some()) && !service.needs_refresh_token() {
        return Err(format!(
            "--token-file and --redis-url keep a refresh-token session; --grant {} keeps none",
            service.grant.name()
        ));
    }
    if refresh_token.is_none()
        && token_file.is_none()
        && redis.is_none()
        && service.needs_refresh_token()
    {
        return Err(format!(
            "{ENV_REFRESH_TOKEN} is not set: put the refresh token in the environment, or name a file holding the session with --token-file"
        ));
    }
    let options = Box::new(Options {
        token_url,
        client_id,
        client_secret: env(ENV_CLIENT_SECRET).map(Secret::new),
        refresh_token,
        resource,
        resources,
        runtime,
        concurrency,
        limit,
        auth,
        scope,
        tuning,
        token_file,
        redis,
        timeline,
    });
    Ok(
        if service.grant == GrantChoice::RefreshToken
            && auth != ClientAuth::PrivateKeyJwt
            && !service.dpop.is_on()
        {
            Command::Run(options)
        } else {
            Command::RunService(options, Box::new(service))
        },
    )
}

/// `12`, `1.5s`, `500ms`, `2m`: a duration (a bare number is seconds).
#[must_use]
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let seconds_per_unit = match unit {
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        _ => return None,
    };
    let number = number.trim().parse::<f64>().ok()?;
    let seconds = number * seconds_per_unit;
    (seconds.is_finite() && (0.0..=1e7).contains(&seconds))
        .then(|| Duration::from_secs_f64(seconds))
}

/// `0.3` or `30%`: a fraction from 0 to 1.
fn parse_fraction(text: &str) -> Option<f64> {
    let text = text.trim();
    let fraction = match text.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().ok()? / 100.0,
        None => text.parse::<f64>().ok()?,
    };
    (0.0..=1.0).contains(&fraction).then_some(fraction)
}

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
enum Stop {
    SignIn(String),
    Misconfigured(String),
}

impl Stop {
    fn into_error(self, report: Report) -> RunError {
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
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    retried_401: AtomicU64,
    refreshes: AtomicU64,
    /// Requests claimed, for `--requests`.
    claimed: AtomicU64,
    first_error: Mutex<Option<String>>,
    latency_ok: Histogram,
    latency_failed: Histogram,
    timeline: Timeline,
}

impl Tally {
    /// Claims the next request; `false` when the run is over.
    fn claim(&self, limit: Limit, end: Instant) -> bool {
        match limit {
            Limit::Duration(_) => Instant::now() < end,
            Limit::Requests(n) => self.claimed.fetch_add(1, Ordering::SeqCst) < n,
        }
    }

    /// A request failed after `took`.
    fn failed_after(&self, took: Duration, error: &str) {
        self.latency_failed.record(took);
        self.failure(error);
    }

    fn failure(&self, error: &str) {
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

    fn answer(&self, took: Duration, ok: bool, retried: bool, status: u16) {
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
    fn event(&self, event: &silent_refresh::Event) {
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
    fn keep_timeline(&self, path: Option<&Path>) {
        if let Some(path) = path
            && let Err(error) = self.timeline.write(path)
        {
            eprintln!(
                "oauth2_client: cannot write the timeline to {}: {error}",
                path.display()
            );
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
            latency_ok: self.latency_ok.percentiles(),
            latency_failed: self.latency_failed.percentiles(),
        }
    }

    fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

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
    use silent_refresh_tokio::{OAuth2Refresher, TokenChange, TokenSource};

    let setup = |e: &dyn fmt::Display| RunError::Setup(e.to_string());
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| setup(&e))?;
    let tally = Arc::new(Tally::default());
    let refreshes = tally.clone();
    let config = config(options.tuning).map_err(|e| setup(&e))?;
    let exit_wait = config.refresh_timeout() + SAVE_WAIT;
    // The refresher's own HTTP client, built by the library (no redirect followed
    // with the credential), and the exchange's timeout the configuration's.
    let store = session_store(&options)?;
    let mut refresher = OAuth2Refresher::builder(service_grant(&options, service)?)
        .timeout(config.refresh_timeout());
    if let Some(dpop) = dpop_session(service, store.as_ref())? {
        refresher = refresher.dpop(dpop);
    }
    let refresher = refresher.build().map_err(|e| setup(&e))?;
    let mut builder = TokenSource::builder(config);
    if let Some(store) = store {
        builder = builder.store(store);
    }
    if let Some(credentials) = service.credentials(options.refresh_token.as_ref()) {
        builder = builder.credentials(credentials);
    }
    let source = builder
        .refresher(refresher)
        .on_token_change(move |change| {
            if let TokenChange::Persist { .. } = change {
                refreshes.refreshes.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .map_err(|e| setup(&e))?;
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
    use silent_refresh_ureq::{OAuth2Refresher, TokenChange, TokenSource};

    let setup = |e: &dyn fmt::Display| RunError::Setup(e.to_string());
    let tally = Arc::new(Tally::default());
    let refreshes = tally.clone();
    let config = config(options.tuning).map_err(|e| setup(&e))?;
    let exit_wait = config.refresh_timeout() + SAVE_WAIT;
    let store = session_store(&options)?;
    let mut refresher = OAuth2Refresher::builder(service_grant(&options, service)?)
        .timeout(config.refresh_timeout());
    if let Some(dpop) = dpop_session(service, store.as_ref())? {
        refresher = refresher.dpop(dpop);
    }
    let refresher = refresher.build().map_err(|e| setup(&e))?;
    let mut builder = TokenSource::builder(config);
    if let Some(store) = store {
        builder = builder.store(store);
    }
    if let Some(credentials) = service.credentials(options.refresh_token.as_ref()) {
        builder = builder.credentials(credentials);
    }
    let source = builder
        .refresher(refresher)
        .on_token_change(move |change| {
            if let TokenChange::Persist { .. } = change {
                refreshes.refreshes.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .map_err(|e| setup(&e))?;
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

/// Where `--token-file` or `--redis-url` keeps the session.
pub(crate) enum SessionStore {
    File(silent_refresh_tokio::FileStore),
    Redis(silent_refresh_redis::RedisStore),
}

impl SessionStore {
    fn inner(&self) -> &dyn silent_refresh_tokio::TokenStore {
        match self {
            SessionStore::File(store) => store,
            SessionStore::Redis(store) => store,
        }
    }
}

impl silent_refresh_tokio::TokenStore for SessionStore {
    fn load(&self) -> Result<Option<Token>, silent_refresh_driver::Error> {
        self.inner().load()
    }

    fn save(
        &self,
        token: &Token,
        from: Option<&Secret>,
    ) -> Result<silent_refresh_tokio::Saved, silent_refresh_driver::Error> {
        self.inner().save(token, from)
    }

    fn save_if_empty(
        &self,
        token: &Token,
    ) -> Result<silent_refresh_tokio::Saved, silent_refresh_driver::Error> {
        self.inner().save_if_empty(token)
    }

    fn forget(&self) -> Result<(), silent_refresh_driver::Error> {
        self.inner().forget()
    }

    fn lock_for_refresh(
        &self,
        timeout: Duration,
    ) -> Result<
        Option<Box<dyn silent_refresh_driver::store::StoreLock>>,
        silent_refresh_driver::Error,
    > {
        self.inner().lock_for_refresh(timeout)
    }
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
