//! The reqwest OAuth 2.0 refresher with the grants other than refresh-token, against a
//! token endpoint on 127.0.0.1 that records what it was sent.
#![cfg(feature = "reqwest")]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use silent_refresh_tokio::oauth2::{ClientAuth, RefreshGrant, SubjectTokenSource, TokenExchange};
use silent_refresh_tokio::silent_refresh::{Credentials, FailureKind, Secret, Status};
use silent_refresh_tokio::{Config, OAuth2Refresher, Refresher, TokenChange, TokenSource};

/// The form bodies the endpoint received, in order.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<String>>>);

impl Received {
    fn bodies(&self) -> Vec<String> {
        self.0.lock().expect("bodies").clone()
    }

    fn last_value(&self, name: &str) -> Option<String> {
        let body = self.bodies().pop()?;
        form_value(&body, name)
    }
}

fn form_value(body: &str, name: &str) -> Option<String> {
    url_decode_pairs(body)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

fn url_decode_pairs(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(n, v)| (decode(n), decode(v)))
        .collect()
}

fn decode(text: &str) -> String {
    let text = text.replace('+', " ");
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("utf-8")
}

/// A token endpoint that records each body and issues `at-N`, with a refresh token that
/// the grants other than refresh-token must drop.
async fn token_endpoint() -> (String, Received) {
    async fn issue(
        State(received): State<Received>,
        body: String,
    ) -> axum::Json<serde_json::Value> {
        let n = {
            let mut bodies = received.0.lock().expect("bodies");
            bodies.push(body);
            bodies.len()
        };
        axum::Json(
            serde_json::json!({"access_token": format!("at-{n}"), "token_type": "Bearer",
            "expires_in": 3600, "refresh_token": "rt-never-kept"}),
        )
    }
    let received = Received::default();
    let app = Router::new()
        .route("/token", post(issue))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/token", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test]
async fn client_credentials_sends_scope_resource_and_audience_and_keeps_no_refresh_credential() {
    let (url, received) = token_endpoint().await;
    let grant = RefreshGrant::client_credentials(&url, "svc")
        .client_secret("s3cret")
        .auth(ClientAuth::Post)
        .scope("orders:read")
        .resource("https://orders.example.com/")
        .audience("orders-api");
    let refresher = OAuth2Refresher::builder(grant).build().expect("refresher");
    // Even handed a refresh credential, the grant sends none and keeps none.
    let token = refresher
        .refresh(Some(Secret::new("rt-stale")))
        .await
        .expect("a token");
    assert_eq!(token.access_token.expose(), "at-1");
    assert_eq!(token.refresh_token, None);
    assert_eq!(
        received.bodies()[0],
        "grant_type=client_credentials&scope=orders%3Aread\
         &resource=https%3A%2F%2Forders.example.com%2F&audience=orders-api\
         &client_id=svc&client_secret=s3cret"
    );

    // Through a token source: no refresh credential is ever given or stored.
    let persisted = Arc::new(Mutex::new(Vec::new()));
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::ClientCredentials { token: None })
        .refresher(refresher)
        .on_token_change({
            let persisted = persisted.clone();
            move |change| {
                if let TokenChange::Persist { token, .. } = change {
                    persisted
                        .lock()
                        .expect("persisted")
                        .push(token.refresh_token.is_some());
                }
            }
        })
        .build()
        .expect("source");
    let token = source.token().await.expect("a token");
    assert_eq!(token.secret.expose(), "at-2");
    assert!(
        persisted
            .lock()
            .expect("persisted")
            .iter()
            .all(|has_refresh| !has_refresh),
        "no refresh credential stored"
    );
}

#[tokio::test]
async fn token_exchange_rereads_the_subject_token_file_on_every_exchange() {
    let (url, received) = token_endpoint().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("token");
    let grant = RefreshGrant::token_exchange(
        &url,
        "workload",
        TokenExchange::new(SubjectTokenSource::file(&path)),
    )
    .audience("orders-api");
    let refresher = OAuth2Refresher::builder(grant).build().expect("refresher");
    let failure = refresher.refresh(None).await.expect_err("no file yet");
    assert_eq!(failure.kind, FailureKind::Misconfigured);
    for n in 1..=3 {
        // The kubelet rotates the file in place.
        std::fs::write(&path, format!("subject-{n}\n")).expect("write");
        let token = refresher.refresh(None).await.expect("a token");
        assert_eq!(token.refresh_token, None);
        assert_eq!(
            received.last_value("subject_token"),
            Some(format!("subject-{n}"))
        );
    }
    // A closure source is called on every exchange, too.
    let calls = Arc::new(Mutex::new(0));
    let counted = calls.clone();
    let grant = RefreshGrant::token_exchange(
        &url,
        "workload",
        TokenExchange::new(SubjectTokenSource::from_fn(move || {
            let mut calls = counted.lock().expect("calls");
            *calls += 1;
            Ok(Secret::new(format!("from-fn-{calls}")))
        })),
    );
    let refresher = OAuth2Refresher::builder(grant).build().expect("refresher");
    refresher.refresh(None).await.expect("first");
    refresher.refresh(None).await.expect("second");
    assert_eq!(*calls.lock().expect("calls"), 2);
    assert_eq!(
        received.last_value("subject_token").as_deref(),
        Some("from-fn-2")
    );
}

#[tokio::test]
async fn a_grant_that_can_never_work_is_refused_when_the_refresher_is_built() {
    let grant = RefreshGrant::client_credentials("http://127.0.0.1:9/token", "svc")
        .param("subject_token", "hand-made");
    let error = OAuth2Refresher::builder(grant)
        .build()
        .expect_err("refused");
    assert!(
        matches!(
            error,
            silent_refresh_tokio::Error::Token(
                silent_refresh_tokio::silent_refresh::Error::InvalidConfig(_)
            )
        ),
        "{error}"
    );
}

#[cfg(feature = "jwt")]
#[tokio::test]
async fn private_key_jwt_signs_a_new_assertion_for_every_exchange() {
    use silent_refresh_tokio::oauth2::SigningKey;
    let (url, received) = token_endpoint().await;
    let key = SigningKey::from_pem(include_str!(
        "../../silent-refresh-oauth2/src/testdata/rs256.pem"
    ))
    .expect("key");
    let grant = RefreshGrant::client_credentials(&url, "svc").private_key_jwt(key);
    let refresher = OAuth2Refresher::builder(grant).build().expect("refresher");
    refresher.refresh(None).await.expect("first");
    refresher.refresh(None).await.expect("second");
    let assertions: Vec<String> = received
        .bodies()
        .iter()
        .map(|body| form_value(body, "client_assertion").expect("an assertion"))
        .collect();
    assert_eq!(assertions.len(), 2);
    assert_ne!(
        assertions[0], assertions[1],
        "a fresh assertion per exchange"
    );
    assert_eq!(
        received.last_value("client_assertion_type").as_deref(),
        Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    );
}

#[tokio::test]
async fn an_unreachable_token_endpoint_fails_fast_and_the_status_says_so() {
    // A port nothing listens on: bound, read, released.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let grant = RefreshGrant::new(format!("http://{closed}/token"), "client").client_secret("cs");
    let refresher = OAuth2Refresher::new(grant).expect("loopback");
    let failure = refresher
        .refresh(Some(Secret::new("rt")))
        .await
        .expect_err("nobody listens");
    assert_eq!(failure.kind, FailureKind::Transient, "{failure}");
    assert!(failure.unreachable, "a refused connection: {failure}");
    assert!(
        failure
            .message
            .contains("could not connect to the token endpoint"),
        "{failure}"
    );

    // A long deadline: the caller must get its error from the failed attempt, not from
    // waiting it out (that would be `DeadlineExceeded`).
    let config = Config::builder()
        .request_timeout(std::time::Duration::from_secs(600))
        .build()
        .expect("config");
    let source = TokenSource::builder(config)
        .credentials(Credentials::RefreshToken("rt".into()))
        .refresher(refresher)
        .build()
        .expect("source");
    let first = source.token().await.expect_err("nobody listens");
    assert!(first.is_unreachable(), "{first}");
    assert!(
        matches!(source.status(), Status::Unreachable { ref reason, .. }
            if reason.contains("could not connect")),
        "{:?}",
        source.status()
    );
    // While the backoff runs, the next caller without a token fails at once.
    let second = source.token().await.expect_err("still unreachable");
    assert!(second.is_unreachable(), "{second}");
}
