//! The DPoP codec (`silent_refresh_oauth2::dpop`) against the embedded server's DPoP
//! mode, over real HTTP on 127.0.0.1 (ureq, no adapter): refreshes that learn the
//! server's nonce, refresh tokens bound to their key, proven resource requests, and
//! the server's refusals of replays, bearer use, and proofs that do not fit.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http;
use silent_refresh::{FailureKind, Secret, Token};
use silent_refresh_oauth2::RefreshGrant;
use silent_refresh_oauth2::dpop::{
    self, DpopAlgorithm, DpopKey, NonceCache, ProofInput, resource_nonce_challenge,
    token_nonce_challenge,
};
use silent_refresh_testkit::server::{AuthServer, DpopConfig, ServerConfig};

/// A public client's server in DPoP mode, nonces demanded at both ends and rotated
/// only when a test says.
fn server(config: DpopConfig) -> AuthServer {
    AuthServer::start(ServerConfig {
        client_secret: None,
        token_latency: Duration::from_millis(5),
        token_lifetime: Duration::from_secs(60),
        dpop: Some(config),
        ..ServerConfig::default()
    })
    .expect("the server starts")
}

fn manual_nonces() -> DpopConfig {
    DpopConfig {
        nonce_period: None,
        ..DpopConfig::default()
    }
}

/// No nonce at the resource: each refusal there is the proof's, not a challenge.
fn without_resource_nonces() -> DpopConfig {
    DpopConfig {
        resource_nonces: false,
        ..manual_nonces()
    }
}

/// An agent that hands every status back, 4xx included.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// 16 bytes never drawn before in this process.
fn jti() -> [u8; 16] {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static KEYS: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let keys = KEYS.get_or_init(RandomState::new);
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&keys.hash_one((n, 1u8)).to_le_bytes());
    bytes[8..].copy_from_slice(&n.to_le_bytes());
    bytes
}

/// What came back.
struct Answer {
    status: http::StatusCode,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    fn response(&self) -> http::Response<Vec<u8>> {
        let mut response = http::Response::new(self.body.clone());
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        response
    }

    fn challenge(&self) -> String {
        self.headers
            .get(http::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

fn answer(response: Result<http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut response = response.expect("an HTTP answer");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.body_mut().read_to_vec().expect("the body is read");
    Answer {
        status,
        headers,
        body,
    }
}

/// One token request with `proof` (none: no `DPoP` header).
fn post_token(server: &AuthServer, refresh_token: &str, proof: Option<&str>) -> Answer {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "refresh_token")
        .append_pair("refresh_token", refresh_token)
        .append_pair("client_id", &server.config().client_id)
        .finish();
    let mut request = agent()
        .post(&server.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json");
    if let Some(proof) = proof {
        request = request.header("dpop", proof);
    }
    answer(request.send(body.as_bytes()))
}

/// The exchange as the adapters will run it: a proof with the nonce known, and one
/// resend at once if the token endpoint challenges it.
fn refresh(
    server: &AuthServer,
    key: &DpopKey,
    nonces: &mut NonceCache,
    refresh_token: &str,
) -> Answer {
    let url = server.token_url();
    let mut resent = false;
    loop {
        let proof = key
            .proof(&ProofInput::new("POST", &url, now(), jti()).nonce(nonces.get(&url)))
            .expect("a proof");
        let answer = post_token(server, refresh_token, Some(&proof));
        nonces.observe(&url, &answer.headers);
        if !resent && token_nonce_challenge(answer.status, &answer.headers, &answer.body).is_some()
        {
            resent = true;
            continue;
        }
        return answer;
    }
}

/// One resource request with this `Authorization` and proof.
fn get_resource(server: &AuthServer, authorization: &str, proof: Option<&str>) -> Answer {
    let mut request = agent()
        .get(&server.resource_url())
        .header("authorization", authorization);
    if let Some(proof) = proof {
        request = request.header("dpop", proof);
    }
    answer(request.call())
}

/// A resource request with a bound token, resent once on a nonce challenge. Returns
/// the answer and whether it was resent.
fn call_resource(
    server: &AuthServer,
    key: &DpopKey,
    nonces: &mut NonceCache,
    token: &Secret,
) -> (Answer, bool) {
    let url = server.resource_url();
    let mut resent = false;
    loop {
        let proof = key
            .proof(
                &ProofInput::new("GET", &url, now(), jti())
                    .nonce(nonces.get(&url))
                    .access_token(token),
            )
            .expect("a proof");
        let answer = get_resource(server, &format!("DPoP {}", token.expose()), Some(&proof));
        nonces.observe(&url, &answer.headers);
        if !resent && resource_nonce_challenge(answer.status, &answer.headers).is_some() {
            resent = true;
            continue;
        }
        return (answer, resent);
    }
}

fn parse(server: &AuthServer, answer: &Answer) -> Result<Token, silent_refresh::RefreshFailure> {
    RefreshGrant::new(server.token_url(), &server.config().client_id)
        .parse_response(&answer.response())
}

fn new_key(algorithm: DpopAlgorithm) -> DpopKey {
    DpopKey::generate_with_os_rng(algorithm).expect("a key")
}

#[test]
fn a_refresh_learns_the_token_endpoints_nonce_and_gets_a_bound_token() {
    let server = server(manual_nonces());
    let grant = server.sign_in(None);
    let key = new_key(DpopAlgorithm::Es256);
    let mut nonces = NonceCache::new();

    let first = refresh(&server, &key, &mut nonces, &grant.refresh_token);
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let token = parse(&server, &first).expect("a token");
    assert_eq!(token.token_type, dpop::TOKEN_TYPE);
    assert!(dpop::is_bound(&token.token_type));
    let rotated = token.refresh_token.expect("a rotated refresh token");
    // The server's thumbprint (jsonwebtoken's) is the codec's.
    assert_eq!(
        server.dpop_refresh_binding(rotated.expose()).as_deref(),
        Some(key.thumbprint())
    );
    assert_eq!(
        server
            .dpop_access_binding(token.access_token.expose())
            .as_deref(),
        Some(key.thumbprint())
    );
    let stats = server.take_stats();
    assert_eq!(stats.token_requests, 2, "one challenge, one resend");
    assert_eq!(stats.dpop.token_nonce_challenges, 1);
    assert_eq!(stats.dpop.token_proofs, 1);
    assert_eq!(stats.dpop.bound_issued, 1);
    assert_eq!(stats.dpop.refused(), 0, "{:?}", stats.dpop);
    assert_eq!(stats.reuse_detected, 0);

    // The success carried the nonce: the next refresh is not challenged.
    assert_eq!(
        nonces.get(&server.token_url()),
        server.dpop_nonce(true).as_deref()
    );
    let second = refresh(&server, &key, &mut nonces, rotated.expose());
    assert_eq!(second.status, 200);
    let stats = server.take_stats();
    assert_eq!(stats.token_requests, 1);
    assert_eq!(stats.dpop.token_nonce_challenges, 0);

    // A rotation: one challenge, learned, then none.
    server.rotate_dpop_nonces();
    let token = parse(&server, &second).expect("a token");
    let third = refresh(
        &server,
        &key,
        &mut nonces,
        token.refresh_token.expect("rotated").expose(),
    );
    assert_eq!(third.status, 200);
    let stats = server.take_stats();
    assert_eq!(stats.token_requests, 2);
    assert_eq!(stats.dpop.token_nonce_challenges, 1);
    assert_eq!(stats.dpop.refused(), 0);
}

#[test]
fn a_second_challenge_in_a_row_is_classified_transient_and_spends_nothing() {
    let server = server(manual_nonces());
    let grant = server.sign_in(None);
    let key = new_key(DpopAlgorithm::Es256);
    let url = server.token_url();
    // A proof with a nonce the server never gave, twice: challenged both times.
    for _ in 0..2 {
        let proof = key
            .proof(&ProofInput::new("POST", &url, now(), jti()).nonce(Some("stale")))
            .expect("a proof");
        let answer = post_token(&server, &grant.refresh_token, Some(&proof));
        assert_eq!(answer.status, 400);
        assert!(
            token_nonce_challenge(answer.status, &answer.headers, &answer.body).is_some(),
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let failure = parse(&server, &answer).expect_err("no token");
        assert_eq!(failure.kind, FailureKind::Transient, "{}", failure.message);
    }
    assert_eq!(server.refresh_tokens_since(&grant.refresh_token), Some(0));
    assert_eq!(server.take_stats().dpop.token_nonce_challenges, 2);
}

#[test]
fn a_bound_refresh_token_is_refused_with_another_key_and_not_spent() {
    let server = server(manual_nonces());
    let grant = server.sign_in(None);
    let (owner, thief) = (new_key(DpopAlgorithm::Es256), new_key(DpopAlgorithm::Es256));
    let mut nonces = NonceCache::new();
    let token = parse(
        &server,
        &refresh(&server, &owner, &mut nonces, &grant.refresh_token),
    )
    .expect("a token");
    let bound = token.refresh_token.expect("rotated");
    server.take_stats();

    let stolen = refresh(&server, &thief, &mut nonces, bound.expose());
    assert_eq!(stolen.status, 400);
    assert_eq!(stolen.json()["error"], "invalid_grant");
    let failure = parse(&server, &stolen).expect_err("refused");
    assert_eq!(failure.kind, FailureKind::Terminal, "{}", failure.message);
    let stats = server.take_stats();
    assert_eq!(stats.dpop.refresh_wrong_key, 1);
    assert_eq!(stats.reuse_detected, 0);
    assert!(!server.is_revoked(grant.id));
    // Not spent: its owner still refreshes with it.
    assert_eq!(server.refresh_tokens_since(bound.expose()), Some(0));
    let answer = refresh(&server, &owner, &mut nonces, bound.expose());
    assert_eq!(answer.status, 200);
}

#[test]
fn a_token_request_without_a_valid_proof_is_refused() {
    let server = server(DpopConfig {
        token_nonces: false,
        ..manual_nonces()
    });
    let grant = server.sign_in(None);
    let key = new_key(DpopAlgorithm::Es256);
    let url = server.token_url();
    let make = |method: &str, url: &str, iat: u64| {
        key.proof(&ProofInput::new(method, url, iat, jti()))
            .expect("a proof")
    };
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "missing"),
        (Some("not.a.jws".to_owned()), "invalid"),
        (Some(make("GET", &url, now())), "method"),
        (
            Some(make("POST", "http://127.0.0.1:1/oauth/token", now())),
            "url",
        ),
        (Some(make("POST", &url, now() - 3600)), "stale"),
        (Some(make("POST", &url, now() + 3600)), "stale"),
    ];
    for (proof, why) in &cases {
        let answer = post_token(&server, &grant.refresh_token, proof.as_deref());
        assert_eq!(answer.status, 400, "{why}");
        assert_eq!(answer.json()["error"], "invalid_dpop_proof", "{why}");
        let failure = parse(&server, &answer).expect_err("refused");
        assert_eq!(
            failure.kind,
            FailureKind::Misconfigured,
            "{why}: {}",
            failure.message
        );
    }
    // A proof sent twice: the second is a replay.
    let proof = make("POST", &url, now());
    assert_eq!(
        post_token(&server, &grant.refresh_token, Some(&proof)).status,
        200
    );
    let again = post_token(&server, &grant.refresh_token, Some(&proof));
    assert_eq!(again.json()["error"], "invalid_dpop_proof");
    let stats = server.take_stats().dpop;
    assert_eq!(
        (
            stats.missing_proof,
            stats.invalid_proof,
            stats.wrong_method,
            stats.wrong_url,
            stats.stale,
            stats.replayed
        ),
        (1, 1, 1, 1, 2, 1),
        "{stats:?}"
    );
    assert_eq!(stats.token_proofs, 1);
    // None of them spent the refresh token: only the proven one rotated it.
    assert_eq!(server.refresh_tokens_since(&grant.refresh_token), Some(1));
}

/// A server in DPoP mode, a key of `algorithm`, its nonces, and an access token bound
/// to that key (got through a proven refresh); the server's counts reset.
struct Session {
    server: AuthServer,
    key: DpopKey,
    nonces: NonceCache,
    token: Secret,
}

fn session(config: DpopConfig, algorithm: DpopAlgorithm) -> Session {
    let server = server(config);
    let key = new_key(algorithm);
    let mut nonces = NonceCache::new();
    let grant = server.sign_in(None);
    let token = parse(
        &server,
        &refresh(&server, &key, &mut nonces, &grant.refresh_token),
    )
    .expect("a token");
    assert!(dpop::is_bound(&token.token_type));
    server.take_stats();
    Session {
        server,
        key,
        nonces,
        token: token.access_token,
    }
}

#[test]
fn a_resource_request_is_proven_and_learns_the_resources_nonce() {
    for algorithm in [DpopAlgorithm::Es256, DpopAlgorithm::EdDsa] {
        let Session {
            server,
            key,
            mut nonces,
            token,
        } = session(manual_nonces(), algorithm);

        // No nonce yet for the resource's origin (the token endpoint has its own).
        assert_eq!(nonces.get(&server.resource_url()), None);
        let (answer, resent) = call_resource(&server, &key, &mut nonces, &token);
        assert_eq!(answer.status, 200, "{}", answer.challenge());
        assert!(resent, "the first request met the nonce challenge");
        let (answer, resent) = call_resource(&server, &key, &mut nonces, &token);
        assert_eq!(answer.status, 200);
        assert!(!resent, "the nonce came with the success");
        server.rotate_dpop_nonces();
        let (answer, resent) = call_resource(&server, &key, &mut nonces, &token);
        assert_eq!(answer.status, 200);
        assert!(resent);
        let stats = server.take_stats();
        assert_eq!(stats.resource_ok, 3);
        assert_eq!(stats.dpop.resource_proofs, 3);
        assert_eq!(stats.dpop.resource_nonce_challenges, 2);
        assert_eq!(stats.dpop.refused(), 0, "{:?}", stats.dpop);
    }
}

#[test]
fn nonces_rotated_on_a_period_are_learned_about_once_per_rotation() {
    let Session {
        server,
        key,
        mut nonces,
        token,
    } = session(manual_nonces(), DpopAlgorithm::Es256);
    // From now on the nonces change every 300 ms.
    server.set_dpop_nonce_period(Some(Duration::from_millis(300)));
    server.take_stats();
    let started = std::time::Instant::now();
    let mut requests = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let (answer, _) = call_resource(&server, &key, &mut nonces, &token);
        assert_eq!(answer.status, 200, "{}", answer.challenge());
        requests += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = server.take_stats();
    assert_eq!(stats.dpop.refused(), 0, "{:?}", stats.dpop);
    // Five or six rotations in 1.5 s, a challenge each: far fewer than requests.
    assert!(
        (3..=8).contains(&stats.dpop.resource_nonce_challenges),
        "{} challenges for {requests} requests",
        stats.dpop.resource_nonce_challenges
    );
    assert!(requests > 20, "{requests}");
}

#[test]
fn a_replayed_resource_proof_is_refused() {
    let Session {
        server, key, token, ..
    } = session(without_resource_nonces(), DpopAlgorithm::Es256);
    let proof = key
        .proof(&ProofInput::new("GET", &server.resource_url(), now(), jti()).access_token(&token))
        .expect("a proof");
    let authorization = format!("DPoP {}", token.expose());
    assert_eq!(
        get_resource(&server, &authorization, Some(&proof)).status,
        200
    );
    let replay = get_resource(&server, &authorization, Some(&proof));
    assert_eq!(replay.status, 401);
    assert!(
        replay.challenge().starts_with("DPoP ")
            && replay.challenge().contains("invalid_dpop_proof"),
        "{}",
        replay.challenge()
    );
    // Not a nonce challenge: the client must not resend it.
    assert_eq!(
        resource_nonce_challenge(replay.status, &replay.headers),
        None
    );
    let stats = server.take_stats();
    assert_eq!(stats.dpop.replayed, 1);
    assert_eq!(stats.resource_ok, 1);
}

#[test]
fn a_bound_token_sent_as_bearer_is_refused() {
    let Session {
        server,
        key,
        mut nonces,
        token,
    } = session(manual_nonces(), DpopAlgorithm::Es256);
    let answer = get_resource(&server, &format!("Bearer {}", token.expose()), None);
    assert_eq!(answer.status, 401);
    let challenges = dpop::Challenge::parse_all(&answer.challenge());
    assert_eq!(challenges[0].scheme(), "DPoP");
    assert_eq!(challenges[0].param("error"), Some("invalid_token"));
    // With a valid proof as well: still refused, the scheme is the point.
    let (answer, _) = call_resource(&server, &key, &mut nonces, &token);
    assert_eq!(answer.status, 200);
    let proof = key
        .proof(
            &ProofInput::new("GET", &server.resource_url(), now(), jti())
                .nonce(nonces.get(&server.resource_url()))
                .access_token(&token),
        )
        .expect("a proof");
    let answer = get_resource(&server, &format!("Bearer {}", token.expose()), Some(&proof));
    assert_eq!(answer.status, 401);
    let stats = server.take_stats();
    assert_eq!(stats.dpop.bearer_refused, 2);
    assert_eq!(stats.resource_ok, 1);
}

#[test]
fn a_resource_proof_that_does_not_fit_the_token_or_the_request_is_refused() {
    let Session {
        server, key, token, ..
    } = session(without_resource_nonces(), DpopAlgorithm::Es256);
    let other_key = new_key(DpopAlgorithm::EdDsa);
    let other_token = Secret::new("at_some_other_token");
    let url = server.resource_url();
    let authorization = format!("DPoP {}", token.expose());
    server.take_stats();
    for (proof, why) in [
        // The hash of another token.
        (
            key.proof(&ProofInput::new("GET", &url, now(), jti()).access_token(&other_token)),
            "ath",
        ),
        // No ath at all.
        (
            key.proof(&ProofInput::new("GET", &url, now(), jti())),
            "ath",
        ),
        // Another method, another URL.
        (
            key.proof(&ProofInput::new("POST", &url, now(), jti()).access_token(&token)),
            "htm",
        ),
        (
            key.proof(
                &ProofInput::new("GET", &format!("{url}/other"), now(), jti()).access_token(&token),
            ),
            "htu",
        ),
        // Another key than the token's.
        (
            other_key.proof(&ProofInput::new("GET", &url, now(), jti()).access_token(&token)),
            "key",
        ),
    ] {
        let answer = get_resource(&server, &authorization, Some(&proof.expect("a proof")));
        assert_eq!(answer.status, 401, "{why}");
    }
    // The query and the fragment are no part of htu: a proof for the URL with a query
    // fits the request without one.
    let proof = key
        .proof(
            &ProofInput::new("GET", &format!("{url}?page=2#top"), now(), jti())
                .access_token(&token),
        )
        .expect("a proof");
    assert_eq!(
        get_resource(&server, &authorization, Some(&proof)).status,
        200
    );
    let stats = server.take_stats().dpop;
    assert_eq!(
        (
            stats.wrong_ath,
            stats.wrong_method,
            stats.wrong_url,
            stats.wrong_key
        ),
        (2, 1, 1, 1),
        "{stats:?}"
    );
    assert_eq!(stats.resource_proofs, 1);
}

#[test]
fn the_key_survives_its_pem_and_keeps_the_session() {
    let server = server(manual_nonces());
    let grant = server.sign_in(None);
    let key = new_key(DpopAlgorithm::Es256);
    let mut nonces = NonceCache::new();
    let token = parse(
        &server,
        &refresh(&server, &key, &mut nonces, &grant.refresh_token),
    )
    .expect("a token");
    // Another process loads the stored key: the bound refresh token is still its.
    let pem = key.to_pkcs8_pem().expect("a PEM");
    let loaded = DpopKey::from_pkcs8_pem(pem.expose()).expect("loads");
    let mut other_nonces = NonceCache::new();
    let answer = refresh(
        &server,
        &loaded,
        &mut other_nonces,
        token.refresh_token.expect("rotated").expose(),
    );
    assert_eq!(answer.status, 200);
    assert_eq!(server.take_stats().dpop.refused(), 0);
}

/// RFC 9449 §5.1: in DPoP mode the server's metadata lists the proofs' algorithms, and
/// discovery (here the blocking adapter's) reads them; without DPoP there is no list.
#[test]
fn discovery_names_the_dpop_algorithms_in_dpop_mode_only() {
    let with = server(DpopConfig::default());
    let issuer = silent_refresh_ureq::Issuer::discover(&with.issuer()).expect("discovered");
    let algs = issuer.metadata().dpop_signing_alg_values_supported();
    assert!(algs.iter().any(|alg| alg == "ES256"), "{algs:?}");
    let without = AuthServer::start(ServerConfig::default()).expect("the server starts");
    let issuer = silent_refresh_ureq::Issuer::discover(&without.issuer()).expect("discovered");
    assert!(
        issuer
            .metadata()
            .dpop_signing_alg_values_supported()
            .is_empty()
    );
}
