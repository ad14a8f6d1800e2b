//! `oauth2_client login` and `oauth2_client logout`: start a session with an issuer
//! (the device flow or the browser), keep it in a file or in Redis, and end it at the
//! server; and `--issuer` in place of `--token-url` for the load run
//! ([`resolve_issuer`]). Everything goes through the adapters' sign-in flows
//! (`silent_refresh_tokio::signin`, `silent_refresh_ureq::signin`), in the runtime
//! `--runtime` names.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use silent_refresh::{Config, Secret, Status};
use silent_refresh_driver::driver::Spawn;
use silent_refresh_driver::oauth2_refresher::{HttpClient, OAuth2Refresher};

use crate::dpop_key::DpopChoice;
use silent_refresh_driver::runtime::{Caller, RunsRefresher, SendsWith};
use silent_refresh_driver::{Error, TokenSource, signin};
use silent_refresh_oauth2::{ClientAuth, Metadata, RefreshGrant};
use silent_refresh_tokio::{Browser, SignedOut};

use crate::cli::{ENV_CLIENT_SECRET, EXIT_USAGE, Runtime};
use crate::session_store::SessionStore;
use crate::{grants, shell_words};

/// Exit status: the sign-in did not complete (denied, expired, timed out, a wrong
/// `state`…), or the sign-out could not revoke the session at the server.
pub const EXIT_NOT_DONE: i32 = 1;

/// How long `login` waits for the new session to be saved, and `logout` for the end.
const SAVE_WAIT: Duration = Duration::from_secs(10);

/// The help of the subcommands.
pub const USAGE: &str = "\
oauth2_client login: sign in with an issuer and keep the session; logout: end it.

USAGE:
  cargo run --example oauth2_client -- login --issuer URL --client-id ID \\
    (--device | --browser [--browser-command CMD] [--redirect-path PATH]) \\
    [--scope S] [--auth none|basic|post] [--runtime tokio|blocking] \\
    [--dpop | --dpop-key PATH] (--token-file PATH | --redis-url URL [--redis-key KEY])

  cargo run --example oauth2_client -- logout --issuer URL --client-id ID \\
    [--auth none|basic|post] [--runtime tokio|blocking] \\
    (--token-file PATH | --redis-url URL [--redis-key KEY])

  Then run the load with the same --issuer, --client-id and --token-file (or
  --redis-url), and no refresh token: it refreshes the saved session silently.

OPTIONS:
  --issuer URL           the issuer (its metadata names the endpoints)
  --client-id ID         the client's id, registered with the issuer
  --device               the device flow: prints a code and a URL to open anywhere,
                         and waits until the user approves it
  --browser              the browser sign-in (PKCE, a redirect to
                         http://127.0.0.1:PORT/callback): prints the URL and opens it
  --browser-command CMD  the command that opens the URL (split into words as a shell
                         would; the URL is its last argument); default: xdg-open,
                         open on macOS, cmd /c start on Windows
  --redirect-path PATH   the path of the registered redirect URI (default /callback)
  --scope S              the scope to ask for (e.g. \"openid offline_access\")
  --auth METHOD          none (a public client), basic or post; default: none
                         without OAUTH_CLIENT_SECRET, else what the issuer lists
  --runtime RUNTIME      blocking (silent-refresh-ureq, default) or tokio
  --token-file PATH      keep the session in PATH (JSON, created 0600)
  --redis-url URL        keep the session in Redis instead
  --redis-key KEY        its key (default derived from the token endpoint and the
                         client id, as the load run's)
  --dpop                 bind the session to a new P-256 key (DPoP, RFC 9449) from
                         its first token; the key is saved with the session, and
                         the load run proves with it (give it --dpop too)
  --dpop-key PATH        as --dpop, with the key in PATH (PKCS#8 PEM, made there
                         0600 when missing)

ENVIRONMENT:
  OAUTH_CLIENT_SECRET    the client secret of a confidential client (optional)

EXIT STATUS:
  0  login: signed in, and the session is saved; logout: the session is revoked at
     the server (or there was none, or the server has no revocation endpoint) and
     forgotten
  1  login: the sign-in did not complete (the user denied it, the code expired, the
     browser did not come back in time, a wrong state…); logout: the session is
     forgotten here, but the server did not confirm the revocation
  2  usage error, or the client could not be set up (the issuer's metadata, the
     store)
";

/// Which sign-in `login` runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flow {
    /// The device authorization grant.
    Device,
    /// The browser sign-in: the command that opens the URL (`None`: the platform's),
    /// and the redirect URI's path.
    Browser {
        /// `--browser-command`, split into words.
        command: Option<Vec<String>>,
        /// `--redirect-path`.
        redirect_path: Option<String>,
    },
}

/// What `login` and `logout` were asked. `Debug` hides the client secret.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// The issuer.
    pub issuer: String,
    /// The client's id.
    pub client_id: String,
    /// The client secret (`None`: a public client).
    pub client_secret: Option<Secret>,
    /// `--auth` (`None`: public without a secret, else as the metadata lists).
    pub auth: Option<ClientAuth>,
    /// Which adapter.
    pub runtime: Runtime,
    /// The scope to ask for.
    pub scope: Option<String>,
    /// `login`'s flow (`None`: `logout`).
    pub flow: Option<Flow>,
    /// `--token-file`.
    pub token_file: Option<PathBuf>,
    /// `--redis-url`, and `--redis-key` if given.
    pub redis: Option<(String, Option<String>)>,
    /// `--dpop` or `--dpop-key PATH`: the session bound to a key from its first token.
    pub dpop: DpopChoice,
}

impl SessionOptions {
    /// The client at the token endpoint `metadata` names.
    fn client(&self, metadata: &Metadata) -> RefreshGrant {
        let public = metadata.grant(self.client_id.as_str());
        match (&self.client_secret, self.auth) {
            (Some(_), Some(ClientAuth::None)) | (None, _) => public,
            (Some(secret), auth) => public
                .client_secret(secret.clone())
                .auth(auth.unwrap_or_else(|| metadata.client_auth(true))),
        }
    }

    /// The session's store, and how to name it to the user.
    fn store(&self, metadata: &Metadata) -> Result<(SessionStore, String), String> {
        use silent_refresh_tokio::FileStore;
        match (&self.token_file, &self.redis) {
            (Some(path), _) => Ok((
                SessionStore::File(FileStore::new(path)),
                path.display().to_string(),
            )),
            (None, Some((url, key))) => {
                let key = key.clone().unwrap_or_else(|| {
                    format!(
                        "silent-refresh:session:{}:{}",
                        self.client_id,
                        metadata.token_endpoint()
                    )
                });
                let store = silent_refresh_redis::RedisStore::builder(url, &key)
                    .build()
                    .map_err(|e| e.to_string())?;
                Ok((SessionStore::Redis(store), format!("Redis under `{key}`")))
            }
            (None, None) => Err("--token-file PATH or --redis-url URL is required".to_owned()),
        }
    }
}

/// Whether `args` (without the program name) start with `login` or `logout`.
#[must_use]
pub fn is_subcommand(args: &[String]) -> bool {
    matches!(args.first().map(String::as_str), Some("login" | "logout"))
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    /// Print the help.
    Help,
    /// `login` or `logout` (`flow` says which).
    Run(Box<SessionOptions>),
}

/// The options that take a value.
const VALUED: &[&str] = &[
    "--issuer",
    "--client-id",
    "--scope",
    "--browser-command",
    "--redirect-path",
    "--auth",
    "--runtime",
    "--token-file",
    "--redis-url",
    "--redis-key",
    crate::dpop_key::KEY_OPTION,
];

/// Parses `login …` or `logout …` (the subcommand first) and reads the client secret
/// from `env`.
///
/// # Errors
///
/// A message saying what is wrong with the command line.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, String> {
    let mut args = args.into_iter();
    let login = match args.next().as_deref() {
        Some("login") => true,
        Some("logout") => false,
        _ => return Err("expected `login` or `logout`".to_owned()),
    };
    let mut values = std::collections::HashMap::new();
    let (mut device, mut browser, mut dpop) = (false, false, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--device" if login => device = true,
            "--browser" if login => browser = true,
            crate::dpop_key::FLAG => dpop = true,
            _ => {
                let (name, inline) = match arg.split_once('=') {
                    Some((name, value)) if name.starts_with("--") => (name, Some(value)),
                    _ => (arg.as_str(), None),
                };
                let Some(&key) = VALUED.iter().find(|&&known| known == name) else {
                    return Err(format!("unknown argument `{arg}`; see `login --help`"));
                };
                let value = match inline {
                    Some(value) => value.to_owned(),
                    None => args
                        .next()
                        .ok_or_else(|| format!("{name} needs a value; see `login --help`"))?,
                };
                if values.insert(key, value).is_some() {
                    return Err(format!("{name} is given twice"));
                }
            }
        }
    }
    let mut take = |name: &str| values.remove(name);
    let required = |value: Option<String>, name: &str| {
        value.ok_or_else(|| format!("{name} is required; see `login --help`"))
    };
    let issuer = required(take("--issuer"), "--issuer")?;
    let client_id = required(take("--client-id"), "--client-id")?;
    let runtime = match take("--runtime").as_deref() {
        None | Some("blocking") => Runtime::Blocking,
        Some("tokio") => Runtime::Tokio,
        Some(other) => {
            return Err(format!(
                "--runtime must be tokio or blocking, not `{other}`"
            ));
        }
    };
    let auth = match take("--auth") {
        None => None,
        Some(auth) => match grants::parse_auth(Some(&auth))? {
            ClientAuth::PrivateKeyJwt => {
                return Err("login and logout take --auth none, basic or post".to_owned());
            }
            auth => Some(auth),
        },
    };
    let command = take("--browser-command");
    let redirect_path = take("--redirect-path");
    let flow = match (login, device, browser) {
        (false, ..) => None,
        (true, true, true) | (true, false, false) => {
            return Err("login takes --device or --browser (one of them)".to_owned());
        }
        (true, true, false) => Some(Flow::Device),
        (true, false, true) => Some(Flow::Browser {
            command: command
                .clone()
                .as_deref()
                .map(shell_words::split)
                .transpose()
                .map_err(|e| format!("--browser-command: {e}"))?,
            redirect_path: redirect_path.clone(),
        }),
    };
    if !matches!(flow, Some(Flow::Browser { .. })) && (command.is_some() || redirect_path.is_some())
    {
        return Err("--browser-command and --redirect-path go with login --browser".to_owned());
    }
    let token_file = take("--token-file").map(PathBuf::from);
    let redis_key = take("--redis-key");
    let redis = match take("--redis-url") {
        Some(url) => Some((url, redis_key)),
        None if redis_key.is_some() => return Err("--redis-key needs --redis-url".to_owned()),
        None => None,
    };
    match (&token_file, &redis) {
        (Some(_), Some(_)) => {
            return Err("choose one place for the session: --token-file or --redis-url".to_owned());
        }
        (None, None) => {
            return Err("--token-file PATH or --redis-url URL is required".to_owned());
        }
        _ => {}
    }
    if let Some(Flow::Browser {
        command: Some(words),
        ..
    }) = &flow
        && words.is_empty()
    {
        return Err("--browser-command is empty".to_owned());
    }
    Ok(Command::Run(Box::new(SessionOptions {
        issuer,
        client_id,
        client_secret: env(ENV_CLIENT_SECRET)
            .filter(|v| !v.is_empty())
            .map(Secret::new),
        auth,
        runtime,
        scope: take("--scope"),
        flow,
        token_file,
        redis,
        dpop: DpopChoice::from_args(dpop, take(crate::dpop_key::KEY_OPTION)),
    })))
}

/// The subcommand: parses `args` (`login …` or `logout …`) and `env`, runs it, writes
/// what the user must see (the code, the URL, the outcome) to `stderr`, and returns
/// the exit status.
pub fn main(
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
    let mut say = Say(stderr);
    let outcome = match (options.runtime, options.flow.is_some()) {
        (Runtime::Tokio, true) => tokio_login(&options, &mut say),
        (Runtime::Tokio, false) => tokio_logout(&options, &mut say),
        (Runtime::Blocking, true) => blocking_login(&options, &mut say),
        (Runtime::Blocking, false) => blocking_logout(&options, &mut say),
    };
    match outcome {
        Ok(()) => 0,
        Err(Failure::Setup(message)) => {
            say.line(&message);
            EXIT_USAGE
        }
        Err(Failure::NotDone(message)) => {
            say.line(&message);
            EXIT_NOT_DONE
        }
    }
}

/// Why a subcommand failed: its exit status, and what to tell the user.
enum Failure {
    /// Exit 2: the command line, the issuer's metadata, the store.
    Setup(String),
    /// Exit 1: the sign-in did not complete, or the revocation was not confirmed.
    NotDone(String),
}

fn setup(error: impl std::fmt::Display) -> Failure {
    Failure::Setup(error.to_string())
}

fn discovery_failed(issuer: &str, error: &Error) -> Failure {
    Failure::Setup(format!("cannot use the issuer {issuer}: {error}"))
}

/// Why a sign-in step failed: a setting to fix (exit 2) or a sign-in that did not
/// complete (exit 1).
fn sign_in_failed(error: Error) -> Failure {
    match error {
        Error::InvalidUrl { .. }
        | Error::InsecureHttp { .. }
        | Error::NoEndpoint { .. }
        | Error::Loopback { .. }
        | Error::Random { .. }
        | Error::Token(_) => setup(error),
        other => Failure::NotDone(format!("not signed in: {other}")),
    }
}

/// What the user reads, on stderr.
struct Say<'a>(&'a mut dyn Write);

impl Say<'_> {
    fn line(&mut self, text: &str) {
        let _ = writeln!(self.0, "oauth2_client: {text}");
        let _ = self.0.flush();
    }

    /// The store holds a session already: said, and replaced by the sign-in.
    fn stored(&mut self, status: &Status, store: &str) {
        if status.is_signed_in() {
            self.line(&format!(
                "a session is stored in {store} already; signing in again replaces it"
            ));
        }
    }

    /// What the user does with a device code.
    fn device_code<Rt: Caller, C>(&mut self, code: &signin::DeviceCode<Rt, C>) {
        self.line(&format!(
            "to sign in, open {} and enter the code {}",
            code.verification_uri(),
            code.user_code()
        ));
        if let Some(complete) = code.verification_uri_complete() {
            self.line(&format!("(or open {complete}, which holds the code)"));
        }
        self.line(&format!(
            "waiting for the approval (the code expires in {} s)",
            code.expires_in().as_secs()
        ));
    }

    /// The URL the browser opens.
    fn opening(&mut self, url: &str) {
        self.line(&format!("opening the browser at {url}"));
        self.line("(if it does not open, open that URL in a browser on this machine)");
    }

    /// Signed in, and whether it is saved.
    fn signed_in(
        &mut self,
        durable: bool,
        store: &str,
        options: &SessionOptions,
    ) -> Result<(), Failure> {
        if !durable {
            return Err(Failure::Setup(format!(
                "signed in, but the session could not be saved in {store} within {SAVE_WAIT:?}; see the log, fix the store and log in again"
            )));
        }
        self.line(&format!(
            "signed in; the session is saved in {store}: later runs with --issuer {} --client-id {} and the same {} refresh it silently",
            options.issuer,
            options.client_id,
            if options.token_file.is_some() { "--token-file" } else { "--redis-url" },
        ));
        Ok(())
    }

    /// How a revoking sign-out ended.
    fn signed_out(
        &mut self,
        outcome: Result<SignedOut, Error>,
        store: &str,
    ) -> Result<(), Failure> {
        match outcome {
            Ok(SignedOut::NoSession) => {
                self.line(&format!("no session was stored in {store}: nothing to revoke"));
            }
            Ok(SignedOut::NotRevocable) => self.line(&format!(
                "signed out: the session is forgotten in {store}; the issuer has no revocation endpoint, so its refresh token stays valid there until it expires"
            )),
            Ok(SignedOut::Revoked) | Ok(_) => self.line(&format!(
                "signed out: the session is revoked at the issuer and forgotten in {store}"
            )),
            Err(error @ Error::NotRevoked { .. }) => return Err(Failure::NotDone(error.to_string())),
            Err(error) => return Err(setup(error)),
        }
        Ok(())
    }
}

/// The device flow `options` ask for.
fn device_flow<Rt, C>(
    issuer: &signin::Issuer<Rt, C>,
    client: &RefreshGrant,
    options: &SessionOptions,
) -> signin::DeviceFlow<Rt, C>
where
    Rt: SendsWith<C>,
    C: HttpClient,
{
    let flow = issuer.device(client);
    match &options.scope {
        Some(scope) => flow.scope(scope),
        None => flow,
    }
}

/// The browser sign-in `options` ask for: `--scope`, `--browser-command` (the
/// platform's command without it), `--redirect-path`.
fn browser_flow<Rt, C>(
    issuer: &signin::Issuer<Rt, C>,
    client: &RefreshGrant,
    options: &SessionOptions,
) -> signin::BrowserFlow<Rt, C>
where
    Rt: SendsWith<C>,
    C: HttpClient,
{
    let mut flow = issuer.browser(client);
    if let Some(scope) = &options.scope {
        flow = flow.scope(scope);
    }
    if let Some(Flow::Browser {
        command,
        redirect_path,
    }) = &options.flow
    {
        flow = flow.browser(
            command
                .clone()
                .map_or_else(Browser::system, Browser::command),
        );
        if let Some(path) = redirect_path {
            flow = flow.redirect_path(path);
        }
    }
    flow
}

/// A source of the issuer's `client` on the store of `options` (and how to name the
/// store to the user), for any runtime.
fn source<Rt, C>(
    options: &SessionOptions,
    metadata: &Metadata,
    client: &RefreshGrant,
) -> Result<(TokenSource<Rt>, String), Failure>
where
    Rt: Caller + Default + Spawn + RunsRefresher<OAuth2Refresher<C>>,
    C: HttpClient,
{
    let (store, name) = options.store(metadata).map_err(Failure::Setup)?;
    let mut refresher = OAuth2Refresher::<C>::builder(client.clone());
    if let Some(dpop) = options.dpop.session().map_err(Failure::Setup)? {
        refresher = refresher.dpop(dpop);
    }
    let source = TokenSource::<Rt>::builder(Config::default())
        .store(store)
        .refresher(refresher.build().map_err(setup)?)
        .build()
        .map_err(setup)?;
    Ok((source, name))
}

fn tokio_login(options: &SessionOptions, say: &mut Say<'_>) -> Result<(), Failure> {
    use silent_refresh_tokio::{Issuer, Reqwest, Tokio};

    tokio_runtime()?.block_on(async {
        let issuer = Issuer::discover(&options.issuer)
            .await
            .map_err(|e| discovery_failed(&options.issuer, &e))?;
        let client = options.client(issuer.metadata());
        let (source, name) = source::<Tokio, Reqwest>(options, issuer.metadata(), &client)?;
        say.stored(&source.ready().await.map_err(setup)?, &name);
        if let Some(Flow::Browser { .. }) = &options.flow {
            let started = browser_flow(&issuer, &client, options).start(&source);
            let started = started.map_err(sign_in_failed)?;
            say.opening(started.url());
            started.sign_in().await.map_err(sign_in_failed)?;
        } else {
            let code = device_flow(&issuer, &client, options).start(&source).await;
            let code = code.map_err(sign_in_failed)?;
            say.device_code(&code);
            code.sign_in().await.map_err(sign_in_failed)?;
        }
        let durable = source.until_durable(SAVE_WAIT).await;
        let _ = source.shutdown(SAVE_WAIT).await;
        say.signed_in(durable, &name, options)
    })
}

fn blocking_login(options: &SessionOptions, say: &mut Say<'_>) -> Result<(), Failure> {
    use silent_refresh_ureq::{Issuer, Threads, UreqAgent};

    let issuer =
        Issuer::discover(&options.issuer).map_err(|e| discovery_failed(&options.issuer, &e))?;
    let client = options.client(issuer.metadata());
    let (source, name) = source::<Threads, UreqAgent>(options, issuer.metadata(), &client)?;
    say.stored(&source.ready().map_err(setup)?, &name);
    if let Some(Flow::Browser { .. }) = &options.flow {
        let started = browser_flow(&issuer, &client, options).start(&source);
        let started = started.map_err(sign_in_failed)?;
        say.opening(started.url());
        started.sign_in().map_err(sign_in_failed)?;
    } else {
        let code = device_flow(&issuer, &client, options).start(&source);
        let code = code.map_err(sign_in_failed)?;
        say.device_code(&code);
        code.sign_in().map_err(sign_in_failed)?;
    }
    let durable = source.until_durable(SAVE_WAIT);
    let _ = source.shutdown(SAVE_WAIT);
    say.signed_in(durable, &name, options)
}

fn tokio_logout(options: &SessionOptions, say: &mut Say<'_>) -> Result<(), Failure> {
    use silent_refresh_tokio::{Issuer, Reqwest, Tokio};

    tokio_runtime()?.block_on(async {
        let issuer = Issuer::discover(&options.issuer)
            .await
            .map_err(|e| discovery_failed(&options.issuer, &e))?;
        let client = options.client(issuer.metadata());
        let (source, name) = source::<Tokio, Reqwest>(options, issuer.metadata(), &client)?;
        let outcome = issuer.sign_out(&source, &client).await;
        let _ = source.shutdown(SAVE_WAIT).await;
        say.signed_out(outcome, &name)
    })
}

fn blocking_logout(options: &SessionOptions, say: &mut Say<'_>) -> Result<(), Failure> {
    use silent_refresh_ureq::{Issuer, Threads, UreqAgent};

    let issuer =
        Issuer::discover(&options.issuer).map_err(|e| discovery_failed(&options.issuer, &e))?;
    let client = options.client(issuer.metadata());
    let (source, name) = source::<Threads, UreqAgent>(options, issuer.metadata(), &client)?;
    let outcome = issuer.sign_out(&source, &client);
    let _ = source.shutdown(SAVE_WAIT);
    say.signed_out(outcome, &name)
}

fn tokio_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Setup(format!("cannot start a tokio runtime: {e}")))
}

/// The load run's `--issuer URL`: its metadata is read (with the client of
/// `--runtime`), and `--issuer URL` becomes `--token-url` with the token endpoint it
/// names. Other arguments are left as they are.
///
/// # Errors
///
/// `--issuer` with `--token-url` or `--embedded-server`, no value, or metadata that
/// cannot be read.
pub fn resolve_issuer(mut args: Vec<String>) -> Result<Vec<String>, String> {
    let named = |name: &str, arg: &str| arg == name || arg.starts_with(&format!("{name}="));
    let Some(at) = args.iter().position(|arg| named("--issuer", arg)) else {
        return Ok(args);
    };
    if args.iter().any(|arg| named("--token-url", arg)) {
        return Err("give --issuer or --token-url, not both".to_owned());
    }
    if args.iter().any(|arg| arg == "--embedded-server") {
        return Err(
            "--issuer is not accepted with --embedded-server, which runs against a server of its own"
                .to_owned(),
        );
    }
    let (issuer, taken) = match args[at].split_once('=') {
        Some((_, value)) => (value.to_owned(), 1),
        None => (
            args.get(at + 1)
                .cloned()
                .ok_or("--issuer needs a value; see --help")?,
            2,
        ),
    };
    let runtime = args
        .iter()
        .position(|arg| arg == "--runtime")
        .and_then(|at| args.get(at + 1))
        .map(String::as_str);
    let token_endpoint = match runtime {
        Some("tokio") => {
            let runtime = tokio_runtime().map_err(|f| match f {
                Failure::Setup(m) | Failure::NotDone(m) => m,
            })?;
            runtime
                .block_on(silent_refresh_tokio::Issuer::discover(&issuer))
                .map(|issuer| issuer.metadata().token_endpoint().to_owned())
        }
        _ => silent_refresh_ureq::Issuer::discover(&issuer)
            .map(|issuer| issuer.metadata().token_endpoint().to_owned()),
    }
    .map_err(|e| format!("cannot use the issuer {issuer}: {e}"))?;
    args.splice(at..at + taken, ["--token-url".to_owned(), token_endpoint]);
    Ok(args)
}
