//! Against a real authorization server on 127.0.0.1 (the test kit's embedded server,
//! started by each test): a token endpoint that rotates refresh tokens and revokes the
//! whole grant when one is reused, and a resource that answers 401 to expired or
//! revoked tokens.
//!
//! These run on real time (a paused clock would race the sockets), with expiries driven
//! by the server or by second-long token lifetimes; no test sleeps to wait for an effect.

#![cfg(feature = "reqwest")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::Changes;
use silent_refresh_testkit::server::{AuthServer, Grant, ServerConfig};
use silent_refresh_tokio::oauth2::{ClientAuth, RefreshGrant};
use silent_refresh_tokio::silent_refresh::{Config, Credentials};
use silent_refresh_tokio::{AuthorizedClient, Error, OAuth2Refresher, TokenChange, TokenSource};
use tokio::task::JoinSet;

const CLIENT_ID: &str = "test-client";
const CLIENT_SECRET: &str = "client-secret";

/// The embedded server, and the grant a user signed in with.
struct Server {
    kit: AuthServer,
    grant: Grant,
}

impl Server {
    /// Starts a server whose tokens live `lifetime`, answering at once, with one grant.
    fn start(lifetime: Duration) -> Self {
        let kit = AuthServer::start(ServerConfig {
            token_lifetime: lifetime,
            token_latency: Duration::ZERO,
            client_id: CLIENT_ID.to_owned(),
            client_secret: Some(CLIENT_SECRET.to_owned()),
            ..ServerConfig::default()
        })
        .expect("the embedded server starts on 127.0.0.1");
        let grant = kit.sign_in(None);
        Self { kit, grant }
    }

    /// The grant's first refresh token.
    fn first_refresh_token(&self) -> &str {
        &self.grant.refresh_token
    }

    fn source(&self, refresh_token: &str, changes: &Arc<Changes>) -> TokenSource {
        TokenSource::builder(Config::default())
            .credentials(Credentials::RefreshToken(refresh_token.into()))
            .refresher(OAuth2Refresher::new(self.refresh_grant()).expect("reqwest client"))
            .on_token_change(changes.callback())
            .build()
            .expect("inside a runtime")
    }

    fn refresh_grant(&self) -> RefreshGrant {
        RefreshGrant::new(self.kit.token_url(), CLIENT_ID)
            .client_secret(CLIENT_SECRET)
            .auth(ClientAuth::Post)
    }

    /// A client allowed to send the token to the resource's origin.
    fn client(&self, source: &TokenSource) -> AuthorizedClient {
        AuthorizedClient::builder(source.clone())
            .allow_origin(self.kit.origin())
            .build()
            .expect("loopback http is allowed")
    }
}

async fn get_resource(
    client: &AuthorizedClient,
    http: &reqwest::Client,
    url: &str,
) -> Result<reqwest::Response, Error> {
    let request = http.get(url).build().expect("valid request");
    client.execute(http, request).await
}

#[tokio::test]
async fn the_reqwest_refresher_and_send_helper_carry_requests_across_several_expiries() {
    let server = Server::start(Duration::from_secs(3600));
    let changes = Arc::new(Changes::default());
    let source = server.source(server.first_refresh_token(), &changes);
    let client = server.client(&source);
    let http = reqwest::Client::new();
    let resource = server.kit.resource_url();
    let (mut authorized, mut unauthorized) = (0, 0);

    for round in 1..=5 {
        if round > 1 {
            // Every access token issued so far stops working at the resource.
            server.kit.revoke_access_tokens();
        }
        let mut requests = JoinSet::new();
        for _ in 0..20 {
            let (client, http, resource) = (client.clone(), http.clone(), resource.clone());
            requests.spawn(async move { get_resource(&client, &http, &resource).await });
        }
        for response in requests.join_all().await {
            assert_eq!(
                response.expect("sent").status(),
                StatusCode::OK,
                "round {round}"
            );
        }
        let stats = server.kit.take_stats();
        assert_eq!(
            stats.issued, 1,
            "one refresh per expiry, whatever the number of 401s (round {round})"
        );
        assert_eq!(stats.reuse_detected, 0, "no refresh token was ever reused");
        assert_eq!(stats.invalid_grant, 0);
        authorized += stats.resource_ok;
        unauthorized += stats.resource_unauthorized;
    }

    assert!(
        !server.kit.is_revoked(server.grant.id),
        "no refresh token was ever reused"
    );
    assert_eq!(authorized, 100);
    assert!(
        (4..=80).contains(&unauthorized),
        "each expiry was noticed through a 401 ({unauthorized})"
    );
    let persisted = changes.persisted();
    assert_eq!(persisted.len(), 5);
    let stored = persisted
        .last()
        .and_then(|(_, rt)| rt.clone())
        .expect("a rotated refresh token was handed over for storage");
    assert_eq!(
        server.kit.refresh_tokens_since(&stored),
        Some(0),
        "the newest rotated refresh token was handed over for storage"
    );
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_revokes_the_grant_and_requires_sign_in() {
    let server = Server::start(Duration::from_secs(3600));
    let changes = Arc::new(Changes::default());
    let first = server.first_refresh_token();
    let source = server.source(first, &changes);
    let client = server.client(&source);
    let http = reqwest::Client::new();
    let resource = server.kit.resource_url();

    let response = get_resource(&client, &http, &resource).await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let stored = changes
        .persisted()
        .last()
        .and_then(|(_, rt)| rt.clone())
        .expect("the rotated refresh token was handed over for storage");
    // The first rotation: the stored token is the newest, the first one a step behind.
    assert_eq!(server.kit.refresh_tokens_since(&stored), Some(0));
    assert_eq!(server.kit.refresh_tokens_since(first), Some(1));

    // A second copy of the program loaded the stale store and presents the used first
    // refresh token.
    let stale = server.source(first, &Arc::new(Changes::default()));
    let error = stale
        .token()
        .await
        .expect_err("the server refuses a reused token");
    assert!(error.needs_sign_in(), "{error}");
    assert!(error.to_string().contains("sign in again"), "{error}");

    // The server revoked the whole grant: the first copy's next request gets 401, its
    // refresh with the stored token is refused for good, and it asks for a sign-in too.
    let error = get_resource(&client, &http, &resource)
        .await
        .expect_err("the grant is revoked");
    assert!(error.needs_sign_in(), "{error}");
    let stats = server.kit.take_stats();
    assert_eq!(stats.issued, 1);
    assert_eq!(stats.invalid_grant, 2);
    assert_eq!(stats.reuse_detected, 1);
    assert!(server.kit.is_revoked(server.grant.id));
}

#[tokio::test]
async fn second_long_tokens_are_refreshed_before_the_server_rejects_them() {
    let server = Server::start(Duration::from_secs(1));
    let (sender, mut persisted) = tokio::sync::mpsc::unbounded_channel();
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::RefreshToken(
            server.first_refresh_token().into(),
        ))
        .refresher(OAuth2Refresher::new(server.refresh_grant()).expect("reqwest client"))
        .on_token_change(move |change| {
            if let TokenChange::Persist { generation, .. } = change {
                let _ = sender.send(generation.0);
            }
        })
        .build()
        .expect("source");
    let client = server.client(&source);
    let http = reqwest::Client::new();
    let resource = server.kit.resource_url();

    let run = async {
        for generation in 1..=4 {
            // Each token lives 1 s; the background task refreshes it after about half.
            let response = get_resource(&client, &http, &resource).await.expect("sent");
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(persisted.recv().await, Some(generation));
        }
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("four one-second tokens take about two seconds");

    let stats = server.kit.take_stats();
    assert_eq!(
        stats.resource_unauthorized, 0,
        "no request ever carried an expired token"
    );
    assert!(stats.issued >= 4);
    assert_eq!(stats.reuse_detected, 0);
    assert!(!server.kit.is_revoked(server.grant.id));
}

#[tokio::test]
async fn the_token_endpoint_and_other_origins_never_get_the_access_token() {
    let server = Server::start(Duration::from_secs(3600));
    let other = Server::start(Duration::from_secs(3600));
    let source = server.source(server.first_refresh_token(), &Arc::new(Changes::default()));
    // The token endpoint has an origin of its own on the embedded server: allowed too,
    // so that only its being the token endpoint keeps the token from it.
    let client = AuthorizedClient::builder(source.clone())
        .allow_origin(server.kit.origin())
        .allow_origin(server.kit.auth_origin())
        .build()
        .expect("loopback http is allowed");
    let http = reqwest::Client::new();

    let to_token_endpoint = http.post(server.kit.token_url()).build().expect("request");
    assert!(matches!(
        client.execute(&http, to_token_endpoint).await,
        Err(Error::TokenEndpoint { .. })
    ));
    let to_other = http.get(other.kit.resource_url()).build().expect("request");
    assert!(matches!(
        client.execute(&http, to_other).await,
        Err(Error::OriginNotAllowed { .. })
    ));
    assert_eq!(
        server.kit.take_stats().issued,
        0,
        "refused before any token was fetched"
    );
    let seen_by_other = {
        let stats = other.kit.take_stats();
        stats.resource_unauthorized + stats.resource_ok + stats.token_requests
    };
    assert_eq!(seen_by_other, 0, "nothing reached the other origin");

    let response = get_resource(&client, &http, &server.kit.resource_url())
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
}
