//! Every grant and client authentication method against the embedded server, which
//! checks each for real (signatures with the public key, `aud`, `exp`, `jti` replays,
//! subject tokens signed and unexpired), in both runtimes, with many concurrent
//! callers across several expiries of one-second tokens.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use silent_refresh::{Config, Credentials, Secret};
use silent_refresh_oauth2::{
    ClientAuth, ExchangeContext, JwtAssertion, RefreshGrant, SigningKey, SubjectTokenSource,
    TokenExchange,
};
use silent_refresh_testkit::keys::{self, KeyPair};
use silent_refresh_testkit::server::{AuthServer, ServerConfig, Stats};

/// Tokens live a second: the callers run until the source has adopted this many.
const GENERATIONS: u64 = 4;
/// For token exchange, enough generations to outlive a subject token.
const EXCHANGE_GENERATIONS: u64 = 12;
/// Concurrent callers per run.
const CALLERS: usize = 24;
/// How long a subject token lives: shorter than a run, so a client that read the file
/// once would present an expired token before the run ends.
const SUBJECT_LIFETIME: Duration = Duration::from_secs(3);
/// The service account the JWT bearer grant's server trusts.
const SERVICE_ACCOUNT: &str = "svc@embedded.example";
/// The Kubernetes service account of the token-exchange cases.
const WORKLOAD: &str = "system:serviceaccount:default:app";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Runtime {
    Tokio,
    Blocking,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    /// `client_credentials` with the given secret-based authentication.
    ClientCredentials(ClientAuth),
    /// `client_credentials` with `private_key_jwt` (ES256).
    ClientCredentialsPrivateKeyJwt,
    /// The refresh-token grant with `private_key_jwt` (RS256): rotation still works.
    RefreshPrivateKeyJwt,
    /// The JWT bearer grant (ES256 service account), no client authentication.
    JwtBearer,
    /// Token exchange of a rotating projected token file, with `private_key_jwt`.
    TokenExchange,
}

/// A server and the grant, credentials and files of one case.
struct Setup {
    server: AuthServer,
    grant: RefreshGrant,
    credentials: Credentials,
    /// The subject token file, rotated at every new generation.
    subject_file: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

fn setup(case: Case) -> Setup {
    let client_key: KeyPair = match case {
        Case::RefreshPrivateKeyJwt => keys::generate_rs256(),
        _ => keys::generate_es256(),
    }
    .expect("a client key");
    let account_key = keys::generate_es256().expect("a service account key");
    let server = AuthServer::start(ServerConfig {
        token_lifetime: Duration::from_secs(1),
        token_latency: Duration::from_millis(20),
        client_public_key: Some(client_key.public.clone()),
        jwt_bearer_issuer: Some((SERVICE_ACCOUNT.to_owned(), account_key.public.clone())),
        ..ServerConfig::default()
    })
    .expect("the embedded server starts");
    let config = server.config();
    let (id, secret) = (
        config.client_id.clone(),
        config.client_secret.clone().expect("a confidential client"),
    );
    let private_key_jwt = SigningKey::from_pem(&client_key.private_pem).expect("the client key");
    let dir = tempfile::tempdir().expect("a folder");
    let mut subject_file = None;
    let (grant, credentials) = match case {
        Case::ClientCredentials(auth) => (
            RefreshGrant::client_credentials(server.token_url(), id)
                .client_secret(secret)
                .auth(auth)
                .scope("api:read")
                .resource(server.resource_url())
                .audience("embedded-api"),
            Credentials::ClientCredentials { token: None },
        ),
        Case::ClientCredentialsPrivateKeyJwt => (
            RefreshGrant::client_credentials(server.token_url(), id)
                .private_key_jwt(private_key_jwt),
            Credentials::ClientCredentials { token: None },
        ),
        Case::RefreshPrivateKeyJwt => {
            let signed_in = server.sign_in(Some("api:read"));
            (
                RefreshGrant::new(server.token_url(), id).private_key_jwt(private_key_jwt),
                Credentials::RefreshToken(Secret::new(signed_in.refresh_token)),
            )
        }
        Case::JwtBearer => {
            let account = SigningKey::from_pem(&account_key.private_pem).expect("account key");
            let assertion = JwtAssertion::new(account, SERVICE_ACCOUNT)
                .subject(SERVICE_ACCOUNT)
                .claim("scope", "api:read");
            (
                RefreshGrant::jwt_bearer(server.token_url(), assertion),
                Credentials::ClientCredentials { token: None },
            )
        }
        Case::TokenExchange => {
            let path = dir.path().join("token");
            server
                .rotate_subject_token(&path, WORKLOAD, SUBJECT_LIFETIME)
                .expect("the first projected token");
            subject_file = Some(path.clone());
            (
                RefreshGrant::token_exchange(
                    server.token_url(),
                    id,
                    TokenExchange::new(SubjectTokenSource::file(path)),
                )
                .private_key_jwt(private_key_jwt)
                .audience("embedded-api"),
                Credentials::ClientCredentials { token: None },
            )
        }
    };
    Setup {
        server,
        grant,
        credentials,
        subject_file,
        _dir: dir,
    }
}

/// What a run saw.
#[derive(Debug)]
struct Seen {
    /// The generation the callers run until.
    target: u64,
    ok: AtomicU64,
    unauthorized: AtomicU64,
    /// The highest generation a caller got.
    generation: AtomicU64,
}

/// After a caller got a token of `generation`, the kubelet rotates the file once per
/// new generation.
fn rotate_once_per_generation(setup: &Setup, seen: &Seen, rotated: &AtomicU64, generation: u64) {
    seen.generation.fetch_max(generation, Ordering::SeqCst);
    if let Some(path) = &setup.subject_file
        && rotated.fetch_max(generation, Ordering::SeqCst) < generation
    {
        setup
            .server
            .rotate_subject_token(path, WORKLOAD, SUBJECT_LIFETIME)
            .expect("rotate the projected token");
    }
}

fn config() -> Config {
    Config::builder()
        .request_timeout(Duration::from_secs(10))
        .build()
        .expect("config")
}

fn drive_tokio(setup: &Setup, seen: &Seen) {
    use silent_refresh_tokio::{OAuth2Refresher, TokenSource};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime");
    let rotated = AtomicU64::new(0);
    runtime.block_on(async {
        let source = TokenSource::builder(config())
            .credentials(setup.credentials.clone())
            .refresher(
                OAuth2Refresher::builder(setup.grant.clone())
                    .build()
                    .expect("refresher"),
            )
            .build()
            .expect("source");
        let http = reqwest::Client::new();
        let resource = setup.server.resource_url();
        let callers = (0..CALLERS).map(|_| {
            let (source, http, resource) = (source.clone(), http.clone(), resource.clone());
            let rotated = &rotated;
            async move {
                loop {
                    let token = source.token().await.expect("every caller gets a token");
                    rotate_once_per_generation(setup, seen, rotated, token.generation.0);
                    let status = http
                        .get(&resource)
                        .header("authorization", token.authorization().as_str())
                        .send()
                        .await
                        .expect("the resource answers")
                        .status();
                    if status == 401 {
                        seen.unauthorized.fetch_add(1, Ordering::SeqCst);
                        source.report_rejected(token.generation);
                    } else {
                        assert_eq!(status, 200);
                        seen.ok.fetch_add(1, Ordering::SeqCst);
                    }
                    if token.generation.0 >= seen.target {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            }
        });
        futures::future::join_all(callers).await;
        // No exchange left on the wire when the test reads the server's counts.
        assert!(source.shutdown(Duration::from_secs(10)).await, "stopped");
    });
}

fn drive_blocking(setup: &Setup, seen: &Seen) {
    use silent_refresh_ureq::{OAuth2Refresher, TokenSource};
    let source = TokenSource::builder(config())
        .credentials(setup.credentials.clone())
        .refresher(
            OAuth2Refresher::builder(setup.grant.clone())
                .build()
                .expect("refresher"),
        )
        .build()
        .expect("source");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resource = setup.server.resource_url();
    let rotated = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..CALLERS {
            scope.spawn(|| {
                loop {
                    let token = source.token().expect("every caller gets a token");
                    rotate_once_per_generation(setup, seen, &rotated, token.generation.0);
                    let status = agent
                        .get(&resource)
                        .header("authorization", token.authorization().as_str())
                        .call()
                        .expect("the resource answers")
                        .status();
                    if status == 401 {
                        seen.unauthorized.fetch_add(1, Ordering::SeqCst);
                        source.report_rejected(token.generation);
                    } else {
                        assert_eq!(status, 200);
                        seen.ok.fetch_add(1, Ordering::SeqCst);
                    }
                    if token.generation.0 >= seen.target {
                        break;
                    }
                    std::thread::yield_now();
                }
            });
        }
    });
    // No exchange left on the wire when the test reads the server's counts.
    assert!(source.shutdown(Duration::from_secs(10)), "stopped");
}

/// Runs `case` in `runtime` and checks the server's own counts.
fn many_expiries(case: Case, runtime: Runtime) -> Stats {
    let setup = setup(case);
    let seen = Seen {
        target: if case == Case::TokenExchange {
            EXCHANGE_GENERATIONS
        } else {
            GENERATIONS
        },
        ok: AtomicU64::new(0),
        unauthorized: AtomicU64::new(0),
        generation: AtomicU64::new(0),
    };
    let started = Instant::now();
    match runtime {
        Runtime::Tokio => drive_tokio(&setup, &seen),
        Runtime::Blocking => drive_blocking(&setup, &seen),
    }
    let elapsed = started.elapsed();
    let stats = setup.server.take_stats();
    let label = format!("{case:?} {runtime:?}: {stats:?} {seen:?}");
    assert!(seen.ok.load(Ordering::SeqCst) > 0, "{label}");
    assert!(
        seen.generation.load(Ordering::SeqCst) >= seen.target,
        "{label}"
    );
    // One exchange at a time, every one accepted: nothing refused, nothing replayed.
    assert_eq!(stats.max_token_in_flight, 1, "{label}");
    assert_eq!(stats.issued, stats.token_requests, "{label}");
    assert!(stats.issued >= GENERATIONS, "{label}");
    assert_eq!(stats.invalid_client, 0, "{label}");
    assert_eq!(stats.invalid_grant, 0, "{label}");
    assert_eq!(stats.assertion_refused, 0, "{label}");
    assert_eq!(stats.assertion_replayed, 0, "{label}");
    assert_eq!(stats.subject_token_refused, 0, "{label}");
    assert_eq!(stats.reuse_detected, 0, "{label}");
    let requests = stats.token_requests;
    match case {
        Case::ClientCredentials(ClientAuth::Basic) => {
            assert_eq!(stats.auth_basic, requests, "{label}");
            assert_eq!(stats.client_credentials_issued, requests, "{label}");
        }
        Case::ClientCredentials(ClientAuth::Post) => {
            assert_eq!(stats.auth_post, requests, "{label}");
        }
        Case::ClientCredentials(_) => {
            assert_eq!(stats.auth_secret_jwt, requests, "{label}");
        }
        Case::ClientCredentialsPrivateKeyJwt => {
            assert_eq!(stats.auth_private_key_jwt, requests, "{label}");
            assert_eq!(stats.client_credentials_issued, requests, "{label}");
        }
        Case::RefreshPrivateKeyJwt => {
            assert_eq!(stats.auth_private_key_jwt, requests, "{label}");
        }
        Case::JwtBearer => {
            assert_eq!(stats.auth_none, requests, "{label}");
            assert_eq!(stats.jwt_bearer_issued, requests, "{label}");
        }
        Case::TokenExchange => {
            assert_eq!(stats.auth_private_key_jwt, requests, "{label}");
            assert_eq!(stats.token_exchange_issued, requests, "{label}");
            // The run outlived the first subject token: a client that read the file
            // once would have sent it expired (and been refused).
            assert!(elapsed > SUBJECT_LIFETIME, "{label} in {elapsed:?}");
        }
    }
    stats
}

#[test]
fn client_credentials_basic_both_runtimes() {
    many_expiries(Case::ClientCredentials(ClientAuth::Basic), Runtime::Tokio);
    many_expiries(
        Case::ClientCredentials(ClientAuth::Basic),
        Runtime::Blocking,
    );
}

#[test]
fn client_credentials_post_both_runtimes() {
    many_expiries(Case::ClientCredentials(ClientAuth::Post), Runtime::Tokio);
    many_expiries(Case::ClientCredentials(ClientAuth::Post), Runtime::Blocking);
}

#[test]
fn client_credentials_client_secret_jwt_both_runtimes() {
    many_expiries(
        Case::ClientCredentials(ClientAuth::SecretJwt),
        Runtime::Tokio,
    );
    many_expiries(
        Case::ClientCredentials(ClientAuth::SecretJwt),
        Runtime::Blocking,
    );
}

#[test]
fn client_credentials_private_key_jwt_both_runtimes() {
    many_expiries(Case::ClientCredentialsPrivateKeyJwt, Runtime::Tokio);
    many_expiries(Case::ClientCredentialsPrivateKeyJwt, Runtime::Blocking);
}

#[test]
fn refresh_token_with_private_key_jwt_both_runtimes() {
    many_expiries(Case::RefreshPrivateKeyJwt, Runtime::Tokio);
    many_expiries(Case::RefreshPrivateKeyJwt, Runtime::Blocking);
}

#[test]
fn jwt_bearer_both_runtimes() {
    many_expiries(Case::JwtBearer, Runtime::Tokio);
    many_expiries(Case::JwtBearer, Runtime::Blocking);
}

#[test]
fn token_exchange_of_a_rotating_projected_token_both_runtimes() {
    many_expiries(Case::TokenExchange, Runtime::Tokio);
    many_expiries(Case::TokenExchange, Runtime::Blocking);
}

/// Sends a request built by the codec, as it is, and returns the status and the OAuth
/// error.
fn send(request: axum::http::Request<Vec<u8>>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.run(request).expect("the server answers");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

fn context(now: SystemTime, seed: u8) -> ExchangeContext {
    ExchangeContext::new(now, [seed; 32])
}

#[test]
fn the_server_refuses_replayed_misaddressed_expired_and_foreign_assertions() {
    let setup = setup(Case::ClientCredentialsPrivateKeyJwt);
    let server = &setup.server;
    let now = SystemTime::now();

    // Accepted once; the same assertion (same jti) a second time is a replay.
    let request = setup
        .grant
        .request_with(None, &context(now, 1))
        .expect("request");
    let replay = request.clone();
    assert_eq!(send(request), (200, String::new()));
    assert_eq!(send(replay), (401, "invalid_client".to_owned()));
    let stats = server.take_stats();
    assert_eq!(stats.assertion_replayed, 1, "{stats:?}");

    // An assertion for another audience (the same server, spelled another way).
    let other_aud = server.token_url().replace("127.0.0.1", "localhost");
    let key = keys::generate_es256().expect("key");
    let misaddressed = RefreshGrant::client_credentials(other_aud, "demo-client")
        .private_key_jwt(SigningKey::from_pem(&key.private_pem).expect("key"));
    let request = misaddressed
        .request_with(None, &context(now, 2))
        .expect("request");
    let (parts, body) = request.into_parts();
    let mut retargeted = axum::http::Request::from_parts(parts, body);
    *retargeted.uri_mut() = server.token_url().parse().expect("uri");
    assert_eq!(send(retargeted), (401, "invalid_client".to_owned()));

    // Signed an hour and a half ago: its exp has passed.
    let old = now - Duration::from_secs(5400);
    let expired = setup
        .grant
        .request_with(None, &context(old, 3))
        .expect("request");
    assert_eq!(send(expired), (401, "invalid_client".to_owned()));

    // Signed with a key the server does not know.
    let foreign = RefreshGrant::client_credentials(server.token_url(), "demo-client")
        .private_key_jwt(SigningKey::from_pem(&key.private_pem).expect("key"));
    let request = foreign
        .request_with(None, &context(now, 4))
        .expect("request");
    assert_eq!(send(request), (401, "invalid_client".to_owned()));
    let stats = server.take_stats();
    assert_eq!(stats.assertion_refused, 3, "{stats:?}");
    assert_eq!(stats.issued, 0, "{stats:?}");
}

#[test]
fn the_server_refuses_a_replayed_grant_assertion_and_an_expired_subject_token() {
    let bearer = setup(Case::JwtBearer);
    let now = SystemTime::now();
    let request = bearer
        .grant
        .request_with(None, &context(now, 1))
        .expect("request");
    let replay = request.clone();
    assert_eq!(send(request).0, 200);
    assert_eq!(send(replay), (400, "invalid_grant".to_owned()));
    assert_eq!(bearer.server.take_stats().assertion_replayed, 1);

    // The projected token is accepted; one that expired (which a client whose clock
    // is behind would still send) and a forged one are refused.
    let exchange = setup(Case::TokenExchange);
    let path: &Path = exchange.subject_file.as_deref().expect("a subject file");
    let token = std::fs::read_to_string(path).expect("the token");
    let request = exchange
        .grant
        .request_with(
            None,
            &context(now, 5).with_subject_token(Secret::new(token)),
        )
        .expect("request");
    assert_eq!(send(request).0, 200, "a valid subject token is accepted");
    let expired = exchange.server.issue_expired_subject_token(WORKLOAD);
    let behind = now - Duration::from_secs(3600);
    // (With a client secret: a client assertion dated by that clock would be refused
    // first.)
    let with_secret = RefreshGrant::token_exchange(
        exchange.server.token_url(),
        "demo-client",
        TokenExchange::new(SubjectTokenSource::file(path)),
    )
    .client_secret("demo-client-secret");
    let request = with_secret
        .request_with(
            None,
            &context(behind, 7).with_subject_token(Secret::new(expired)),
        )
        .expect("the client's clock thinks it valid");
    assert_eq!(send(request), (400, "invalid_request".to_owned()));
    let forged = exchange
        .grant
        .request_with(
            None,
            &context(now, 6).with_subject_token(Secret::new("not.a.token")),
        )
        .expect("request");
    assert_eq!(send(forged), (400, "invalid_request".to_owned()));
    assert_eq!(exchange.server.take_stats().subject_token_refused, 2);
}

#[test]
fn an_expired_subject_token_is_never_sent() {
    let setup = setup(Case::TokenExchange);
    let path = setup.subject_file.as_deref().expect("a subject file");
    let token = std::fs::read_to_string(path).expect("the token");
    // Past the token's exp by the exchange's clock: the codec refuses to send it.
    let later = SystemTime::now() + SUBJECT_LIFETIME + Duration::from_secs(1);
    let failure = setup
        .grant
        .request_with(
            None,
            &context(later, 1).with_subject_token(Secret::new(token)),
        )
        .expect_err("not sent");
    assert_eq!(failure.kind, silent_refresh::FailureKind::Transient);
    assert_eq!(setup.server.take_stats().token_requests, 0);
}
