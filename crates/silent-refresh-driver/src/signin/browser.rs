//! The authorization code grant with PKCE and a loopback redirect (RFC 7636, RFC 8252,
//! RFC 9207): the browser signs the user in, and comes back to a one-shot listener on
//! `127.0.0.1` with the code, which is exchanged for the session.

use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use silent_refresh::Credentials;
use silent_refresh_oauth2::{
    AuthorizationRequest, Error as OAuth2Error, RefreshGrant, SIGN_IN_FAILED_PAGE, SIGNED_IN_PAGE,
};

use super::Issuer;
use super::cancel::CancelSignIn;
use super::loopback::{Arrival, Loopback};
use crate::oauth2_refresher::HttpClient;
use crate::runtime::threads::{Handoff, NoThread, on_a_thread};
use crate::runtime::{Runtime, SendsWith};
use crate::{Error, TokenSource};

/// The path of the redirect URI when none is given: `http://127.0.0.1:PORT/callback`.
pub const DEFAULT_REDIRECT_PATH: &str = "/callback";

/// How long the browser has to come back, by default.
const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(300);

/// How long the flow waits for its page to reach the browser before it returns all
/// the same.
const WRAP_UP: Duration = Duration::from_secs(2);

/// How long the flow waits for its listener's thread to close the socket before it
/// returns all the same. Closing takes microseconds; the bound only matters on a
/// starved machine, where a shorter one would return with the port still open.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// How a browser sign-in opens the authorization URL: the platform's command
/// ([`system`](Self::system), the default), a command of the program's
/// ([`command`](Self::command)), or a function ([`from_fn`](Self::from_fn), for
/// tests: a "browser" that follows the redirect itself).
#[derive(Clone)]
pub struct Browser(Opener);

/// A function that opens a URL.
type OpenFn = Arc<dyn Fn(&str) -> io::Result<()> + Send + Sync>;

#[derive(Clone)]
enum Opener {
    /// A program and its first arguments; the URL is the last one. `cmd_escape`: the
    /// URL goes through `cmd.exe`, whose `&` must be escaped.
    Command {
        words: Vec<String>,
        cmd_escape: bool,
    },
    /// The program's function.
    Function(OpenFn),
}

impl Browser {
    /// The platform's way to open a URL in the default browser: `open` on macOS,
    /// `cmd /c start "" URL` on Windows, `xdg-open` elsewhere.
    #[must_use]
    pub fn system() -> Self {
        let words: &[&str] = if cfg!(target_os = "macos") {
            &["open"]
        } else if cfg!(windows) {
            &["cmd", "/c", "start", ""]
        } else {
            &["xdg-open"]
        };
        Self(Opener::Command {
            words: words.iter().map(|w| (*w).to_owned()).collect(),
            cmd_escape: cfg!(windows),
        })
    }

    /// Runs `words` (a program and its first arguments, split as a shell would) with
    /// the URL as its last argument. The command should return once the browser has
    /// the URL; an exit status other than success ends the sign-in (the browser did
    /// not open). Its standard output is discarded, its errors go to this process's.
    pub fn command<I, S>(words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self(Opener::Command {
            words: words.into_iter().map(Into::into).collect(),
            cmd_escape: false,
        })
    }

    /// Calls `open` with the URL; an error ends the sign-in. It should return once
    /// the browser has the URL (a function that follows the redirect itself, as a
    /// test does, does it on a thread of its own).
    pub fn from_fn(open: impl Fn(&str) -> io::Result<()> + Send + Sync + 'static) -> Self {
        Self(Opener::Function(Arc::new(open)))
    }

    /// The command's words, or what the function is, for messages.
    fn describe(&self) -> String {
        match &self.0 {
            Opener::Command { words, .. } => words.join(" "),
            Opener::Function(_) => "the program's browser function".to_owned(),
        }
    }

    /// Opens `url`: `Some` handoff with the command's exit status, which the flow
    /// watches (`None`: nothing to watch).
    fn open(&self, url: &str) -> Result<Option<Handoff<io::Result<ExitStatus>>>, Error> {
        let not_opened = |reason: String| Error::BrowserNotOpened {
            command: self.describe(),
            reason,
        };
        match &self.0 {
            Opener::Command { words, cmd_escape } => {
                let Some((program, arguments)) = words.split_first() else {
                    return Err(not_opened("the command is empty".to_owned()));
                };
                let url = if *cmd_escape {
                    url.replace('&', "^&")
                } else {
                    url.to_owned()
                };
                let mut child = Command::new(program)
                    .args(arguments)
                    .arg(url)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .map_err(|error| not_opened(error.to_string()))?;
                let wait = move || child.wait();
                Ok(Some(on_a_thread(
                    "silent-refresh-browser",
                    wait,
                    NoThread::Fail,
                )))
            }
            Opener::Function(open) => {
                open(url).map_err(|error| not_opened(error.to_string()))?;
                Ok(None)
            }
        }
    }
}

impl Default for Browser {
    /// [`Browser::system`].
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Browser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Opener::Command { words, .. } => {
                f.debug_tuple("Browser::Command").field(words).finish()
            }
            Opener::Function(_) => f.write_str("Browser::Function(..)"),
        }
    }
}

/// A browser sign-in to start: [`Issuer::browser`]. Ask for the scope the program
/// needs (`offline_access` brings `prompt=consent`, as OpenID Connect servers want
/// before they issue a refresh token), then [`start`](Self::start) it.
#[must_use]
pub struct BrowserFlow<Rt, C> {
    issuer: Issuer<Rt, C>,
    client: RefreshGrant,
    scope: Option<String>,
    params: Vec<(String, String)>,
    redirect_path: String,
    browser: Browser,
    time_limit: Duration,
}

impl<Rt, C> fmt::Debug for BrowserFlow<Rt, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrowserFlow")
            .field("issuer", &self.issuer)
            .field("client", &self.client)
            .field("scope", &self.scope)
            .field("redirect_path", &self.redirect_path)
            .field("browser", &self.browser)
            .field("time_limit", &self.time_limit)
            .finish_non_exhaustive()
    }
}

impl<Rt, C> Issuer<Rt, C>
where
    Rt: SendsWith<C>,
    C: HttpClient,
{
    /// A browser sign-in (the authorization code grant with PKCE `S256` and a loopback
    /// redirect) of `client` ([`client`](Self::client)), whose redirect URI
    /// `http://127.0.0.1/callback` (any port) the server has registered.
    pub fn browser(&self, client: &RefreshGrant) -> BrowserFlow<Rt, C> {
        BrowserFlow {
            issuer: self.clone(),
            client: client.clone(),
            scope: None,
            params: Vec::new(),
            redirect_path: DEFAULT_REDIRECT_PATH.to_owned(),
            browser: Browser::system(),
            time_limit: DEFAULT_TIME_LIMIT,
        }
    }
}

impl<Rt, C> BrowserFlow<Rt, C>
where
    Rt: SendsWith<C>,
    C: HttpClient,
{
    /// The scope to ask for (space-separated), such as `openid offline_access`.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// An extra parameter of the authorization URL (`prompt`, `login_hint`,
    /// `resource`…).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// The path of the redirect URI, as the server has it registered (default
    /// [`DEFAULT_REDIRECT_PATH`], `/callback`).
    pub fn redirect_path(mut self, path: impl Into<String>) -> Self {
        self.redirect_path = path.into();
        self
    }

    /// How the authorization URL is opened (default [`Browser::system`]).
    pub fn browser(mut self, browser: Browser) -> Self {
        self.browser = browser;
        self
    }

    /// How long the user has to sign in, from [`BrowserSignIn::sign_in`] (default
    /// 5 minutes).
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = limit;
        self
    }

    /// Listens on `127.0.0.1` at a free port and makes the authorization URL (a
    /// random `state` and PKCE verifier, the redirect URI
    /// `http://127.0.0.1:PORT/<path>`), to sign `source` in with. Nothing is opened or
    /// sent yet: show [`url`](BrowserSignIn::url), then call
    /// [`BrowserSignIn::sign_in`].
    ///
    /// # Errors
    ///
    /// The server has no authorization endpoint ([`Error::NoEndpoint`]), a redirect
    /// path that is not a path ([`Error::Token`]), no loopback socket
    /// ([`Error::Loopback`]), no randomness ([`Error::Random`]).
    pub fn start(self, source: &TokenSource<Rt>) -> Result<BrowserSignIn<Rt, C>, Error> {
        let path = &self.redirect_path;
        let is_path = path.starts_with('/')
            && !path.contains(['?', '#'])
            && !path.chars().any(|c| c.is_whitespace() || c.is_control());
        if !is_path {
            return Err(OAuth2Error::InvalidConfig(
                "the redirect path is a URL path, such as `/callback`, without query or fragment",
            )
            .into());
        }
        let metadata = self.issuer.metadata();
        if metadata.authorization_endpoint().is_none() {
            return Err(Error::NoEndpoint {
                issuer: metadata.issuer().to_owned(),
                endpoint: "authorization_endpoint",
                flow: "the browser sign-in (the authorization code grant)",
                hint: "sign in with the device flow instead",
            });
        }
        let mut random = zeroize::Zeroizing::new([0u8; 64]);
        getrandom::fill(random.as_mut()).map_err(|error| Error::Random {
            reason: error.to_string(),
        })?;
        // The browser's connection waits for its page while the code is exchanged.
        let page_wait = self.issuer.timeout().saturating_add(WRAP_UP);
        let listener = Loopback::bind(path, page_wait)?;
        let redirect_uri = format!("http://127.0.0.1:{}{path}", listener.port());
        let client_id = self.client.client_identifier().to_owned();
        let mut request =
            AuthorizationRequest::from_metadata(metadata, client_id, redirect_uri, *random)?
                .allow_insecure_http(self.issuer.allow_insecure_http());
        if let Some(scope) = self.scope {
            request = request.scope(scope);
        }
        for (name, value) in self.params {
            request = request.param(name, value);
        }
        let url = request.url()?;
        Ok(BrowserSignIn {
            issuer: self.issuer,
            client: self.client,
            source: source.clone(),
            request,
            url,
            listener,
            browser: self.browser,
            time_limit: self.time_limit,
            cancel: CancelSignIn::default(),
        })
    }
}

/// A browser sign-in whose listener is open: show [`url`](Self::url) (the command
/// that opens it may fail), then [`sign_in`](Self::sign_in). Dropping it closes the
/// listener. `Debug` shows neither the URL (its `state`) nor the PKCE verifier.
pub struct BrowserSignIn<Rt: crate::runtime::Caller, C> {
    issuer: Issuer<Rt, C>,
    client: RefreshGrant,
    source: TokenSource<Rt>,
    request: AuthorizationRequest,
    url: String,
    listener: Loopback,
    browser: Browser,
    time_limit: Duration,
    cancel: CancelSignIn,
}

impl<Rt: crate::runtime::Caller, C> fmt::Debug for BrowserSignIn<Rt, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrowserSignIn")
            .field("redirect_uri", &self.redirect_uri())
            .field("browser", &self.browser)
            .field("time_limit", &self.time_limit)
            .finish_non_exhaustive()
    }
}

impl<Rt: crate::runtime::Caller, C> BrowserSignIn<Rt, C> {
    /// The authorization URL the browser opens (it holds the `state`: show it only to
    /// the user signing in).
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The redirect URI: `http://127.0.0.1:PORT/<path>`.
    #[must_use]
    pub fn redirect_uri(&self) -> &str {
        self.request.redirect_uri()
    }

    /// A handle that cancels [`sign_in`](Self::sign_in) from elsewhere.
    #[must_use]
    pub fn cancel_handle(&self) -> CancelSignIn {
        self.cancel.clone()
    }
}

impl<Rt, C> BrowserSignIn<Rt, C>
where
    Rt: SendsWith<C>,
    C: HttpClient,
{
    /// Opens the URL with the browser command, waits (at most the time limit) for the
    /// browser to come back to the redirect URI, checks its `state` (and `iss`),
    /// exchanges the code (with the PKCE verifier) for the session, signs the source
    /// in ([`TokenSource::sign_in`]: the token is handed to the store before any
    /// request gets it; [`TokenSource::until_durable`] says when it is stored), and
    /// answers the browser with a page telling the user to go back to the terminal.
    /// The listener is closed when this returns, however it ends.
    ///
    /// # Errors
    ///
    /// The browser command failed ([`Error::BrowserNotOpened`]), the time limit passed
    /// ([`Error::SignInTimedOut`]), the redirect is not the answer to this sign-in or
    /// carries an error (the user denied it, a wrong `state` or `iss`:
    /// [`Error::OAuth2`]), the token endpoint refused the code ([`Error::OAuth2`]) or
    /// gave no answer ([`Error::NoAnswer`]), the program cancelled it
    /// ([`Error::SignInCancelled`]). Nothing is signed in then.
    pub fn sign_in(self) -> Rt::Wait<impl Future<Output = Result<(), Error>> + use<Rt, C>> {
        let runtime = self.issuer.runtime().clone();
        runtime.wait(async move {
            let mut this = self;
            let outcome = this.complete().await;
            if let Some(closed) = this.listener.close() {
                within(this.issuer.runtime(), CLOSE_WAIT, closed).await;
            }
            outcome
        })
    }

    /// Everything but closing the listener.
    async fn complete(&mut self) -> Result<(), Error> {
        let arrival = self.arrival().await?;
        let outcome = self.exchange(&arrival.target).await;
        let page = if outcome.is_ok() {
            SIGNED_IN_PAGE
        } else {
            SIGN_IN_FAILED_PAGE
        };
        within(self.issuer.runtime(), WRAP_UP, arrival.answer(page)).await;
        outcome
    }

    /// Opens the browser and waits for it to come back (or to fail, or for the time
    /// limit, or the program's cancel).
    async fn arrival(&mut self) -> Result<Arrival, Error> {
        let mut reaped = self.browser.open(&self.url)?;
        let mut limit = self.issuer.runtime().sleep(self.time_limit);
        let (listener, browser, cancel) = (&mut self.listener, &self.browser, &self.cancel);
        let waited = self.time_limit;
        poll_fn(|cx| {
            if cancel.poll_cancelled(cx).is_ready() {
                return Poll::Ready(Err(Error::SignInCancelled));
            }
            if let Poll::Ready(arrival) = listener.poll_arrival(cx) {
                return Poll::Ready(arrival.ok_or_else(|| Error::Loopback {
                    reason: "the listener stopped accepting connections".to_owned(),
                }));
            }
            if let Some(exit) = reaped.as_mut()
                && let Poll::Ready(status) = Pin::new(exit).poll(cx)
            {
                reaped = None;
                let failed = match status {
                    Some(Ok(status)) if !status.success() => {
                        Some(format!("it exited with {status}"))
                    }
                    Some(Err(error)) => Some(error.to_string()),
                    // Handed the URL to the browser; or not watched (no thread).
                    _ => None,
                };
                if let Some(reason) = failed {
                    return Poll::Ready(Err(Error::BrowserNotOpened {
                        command: browser.describe(),
                        reason,
                    }));
                }
            }
            if Pin::new(&mut limit).poll(cx).is_ready() {
                return Poll::Ready(Err(Error::SignInTimedOut { waited }));
            }
            Poll::Pending
        })
        .await
    }

    /// Reads the redirect (`target`), exchanges its code, and signs the source in.
    async fn exchange(&self, target: &str) -> Result<(), Error> {
        let code = self.request.read_redirect(target)?;
        let asked = self.request.token_request(&self.client, &code)?;
        let sent = self.issuer.send_token_request(&self.source, asked);
        let answer = self.cancel.or_cancelled(sent).await?;
        let token = self
            .request
            .read_token_response(&self.client, &code, &answer)?;
        let token = super::with_session_key(&self.source, token);
        self.source.sign_in(Credentials::Token(token));
        Ok(())
    }
}

/// Waits for `future`, at most `limit` on `runtime`'s time; `None` when the time is up.
async fn within<Rt: Runtime, F: Future + Unpin>(
    runtime: &Rt,
    limit: Duration,
    mut future: F,
) -> Option<F::Output> {
    let mut timer = runtime.sleep(limit);
    poll_fn(|cx| {
        if let Poll::Ready(output) = Pin::new(&mut future).poll(cx) {
            return Poll::Ready(Some(output));
        }
        Pin::new(&mut timer).poll(cx).map(|()| None)
    })
    .await
}
