#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The `Authorization` value every integration sends: the scheme the token calls for,
//! the secret, visible ASCII only, marked sensitive.

use silent_refresh::{AccessToken, Generation, Secret};
use silent_refresh_http::authorization;
use silent_refresh_tokio::TokenSource;

fn token(token_type: &str, secret: &str) -> AccessToken {
    AccessToken {
        generation: Generation(1),
        secret: Secret::new(secret),
        token_type: token_type.to_owned(),
        scope: None,
        usable_until: None,
    }
}

#[test]
fn the_value_is_the_scheme_and_the_secret_marked_sensitive() {
    for (token_type, expected) in [
        ("bearer", "Bearer at-1"),
        ("Bearer", "Bearer at-1"),
        ("", "Bearer at-1"),
        ("DPoP", "DPoP at-1"),
        ("MAC", "MAC at-1"),
    ] {
        let value = authorization::<TokenSource>(&token(token_type, "at-1")).unwrap();
        assert_eq!(value.to_str().unwrap(), expected, "{token_type:?}");
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("at-1"), "Debug hides it");
    }
}

#[test]
fn a_secret_a_header_cannot_carry_is_refused_not_sent() {
    for secret in ["at\n1", "at\u{7f}1", "at-é", "at\r\nX-Injected: 1"] {
        let refused = authorization::<TokenSource>(&token("Bearer", secret));
        let error = refused.expect_err(secret);
        assert!(
            matches!(error, silent_refresh_tokio::Error::InvalidToken),
            "{error:?}"
        );
    }
}
