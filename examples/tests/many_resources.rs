//! One session, many resources (issue 22, rule 13), end to end in both runtimes
//! against the embedded server: two APIs of its own (each with its own audience, RFC
//! 8707) beside its main resource, one sign-in, one rotating refresh token. Requests
//! are spread over the three in turn, each with its own key's token (`for_target`):
//! none fails, none carries another API's token, no refresh token is spent twice, one
//! exchange is on the wire at a time, and each key refreshes about once per expiry. A
//! store shared by two sources keeps every key's token; an API that wants a scope no
//! grant has gets an error naming it, and no refresh storm.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use silent_refresh_oauth2::{RefreshGrant, Target};
use silent_refresh_testkit::server::{ApiServer, AuthServer, ServerConfig, Stats};

/// How long an access token lives, and how long requests run: four expiries.
const LIFETIME: Duration = Duration::from_secs(2);
const RUN: Duration = Duration::from_secs(8);
/// Workers sending requests at once.
const WORKERS: usize = 4;

/// The server, and two APIs beside its main resource.
struct Apis {
    server: AuthServer,
    a: ApiServer,
    b: ApiServer,
}

impl Apis {
    fn start() -> Self {
        Self::with_lifetime(LIFETIME)
    }

    fn with_lifetime(lifetime: Duration) -> Self {
        let server = AuthServer::start(ServerConfig {
            token_lifetime: lifetime,
            ..ServerConfig::default()
        })
        .expect("the server starts");
        let a = server.start_api(None).expect("API a");
        let b = server.start_api(None).expect("API b");
        Self { server, a, b }
    }

    fn grant(&self) -> RefreshGrant {
        let config = self.server.config();
        RefreshGrant::new(self.server.token_url(), config.client_id.as_str())
            .client_secret(config.client_secret.clone().unwrap_or_default())
    }

    /// The resources in turn: (the key's index, its URL, its target).
    fn resources(&self) -> Vec<(usize, String, Target)> {
        vec![
            (0, self.server.resource_url(), Target::default()),
            (
                1,
                self.a.resource_url(),
                Target::resource(self.a.audience()),
            ),
            (
                2,
                self.b.resource_url(),
                Target::resource(self.b.audience()),
            ),
        ]
    }
}

/// What the workers saw: per key, the access tokens they were granted.
#[derive(Default)]
struct Seen {
    ok: u64,
    failed: Vec<String>,
    tokens: [HashSet<String>; 3],
}

impl Seen {
    fn record(seen: &Mutex<Self>, key: usize, token: &str, outcome: Result<u16, String>) {
        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.tokens[key].insert(token.to_owned());
        match outcome {
            Ok(200) => seen.ok += 1,
            Ok(status) => seen.failed.push(format!("key {key}: status {status}")),
            Err(error) => seen.failed.push(format!("key {key}: {error}")),
        }
    }
}

/// The run kept the session for every key, and never mixed their tokens.
fn assert_spread(apis: &Apis, seen: &Seen) {
    let stats: Stats = apis.server.take_stats();
    let (a, b) = (apis.a.take_stats(), apis.b.take_stats());
    let context = format!(
        "ok {}, failed {:?}, {stats:?}, a {a:?}, b {b:?}",
        seen.ok,
        &seen.failed[..seen.failed.len().min(5)]
    );
    assert!(seen.failed.is_empty(), "{context}");
    assert!(seen.ok > 30, "{context}");
    // No request was granted another key's token: the APIs never saw one, and the
    // tokens each key was granted are its own.
    assert_eq!(stats.wrong_audience, 0, "{context}");
    assert_eq!((a.wrong_audience, b.wrong_audience), (0, 0), "{context}");
    assert_eq!((a.unauthorized, b.unauthorized), (0, 0), "{context}");
    for (i, one) in seen.tokens.iter().enumerate() {
        assert!(!one.is_empty(), "key {i} was used: {context}");
        for other in &seen.tokens[i + 1..] {
            assert!(one.is_disjoint(other), "{context}");
        }
    }
    // One lineage: nothing spent twice, one exchange on the wire at a time.
    assert_eq!(stats.reuse_detected, 0, "{context}");
    assert_eq!(stats.invalid_grant, 0, "{context}");
    assert_eq!(stats.max_token_in_flight, 1, "{context}");
    // About one refresh per key per expiry (its first token, then one per lifetime,
    // each a little before its end), never a storm.
    let expiries = (RUN.as_millis() / LIFETIME.as_millis()) as u64;
    assert!(
        stats.issued >= 3 * expiries && stats.issued <= 3 * (2 * expiries + 2),
        "{} refreshes for 3 keys and {expiries} expiries: {context}",
        stats.issued
    );
}

#[test]
fn tokio_one_session_serves_two_apis_and_its_own() {
    use silent_refresh_tokio::{Config, Credentials, OAuth2Refresher, TokenSource};
    let apis = Apis::start();
    let signed = apis.server.sign_in(None);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let source = TokenSource::builder(Config::default())
            .credentials(Credentials::RefreshToken(
                signed.refresh_token.as_str().into(),
            ))
            .refresher(OAuth2Refresher::new(apis.grant()).expect("a refresher"))
            .build()
            .expect("a source");
        let keyed: Vec<_> = apis
            .resources()
            .into_iter()
            .map(|(key, url, target)| {
                let handle = source.for_target(target).expect("a key");
                (key, url, handle)
            })
            .collect();
        assert_eq!(
            keyed[0].2.key(),
            source.key(),
            "the default target is the default key"
        );
        let http = reqwest::Client::new();
        let end = Instant::now() + RUN;
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..WORKERS {
            let (keyed, http, seen) = (keyed.clone(), http.clone(), seen.clone());
            tasks.spawn(async move {
                let mut turn = worker;
                while Instant::now() < end {
                    let (key, url, handle) = &keyed[turn % keyed.len()];
                    turn += 1;
                    let token = match handle.token().await {
                        Ok(token) => token,
                        Err(error) => {
                            Seen::record(&seen, *key, "", Err(error.to_string()));
                            continue;
                        }
                    };
                    let sent = http
                        .get(url)
                        .header("authorization", &*token.authorization())
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .map_err(|e| e.to_string());
                    Seen::record(&seen, *key, token.secret.expose(), sent);
                }
            });
        }
        tasks.join_all().await;
        assert!(source.shutdown(Duration::from_secs(5)).await);
    });
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
    assert_spread(&apis, &seen);
}

#[test]
fn blocking_one_session_serves_two_apis_and_its_own() {
    use silent_refresh_ureq::{Config, Credentials, OAuth2Refresher, TokenSource};
    let apis = Apis::start();
    let signed = apis.server.sign_in(None);
    let seen = Mutex::new(Seen::default());
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::RefreshToken(
            signed.refresh_token.as_str().into(),
        ))
        .refresher(OAuth2Refresher::new(apis.grant()).expect("a refresher"))
        .build()
        .expect("a source");
    let keyed: Vec<_> = apis
        .resources()
        .into_iter()
        .map(|(key, url, target)| (key, url, source.for_target(target).expect("a key")))
        .collect();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let end = Instant::now() + RUN;
    std::thread::scope(|scope| {
        for worker in 0..WORKERS {
            let (keyed, agent, seen) = (&keyed, agent.clone(), &seen);
            scope.spawn(move || {
                let mut turn = worker;
                while Instant::now() < end {
                    let (key, url, handle) = &keyed[turn % keyed.len()];
                    turn += 1;
                    let token = match handle.token() {
                        Ok(token) => token,
                        Err(error) => {
                            Seen::record(seen, *key, "", Err(error.to_string()));
                            continue;
                        }
                    };
                    let sent = agent
                        .get(url)
                        .header("authorization", &*token.authorization())
                        .call()
                        .map(|r| r.status().as_u16())
                        .map_err(|e| e.to_string());
                    Seen::record(seen, *key, token.secret.expose(), sent);
                }
            });
        }
    });
    assert!(source.shutdown(Duration::from_secs(5)));
    let seen = seen.into_inner().unwrap_or_else(PoisonError::into_inner);
    assert_spread(&apis, &seen);
}

/// How long requests go to an API that wants a scope no grant has.
const SCOPE_RUN: Duration = Duration::from_secs(6);

/// Tokens outlive the scope runs: any refresh past the first tokens would be the 403's.
const SCOPE_LIFETIME: Duration = Duration::from_secs(60);

/// The API wanting `admin` was answered with an error naming it every time, and the
/// session did not refresh over it: its first tokens, then none.
fn assert_no_storm(apis: &Apis, admin: &ApiServer, errors: &[String]) {
    let stats = apis.server.take_stats();
    let admin_stats = admin.take_stats();
    let context = format!(
        "{:?} {stats:?} {admin_stats:?}",
        &errors[..errors.len().min(3)]
    );
    assert!(errors.len() > 5, "{context}");
    assert!(
        errors.iter().all(|e| e.contains("`admin`")),
        "every error names the scope: {context}"
    );
    assert_eq!(
        admin_stats.insufficient_scope,
        errors.len() as u64,
        "{context}"
    );
    assert_eq!(admin_stats.wrong_audience, 0, "{context}");
    assert!(stats.issued <= 3, "a few refreshes at most: {context}");
    assert_eq!(stats.reuse_detected, 0, "{context}");
}

#[test]
fn tokio_an_api_wanting_a_scope_gets_an_error_naming_it_and_no_refresh_storm() {
    use silent_refresh_tokio::{
        AuthorizedClient, Config, Credentials, Error, OAuth2Refresher, TokenSource,
    };
    let apis = Apis::with_lifetime(SCOPE_LIFETIME);
    let admin = apis.server.start_api(Some("admin")).expect("an API");
    let signed = apis.server.sign_in(None);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let errors = runtime.block_on(async {
        let source = TokenSource::builder(Config::default())
            .credentials(Credentials::RefreshToken(
                signed.refresh_token.as_str().into(),
            ))
            .refresher(OAuth2Refresher::new(apis.grant()).expect("a refresher"))
            .build()
            .expect("a source");
        let keyed = source
            .for_target(Target::resource(admin.audience()))
            .expect("a key");
        let client = AuthorizedClient::builder(keyed)
            .allow_origin(admin.origin())
            .build()
            .expect("a client");
        let http = reqwest::Client::new();
        let end = Instant::now() + SCOPE_RUN;
        let mut errors = Vec::new();
        while Instant::now() < end {
            let request = http.get(admin.resource_url()).build().expect("a request");
            match client.execute(&http, request).await {
                Err(error @ Error::InsufficientScope { .. }) => errors.push(error.to_string()),
                other => errors.push(format!("not the scope's error: {other:?}")),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(source.shutdown(Duration::from_secs(5)).await);
        errors
    });
    assert_no_storm(&apis, &admin, &errors);
}

#[test]
fn blocking_an_api_wanting_a_scope_gets_an_error_naming_it_and_no_refresh_storm() {
    use silent_refresh_ureq::{BearerAuth, Config, Credentials, OAuth2Refresher, TokenSource};
    let apis = Apis::with_lifetime(SCOPE_LIFETIME);
    let admin = apis.server.start_api(Some("admin")).expect("an API");
    let signed = apis.server.sign_in(None);
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::RefreshToken(
            signed.refresh_token.as_str().into(),
        ))
        .refresher(OAuth2Refresher::new(apis.grant()).expect("a refresher"))
        .build()
        .expect("a source");
    let keyed = source
        .for_target(Target::resource(admin.audience()))
        .expect("a key");
    let auth = BearerAuth::builder(keyed)
        .allow_origin(admin.origin())
        .build()
        .expect("a middleware");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .middleware(auth)
        .http_status_as_error(false)
        .build()
        .into();
    let end = Instant::now() + SCOPE_RUN;
    let mut errors = Vec::new();
    while Instant::now() < end {
        match agent.get(admin.resource_url()).call() {
            Err(error) => errors.push(error.to_string()),
            Ok(response) => errors.push(format!("not an error: {}", response.status())),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(source.shutdown(Duration::from_secs(5)));
    assert_no_storm(&apis, &admin, &errors);
}

/// Two processes (two sources, one file) sharing a session, each with keys of its
/// own: the stored session keeps every key's token, a credential one rotated is the
/// one the other refreshes with, and a third process finds every key's token there.
#[test]
fn a_store_shared_by_two_sources_keeps_every_keys_token() {
    use silent_refresh_ureq::{Config, Credentials, FileStore, OAuth2Refresher, TokenSource};
    let apis = Apis::with_lifetime(Duration::from_secs(120));
    let c = apis.server.start_api(None).expect("API c");
    let signed = apis.server.sign_in(None);
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("session.json");
    let process = |credentials: Option<Credentials>| {
        let mut builder = TokenSource::builder(Config::default())
            .store(FileStore::new(&path))
            .refresher(OAuth2Refresher::new(apis.grant()).expect("a refresher"));
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials);
        }
        let source = builder.build().expect("a source");
        source
            .ready_within(Duration::from_secs(5))
            .expect("the store is read");
        source
    };
    let token_of = |source: &TokenSource, api: &ApiServer| {
        let keyed = source
            .for_target(Target::resource(api.audience()))
            .expect("a key");
        let token = keyed.token().expect("a token");
        assert!(keyed.until_durable(Duration::from_secs(5)), "saved");
        token.secret.expose().to_owned()
    };
    let first = process(Some(Credentials::RefreshToken(
        signed.refresh_token.as_str().into(),
    )));
    let token_a = token_of(&first, &apis.a);
    // The second process loads the first's session and adds a key of its own.
    let second = process(None);
    let token_b = token_of(&second, &apis.b);
    // The first still holds the credential the second rotated: its new key refreshes
    // with the stored one.
    let token_c = token_of(&first, &c);
    assert!(first.shutdown(Duration::from_secs(5)));
    assert!(second.shutdown(Duration::from_secs(5)));
    let issued = apis.server.take_stats();
    assert_eq!(issued.reuse_detected, 0, "{issued:?}");
    assert_eq!(issued.invalid_grant, 0, "{issued:?}");
    // A third process finds every key's token in the store: no refresh.
    let third = process(None);
    assert_eq!(token_of(&third, &apis.a), token_a);
    assert_eq!(token_of(&third, &apis.b), token_b);
    assert_eq!(token_of(&third, &c), token_c);
    let after = apis.server.take_stats();
    assert_eq!(after.issued, 0, "{after:?}");
    assert!(third.shutdown(Duration::from_secs(5)));
}

/// How long requests go through one client to the three APIs.
const CLIENT_RUN: Duration = Duration::from_secs(4);

/// One client for the three APIs: each request got its own API's token.
fn assert_routed(apis: &Apis, ok: u64, failed: &[String]) {
    let stats = apis.server.take_stats();
    let (a, b) = (apis.a.take_stats(), apis.b.take_stats());
    let context = format!(
        "ok {ok}, failed {:?}, {stats:?}, a {a:?}, b {b:?}",
        &failed[..failed.len().min(5)]
    );
    assert!(failed.is_empty(), "{context}");
    assert!(
        ok > 30 && a.ok > 10 && b.ok > 10 && stats.resource_ok > 10,
        "{context}"
    );
    assert_eq!(
        stats.wrong_audience + a.wrong_audience + b.wrong_audience,
        0,
        "{context}"
    );
    assert_eq!(stats.reuse_detected, 0, "{context}");
    assert_eq!(stats.max_token_in_flight, 1, "{context}");
}

#[test]
fn tokio_one_authorized_client_gives_each_api_its_own_token() {
    use silent_refresh_tokio::{
        AuthorizedClient, Config, Credentials, OAuth2Refresher, TokenSource,
    };
    let apis = Apis::start();
    let signed = apis.server.sign_in(None);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let (ok, failed) = runtime.block_on(async {
        let source = TokenSource::builder(Config::default())
            .credentials(Credentials::RefreshToken(
                signed.refresh_token.as_str().into(),
            ))
            .refresher(OAuth2Refresher::new(apis.grant()).expect("a refresher"))
            .build()
            .expect("a source");
        let for_api = |api: &ApiServer| {
            source
                .for_target(Target::resource(api.audience()))
                .expect("a key")
        };
        let client = AuthorizedClient::builder(source.clone())
            .allow_origin(apis.server.origin())
            .allow_origin_for(apis.a.origin(), for_api(&apis.a))
            .allow_url_for(apis.b.resource_url(), for_api(&apis.b))
            .build()
            .expect("a client");
        let http = reqwest::Client::new();
        let urls: Vec<String> = apis
            .resources()
            .into_iter()
            .map(|(_, url, _)| url)
            .collect();
        let end = Instant::now() + CLIENT_RUN;
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..WORKERS {
            let (client, http, urls) = (client.clone(), http.clone(), urls.clone());
            tasks.spawn(async move {
                let (mut ok, mut failed) = (0, Vec::new());
                let mut turn = worker;
                while Instant::now() < end {
                    let url = &urls[turn % urls.len()];
                    turn += 1;
                    let request = http.get(url).build().expect("a request");
                    match client.execute(&http, request).await {
                        Ok(response) if response.status().is_success() => ok += 1,
                        Ok(response) => failed.push(format!("{url}: {}", response.status())),
                        Err(error) => failed.push(format!("{url}: {error}")),
                    }
                }
                (ok, failed)
            });
        }
        let mut all = (0, Vec::new());
        for (ok, failed) in tasks.join_all().await {
            all.0 += ok;
            all.1.extend(failed);
        }
        assert!(source.shutdown(Duration::from_secs(5)).await);
        all
    });
    assert_routed(&apis, ok, &failed);
}

#[test]
fn blocking_one_agent_gives_each_api_its_own_token() {
    use silent_refresh_ureq::{BearerAuth, Config, Credentials, OAuth2Refresher, TokenSource};
    let apis = Apis::start();
    let signed = apis.server.sign_in(None);
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::RefreshToken(
            signed.refresh_token.as_str().into(),
        ))
        .refresher(OAuth2Refresher::new(apis.grant()).expect("a refresher"))
        .build()
        .expect("a source");
    let for_api = |api: &ApiServer| {
        source
            .for_target(Target::resource(api.audience()))
            .expect("a key")
    };
    let auth = BearerAuth::builder(source.clone())
        .allow_origin(apis.server.origin())
        .allow_origin_for(apis.a.origin(), for_api(&apis.a))
        .allow_url_for(apis.b.resource_url(), for_api(&apis.b))
        .build()
        .expect("a middleware");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .middleware(auth)
        .http_status_as_error(false)
        .build()
        .into();
    let urls: Vec<String> = apis
        .resources()
        .into_iter()
        .map(|(_, url, _)| url)
        .collect();
    let end = Instant::now() + CLIENT_RUN;
    let results = Mutex::new((0, Vec::new()));
    std::thread::scope(|scope| {
        for worker in 0..WORKERS {
            let (agent, urls, results) = (agent.clone(), &urls, &results);
            scope.spawn(move || {
                let mut turn = worker;
                while Instant::now() < end {
                    let url = &urls[turn % urls.len()];
                    turn += 1;
                    let outcome = match agent.get(url).call() {
                        Ok(response) if response.status().is_success() => Ok(()),
                        Ok(response) => Err(format!("{url}: {}", response.status())),
                        Err(error) => Err(format!("{url}: {error}")),
                    };
                    let mut results = results.lock().unwrap_or_else(PoisonError::into_inner);
                    match outcome {
                        Ok(()) => results.0 += 1,
                        Err(failure) => results.1.push(failure),
                    }
                }
            });
        }
    });
    assert!(source.shutdown(Duration::from_secs(5)));
    let (ok, failed) = results.into_inner().unwrap_or_else(PoisonError::into_inner);
    assert_routed(&apis, ok, &failed);
}
