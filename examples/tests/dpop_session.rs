//! DPoP sessions through the library (issue 20, rule 15), in both runtimes, against the
//! embedded server in its DPoP mode: a public client whose refresh tokens are bound to
//! the key, nonces demanded (and rotated) at the token endpoint and at the resource,
//! replay, `ath`, `htu`/`htm` and key checks. Every resource request is proven, no bound
//! token goes as `Bearer`, no proof is refused, nothing is spent twice, nonces are
//! learned about once per rotation; the key is stored with the session, and a second
//! source given no key (another process, one file) takes it from the stored session.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use silent_refresh_oauth2::RefreshGrant;
use silent_refresh_oauth2::dpop::{DpopAlgorithm, DpopKey, DpopSession};
use silent_refresh_testkit::server::{AuthServer, DpopConfig, ServerConfig, Stats};

const RUN: Duration = Duration::from_secs(4);

fn dpop_server() -> AuthServer {
    AuthServer::start(ServerConfig {
        token_lifetime: Duration::from_secs(2),
        client_secret: None,
        dpop: Some(DpopConfig {
            nonce_period: Some(Duration::from_millis(700)),
            ..DpopConfig::default()
        }),
        ..ServerConfig::default()
    })
    .expect("the server starts")
}

fn session() -> DpopSession {
    DpopSession::new(DpopKey::generate_with_os_rng(DpopAlgorithm::Es256).expect("a key"))
}

fn grant(server: &AuthServer) -> RefreshGrant {
    RefreshGrant::new(server.token_url(), server.config().client_id.as_str())
}

/// The run kept the DPoP session: every request proven and served, nothing refused or
/// spent twice, nonce challenges about one per rotation per request in flight.
fn assert_kept(stats: &Stats, ok: u64, failed: u64, in_flight: u64) {
    let dpop = &stats.dpop;
    let context = format!("ok {ok}, failed {failed}, {stats:?}");
    assert_eq!(failed, 0, "{context}");
    assert!(ok > 20, "{context}");
    assert_eq!(stats.reuse_detected, 0, "{context}");
    assert_eq!(stats.invalid_grant, 0, "{context}");
    assert_eq!(dpop.refused(), 0, "no proof refused, no Bearer: {context}");
    assert_eq!(dpop.bearer_refused, 0, "{context}");
    assert!(dpop.bound_issued >= 2, "{context}");
    assert!(
        dpop.resource_proofs >= ok,
        "every request proven: {context}"
    );
    // About one challenge per rotation (every 700 ms) per request in flight, at the
    // resource; not one per request.
    let rotations = RUN.as_millis() as u64 / 700 + 2;
    assert!(
        dpop.resource_nonce_challenges <= rotations * in_flight * 2,
        "nonces learned once per rotation: {context}"
    );
    assert!(dpop.token_nonce_challenges <= rotations * 2, "{context}");
}

#[test]
fn a_dpop_session_on_tokio_proves_every_request_and_keeps_its_key_in_the_store() {
    let server = dpop_server();
    let signed = server.sign_in(None);
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("session.json");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let (ok, failed) = runtime.block_on(async {
        use silent_refresh_tokio::{
            AuthorizedClient, Config, Credentials, FileStore, OAuth2Refresher, TokenSource,
        };
        let refresher = OAuth2Refresher::builder(grant(&server))
            .dpop(session())
            .build()
            .expect("a refresher");
        let source = TokenSource::builder(Config::default())
            .store(FileStore::new(&path))
            .credentials(Credentials::RefreshToken(
                signed.refresh_token.as_str().into(),
            ))
            .refresher(refresher)
            .build()
            .expect("a source");
        let client = AuthorizedClient::builder(source.clone())
            .allow_origin(server.origin())
            .build()
            .expect("a client");
        let http = reqwest::Client::new();
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let end = Instant::now() + RUN;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (client, http, url) = (client.clone(), http.clone(), server.resource_url());
            let (ok, failed) = (ok.clone(), failed.clone());
            tasks.spawn(async move {
                while Instant::now() < end {
                    let request = http.get(&url).build().expect("a request");
                    match client.execute(&http, request).await {
                        Ok(response) if response.status().is_success() => {
                            ok.fetch_add(1, Ordering::SeqCst)
                        }
                        _ => failed.fetch_add(1, Ordering::SeqCst),
                    };
                }
            });
        }
        tasks.join_all().await;
        assert!(source.shutdown(Duration::from_secs(5)).await);
        (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst))
    });
    assert_kept(&server.take_stats(), ok, failed, 4);
    let stored = std::fs::read_to_string(&path).expect("the session file");
    assert!(stored.contains("silent-refresh/token/2") && stored.contains("dpop_key"));
}

#[test]
fn a_dpop_session_on_threads_and_a_second_source_without_the_key_share_one_file() {
    use silent_refresh_ureq::{
        BearerAuth, Config, Credentials, FileStore, OAuth2Refresher, TokenSource,
    };
    let server = dpop_server();
    let signed = server.sign_in(None);
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("session.json");
    let key = session();
    let thumbprint = key.thumbprint();
    // The first process: the key, and the refresh token to start from.
    let first = TokenSource::builder(Config::default())
        .store(FileStore::new(&path))
        .credentials(Credentials::RefreshToken(
            signed.refresh_token.as_str().into(),
        ))
        .refresher(
            OAuth2Refresher::builder(grant(&server))
                .dpop(key)
                .build()
                .expect("a refresher"),
        )
        .build()
        .expect("a source");
    first.token().expect("the first token");
    assert!(first.until_durable(Duration::from_secs(5)));
    // The second: a key of its own, no credentials; the stored session (and its key)
    // wins.
    let other = session();
    let second = TokenSource::builder(Config::default())
        .store(FileStore::new(&path))
        .refresher(
            OAuth2Refresher::builder(grant(&server))
                .dpop(other.clone())
                .build()
                .expect("a refresher"),
        )
        .build()
        .expect("a source");
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let end = Instant::now() + RUN;
    std::thread::scope(|scope| {
        for source in [&first, &second, &first, &second] {
            let auth = BearerAuth::builder(source.clone())
                .allow_origin(server.origin())
                .build()
                .expect("a middleware");
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .middleware(auth)
                .http_status_as_error(false)
                .build()
                .into();
            let (ok, failed, url) = (ok.clone(), failed.clone(), server.resource_url());
            scope.spawn(move || {
                while Instant::now() < end {
                    match agent.get(&url).call() {
                        Ok(response) if response.status().is_success() => {
                            ok.fetch_add(1, Ordering::SeqCst)
                        }
                        _ => failed.fetch_add(1, Ordering::SeqCst),
                    };
                }
            });
        }
    });
    assert_eq!(
        other.thumbprint(),
        thumbprint,
        "the second took the stored key"
    );
    assert!(first.shutdown(Duration::from_secs(5)));
    assert!(second.shutdown(Duration::from_secs(5)));
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert_kept(&server.take_stats(), ok, failed, 4);
}
