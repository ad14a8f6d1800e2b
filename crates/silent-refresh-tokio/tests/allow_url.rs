//! `AuthorizedClientBuilder::allow_url`: the origin of a URL, and errors that never
//! show the URL's user, path or query.

use std::time::Duration;

use silent_refresh_tokio::{
    AuthorizedClient, Config, Credentials, Error, Expiry, RefreshFailure, Secret, Token,
    TokenSource,
};

fn source() -> TokenSource {
    TokenSource::builder(Config::default())
        .credentials(Credentials::RefreshToken("rt".into()))
        .refresher(|_: Option<Secret>| async {
            Ok::<_, RefreshFailure>(Token::bearer("at", Expiry::In(Duration::from_secs(60))))
        })
        .build()
        .expect("inside a runtime")
}

#[tokio::test]
async fn a_urls_origin_is_allowed_whatever_its_path_query_and_user() {
    let client = AuthorizedClient::builder(source())
        .allow_url("https://alice:pw@API.example.com/v1/?key=s3cret")
        .build()
        .expect("a valid URL");
    assert!(
        client
            .check("https://api.example.com:443/other/path")
            .is_ok()
    );
    assert!(matches!(
        client.check("https://api.example.com:8443/"),
        Err(Error::OriginNotAllowed { .. })
    ));
}

#[tokio::test]
async fn an_invalid_url_is_refused_without_showing_it() {
    for url in [
        "ftp://alice:pw@files.example.com/s3cret?key=s3cret",
        "/relative/s3cret?key=s3cret",
        "not a url s3cret",
    ] {
        let error = AuthorizedClient::builder(source())
            .allow_url(url)
            .allow_origin("https://api.example.com")
            .build()
            .expect_err(url);
        assert!(matches!(error, Error::InvalidUrl { .. }), "{url}: {error}");
        let text = format!("{error} {error:?}");
        assert!(!text.contains("s3cret") && !text.contains("pw"), "{text}");
    }
}

#[tokio::test]
async fn the_first_invalid_entry_is_the_error() {
    let error = AuthorizedClient::builder(source())
        .allow_origin("https://api.example.com/with/path")
        .allow_url("ftp://files.example.com/")
        .build()
        .expect_err("two invalid entries");
    assert!(matches!(error, Error::InvalidOrigin { .. }), "{error}");

    let error = AuthorizedClient::builder(source())
        .allow_url("ftp://files.example.com/")
        .allow_origin("https://api.example.com/with/path")
        .build()
        .expect_err("two invalid entries");
    assert!(matches!(error, Error::InvalidUrl { .. }), "{error}");
}
