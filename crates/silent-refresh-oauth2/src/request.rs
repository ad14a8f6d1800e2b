//! Building the refresh request: the form body and the client authentication.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Uri};
use zeroize::Zeroizing;

use super::{ClientAuth, ExchangeContext, GrantKind, RefreshGrant};
use silent_refresh::{RefreshFailure, Secret};

/// The `grant_type` of the JWT bearer grant (RFC 7523 §2.1).
#[cfg(feature = "jwt")]
pub(super) const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The `grant_type` of token exchange (RFC 8693 §2.1).
pub(super) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub(super) const JWT_CLIENT_ASSERTION: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Form parameters the codec sets itself: an extra parameter may not override them.
pub(super) const RESERVED: [&str; 11] = [
    "grant_type",
    "refresh_token",
    "client_id",
    "client_secret",
    "scope",
    "assertion",
    "client_assertion",
    "client_assertion_type",
    "subject_token",
    "subject_token_type",
    "requested_token_type",
];

/// What can be checked without an exchange (see [`RefreshGrant::check`]), in words
/// that name the setting to fix.
pub(super) fn check(grant: &RefreshGrant) -> Result<(), &'static str> {
    if token_uri(&grant.token_url).is_err() {
        return Err(
            "the token URL is not an absolute https:// (or http://) URL; configure the token endpoint",
        );
    }
    if grant
        .params
        .iter()
        .any(|(name, _)| RESERVED.contains(&name.as_str()))
    {
        return Err(
            "an extra form parameter is one the codec sets itself (grant_type, \
                    refresh_token, client_id, client_secret, scope, assertion, client_assertion, \
                    subject_token…); remove it and use the grant's own settings",
        );
    }
    #[cfg(feature = "jwt")]
    {
        if matches!(
            grant.auth,
            ClientAuth::PrivateKeyJwt | ClientAuth::SecretJwt
        ) {
            super::jwt::check_lifetime(grant.client_assertion_lifetime)?;
            if grant.client_id.is_empty() {
                return Err(
                    "a client assertion needs the client id (its `iss` and `sub`); set the client id",
                );
            }
        }
        if grant.auth == ClientAuth::PrivateKeyJwt && grant.client_key.is_none() {
            return Err(
                "private_key_jwt has no signing key; give one with RefreshGrant::private_key_jwt",
            );
        }
        if grant.auth == ClientAuth::SecretJwt
            && grant.client_secret.as_ref().is_none_or(Secret::is_empty)
        {
            return Err(
                "client_secret_jwt needs the client secret to sign with; set the client secret",
            );
        }
        if let GrantKind::JwtBearer(assertion) = &grant.kind {
            assertion.problem()?;
        }
    }
    Ok(())
}

/// The request for `grant` with `refresh_token` (see [`RefreshGrant::request_with`]);
/// `context` is `None` for [`RefreshGrant::request`].
pub(super) fn build(
    grant: &RefreshGrant,
    refresh_token: Option<&Secret>,
    context: Option<&ExchangeContext>,
) -> Result<Request<Vec<u8>>, RefreshFailure> {
    let uri = token_uri(&grant.token_url)?;
    if let Some((name, _)) = grant
        .params
        .iter()
        .find(|(name, _)| RESERVED.contains(&name.as_str()))
    {
        return Err(RefreshFailure::misconfigured(format!(
            "the extra form parameter `{name}` is one the codec sets itself; \
             remove it (use the grant's own settings, such as `scope` or `client_secret`)"
        )));
    }
    check(grant).map_err(RefreshFailure::misconfigured)?;
    let refresh_token = refresh_token.filter(|_| grant.uses_refresh_token());
    if refresh_token.is_some_and(Secret::is_empty) {
        return Err(RefreshFailure::terminal(
            "the refresh credential is empty, so no refresh can succeed; sign in again",
        ));
    }
    let needs_context = || {
        RefreshFailure::misconfigured(format!(
            "the {} grant and signed client assertions need the exchange's time and \
             randomness: build the request with RefreshGrant::request_with",
            grant.grant_type()
        ))
    };

    // The grant's own parameters; a signed assertion is held until the body is built.
    let mut pairs: Vec<(&str, &str)> =
        Vec::with_capacity(9 + grant.resources.len() + grant.audiences.len() + grant.params.len());
    #[cfg(feature = "jwt")]
    let grant_assertion: Option<Secret>;
    match &grant.kind {
        GrantKind::Refresh => match refresh_token {
            Some(credential) => {
                pairs.push(("grant_type", "refresh_token"));
                pairs.push(("refresh_token", credential.expose()));
            }
            None => pairs.push(("grant_type", "client_credentials")),
        },
        GrantKind::ClientCredentials => pairs.push(("grant_type", "client_credentials")),
        #[cfg(feature = "jwt")]
        GrantKind::JwtBearer(assertion) => {
            let context = context.ok_or_else(needs_context)?;
            grant_assertion =
                Some(assertion.sign(&grant.token_url, context.now(), &context.grant_jti())?);
            pairs.push(("grant_type", JWT_BEARER));
            if let Some(assertion) = &grant_assertion {
                pairs.push(("assertion", assertion.expose()));
            }
        }
        GrantKind::TokenExchange(exchange) => {
            let context = context.ok_or_else(needs_context)?;
            let subject = context.subject_token().ok_or_else(|| {
                RefreshFailure::misconfigured(
                    "the token exchange has no subject token: read it from the grant's \
                     subject_token_source into the exchange's context",
                )
            })?;
            if subject.is_empty() {
                return Err(RefreshFailure::transient(
                    "the subject token is empty; waiting for its source to hold one",
                ));
            }
            super::exchange::check_subject_expiry(subject, context)?;
            pairs.push(("grant_type", TOKEN_EXCHANGE));
            pairs.push(("subject_token", subject.expose()));
            pairs.push(("subject_token_type", &exchange.subject_token_type));
            if let Some(requested) = &exchange.requested_token_type {
                pairs.push(("requested_token_type", requested));
            }
        }
    }
    if let Some(scope) = &grant.scope {
        pairs.push(("scope", scope));
    }
    pairs.extend(grant.resources.iter().map(|r| ("resource", r.as_str())));
    pairs.extend(grant.audiences.iter().map(|a| ("audience", a.as_str())));

    // The client authentication. A secret is only sent by a confidential client;
    // without one the client is public.
    let secret = grant
        .client_secret
        .as_ref()
        .filter(|_| grant.auth != ClientAuth::None);
    let basic = secret.filter(|_| grant.auth == ClientAuth::Basic);
    #[cfg(feature = "jwt")]
    let client_assertion: Option<Secret> = match grant.auth {
        ClientAuth::PrivateKeyJwt | ClientAuth::SecretJwt => {
            let context = context.ok_or_else(needs_context)?;
            let key = match (&grant.client_key, grant.auth) {
                (Some(key), ClientAuth::PrivateKeyJwt) => key.clone(),
                (_, ClientAuth::SecretJwt) => {
                    super::jwt::SigningKey::hs256(secret.ok_or_else(|| {
                        RefreshFailure::misconfigured(
                            "client_secret_jwt needs the client secret; set it",
                        )
                    })?)?
                }
                _ => {
                    return Err(RefreshFailure::misconfigured(
                        "private_key_jwt has no signing key; give one with \
                         RefreshGrant::private_key_jwt",
                    ));
                }
            };
            Some(super::jwt::client_assertion(
                &key,
                &grant.client_id,
                &grant.token_url,
                &context.client_jti(),
                context.unix_now()?,
                grant.client_assertion_lifetime,
            )?)
        }
        _ => None,
    };
    #[cfg(not(feature = "jwt"))]
    let client_assertion: Option<Secret> = None;
    if basic.is_none() && !grant.client_id.is_empty() {
        pairs.push(("client_id", &grant.client_id));
    }
    if let Some(assertion) = &client_assertion {
        pairs.push(("client_assertion_type", JWT_CLIENT_ASSERTION));
        pairs.push(("client_assertion", assertion.expose()));
    } else if let Some(secret) = secret.filter(|_| grant.auth == ClientAuth::Post) {
        pairs.push(("client_secret", secret.expose()));
    }
    pairs.extend(
        grant
            .params
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    );

    // The body holds secrets. It is written into one buffer big enough for the worst
    // case (every byte percent-encoded), so no reallocation leaves a copy behind, and
    // it moves into the request without a copy; until then it is wiped if dropped.
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
pub(super) fn basic_authorization(
    client_id: &str,
    secret: &Secret,
) -> Result<HeaderValue, RefreshFailure> {
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
    use silent_refresh::FailureKind;

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

    /// The context of an exchange at Unix time 1 000 000 with fixed random bytes.
    fn context() -> ExchangeContext {
        let mut random = [0u8; 32];
        random[..16].copy_from_slice(b"client-jti-bytes");
        random[16..].copy_from_slice(b"grant--jti-bytes");
        ExchangeContext::new(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000),
            random,
        )
    }

    fn body(request: &Request<Vec<u8>>) -> &str {
        std::str::from_utf8(request.body()).expect("utf-8")
    }

    #[test]
    fn client_credentials_exact_bytes_and_never_a_refresh_credential() {
        let grant = RefreshGrant::client_credentials(URL, "svc")
            .client_secret("s3cret")
            .scope("orders:read orders:write")
            .resource("https://orders.example.com/")
            .resource("https://billing.example.com/")
            .audience("orders-api");
        // A refresh credential handed in (a stale session) is never sent.
        for refresh_token in [None, Some(Secret::new("rt-stale"))] {
            let request = grant
                .request_with(refresh_token.as_ref(), &context())
                .expect("request");
            assert_eq!(
                body(&request),
                "grant_type=client_credentials&scope=orders%3Aread+orders%3Awrite\
                 &resource=https%3A%2F%2Forders.example.com%2F\
                 &resource=https%3A%2F%2Fbilling.example.com%2F&audience=orders-api"
            );
            // base64("svc:s3cret")
            assert_eq!(request.headers()[AUTHORIZATION], "Basic c3ZjOnMzY3JldA==");
            assert_eq!(request.uri(), URL);
        }
        let post = RefreshGrant::client_credentials(URL, "svc")
            .client_secret("s3cret")
            .auth(ClientAuth::Post)
            .request(None)
            .expect("request");
        assert_eq!(
            body(&post),
            "grant_type=client_credentials&client_id=svc&client_secret=s3cret"
        );
        assert!(post.headers().get(AUTHORIZATION).is_none());
        assert!(!grant.uses_refresh_token());
        assert_eq!(grant.grant_type(), "client_credentials");
    }

    #[test]
    fn client_credentials_drops_a_refresh_credential_from_the_answer() {
        let answer = http::Response::builder()
            .status(200)
            .header(CONTENT_TYPE, "application/json")
            .body(r#"{"access_token":"at","expires_in":60,"refresh_token":"rt"}"#)
            .expect("response");
        let cc = RefreshGrant::client_credentials(URL, "svc").client_secret("s");
        assert_eq!(
            cc.parse_response(&answer).expect("token").refresh_token,
            None
        );
        let refresh = RefreshGrant::new(URL, "svc");
        assert!(
            refresh
                .parse_response(&answer)
                .expect("token")
                .refresh_token
                .is_some()
        );
    }

    #[test]
    fn token_exchange_exact_bytes() {
        let source = super::super::SubjectTokenSource::file("/var/run/secrets/token");
        let grant = RefreshGrant::token_exchange(
            URL,
            "workload",
            super::super::TokenExchange::new(source)
                .requested_token_type(super::super::TOKEN_TYPE_ACCESS_TOKEN),
        )
        .client_secret("s3cret")
        .auth(ClientAuth::Post)
        .audience("orders-api");
        let context = context().with_subject_token(Secret::new("k8s.subject.token"));
        let request = grant.request_with(None, &context).expect("request");
        assert_eq!(
            body(&request),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
             &subject_token=k8s.subject.token\
             &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt\
             &requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
             &audience=orders-api&client_id=workload&client_secret=s3cret"
        );
        assert!(grant.subject_token_source().is_some());
        // Without a subject token, or through `request`, it cannot be built.
        for failure in [
            grant.request_with(
                None,
                &super::super::ExchangeContext::new(context.now(), [0; 32]),
            ),
            grant.request(None),
        ] {
            assert_eq!(
                failure.expect_err("refused").kind,
                FailureKind::Misconfigured
            );
        }
    }

    #[cfg(feature = "jwt")]
    mod jwt {
        use super::*;
        use crate::{JwtAssertion, SigningKey};
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use jsonwebtoken::{Algorithm, DecodingKey};

        const RS256: &str = include_str!("testdata/rs256.pem");
        const RS256_PUB: &str = include_str!("testdata/rs256.pub.pem");
        const ES256: &str = include_str!("testdata/es256.pem");
        const ES256_PUB: &str = include_str!("testdata/es256.pub.pem");

        /// The JWS in `name=` of a form body, checked with `key`; its header and claims.
        fn verified(
            body: &str,
            name: &str,
            key: &DecodingKey,
            algorithm: Algorithm,
        ) -> (serde_json::Value, serde_json::Value) {
            let jws = form_urlencoded::parse(body.as_bytes())
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.into_owned())
                .expect("assertion");
            let (message, signature) = jws.rsplit_once('.').expect("jws");
            assert!(
                jsonwebtoken::crypto::verify(signature, message.as_bytes(), key, algorithm)
                    .expect("verifiable"),
                "the signature checks with the public key"
            );
            let part = |i: usize| -> serde_json::Value {
                let text = message.split('.').nth(i).expect("part");
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).expect("b64")).expect("json")
            };
            (part(0), part(1))
        }

        #[test]
        fn private_key_jwt_exact_bytes_rs256() {
            let key = SigningKey::rs256_pem(RS256).expect("key").key_id("k-2024");
            let grant = RefreshGrant::client_credentials(URL, "svc")
                .private_key_jwt(key)
                .scope("api");
            let request = grant.request_with(None, &context()).expect("request");
            assert!(request.headers().get(AUTHORIZATION).is_none());
            let body = body(&request).to_owned();
            let (header, claims) = verified(
                &body,
                "client_assertion",
                &DecodingKey::from_rsa_pem(RS256_PUB.as_bytes()).expect("pub"),
                Algorithm::RS256,
            );
            assert_eq!(
                header,
                serde_json::json!({"alg":"RS256","typ":"JWT","kid":"k-2024"})
            );
            assert_eq!(
                claims,
                serde_json::json!({"iss":"svc","sub":"svc","aud":URL,
                    "jti":"Y2xpZW50LWp0aS1ieXRlcw","iat":1_000_000,"exp":1_000_060})
            );
            let jws = form_urlencoded::parse(body.as_bytes())
                .find(|(n, _)| n == "client_assertion")
                .map(|(_, v)| v.into_owned())
                .expect("assertion");
            assert_eq!(
                body,
                format!(
                    "grant_type=client_credentials&scope=api&client_id=svc\
                     &client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer\
                     &client_assertion={jws}"
                )
            );
            // RS256 is deterministic: the same context signs the same bytes; new
            // randomness, a new jti.
            let again = grant.request_with(None, &context()).expect("request");
            assert_eq!(again.body(), request.body());
            let other = grant
                .request_with(None, &ExchangeContext::new(context().now(), [9; 32]))
                .expect("request");
            assert_ne!(other.body(), request.body());
            // Without a context no assertion can be signed.
            assert_eq!(
                grant.request(None).expect_err("no context").kind,
                FailureKind::Misconfigured
            );
        }

        #[test]
        fn jwt_bearer_exact_bytes_es256_with_a_client_assertion() {
            let assertion =
                JwtAssertion::new(SigningKey::es256_pem(ES256).expect("key"), "svc@example")
                    .subject("user@example")
                    .claim("scope", "cloud");
            let grant = RefreshGrant::jwt_bearer(URL, assertion);
            let request = grant.request_with(None, &context()).expect("request");
            let body = body(&request).to_owned();
            let public = DecodingKey::from_ec_pem(ES256_PUB.as_bytes()).expect("pub");
            let (header, claims) = verified(&body, "assertion", &public, Algorithm::ES256);
            assert_eq!(header, serde_json::json!({"alg":"ES256","typ":"JWT"}));
            assert_eq!(
                claims,
                serde_json::json!({"iss":"svc@example","sub":"user@example","aud":URL,
                    "jti":"Z3JhbnQtLWp0aS1ieXRlcw","iat":1_000_000,"exp":1_000_060,"scope":"cloud"})
            );
            let jws = body.rsplit_once("assertion=").expect("assertion").1;
            assert_eq!(
                body,
                format!(
                    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={jws}"
                )
            );
            // With private_key_jwt too: two assertions, two different jti.
            let both = grant
                .clone()
                .private_key_jwt(SigningKey::es256_pem(ES256).expect("key"));
            let grant_with_client = both.client_id("app");
            let request = grant_with_client
                .request_with(None, &context())
                .expect("request");
            let body = std::str::from_utf8(request.body()).expect("utf-8");
            let (_, grant_claims) = verified(body, "assertion", &public, Algorithm::ES256);
            let (_, client_claims) = verified(body, "client_assertion", &public, Algorithm::ES256);
            assert_ne!(grant_claims["jti"], client_claims["jti"]);
            assert_eq!(client_claims["iss"], "app");
        }

        #[test]
        fn client_secret_jwt_signs_with_the_secret() {
            let grant = RefreshGrant::new(URL, "app")
                .client_secret("a-long-shared-client-secret")
                .auth(ClientAuth::SecretJwt);
            let request = grant
                .request_with(Some(&Secret::new("rt")), &context())
                .expect("request");
            let body = body(&request).to_owned();
            assert!(!body.contains("a-long-shared-client-secret"), "{body}");
            assert!(
                body.starts_with(
                    "grant_type=refresh_token&refresh_token=rt&client_id=app&client_assertion_type="
                ),
                "{body}"
            );
            let (header, claims) = verified(
                &body,
                "client_assertion",
                &DecodingKey::from_secret(b"a-long-shared-client-secret").expect("key"),
                Algorithm::HS256,
            );
            assert_eq!(header["alg"], "HS256");
            assert_eq!(claims["aud"], URL);
        }

        #[test]
        fn check_refuses_what_can_never_work_before_any_exchange() {
            let key = SigningKey::es256_pem(ES256).expect("key");
            for grant in [
                RefreshGrant::new(URL, "app").auth(ClientAuth::PrivateKeyJwt),
                RefreshGrant::new(URL, "app").auth(ClientAuth::SecretJwt),
                RefreshGrant::new(URL, "").private_key_jwt(key.clone()),
                RefreshGrant::new(URL, "app")
                    .private_key_jwt(key.clone())
                    .client_assertion_lifetime(std::time::Duration::ZERO),
                RefreshGrant::jwt_bearer(URL, JwtAssertion::new(key.clone(), "")),
                RefreshGrant::new("not a url", "app"),
                RefreshGrant::new(URL, "app").param("client_assertion", "x"),
            ] {
                let error = grant.check().expect_err("refused");
                assert!(matches!(error, crate::Error::InvalidConfig(_)), "{grant:?}");
                assert!(grant.request_with(None, &context()).is_err(), "{grant:?}");
            }
            assert!(
                RefreshGrant::new(URL, "app")
                    .private_key_jwt(key)
                    .check()
                    .is_ok()
            );
            let printed = format!(
                "{:?}",
                RefreshGrant::new(URL, "app")
                    .private_key_jwt(SigningKey::rs256_pem(RS256).expect("key"))
            );
            assert!(
                !printed.contains("BEGIN") && printed.contains("[redacted]"),
                "{printed}"
            );
        }
    }
}
