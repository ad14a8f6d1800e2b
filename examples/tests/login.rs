//! Starting and ending a session through the adapters' sign-in flows (the driver's
//! `signin`, written once), against the embedded server over real HTTP on 127.0.0.1,
//! in both runtimes: discovery, the device flow (approved, denied, expired, slowed
//! down, cancelled), the browser sign-in (a test "browser" that follows the redirect;
//! a wrong `state`, an `error=` return, a browser that does not open, a time limit),
//! `ready()` with and without a stored session, and a logout that revokes.
//!
//! Each scenario is written once, generic over a [`Side`] (a runtime as a test sees
//! it: tokio's calls are blocked on, threads' block). The only waits are the device
//! flow's interval (1 s; 6 s after a `slow_down`, as RFC 8628 wants) and a time limit
//! of a few hundred milliseconds that is the subject of its test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use silent_refresh::{AccessToken, Config, Expiry, FailureKind, Secret, Status, Token};
use silent_refresh_driver::oauth2_refresher::HttpClient;
use silent_refresh_driver::runtime::SendsWith;
use silent_refresh_driver::signin::{
    Browser, BrowserSignIn, DeviceCode, DeviceFlow, Issuer, SignedOut,
};
use silent_refresh_driver::store::{FileStore, TokenStore};
use silent_refresh_driver::{Error, TokenSource};
use silent_refresh_oauth2::dpop::{DpopAlgorithm, DpopKey, DpopSession};
use silent_refresh_oauth2::{
    Error as OAuth2Error, RefreshGrant, SIGN_IN_FAILED_PAGE, SIGNED_IN_PAGE,
};
use silent_refresh_testkit::server::{AuthServer, DpopConfig, ServerConfig};

/// Far above what any step takes; reached only when something is broken.
const BOUND: Duration = Duration::from_secs(10);

/// A runtime as the scenarios see it: each call made and waited for.
trait Side {
    type Rt: SendsWith<Self::C>;
    type C: HttpClient;

    fn discover(&self, issuer: &str) -> Result<Issuer<Self::Rt, Self::C>, Error>;
    /// A source of `client`, with `store` if given.
    fn source(&self, client: &RefreshGrant, store: Option<FileStore>) -> TokenSource<Self::Rt>;
    /// A source of `client` proving with `dpop`, keeping its session in `store`.
    fn dpop_source(
        &self,
        client: &RefreshGrant,
        store: FileStore,
        dpop: DpopSession,
    ) -> TokenSource<Self::Rt>;
    fn ready(&self, source: &TokenSource<Self::Rt>) -> Result<Status, Error>;
    fn start_device(
        &self,
        flow: DeviceFlow<Self::Rt, Self::C>,
        source: &TokenSource<Self::Rt>,
    ) -> Result<DeviceCode<Self::Rt, Self::C>, Error>;
    fn finish_device(&self, code: DeviceCode<Self::Rt, Self::C>) -> Result<(), Error>;
    fn finish_browser(&self, started: BrowserSignIn<Self::Rt, Self::C>) -> Result<(), Error>;
    fn sign_out(
        &self,
        issuer: &Issuer<Self::Rt, Self::C>,
        source: &TokenSource<Self::Rt>,
        client: &RefreshGrant,
    ) -> Result<SignedOut, Error>;
    fn until_durable(&self, source: &TokenSource<Self::Rt>) -> bool;
    fn token(&self, source: &TokenSource<Self::Rt>) -> Result<Arc<AccessToken>, Error>;
}

/// tokio: a runtime of its own, whose calls the test thread blocks on.
struct OnTokio(tokio::runtime::Runtime);

impl OnTokio {
    fn new() -> Self {
        Self(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime"),
        )
    }
}

impl Side for OnTokio {
    type Rt = silent_refresh_tokio::Tokio;
    type C = silent_refresh_tokio::Reqwest;

    fn discover(&self, issuer: &str) -> Result<Issuer<Self::Rt, Self::C>, Error> {
        self.0
            .block_on(silent_refresh_tokio::Issuer::discover(issuer))
    }
    fn source(&self, client: &RefreshGrant, store: Option<FileStore>) -> TokenSource<Self::Rt> {
        let _entered = self.0.enter();
        let refresher = silent_refresh_tokio::OAuth2Refresher::new(client.clone()).expect("ok");
        let builder = silent_refresh_tokio::TokenSource::builder(Config::default());
        let builder = match store {
            Some(store) => builder.store(store),
            None => builder,
        };
        builder.refresher(refresher).build().expect("a source")
    }
    fn dpop_source(
        &self,
        client: &RefreshGrant,
        store: FileStore,
        dpop: DpopSession,
    ) -> TokenSource<Self::Rt> {
        let _entered = self.0.enter();
        let refresher = silent_refresh_tokio::OAuth2Refresher::builder(client.clone())
            .dpop(dpop)
            .build()
            .expect("a refresher");
        silent_refresh_tokio::TokenSource::builder(Config::default())
            .store(store)
            .refresher(refresher)
            .build()
            .expect("a source")
    }
    fn ready(&self, source: &TokenSource<Self::Rt>) -> Result<Status, Error> {
        self.0.block_on(source.ready_within(BOUND))
    }
    fn start_device(
        &self,
        flow: DeviceFlow<Self::Rt, Self::C>,
        source: &TokenSource<Self::Rt>,
    ) -> Result<DeviceCode<Self::Rt, Self::C>, Error> {
        self.0.block_on(flow.start(source))
    }
    fn finish_device(&self, code: DeviceCode<Self::Rt, Self::C>) -> Result<(), Error> {
        self.0.block_on(code.sign_in())
    }
    fn finish_browser(&self, started: BrowserSignIn<Self::Rt, Self::C>) -> Result<(), Error> {
        self.0.block_on(started.sign_in())
    }
    fn sign_out(
        &self,
        issuer: &Issuer<Self::Rt, Self::C>,
        source: &TokenSource<Self::Rt>,
        client: &RefreshGrant,
    ) -> Result<SignedOut, Error> {
        self.0.block_on(issuer.sign_out(source, client))
    }
    fn until_durable(&self, source: &TokenSource<Self::Rt>) -> bool {
        self.0.block_on(source.until_durable(BOUND))
    }
    fn token(&self, source: &TokenSource<Self::Rt>) -> Result<Arc<AccessToken>, Error> {
        self.0.block_on(source.token_within(BOUND))
    }
}

/// Blocking threads: each call blocks the test's thread.
struct OnThreads;

impl Side for OnThreads {
    type Rt = silent_refresh_ureq::Threads;
    type C = silent_refresh_ureq::UreqAgent;

    fn discover(&self, issuer: &str) -> Result<Issuer<Self::Rt, Self::C>, Error> {
        silent_refresh_ureq::Issuer::discover(issuer)
    }
    fn source(&self, client: &RefreshGrant, store: Option<FileStore>) -> TokenSource<Self::Rt> {
        let refresher = silent_refresh_ureq::OAuth2Refresher::new(client.clone()).expect("ok");
        let builder = silent_refresh_ureq::TokenSource::builder(Config::default());
        let builder = match store {
            Some(store) => builder.store(store),
            None => builder,
        };
        builder.refresher(refresher).build().expect("a source")
    }
    fn dpop_source(
        &self,
        client: &RefreshGrant,
        store: FileStore,
        dpop: DpopSession,
    ) -> TokenSource<Self::Rt> {
        let refresher = silent_refresh_ureq::OAuth2Refresher::builder(client.clone())
            .dpop(dpop)
            .build()
            .expect("a refresher");
        silent_refresh_ureq::TokenSource::builder(Config::default())
            .store(store)
            .refresher(refresher)
            .build()
            .expect("a source")
    }
    fn ready(&self, source: &TokenSource<Self::Rt>) -> Result<Status, Error> {
        source.ready_within(BOUND)
    }
    fn start_device(
        &self,
        flow: DeviceFlow<Self::Rt, Self::C>,
        source: &TokenSource<Self::Rt>,
    ) -> Result<DeviceCode<Self::Rt, Self::C>, Error> {
        flow.start(source)
    }
    fn finish_device(&self, code: DeviceCode<Self::Rt, Self::C>) -> Result<(), Error> {
        code.sign_in()
    }
    fn finish_browser(&self, started: BrowserSignIn<Self::Rt, Self::C>) -> Result<(), Error> {
        started.sign_in()
    }
    fn sign_out(
        &self,
        issuer: &Issuer<Self::Rt, Self::C>,
        source: &TokenSource<Self::Rt>,
        client: &RefreshGrant,
    ) -> Result<SignedOut, Error> {
        issuer.sign_out(source, client)
    }
    fn until_durable(&self, source: &TokenSource<Self::Rt>) -> bool {
        source.until_durable(BOUND)
    }
    fn token(&self, source: &TokenSource<Self::Rt>) -> Result<Arc<AccessToken>, Error> {
        source.token_within(BOUND)
    }
}

/// A test per runtime for each scenario.
macro_rules! both {
    ($($scenario:ident),* $(,)?) => {
        mod on_tokio {
            $(#[test] fn $scenario() { super::$scenario(&super::OnTokio::new()); })*
        }
        mod on_threads {
            $(#[test] fn $scenario() { super::$scenario(&super::OnThreads); })*
        }
    };
}

both!(
    discovery_reads_the_issuer_and_refuses_an_impostor,
    device_sign_in_signs_in_and_is_saved_before_use,
    sign_in_with_dpop_starts_a_session_bound_to_the_key,
    device_sign_in_denied_or_expired_signs_nothing_in,
    device_sign_in_slows_down_by_five_seconds,
    device_sign_in_is_cancelled_by_its_handle,
    browser_sign_in_exchanges_the_code_and_closes_the_listener,
    browser_sign_in_refuses_a_wrong_state_and_an_error_return,
    browser_sign_in_ends_when_the_browser_fails_or_the_time_is_up,
    ready_waits_for_the_stored_session,
    logout_revokes_at_the_server_and_forgets_the_stored_session,
);

fn server() -> AuthServer {
    AuthServer::start(ServerConfig {
        token_lifetime: Duration::from_secs(30),
        token_latency: Duration::ZERO,
        ..ServerConfig::default()
    })
    .expect("the embedded server starts")
}

/// The server, its issuer and the public client at the discovered token endpoint.
fn setup<S: Side>(side: &S) -> (AuthServer, Issuer<S::Rt, S::C>, RefreshGrant) {
    let server = server();
    let issuer = side.discover(&server.issuer()).expect("metadata");
    let client = issuer.client(server.signin_config().public_client_id);
    (server, issuer, client)
}

fn file_store(dir: &tempfile::TempDir) -> FileStore {
    FileStore::new(dir.path().join("session.json"))
}

fn stored(dir: &tempfile::TempDir) -> Option<Token> {
    file_store(dir).load().expect("the file parses")
}

/// The refresh token in the file.
fn stored_refresh(dir: &tempfile::TempDir) -> String {
    stored(dir)
        .and_then(|token| token.refresh_token)
        .map(|secret| secret.expose().to_owned())
        .expect("a stored refresh token")
}

fn discovery_reads_the_issuer_and_refuses_an_impostor<S: Side>(side: &S) {
    let (server, issuer, client) = setup(side);
    assert_eq!(issuer.metadata().issuer(), server.issuer());
    assert_eq!(client.token_url(), server.token_url());
    assert_eq!(client.client_identifier(), "cli-public");

    server.set_metadata_issuer(Some("https://impostor.example".to_owned()));
    let error = side.discover(&server.issuer()).expect_err("a mismatch");
    assert!(
        matches!(error, Error::OAuth2(OAuth2Error::IssuerMismatch { .. })),
        "{error:?}"
    );
    // Nothing listens there any more: no answer, and the message says from where.
    let gone = server.issuer();
    drop(server);
    let error = side.discover(&gone).expect_err("no server");
    let Error::NoAnswer {
        origin,
        reason,
        unreachable,
    } = &error
    else {
        panic!("{error:?}")
    };
    assert!(*unreachable, "{error}");
    assert!(gone.starts_with(origin.as_str()), "{origin} {gone}");
    assert!(reason.contains("metadata"), "{reason}");
    assert!(!reason.contains("token endpoint"), "{reason}");
}

fn device_sign_in_signs_in_and_is_saved_before_use<S: Side>(side: &S) {
    let (server, issuer, client) = setup(side);
    let dir = tempfile::tempdir().expect("tempdir");
    let source = side.source(&client, Some(file_store(&dir)));
    assert_eq!(side.ready(&source).expect("read"), Status::AwaitingSignIn);
    let flow = issuer.device(&client).scope("read offline_access");
    let code = side.start_device(flow, &source).expect("a code");
    assert_eq!(code.user_code().len(), 9);
    assert!(code.verification_uri().starts_with(&server.issuer()));
    let complete = code.verification_uri_complete().expect("a complete URI");
    assert!(complete.ends_with(code.user_code()), "{complete}");
    assert_eq!(code.expires_in(), Duration::from_secs(60));
    assert!(!format!("{code:?}").contains("dc_"), "{code:?}");
    assert!(server.approve_device(code.user_code()));
    side.finish_device(code).expect("signed in");
    assert!(source.status().is_signed_in());
    assert!(side.until_durable(&source), "saved");
    // The session in the file is the one the server started; its token works.
    let grant = server.grant_of(&stored_refresh(&dir)).expect("a grant");
    assert!(!server.is_revoked(grant));
    let token = side.token(&source).expect("a token");
    assert!(server.access_token_is_active(token.secret.expose()));
    assert_eq!(token.scope.as_deref(), Some("read offline_access"));
    let stats = server.take_stats().signin;
    assert_eq!((stats.device_sessions, stats.device_polls), (1, 1));
    assert!(stats.public_client_requests >= 2, "{stats:?}");
}

/// DPoP (RFC 9449) from the first token on: against the server's DPoP mode (nonces
/// demanded), the device flow's token request and the browser sign-in's code exchange
/// carry a proof of the source's key, are sent again once with the server's nonce, and
/// start a session bound to that key, stored with it.
fn sign_in_with_dpop_starts_a_session_bound_to_the_key<S: Side>(side: &S) {
    let server = AuthServer::start(ServerConfig {
        token_lifetime: Duration::from_secs(30),
        token_latency: Duration::ZERO,
        dpop: Some(DpopConfig::default()),
        ..ServerConfig::default()
    })
    .expect("the embedded server starts");
    let issuer = side.discover(&server.issuer()).expect("metadata");
    let client = issuer.client(server.signin_config().public_client_id);
    for flow in ["device", "browser"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let dpop =
            DpopSession::new(DpopKey::generate_with_os_rng(DpopAlgorithm::Es256).expect("a key"));
        let thumbprint = dpop.thumbprint();
        let source = side.dpop_source(&client, file_store(&dir), dpop);
        if flow == "device" {
            let started = issuer.device(&client).scope("read offline_access");
            let code = side.start_device(started, &source).expect("a code");
            assert!(server.approve_device(code.user_code()));
            side.finish_device(code).expect("signed in");
        } else {
            let (browser, _seen) = following_browser(|location| location);
            let started = issuer
                .browser(&client)
                .scope("read offline_access")
                .browser(browser)
                .start(&source)
                .expect("listening");
            side.finish_browser(started).expect("signed in");
        }
        assert!(side.until_durable(&source), "{flow}: saved");
        let token = side.token(&source).expect("a token");
        assert!(token.is_dpop_bound(), "{flow}: {token:?}");
        let kept = stored(&dir).expect("a stored session");
        let key = kept.dpop_key.expect("the key is stored with the session");
        let reread = DpopSession::new(DpopKey::from_pkcs8_pem(key.expose()).expect("a key"));
        assert_eq!(reread.thumbprint(), thumbprint, "{flow}");
        let stats = server.take_stats().dpop;
        assert_eq!(stats.refused(), 0, "{flow}: {stats:?}");
        assert!(stats.bound_issued >= 1, "{flow}: {stats:?}");
        assert!(stats.token_nonce_challenges >= 1, "{flow}: {stats:?}");
    }
}

fn device_sign_in_denied_or_expired_signs_nothing_in<S: Side>(side: &S) {
    let (server, issuer, client) = setup(side);
    let dir = tempfile::tempdir().expect("tempdir");
    let source = side.source(&client, Some(file_store(&dir)));
    let code = side
        .start_device(issuer.device(&client), &source)
        .expect("a code");
    assert!(server.deny_device(code.user_code()));
    let denied = side.finish_device(code).expect_err("denied");
    assert!(
        matches!(denied, Error::OAuth2(OAuth2Error::AccessDenied { .. })),
        "{denied:?}"
    );
    assert!(denied.to_string().contains("the user denied"), "{denied}");

    let code = side
        .start_device(issuer.device(&client), &source)
        .expect("a code");
    assert!(server.expire_device(code.user_code()));
    let expired = side.finish_device(code).expect_err("expired");
    assert!(
        matches!(expired, Error::OAuth2(OAuth2Error::DeviceCodeExpired)),
        "{expired:?}"
    );
    assert_eq!(source.status(), Status::AwaitingSignIn);
    assert!(stored(&dir).is_none(), "nothing saved");
    let stats = server.take_stats().signin;
    assert_eq!((stats.device_denied, stats.device_expired), (1, 1));
    assert_eq!(stats.device_sessions, 0);
}

fn device_sign_in_slows_down_by_five_seconds<S: Side>(side: &S) {
    let (server, issuer, client) = setup(side);
    let source = side.source(&client, None);
    let code = side
        .start_device(issuer.device(&client), &source)
        .expect("a code");
    // The first poll is answered `slow_down` (approved already): the second comes
    // 1 s + 5 s after the code, on the source's clock.
    assert!(server.slow_down_device(code.user_code()));
    assert!(server.approve_device(code.user_code()));
    let started = Instant::now();
    side.finish_device(code).expect("signed in");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(6), "{took:?}");
    assert!(took < Duration::from_secs(6) + BOUND, "{took:?}");
    let stats = server.take_stats().signin;
    assert_eq!((stats.slow_down, stats.device_polls), (1, 2));
    assert!(side.token(&source).is_ok());
}

fn device_sign_in_is_cancelled_by_its_handle<S: Side>(side: &S) {
    let (server, issuer, client) = setup(side);
    let source = side.source(&client, None);
    let code = side
        .start_device(issuer.device(&client), &source)
        .expect("a code");
    let cancel = code.cancel_handle();
    assert!(!cancel.is_cancelled());
    // From another thread, while the flow waits for its first poll.
    let canceller = std::thread::spawn(move || cancel.cancel());
    assert!(matches!(
        side.finish_device(code),
        Err(Error::SignInCancelled)
    ));
    canceller.join().expect("cancelled");
    assert_eq!(source.status(), Status::AwaitingSignIn);
    assert_eq!(server.take_stats().signin.device_sessions, 0);
}

/// What the test browser did: the page the listener answered with, once it has it.
type Seen = Arc<Mutex<Option<JoinHandle<String>>>>;

/// A "browser" that opens the URL at the authorization endpoint (whose test user
/// approves at once), takes the `Location` of its redirect, lets `tamper` change it,
/// and follows it to the loopback listener, on a thread of its own.
fn following_browser(tamper: fn(String) -> String) -> (Browser, Seen) {
    let seen: Seen = Arc::default();
    let handle = seen.clone();
    let browser = Browser::from_fn(move |url| {
        let url = url.to_owned();
        let visit = std::thread::spawn(move || browse(&url, tamper));
        *handle.lock().unwrap_or_else(PoisonError::into_inner) = Some(visit);
        Ok(())
    });
    (browser, seen)
}

fn browse(url: &str, tamper: fn(String) -> String) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let response = agent.get(url).call().expect("the authorization endpoint");
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let mut page = agent.get(&tamper(location)).call().expect("the listener");
    page.body_mut().read_to_string().expect("a page")
}

fn page(seen: &Seen) -> String {
    seen.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .expect("the browser was opened")
        .join()
        .expect("the browser")
}

/// The redirect URI's port is closed: nothing listens there any more.
fn assert_closed(redirect_uri: &str) {
    let port: u16 = redirect_uri
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the listener on {port} is still open"
    );
}

fn browser_sign_in_exchanges_the_code_and_closes_the_listener<S: Side>(side: &S) {
    let (server, issuer, client) = setup(side);
    let dir = tempfile::tempdir().expect("tempdir");
    let source = side.source(&client, Some(file_store(&dir)));
    let (browser, seen) = following_browser(|location| location);
    let started = issuer
        .browser(&client)
        .scope("read offline_access")
        .browser(browser)
        .start(&source)
        .expect("listening");
    let redirect_uri = started.redirect_uri().to_owned();
    assert!(
        redirect_uri.starts_with("http://127.0.0.1:"),
        "{redirect_uri}"
    );
    assert!(redirect_uri.ends_with("/callback"), "{redirect_uri}");
    let url = started.url().to_owned();
    assert!(url.starts_with(&server.authorization_url()), "{url}");
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    assert!(!format!("{started:?}").contains("state"), "{started:?}");
    side.finish_browser(started).expect("signed in");
    assert_eq!(page(&seen), SIGNED_IN_PAGE);
    assert_closed(&redirect_uri);
    assert!(side.until_durable(&source));
    assert!(server.grant_of(&stored_refresh(&dir)).is_some());
    let token = side.token(&source).expect("a token");
    assert!(server.access_token_is_active(token.secret.expose()));
    let stats = server.take_stats().signin;
    assert_eq!((stats.code_sessions, stats.code_refused), (1, 0));
    assert_eq!(stats.consent_prompts, 1, "offline_access asks for consent");
}

fn browser_sign_in_refuses_a_wrong_state_and_an_error_return<S: Side>(side: &S) {
    let (server, issuer, client) = setup(side);
    let source = side.source(&client, None);
    let (browser, seen) = following_browser(|location| {
        let (head, rest) = location.split_once("state=").expect("a state");
        let tail = rest.find('&').map_or("", |at| &rest[at..]);
        format!("{head}state=forged{tail}")
    });
    let started = issuer
        .browser(&client)
        .browser(browser)
        .start(&source)
        .expect("listening");
    let redirect_uri = started.redirect_uri().to_owned();
    let error = side.finish_browser(started).expect_err("a wrong state");
    assert!(
        matches!(error, Error::OAuth2(OAuth2Error::StateMismatch(_))),
        "{error:?}"
    );
    assert_eq!(page(&seen), SIGN_IN_FAILED_PAGE);
    assert_closed(&redirect_uri);

    server.set_user_denies(true);
    let (browser, seen) = following_browser(|location| location);
    let started = issuer
        .browser(&client)
        .browser(browser)
        .start(&source)
        .expect("listening");
    let redirect_uri = started.redirect_uri().to_owned();
    let error = side.finish_browser(started).expect_err("denied");
    assert!(
        matches!(error, Error::OAuth2(OAuth2Error::AccessDenied { .. })),
        "{error:?}"
    );
    assert!(error.to_string().contains("the user denied"), "{error}");
    assert_eq!(page(&seen), SIGN_IN_FAILED_PAGE);
    assert_closed(&redirect_uri);
    assert_eq!(source.status(), Status::AwaitingSignIn);
    assert_eq!(server.take_stats().signin.code_sessions, 0);
}

fn browser_sign_in_ends_when_the_browser_fails_or_the_time_is_up<S: Side>(side: &S) {
    let (server, issuer, client) = setup(side);
    let source = side.source(&client, None);
    for (command, why) in [
        (vec!["/nonexistent/browser".to_owned()], "No such file"),
        (vec!["false".to_owned()], "exited with"),
    ] {
        let started = issuer
            .browser(&client)
            .browser(Browser::command(command))
            .start(&source)
            .expect("listening");
        let redirect_uri = started.redirect_uri().to_owned();
        let error = side.finish_browser(started).expect_err("no browser");
        assert!(
            matches!(&error, Error::BrowserNotOpened { reason, .. } if reason.contains(why)),
            "{error:?}"
        );
        assert_closed(&redirect_uri);
    }
    // A browser that never comes back: the time limit ends it.
    let limit = Duration::from_millis(300);
    let started = issuer
        .browser(&client)
        .browser(Browser::from_fn(|_| Ok(())))
        .time_limit(limit)
        .start(&source)
        .expect("listening");
    let redirect_uri = started.redirect_uri().to_owned();
    let error = side.finish_browser(started).expect_err("timed out");
    assert!(
        matches!(error, Error::SignInTimedOut { waited } if waited == limit),
        "{error:?}"
    );
    assert_closed(&redirect_uri);
    assert_eq!(source.status(), Status::AwaitingSignIn);
    assert_eq!(server.take_stats().signin.authorizations, 0);
}

/// A session the server started, stored as a previous run left it.
fn store_a_session(server: &AuthServer, path: &Path) -> String {
    let grant = server.sign_in(Some("read"));
    let token = Token {
        issued_at: Some(SystemTime::now()),
        ..Token::bearer(
            "at-stored",
            Expiry::At(SystemTime::now() + Duration::from_secs(600)),
        )
        .with_refresh_token(grant.refresh_token.as_str())
    };
    assert!(matches!(
        FileStore::new(path).save(&token, None),
        Ok(silent_refresh_driver::store::Saved::Stored)
    ));
    grant.refresh_token
}

fn ready_waits_for_the_stored_session<S: Side>(side: &S) {
    let (server, _issuer, client) = setup(side);
    // Without a store: ready at once, nothing to continue.
    let source = side.source(&client, None);
    assert_eq!(side.ready(&source).expect("ready"), Status::AwaitingSignIn);
    // With a stored session: signed in once the store is read.
    let dir = tempfile::tempdir().expect("tempdir");
    store_a_session(&server, &dir.path().join("session.json"));
    let source = side.source(&client, Some(file_store(&dir)));
    assert_eq!(side.ready(&source).expect("read"), Status::SignedIn);
    assert_eq!(source.status(), Status::SignedIn);
    assert_eq!(
        side.token(&source)
            .expect("the stored token")
            .secret
            .expose(),
        "at-stored"
    );
}

fn logout_revokes_at_the_server_and_forgets_the_stored_session<S: Side>(side: &S) {
    let (server, issuer, client) = setup(side);
    let dir = tempfile::tempdir().expect("tempdir");
    let refresh = store_a_session(&server, &dir.path().join("session.json"));
    let grant = server.grant_of(&refresh).expect("a grant");
    let source = side.source(&client, Some(file_store(&dir)));
    // Straight after build: sign_out itself waits for the store to be read.
    assert_eq!(
        side.sign_out(&issuer, &source, &client)
            .expect("signed out"),
        SignedOut::Revoked
    );
    assert!(server.is_revoked(grant), "the server ended the session");
    assert!(stored(&dir).is_none(), "no session left in the file");
    assert_eq!(source.status(), Status::SignedOut);
    assert!(matches!(
        side.token(&source),
        Err(Error::Token(silent_refresh::Error::SignedOut))
    ));
    // The server refuses the refresh token now.
    let refused = client
        .request(Some(&Secret::new(refresh.as_str())))
        .map(|request| {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let (parts, mut body) = agent.run(request).expect("an answer").into_parts();
            let body = body.read_to_vec().expect("a body");
            client.parse_response(&ureq::http::Response::from_parts(parts, body))
        })
        .expect("a request")
        .expect_err("refused");
    assert_eq!(refused.kind, FailureKind::Terminal, "{refused}");
    let stats = server.take_stats().signin;
    assert_eq!(stats.revoked_grants, 1);
    // Again: nothing left to revoke.
    assert_eq!(
        side.sign_out(&issuer, &source, &client)
            .expect("signed out"),
        SignedOut::NoSession
    );
}
