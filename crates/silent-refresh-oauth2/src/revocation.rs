//! Token revocation (RFC 7009), sans-IO: the request that ends a session at the
//! server, and the reading of its answer.
//!
//! Revoking the refresh token ends the whole grant at most servers (RFC 7009 §2.1
//! says it should, and the access tokens of the grant with it); revoking an access
//! token ends that token. The request is a form `POST` of `token` and
//! `token_type_hint`, with the client's authentication as at the token endpoint.
//!
//! | answer | result |
//! |---|---|
//! | `2xx` | revoked (RFC 7009 §2.2: also for a token the server does not know, or one already invalid) |
//! | `400 invalid_token` or `invalid_grant` (servers that refuse a dead token instead) | revoked already |
//! | `unsupported_token_type` | [`Error::UnsupportedTokenType`]: the server cannot revoke this type (the token lives until it expires) |
//! | `503` (RFC 7009 §2.2.1), any `5xx`, `429` | [`Error::Endpoint`], transient, with `Retry-After` |
//! | a redirect, `invalid_client`, `404`… | [`Error::Endpoint`], misconfigured, naming what to fix |
//!
//! ```
//! use silent_refresh::Secret;
//! use silent_refresh_oauth2::{RefreshGrant, RevocationRequest, TokenTypeHint};
//!
//! let client = RefreshGrant::new("https://auth.example.com/token", "my-cli");
//! let revocation = RevocationRequest::new("https://auth.example.com/revoke");
//! let token = Secret::new("rt-1");
//! let request = revocation.request(&client, &token, TokenTypeHint::RefreshToken)?;
//! assert_eq!(request.body(), b"token=rt-1&token_type_hint=refresh_token&client_id=my-cli");
//! let answer = http::Response::builder().status(200).body(Vec::new())?;
//! revocation.read_response(&client, &token, TokenTypeHint::RefreshToken, &answer)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::endpoint::{self, endpoint_uri, form_post, oauth_error};
use crate::{Error, RefreshGrant};
use silent_refresh::Secret;

/// What the token to revoke is (RFC 7009 §2.1 `token_type_hint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenTypeHint {
    /// A refresh token: revoking it ends the grant at most servers.
    RefreshToken,
    /// An access token.
    AccessToken,
}

impl TokenTypeHint {
    /// The hint as sent: `refresh_token` or `access_token`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RefreshToken => "refresh_token",
            Self::AccessToken => "access_token",
        }
    }
}

/// Requests to a revocation endpoint (the metadata's `revocation_endpoint`).
#[derive(Clone, Debug)]
pub struct RevocationRequest {
    endpoint: String,
    allow_insecure_http: bool,
}

impl RevocationRequest {
    /// Revocation at `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            allow_insecure_http: false,
        }
    }

    /// Allows a plain `http` endpoint on a host that is not loopback.
    #[must_use]
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// The endpoint.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The `POST` that revokes `token`: `token`, `token_type_hint`, and `client`'s
    /// authentication (a public client sends its `client_id`). It carries secrets:
    /// send it without following redirects.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`], [`Error::InsecureHttp`] for the endpoint, or the
    /// client's configuration errors; [`Error::InvalidConfig`] for an empty token.
    pub fn request(
        &self,
        client: &RefreshGrant,
        token: &Secret,
        hint: TokenTypeHint,
    ) -> Result<http::Request<Vec<u8>>, Error> {
        let uri = endpoint_uri(&self.endpoint, false, self.allow_insecure_http)?;
        if token.is_empty() {
            return Err(Error::InvalidConfig("the token to revoke is empty"));
        }
        form_post(
            client,
            uri,
            vec![
                ("token", token.expose()),
                ("token_type_hint", hint.as_str()),
            ],
        )
    }

    /// Reads the revocation endpoint's answer to the revocation of `token` (see the
    /// table in the [module docs](self)).
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedTokenType`], or [`Error::Endpoint`] (transient or
    /// misconfigured). Neither the token nor the client secret is ever quoted.
    pub fn read_response<B: AsRef<[u8]>>(
        &self,
        client: &RefreshGrant,
        token: &Secret,
        hint: TokenTypeHint,
        response: &http::Response<B>,
    ) -> Result<(), Error> {
        let status = response.status();
        let code = oauth_error(response.headers(), response.body().as_ref())
            .map(|(code, _)| code.to_ascii_lowercase());
        let overloaded = status.is_server_error() || matches!(status.as_u16(), 408 | 425 | 429);
        if !overloaded && !status.is_redirection() {
            match code.as_deref() {
                None if status.is_success() => return Ok(()),
                Some("invalid_token" | "invalid_grant") => return Ok(()),
                Some("unsupported_token_type") => {
                    return Err(Error::UnsupportedTokenType {
                        token_type: hint.as_str(),
                    });
                }
                _ => {}
            }
        }
        let secrets: Vec<&Secret> = client.client_secret.iter().chain([token]).collect();
        Err(Error::Endpoint(endpoint::endpoint_failure(
            "the revocation endpoint",
            response,
            &secrets,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use silent_refresh::FailureKind;
    use std::time::Duration;

    const TOKEN: &str = "rt-9f8e7d6c5b4a39281706f5e4d3c2b1a0ffeeddcc";

    fn client() -> RefreshGrant {
        RefreshGrant::new("https://auth.example.com/token", "app").client_secret("cs-secret")
    }

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> http::Response<Vec<u8>> {
        let mut builder = http::Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(body.as_bytes().to_vec()).expect("response")
    }

    fn read(response: &http::Response<Vec<u8>>) -> Result<(), Error> {
        RevocationRequest::new("https://auth.example.com/revoke").read_response(
            &client(),
            &Secret::new(TOKEN),
            TokenTypeHint::RefreshToken,
            response,
        )
    }

    #[test]
    fn the_request_carries_the_token_its_hint_and_the_client() {
        let revocation = RevocationRequest::new("https://auth.example.com/revoke");
        let request = revocation
            .request(&client(), &Secret::new("at-1"), TokenTypeHint::AccessToken)
            .expect("request");
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.uri(), "https://auth.example.com/revoke");
        assert_eq!(request.body(), b"token=at-1&token_type_hint=access_token");
        assert!(request.headers()[http::header::AUTHORIZATION].is_sensitive());
        assert!(matches!(
            revocation.request(&client(), &Secret::new(""), TokenTypeHint::AccessToken),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            RevocationRequest::new("http://auth.example.com/revoke").request(
                &client(),
                &Secret::new("t"),
                TokenTypeHint::AccessToken
            ),
            Err(Error::InsecureHttp { .. })
        ));
    }

    #[test]
    fn success_and_dead_tokens_are_revoked() {
        for response in [
            answer(200, &[], ""),
            answer(204, &[], ""),
            answer(200, &[("content-type", "application/json")], "{}"),
            answer(400, &[], r#"{"error":"invalid_token"}"#),
            answer(400, &[], r#"{"error":"invalid_grant"}"#),
        ] {
            assert_eq!(read(&response), Ok(()), "{response:?}");
        }
    }

    #[test]
    fn refusals_are_classified_and_never_quote_the_token() {
        let unsupported = read(&answer(400, &[], r#"{"error":"unsupported_token_type"}"#));
        let error = unsupported.expect_err("unsupported");
        assert_eq!(
            error,
            Error::UnsupportedTokenType {
                token_type: "refresh_token"
            }
        );
        assert!(error.to_string().contains("refresh_tokens"), "{error}");

        let busy = read(&answer(503, &[("retry-after", "7")], "")).expect_err("busy");
        assert!(busy.is_transient());
        let Error::Endpoint(failure) = &busy else {
            panic!("{busy:?}")
        };
        assert_eq!(failure.retry_after, Some(Duration::from_secs(7)));
        assert!(
            failure
                .message
                .starts_with("the revocation endpoint is failing"),
            "{}",
            failure.message
        );

        for (status, body, kind) in [
            (
                401,
                r#"{"error":"invalid_client","error_description":"cs-secret"}"#,
                FailureKind::Misconfigured,
            ),
            (404, "", FailureKind::Misconfigured),
            (
                400,
                &format!(r#"{{"error":"invalid_request","error_description":"{TOKEN}"}}"#) as &str,
                FailureKind::Misconfigured,
            ),
            (200, r#"{"error":"server_error"}"#, FailureKind::Transient),
        ] {
            let error = read(&answer(
                status,
                &[("content-type", "application/json")],
                body,
            ))
            .expect_err("refused");
            let Error::Endpoint(failure) = &error else {
                panic!("{error:?}")
            };
            assert_eq!(failure.kind, kind, "{status} {body}");
            assert!(
                failure.message.contains("the revocation endpoint"),
                "{}",
                failure.message
            );
            assert!(!failure.message.contains(TOKEN), "{}", failure.message);
            assert!(
                !failure.message.contains("cs-secret"),
                "{}",
                failure.message
            );
        }
        let moved = read(&answer(
            307,
            &[("location", "https://other.example/revoke?token=x")],
            "",
        ))
        .expect_err("redirect");
        let message = moved.to_string();
        assert!(
            message.contains("redirect") && !message.contains("token=x"),
            "{message}"
        );
    }
}
