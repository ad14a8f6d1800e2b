//! The send helper's errors name no URL's query (nor a user): the caller's errors are
//! passed on cut to origin and path. (The refresher's own redirect, loopback and
//! timeout rules run for both adapters in the driver's `tests/oauth2_refresher.rs`.)

#![cfg(feature = "reqwest")]

use std::time::Duration;

use axum::http::{StatusCode, header};
use http::Uri;
use silent_refresh_tokio::silent_refresh::{Config, Credentials, Secret};
use silent_refresh_tokio::{AuthorizedClient, Error, TokenSource};

const REFRESH_TOKEN: &str = "rt-SECRET-never-leaves-the-first-server";
const CLIENT_SECRET: &str = "cs-SECRET-4b1d";
/// Put in the URL's query: it must not show in any message.
const QUERY_SECRET: &str = "q-SECRET-in-the-query";

fn assert_no_secret(text: &str) {
    for secret in [REFRESH_TOKEN, CLIENT_SECRET, QUERY_SECRET, "refresh_token="] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

/// Item 5 of issue 11: the send helper passes the caller's errors on without the
/// request's query (nor a user), which may hold secrets.
#[tokio::test]
async fn send_errors_name_no_query() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::RefreshToken("rt".into()))
        .refresher(|_: Option<Secret>| async {
            Ok(silent_refresh_tokio::silent_refresh::Token::bearer(
                "at",
                silent_refresh_tokio::silent_refresh::Expiry::In(Duration::from_secs(600)),
            ))
        })
        .build()
        .expect("inside a runtime");
    let origin = format!("http://{closed}");
    let client = AuthorizedClient::builder(source)
        .allow_origin(&origin)
        .build()
        .expect("loopback");
    let url = format!("{origin}/v1/items?api_key={QUERY_SECRET}");

    // A reqwest error carries the URL: it is dropped.
    let http = reqwest::Client::new();
    let error = client
        .send(&http::Method::GET, &url, |uri: Uri, headers| {
            let request = http
                .get(uri.to_string())
                .header(header::AUTHORIZATION, headers.authorization);
            async move { request.send().await }
        })
        .await
        .expect_err("nobody listens");
    assert!(matches!(error, Error::Send(_)), "{error:?}");
    let text = format!("{error} {error:?}");
    assert_no_secret(&text);
    assert!(!text.contains("api_key"), "{text}");

    // Any other error that prints the URL: cut to origin and path.
    let error = client
        .send(&http::Method::GET, &url, |uri: Uri, _| async move {
            Err::<StatusCode, _>(std::io::Error::other(format!(
                "GET {uri} failed; retry https://user:pw@mirror.example/v1/items?api_key={QUERY_SECRET}"
            )))
        })
        .await
        .expect_err("it failed");
    let text = format!("{error} {error:?}");
    assert_no_secret(&text);
    for hidden in ["api_key", "user", "pw@"] {
        assert!(!text.contains(hidden), "{hidden} in {text}");
    }
    assert!(text.contains(&format!("{origin}/v1/items")), "{text}");
    assert!(text.contains("https://mirror.example/v1/items"), "{text}");
}
