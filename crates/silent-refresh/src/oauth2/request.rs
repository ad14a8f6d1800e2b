//! Building the refresh request: the form body and the client authentication.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Uri};
use zeroize::Zeroizing;

use super::{ClientAuth, RefreshGrant};
use crate::failure::RefreshFailure;
use crate::secret::Secret;

/// Form parameters the codec sets itself: an extra parameter may not override them.
const RESERVED: [&str; 5] = [
    "grant_type",
    "refresh_token",
    "client_id",
    "client_secret",
    "scope",
];

/// The request for `grant` with `refresh_token` (see [`RefreshGrant::request`]).
pub(super) fn build(
    grant: &RefreshGrant,
    refresh_token: Option<&Secret>,
) -> Result<Request<Vec<u8>>, RefreshFailure> {
    let uri = token_uri(&grant.token_url)?;
    if let Some((name, _)) = grant
        .params
        .iter()
        .find(|(name, _)| RESERVED.contains(&name.as_str()))
    {
        return Err(RefreshFailure::misconfigured(format!(
            "the extra form parameter `{name}` is one the refresh grant sets itself; \
             remove it (use `scope` or `client_secret` for those settings)"
        )));
    }
    if refresh_token.is_some_and(Secret::is_empty) {
        return Err(RefreshFailure::terminal(
            "the refresh credential is empty, so no refresh can succeed; sign in again",
        ));
    }

    // A secret is only sent by a confidential client; without one the client is public.
    let secret = grant
        .client_secret
        .as_ref()
        .filter(|_| grant.auth != ClientAuth::None);
    let basic = secret.filter(|_| grant.auth == ClientAuth::Basic);

    // The body holds secrets. It is written into one buffer big enough for the worst
    // case (every byte percent-encoded), so no reallocation leaves a copy behind, and
    // it moves into the request without a copy; until then it is wiped if dropped.
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(5 + grant.params.len());
    match refresh_token {
        Some(credential) => {
            pairs.push(("grant_type", "refresh_token"));
            pairs.push(("refresh_token", credential.expose()));
        }
        None => pairs.push(("grant_type", "client_credentials")),
    }
    if let Some(scope) = &grant.scope {
        pairs.push(("scope", scope));
    }
    if basic.is_none() && !grant.client_id.is_empty() {
        pairs.push(("client_id", &grant.client_id));
    }
    if let Some(secret) = secret.filter(|_| grant.auth == ClientAuth::Post) {
        pairs.push(("client_secret", secret.expose()));
    }
    pairs.extend(
        grant
            .params
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    );
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
        request = request.header(
            AUTHORIZATION,
            basic_authorization(&grant.client_id, secret)?,
        );
    }
    let request = request.body(()).map_err(|error| cannot_build(&error))?;
    Ok(request.map(|()| std::mem::take(&mut *body).into_bytes()))
}

/// A request `http` refuses to build: it would be refused every time, and only a
/// change of settings can help.
fn cannot_build(error: &dyn std::fmt::Display) -> RefreshFailure {
    RefreshFailure::misconfigured(format!(
        "could not build the refresh request: {error}; check the token URL and the client id"
    ))
}

/// The token URL, if it is an absolute `http` or `https` URL.
fn token_uri(token_url: &str) -> Result<Uri, RefreshFailure> {
    let invalid = |why: &str| {
        RefreshFailure::misconfigured(format!(
            "the token URL is {why}; configure the token endpoint as an absolute \
             https:// (or http://) URL"
        ))
    };
    let uri: Uri = token_url.parse().map_err(|_| invalid("not a valid URL"))?;
    let scheme_ok = uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("http"));
    if !scheme_ok || uri.authority().is_none_or(|a| a.host().is_empty()) {
        return Err(invalid("not an absolute http(s) URL"));
    }
    Ok(uri)
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1), marked
/// sensitive so that `http`'s `Debug` does not print it.
fn basic_authorization(client_id: &str, secret: &Secret) -> Result<HeaderValue, RefreshFailure> {
    // Both buffers are sized once (percent-encoding at most triples a byte; base64
    // makes 4 of every 3), so no reallocation leaves a copy behind; both are wiped.
    let mut pair = Zeroizing::new(String::with_capacity(
        3 * (client_id.len() + secret.expose().len()) + 1,
    ));
    pair.extend(form_urlencoded::byte_serialize(client_id.as_bytes()));
    pair.push(':');
    pair.extend(form_urlencoded::byte_serialize(secret.expose().as_bytes()));
    let mut value = Zeroizing::new(String::with_capacity(
        "Basic ".len() + pair.len().div_ceil(3) * 4,
    ));
    value.push_str("Basic ");
    STANDARD.encode_string(pair.as_bytes(), &mut value);
    // Base64 output and "Basic " are always valid header characters, so this holds.
    let mut header = HeaderValue::from_str(&value).map_err(|error| cannot_build(&error))?;
    header.set_sensitive(true);
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;

    const URL: &str = "https://auth.example.com/oauth/token";

    fn form(request: &Request<Vec<u8>>) -> Vec<(String, String)> {
        form_urlencoded::parse(request.body())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Decodes a Basic header back into the (url-decoded) id and secret.
    fn basic_credentials(request: &Request<Vec<u8>>) -> Option<(String, String)> {
        let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
        let encoded = value.strip_prefix("Basic ")?;
        let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let unescape = |s: &str| -> String {
            form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        Some((unescape(id), unescape(secret)))
    }

    #[test]
    fn basic_refresh_puts_credentials_in_the_header_only() {
        let grant = RefreshGrant::new(URL, "my app").client_secret("p@ss word:%&");
        let request = grant
            .request(Some(&Secret::new("rt 1+/=")))
            .expect("request");
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), URL);
        assert_eq!(
            request.headers()[CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(request.headers()[ACCEPT], "application/json");
        assert_eq!(
            form(&request),
            pairs(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "rt 1+/=")
            ])
        );
        assert_eq!(
            basic_credentials(&request),
            Some(("my app".to_owned(), "p@ss word:%&".to_owned()))
        );
        // The id and secret are form-urlencoded inside the header (RFC 6749 §2.3.1).
        let raw = STANDARD
            .decode(
                request.headers()[AUTHORIZATION]
                    .to_str()
                    .expect("ascii")
                    .trim_start_matches("Basic "),
            )
            .expect("base64");
        assert_eq!(raw, b"my+app:p%40ss+word%3A%25%26");
        assert!(request.headers()[AUTHORIZATION].is_sensitive());
    }

    #[test]
    fn post_puts_credentials_in_the_body() {
        let grant = RefreshGrant::new(URL, "app")
            .client_secret("s3cret")
            .auth(ClientAuth::Post)
            .scope("read write");
        let request = grant.request(Some(&Secret::new("rt"))).expect("request");
        assert!(request.headers().get(AUTHORIZATION).is_none());
        assert_eq!(
            form(&request),
            pairs(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "rt"),
                ("scope", "read write"),
                ("client_id", "app"),
                ("client_secret", "s3cret"),
            ])
        );
    }

    #[test]
    fn public_client_never_sends_a_secret() {
        let with_secret = RefreshGrant::new(URL, "app")
            .client_secret("s3cret")
            .auth(ClientAuth::None);
        let without_secret = RefreshGrant::new(URL, "app");
        for grant in [with_secret, without_secret] {
            let request = grant.request(Some(&Secret::new("rt"))).expect("request");
            assert!(request.headers().get(AUTHORIZATION).is_none(), "{grant:?}");
            assert_eq!(
                form(&request),
                pairs(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", "rt"),
                    ("client_id", "app"),
                ])
            );
        }
    }

    #[test]
    fn no_credential_is_the_client_credentials_grant() {
        let grant = RefreshGrant::new(URL, "svc")
            .client_secret("s3cret")
            .scope("api")
            .param("audience", "https://api.example.com")
            .param("resource", "a")
            .param("resource", "b");
        let request = grant.request(None).expect("request");
        assert_eq!(
            form(&request),
            pairs(&[
                ("grant_type", "client_credentials"),
                ("scope", "api"),
                ("audience", "https://api.example.com"),
                ("resource", "a"),
                ("resource", "b"),
            ])
        );
        assert_eq!(
            basic_credentials(&request),
            Some(("svc".to_owned(), "s3cret".to_owned()))
        );
    }

    #[test]
    fn empty_client_id_is_left_out_of_the_body() {
        let request = RefreshGrant::new(URL, "")
            .request(Some(&Secret::new("rt")))
            .expect("request");
        assert_eq!(
            form(&request),
            pairs(&[("grant_type", "refresh_token"), ("refresh_token", "rt")])
        );
    }

    #[test]
    fn reserved_extra_parameters_are_refused() {
        for name in RESERVED {
            let grant = RefreshGrant::new(URL, "app").param(name, "x");
            let failure = grant
                .request(Some(&Secret::new("rt")))
                .expect_err("reserved");
            assert_eq!(failure.kind, FailureKind::Misconfigured);
            assert!(failure.message.contains(name), "{}", failure.message);
        }
    }

    #[test]
    fn unusable_token_urls_are_misconfigured() {
        for url in [
            "",
            "not a url",
            "/oauth/token",
            "auth.example.com/token",
            "ftp://auth.example.com/token",
            "https:///token",
        ] {
            let failure = RefreshGrant::new(url, "app").request(None).expect_err(url);
            assert_eq!(failure.kind, FailureKind::Misconfigured, "{url}");
            assert!(failure.message.contains("token URL"), "{}", failure.message);
        }
        for url in ["http://127.0.0.1:8080/token", "HTTPS://auth.example.com"] {
            assert!(RefreshGrant::new(url, "app").request(None).is_ok(), "{url}");
        }
    }

    #[test]
    fn empty_refresh_credential_is_terminal() {
        let failure = RefreshGrant::new(URL, "app")
            .request(Some(&Secret::new("")))
            .expect_err("empty");
        assert_eq!(failure.kind, FailureKind::Terminal);
        assert!(
            failure.message.contains("sign in again"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn the_body_buffer_is_allocated_once_for_the_worst_case() {
        // Every byte of every value percent-encoded: the buffer was sized for that up
        // front (`Vec::with_capacity` gives exactly the capacity asked for), so its
        // capacity is still the first one: no reallocation copied the credential.
        let secret = "%".repeat(100);
        let grant = RefreshGrant::new(URL, "ü".repeat(50))
            .client_secret(secret.as_str())
            .auth(ClientAuth::Post)
            .scope("&".repeat(30))
            .param("=", "+".repeat(40));
        let request = grant
            .request(Some(&Secret::new("/".repeat(200))))
            .expect("request");
        let pairs = form(&request);
        let first: usize = pairs
            .iter()
            .map(|(name, value)| 3 * (name.len() + value.len()) + 2)
            .sum();
        assert_eq!(request.body().capacity(), first);
        assert_eq!(pairs.len(), 6);
        assert_eq!(pairs[1], ("refresh_token".to_owned(), "/".repeat(200)));
        assert_eq!(pairs[4], ("client_secret".to_owned(), secret));
        assert_eq!(pairs[5], ("=".to_owned(), "+".repeat(40)));
    }

    #[test]
    fn request_debug_hides_the_basic_credentials() {
        let request = RefreshGrant::new(URL, "app")
            .client_secret("s3cret")
            .request(None)
            .expect("request");
        let header = request.headers()[AUTHORIZATION]
            .to_str()
            .expect("ascii")
            .to_owned();
        let printed = format!("{:?}", request.headers());
        assert!(!printed.contains(&header), "{printed}");
        assert!(!printed.contains("s3cret"), "{printed}");
    }
}
