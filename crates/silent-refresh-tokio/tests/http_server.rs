//! Against a real authorization server on 127.0.0.1 (axum, started by each test): a
//! token endpoint that rotates refresh tokens and revokes the whole grant when one is
//! reused, and a resource that answers 401 to expired tokens.
//!
//! These run on real time (a paused clock would race the sockets), with expiries driven
//! by the server or by second-long token lifetimes; no test sleeps to wait for an effect.

#![cfg(feature = "reqwest")]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::{Changes, lock};
use silent_refresh_tokio::oauth2::{ClientAuth, RefreshGrant};
use silent_refresh_tokio::silent_refresh::{Config, Credentials};
use silent_refresh_tokio::{AuthorizedClient, Error, OAuth2Refresher, TokenChange, TokenSource};
use tokio::task::JoinSet;

const CLIENT_ID: &str = "test-client";
const CLIENT_SECRET: &str = "client-secret";

/// An access token the server issued.
struct Issued {
    family: usize,
    expires: Instant,
}

/// The authorization server's state.
struct Auth {
    lifetime: Duration,
    issued: usize,
    /// Refresh token → (grant family, already used).
    refresh_tokens: HashMap<String, (usize, bool)>,
    access_tokens: HashMap<String, Issued>,
    revoked_families: HashSet<usize>,
    refreshes: usize,
    refused_refreshes: usize,
    unauthorized: usize,
    authorized: usize,
    newest_refresh_token: Option<String>,
}

#[derive(Clone)]
struct Server {
    state: Arc<Mutex<Auth>>,
    base: String,
}

impl Server {
    /// Starts a server whose tokens live `lifetime`, with one grant: refresh token `rt-0`.
    async fn start(lifetime: Duration) -> Self {
        let state = Arc::new(Mutex::new(Auth {
            lifetime,
            issued: 0,
            refresh_tokens: HashMap::from([("rt-0".to_owned(), (0, false))]),
            access_tokens: HashMap::new(),
            revoked_families: HashSet::new(),
            refreshes: 0,
            refused_refreshes: 0,
            unauthorized: 0,
            authorized: 0,
            newest_refresh_token: None,
        }));
        let app = Router::new()
            .route("/token", post(token_endpoint))
            .route("/resource", get(resource))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            state,
            base: format!("http://{addr}"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth(&self) -> std::sync::MutexGuard<'_, Auth> {
        lock(&self.state)
    }

    /// The server's clock moves past every access token's expiry.
    fn expire_access_tokens(&self) {
        let now = Instant::now();
        for issued in self.auth().access_tokens.values_mut() {
            issued.expires = now;
        }
    }

    fn source(&self, refresh_token: &str, changes: &Arc<Changes>) -> TokenSource {
        let grant = RefreshGrant::new(self.url("/token"), CLIENT_ID)
            .client_secret(CLIENT_SECRET)
            .auth(ClientAuth::Post);
        TokenSource::builder(Config::default())
            .credentials(Credentials::RefreshToken(refresh_token.into()))
            .refresher(OAuth2Refresher::new(grant).expect("reqwest client"))
            .on_token_change(changes.callback())
            .build()
            .expect("inside a runtime")
    }

    fn client(&self, source: &TokenSource) -> AuthorizedClient {
        AuthorizedClient::builder(source.clone())
            .allow_origin(&self.base)
            .build()
            .expect("loopback http is allowed")
    }
}

fn oauth_error(code: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "error": code })),
    )
        .into_response()
}

async fn token_endpoint(
    State(state): State<Arc<Mutex<Auth>>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut auth = lock(&state);
    let field = |name: &str| form.get(name).map(String::as_str);
    if field("client_id") != Some(CLIENT_ID) || field("client_secret") != Some(CLIENT_SECRET) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({ "error": "invalid_client" })),
        )
            .into_response();
    }
    if field("grant_type") != Some("refresh_token") {
        return oauth_error("unsupported_grant_type");
    }
    let presented = field("refresh_token").unwrap_or_default().to_owned();
    let Some((family, used)) = auth.refresh_tokens.get(&presented).copied() else {
        auth.refused_refreshes += 1;
        return oauth_error("invalid_grant");
    };
    if used || auth.revoked_families.contains(&family) {
        // Reuse of a rotated refresh token: someone else has it. Revoke the whole grant.
        auth.revoked_families.insert(family);
        auth.refused_refreshes += 1;
        return oauth_error("invalid_grant");
    }
    auth.refresh_tokens.insert(presented, (family, true));
    auth.issued += 1;
    auth.refreshes += 1;
    let n = auth.issued;
    let (access, refresh) = (format!("at-{n}"), format!("rt-{n}"));
    let expires = Instant::now() + auth.lifetime;
    auth.access_tokens
        .insert(access.clone(), Issued { family, expires });
    auth.refresh_tokens.insert(refresh.clone(), (family, false));
    auth.newest_refresh_token = Some(refresh.clone());
    Json(serde_json::json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": auth.lifetime.as_secs(),
        "refresh_token": refresh,
    }))
    .into_response()
}

async fn resource(State(state): State<Arc<Mutex<Auth>>>, headers: HeaderMap) -> StatusCode {
    let mut auth = lock(&state);
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let valid = auth.access_tokens.get(presented).is_some_and(|issued| {
        Instant::now() < issued.expires && !auth.revoked_families.contains(&issued.family)
    });
    if valid {
        auth.authorized += 1;
        StatusCode::OK
    } else {
        auth.unauthorized += 1;
        StatusCode::UNAUTHORIZED
    }
}

async fn get_resource(
    client: &AuthorizedClient,
    http: &reqwest::Client,
    server: &Server,
) -> Result<reqwest::Response, Error> {
    let request = http
        .get(server.url("/resource"))
        .build()
        .expect("valid request");
    client.execute(http, request).await
}

#[tokio::test]
async fn the_reqwest_refresher_and_send_helper_carry_requests_across_several_expiries() {
    let server = Server::start(Duration::from_secs(3600)).await;
    let changes = Arc::new(Changes::default());
    let source = server.source("rt-0", &changes);
    let client = server.client(&source);
    let http = reqwest::Client::new();

    for round in 1..=5 {
        if round > 1 {
            server.expire_access_tokens();
        }
        let mut requests = JoinSet::new();
        for _ in 0..20 {
            let (client, http, server) = (client.clone(), http.clone(), server.clone());
            requests.spawn(async move { get_resource(&client, &http, &server).await });
        }
        for response in requests.join_all().await {
            assert_eq!(
                response.expect("sent").status(),
                StatusCode::OK,
                "round {round}"
            );
        }
        assert_eq!(
            server.auth().refreshes,
            round,
            "one refresh per expiry, whatever the number of 401s"
        );
    }

    let auth = server.auth();
    assert!(
        auth.revoked_families.is_empty(),
        "no refresh token was ever reused"
    );
    assert_eq!(auth.refused_refreshes, 0);
    assert_eq!(auth.authorized, 100);
    assert!(
        (4..=80).contains(&auth.unauthorized),
        "each expiry was noticed through a 401 ({})",
        auth.unauthorized
    );
    let persisted = changes.persisted();
    assert_eq!(persisted.len(), 5);
    assert_eq!(
        persisted.last().and_then(|(_, rt)| rt.clone()),
        auth.newest_refresh_token,
        "the newest rotated refresh token was handed over for storage"
    );
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_revokes_the_grant_and_requires_sign_in() {
    let server = Server::start(Duration::from_secs(3600)).await;
    let changes = Arc::new(Changes::default());
    let source = server.source("rt-0", &changes);
    let client = server.client(&source);
    let http = reqwest::Client::new();

    let response = get_resource(&client, &http, &server).await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        changes
            .persisted()
            .last()
            .and_then(|(_, rt)| rt.clone())
            .as_deref(),
        Some("rt-1")
    );

    // A second copy of the program loaded the stale store and presents the used rt-0.
    let stale = server.source("rt-0", &Arc::new(Changes::default()));
    let error = stale
        .token()
        .await
        .expect_err("the server refuses a reused token");
    assert!(error.needs_sign_in(), "{error}");
    assert!(error.to_string().contains("sign in again"), "{error}");

    // The server revoked the whole grant: the first copy's next request gets 401, its
    // refresh with rt-1 is refused for good, and it asks for a sign-in too.
    let error = get_resource(&client, &http, &server)
        .await
        .expect_err("the grant is revoked");
    assert!(error.needs_sign_in(), "{error}");
    let auth = server.auth();
    assert_eq!(auth.refreshes, 1);
    assert_eq!(auth.refused_refreshes, 2);
    assert_eq!(auth.revoked_families.len(), 1);
}

#[tokio::test]
async fn second_long_tokens_are_refreshed_before_the_server_rejects_them() {
    let server = Server::start(Duration::from_secs(1)).await;
    let (sender, mut persisted) = tokio::sync::mpsc::unbounded_channel();
    let grant = RefreshGrant::new(server.url("/token"), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .auth(ClientAuth::Post);
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::RefreshToken("rt-0".into()))
        .refresher(OAuth2Refresher::new(grant).expect("reqwest client"))
        .on_token_change(move |change| {
            if let TokenChange::Persist { generation, .. } = change {
                let _ = sender.send(generation.0);
            }
        })
        .build()
        .expect("source");
    let client = server.client(&source);
    let http = reqwest::Client::new();

    let run = async {
        for generation in 1..=4 {
            // Each token lives 1 s; the background task refreshes it after about half.
            let response = get_resource(&client, &http, &server).await.expect("sent");
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(persisted.recv().await, Some(generation));
        }
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("four one-second tokens take about two seconds");

    let auth = server.auth();
    assert_eq!(
        auth.unauthorized, 0,
        "no request ever carried an expired token"
    );
    assert!(auth.refreshes >= 4);
    assert!(auth.revoked_families.is_empty());
}

#[tokio::test]
async fn the_token_endpoint_and_other_origins_never_get_the_access_token() {
    let server = Server::start(Duration::from_secs(3600)).await;
    let other = Server::start(Duration::from_secs(3600)).await;
    let source = server.source("rt-0", &Arc::new(Changes::default()));
    let client = server.client(&source);
    let http = reqwest::Client::new();

    let to_token_endpoint = http.post(server.url("/token")).build().expect("request");
    assert!(matches!(
        client.execute(&http, to_token_endpoint).await,
        Err(Error::TokenEndpoint { .. })
    ));
    let to_other = http.get(other.url("/resource")).build().expect("request");
    assert!(matches!(
        client.execute(&http, to_other).await,
        Err(Error::OriginNotAllowed { .. })
    ));
    assert_eq!(
        server.auth().refreshes,
        0,
        "refused before any token was fetched"
    );
    let seen_by_other = {
        let auth = other.auth();
        auth.unauthorized + auth.authorized
    };
    assert_eq!(seen_by_other, 0, "nothing reached the other origin");

    let response = get_resource(&client, &http, &server).await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
}
