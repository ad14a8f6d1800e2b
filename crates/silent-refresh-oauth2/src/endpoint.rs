//! What the sign-in modules share: a form `POST` to an endpoint of the authorization
//! server with the client's authentication, the endpoint URL checks (the token
//! exchange's scheme rule), and the reading of an OAuth error from any answer.

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Uri};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::origin::{self, Origin};
use crate::{ClientAuth, Error, RefreshGrant};
use silent_refresh::{FailureKind, RefreshFailure, Secret};

/// An endpoint URL: absolute `http` or `https` with a host, and plain `http` only to a
/// loopback host unless `allow_insecure_http` (what crosses the network is a
/// credential). Only the authorization endpoint may carry a query (`query_allowed`,
/// RFC 6749 §3.1); a fragment never.
pub(crate) fn endpoint_uri(
    url: &str,
    query_allowed: bool,
    allow_insecure_http: bool,
) -> Result<Uri, Error> {
    if url.contains('#') {
        return Err(Error::InvalidUrl {
            reason: "an endpoint URL has a fragment (`#…`); configure it without one",
        });
    }
    let uri = origin::parse_url(url)?;
    let origin = Origin::of(&uri)?;
    if uri.query().is_some_and(|q| !q.is_empty()) && !query_allowed {
        return Err(Error::InvalidConfig(
            "the URL of a token, device authorization or revocation endpoint has a query; \
             configure it without one",
        ));
    }
    if !origin.is_https() && !origin.is_loopback() && !allow_insecure_http {
        return Err(Error::InsecureHttp {
            origin: origin.to_string(),
        });
    }
    Ok(uri)
}

/// A `POST` of `pairs` as a form to `uri`, with the client authentication of `grant`
/// (its client id, secret and [`ClientAuth`]): `client_secret_basic` in an
/// `Authorization` header (marked sensitive), `client_secret_post` in the body, or a
/// public client's `client_id` in the body. The body is written once into a buffer
/// sized for the worst case, so no reallocation leaves a copy of a secret behind.
///
/// Signed client assertions (`client_secret_jwt`, `private_key_jwt`) are refused as
/// misconfigured: the sign-in flows do not sign them yet.
pub(crate) fn form_post<'a>(
    grant: &'a RefreshGrant,
    uri: Uri,
    mut pairs: Vec<(&'a str, &'a str)>,
) -> Result<Request<Vec<u8>>, Error> {
    let secret = grant
        .client_secret
        .as_ref()
        .filter(|s| !s.is_empty() && grant.auth != ClientAuth::None);
    let basic = match grant.auth {
        ClientAuth::Basic => secret,
        ClientAuth::Post | ClientAuth::None => None,
        #[cfg(feature = "jwt")]
        ClientAuth::SecretJwt | ClientAuth::PrivateKeyJwt => {
            return Err(Error::InvalidConfig(
                "the sign-in flows and revocation authenticate the client with \
                 client_secret_basic, client_secret_post or none (a public client); \
                 signed client assertions are not supported there yet",
            ));
        }
    };
    if basic.is_none() && !grant.client_id.is_empty() {
        pairs.push(("client_id", &grant.client_id));
    }
    if let Some(secret) = secret.filter(|_| grant.auth == ClientAuth::Post) {
        pairs.push(("client_secret", secret.expose()));
    }
    let most = pairs
        .iter()
        .map(|(name, value)| 3 * (name.len() + value.len()) + 2)
        .sum();
    let mut body = Zeroizing::new(String::with_capacity(most));
    form_urlencoded::Serializer::new(&mut *body)
        .extend_pairs(&pairs)
        .finish();
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json");
    if let Some(secret) = basic {
        let header = crate::request::basic_authorization(&grant.client_id, secret)
            .map_err(|_| Error::InvalidConfig("the client id or secret cannot be sent"))?;
        request = request.header(AUTHORIZATION, header);
    }
    let request = request
        .body(())
        .map_err(|_| Error::InvalidConfig("the request cannot be built; check the endpoint URL"))?;
    Ok(request.map(|()| std::mem::take(&mut *body).into_bytes()))
}

/// The OAuth error (RFC 6749 §5.2) an answer holds, whatever its status: its `error`
/// code and `error_description`, read from a JSON object or, when the server says so,
/// a form body (as the token response reader reads them, wiping what it does not
/// keep). `None` when the body holds no `error` string.
pub(crate) fn oauth_error(headers: &HeaderMap, body: &[u8]) -> Option<(String, Option<String>)> {
    let fields = crate::response::read_fields(headers, body).ok()?;
    let error = crate::response::text(&fields, "error")?.to_owned();
    let description = crate::response::text(&fields, "error_description").map(str::to_owned);
    Some((error, description))
}

/// `failure` with the library's words (what happened, what to do) replaced by
/// `words`, keeping what the server said (`(HTTP 400, error …)`) and the class.
pub(crate) fn reword(mut failure: RefreshFailure, words: &str) -> RefreshFailure {
    let said = failure
        .message
        .find(" (HTTP ")
        .map(|at| failure.message[at..].to_owned())
        .unwrap_or_default();
    failure.message = format!("{words}{said}");
    failure
}

/// The library's words for a failure at an endpoint of a sign-in flow (`endpoint`:
/// `the device authorization endpoint`), by class, status and OAuth error code.
pub(crate) fn words_for(
    endpoint: &str,
    kind: FailureKind,
    status: http::StatusCode,
    error: Option<&str>,
) -> String {
    let error = error.map(str::to_ascii_lowercase);
    match (kind, error.as_deref()) {
        (FailureKind::Transient, _) => {
            format!("{endpoint} is failing or unavailable; try again later")
        }
        (_, _) if status.is_redirection() => format!(
            "{endpoint} answered with a redirect, which is never followed with a credential; \
             configure the final URL"
        ),
        (_, Some("invalid_client" | "unauthorized_client")) => format!(
            "{endpoint} refused the client; check the client id, the client secret and the \
             client authentication method, and that the client may use this flow"
        ),
        (_, Some("invalid_scope")) => format!(
            "{endpoint} refused the requested scope; configure a scope the client may ask for"
        ),
        (_, Some(code)) => format!(
            "{endpoint} refused the request with `{code}`; check the client configuration \
             against the authorization server's documentation of that code"
        ),
        (_, None) => format!(
            "{endpoint} does not exist at this address or refused the request without an \
             OAuth error; check its URL and the client configuration"
        ),
    }
}

/// `failure`, read from `response` of `endpoint`, in the words of [`words_for`].
pub(crate) fn reworded<B: AsRef<[u8]>>(
    endpoint: &str,
    failure: RefreshFailure,
    response: &http::Response<B>,
) -> RefreshFailure {
    let error = oauth_error(response.headers(), response.body().as_ref()).map(|(error, _)| error);
    let words = words_for(endpoint, failure.kind, response.status(), error.as_deref());
    reword(failure, &words)
}

/// A failure at an endpoint other than the token endpoint, classified by the
/// codec's table (`secrets`: what the request sent) and reworded for it.
pub(crate) fn endpoint_failure<B: AsRef<[u8]>>(
    endpoint: &str,
    response: &http::Response<B>,
    secrets: &[&Secret],
) -> RefreshFailure {
    let body = response.body().as_ref();
    let failure = match crate::classify(response.status(), response.headers(), body, secrets) {
        Err(failure) => failure,
        // A success with nothing usable in it.
        Ok(()) => RefreshFailure::transient(format!(
            " (HTTP {}: the answer is not what the protocol says)",
            response.status().as_u16()
        )),
    };
    reworded(endpoint, failure, response)
}

/// A number of seconds: a JSON number, or a string holding one (some servers quote
/// them). Fractions are kept; a negative or non-numeric value is `None`.
pub(crate) fn seconds(value: &Value) -> Option<std::time::Duration> {
    let seconds = match value {
        Value::Number(number) => number.as_f64()?,
        Value::String(text) => text.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if seconds.is_nan() || seconds < 0.0 {
        return None;
    }
    Some(std::time::Duration::try_from_secs_f64(seconds).unwrap_or(std::time::Duration::MAX))
}

/// Server text, cleaned to be quoted in an error (see `classify::clean`).
pub(crate) fn clean(text: &str, secrets: &[&Secret]) -> String {
    crate::classify::clean(text, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(auth: ClientAuth, secret: Option<&str>) -> RefreshGrant {
        let grant = RefreshGrant::new("https://auth.example.com/token", "app").auth(auth);
        match secret {
            Some(secret) => grant.client_secret(secret),
            None => grant,
        }
    }

    fn body(request: &Request<Vec<u8>>) -> &str {
        std::str::from_utf8(request.body()).expect("utf-8")
    }

    #[test]
    fn client_authentication_follows_the_grant() {
        let uri: Uri = "https://auth.example.com/device".parse().expect("uri");
        let basic = form_post(
            &grant(ClientAuth::Basic, Some("s3cret")),
            uri.clone(),
            vec![("scope", "a b")],
        )
        .expect("request");
        assert_eq!(body(&basic), "scope=a+b");
        assert_eq!(basic.headers()[AUTHORIZATION], "Basic YXBwOnMzY3JldA==");
        assert!(basic.headers()[AUTHORIZATION].is_sensitive());
        let post = form_post(
            &grant(ClientAuth::Post, Some("s3cret")),
            uri.clone(),
            vec![("scope", "a")],
        )
        .expect("request");
        assert_eq!(body(&post), "scope=a&client_id=app&client_secret=s3cret");
        assert!(post.headers().get(AUTHORIZATION).is_none());
        // A public client: no secret, whatever the method says.
        for auth in [ClientAuth::Basic, ClientAuth::Post, ClientAuth::None] {
            let public = form_post(&grant(auth, None), uri.clone(), vec![]).expect("request");
            assert_eq!(body(&public), "client_id=app");
            assert!(public.headers().get(AUTHORIZATION).is_none());
        }
        let none =
            form_post(&grant(ClientAuth::None, Some("s3cret")), uri, vec![]).expect("request");
        assert_eq!(body(&none), "client_id=app");
    }

    #[test]
    fn endpoint_urls_follow_the_token_exchange_rules() {
        assert!(endpoint_uri("https://a.example/x", false, false).is_ok());
        assert!(endpoint_uri("http://127.0.0.1:9/x", false, false).is_ok());
        assert!(matches!(
            endpoint_uri("http://a.example/x", false, false),
            Err(Error::InsecureHttp { .. })
        ));
        assert!(endpoint_uri("http://a.example/x", false, true).is_ok());
        assert!(matches!(
            endpoint_uri("ftp://a.example/x", false, true),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(
            endpoint_uri("https://a.example/x?a=b", false, false),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            endpoint_uri("https://a.example/x#f", true, false),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(endpoint_uri("https://a.example/x?p=b2c", true, false).is_ok());
    }

    #[test]
    fn oauth_errors_are_read_from_json_and_forms_whatever_the_status() {
        let json = HeaderMap::new();
        assert_eq!(
            oauth_error(&json, br#"{"error":"slow_down","error_description":"x"}"#),
            Some(("slow_down".to_owned(), Some("x".to_owned())))
        );
        assert_eq!(oauth_error(&json, br#"{"error":1}"#), None);
        assert_eq!(oauth_error(&json, b"<html>"), None);
        let mut form = HeaderMap::new();
        form.insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        assert_eq!(
            oauth_error(
                &form,
                b"error=authorization_pending&error_description=wait+a+bit"
            ),
            Some((
                "authorization_pending".to_owned(),
                Some("wait a bit".to_owned())
            ))
        );
    }
}
