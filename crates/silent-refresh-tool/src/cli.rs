//! The command line of `oauth2_client`: its words and usage, its exit codes, the
//! environment it reads, and [`parse`], which turns them into a [`Command`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use silent_refresh::Secret;
use silent_refresh_oauth2::{ClientAuth, RefreshGrant};

use crate::dpop_key::{self, DpopChoice};
use crate::grants::{self, GrantChoice, Service};
use crate::resources::Resource;
use silent_refresh_testkit::server::{RedirectStatus, ServerConfig};

/// The environment variable holding the client secret (optional: without it the
/// client is a public client).
pub const ENV_CLIENT_SECRET: &str = "OAUTH_CLIENT_SECRET";
/// The environment variable holding the refresh token (required, unless
/// `--token-file` names a file that holds a session).
pub const ENV_REFRESH_TOKEN: &str = "OAUTH_REFRESH_TOKEN";

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
