//! The `grants` target: arbitrary settings of every grant (refresh token, client
//! credentials, JWT bearer, token exchange) and client authentication (basic, post,
//! none, `client_secret_jwt`, `private_key_jwt`), an arbitrary exchange context (the
//! wall clock, the random bytes, the subject token), through
//! [`RefreshGrant::request_with`] and the assertion builder [`JwtAssertion::sign`].
//!
//! What it checks:
//! - nothing panics; [`RefreshGrant::check`] refusing means the request is refused too,
//!   as misconfigured;
//! - a request carries exactly what the settings say, in the documented order: its
//!   `grant_type`; a refresh credential only for the refresh-token grant; the
//!   assertion, subject token and token types; `scope`, each `resource` and
//!   `audience`; the client authentication; the extra parameters;
//! - each signed assertion verifies with the public key (or the client secret), with
//!   the claims the settings and the context say: `iss`, `sub`, `aud`, a `jti` made
//!   from the context's random bytes (the client's from the first half, the grant's
//!   from the second), `iat` the context's time and `exp` the lifetime later;
//! - with a signed client assertion, the client secret never travels (no `Basic`
//!   header, no `client_secret`);
//! - a refused request is misconfigured, terminal only for an empty refresh
//!   credential, transient only for a subject token past its `exp` or a clock before
//!   1970, and its message (saying to sign in again exactly when terminal) quotes no
//!   secret; `Debug` of the settings shows no secret and no key.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::Method;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::{MAX_MESSAGE, SecretPick};
use silent_refresh::{FailureKind, RefreshFailure, Secret};
use silent_refresh_oauth2::{
    ClientAuth, ExchangeContext, JwtAssertion, RefreshGrant, SigningKey, SubjectTokenSource,
    TokenExchange,
};

/// The test keys of the codec (PEM, never used elsewhere).
const ES256: &str = include_str!("../../../silent-refresh-oauth2/src/testdata/es256.pem");
const ES256_PUB: &str = include_str!("../../../silent-refresh-oauth2/src/testdata/es256.pub.pem");
const RS256: &str = include_str!("../../../silent-refresh-oauth2/src/testdata/rs256.pem");
const RS256_PUB: &str = include_str!("../../../silent-refresh-oauth2/src/testdata/rs256.pub.pem");

/// The parameters the codec sets itself.
const RESERVED: [&str; 11] = [
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

/// The claims an assertion sets itself.
const RESERVED_CLAIMS: [&str; 7] = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti"];

/// A signing key.
#[derive(Clone, Copy, Debug, Arbitrary, PartialEq, Eq)]
pub enum KeyPick {
    /// The ES256 test key.
    Es256,
    /// The RS256 test key.
    Rs256,
}

impl KeyPick {
    fn key(self) -> SigningKey {
        static KEYS: OnceLock<(SigningKey, SigningKey)> = OnceLock::new();
        let (es, rs) = KEYS.get_or_init(|| {
            (
                SigningKey::es256_pem(ES256).unwrap_or_else(|e| panic!("the ES256 test key: {e}")),
                SigningKey::rs256_pem(RS256).unwrap_or_else(|e| panic!("the RS256 test key: {e}")),
            )
        });
        match self {
            Self::Es256 => es.clone(),
            Self::Rs256 => rs.clone(),
        }
    }

    fn public(self) -> (DecodingKey, Algorithm) {
        let pem = |pem: &str, ec: bool| {
            let key = if ec {
                DecodingKey::from_ec_pem(pem.as_bytes())
            } else {
                DecodingKey::from_rsa_pem(pem.as_bytes())
            };
            key.unwrap_or_else(|e| panic!("a test public key: {e}"))
        };
        match self {
            Self::Es256 => (pem(ES256_PUB, true), Algorithm::ES256),
            Self::Rs256 => (pem(RS256_PUB, false), Algorithm::RS256),
        }
    }
}

/// How the client authenticates.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub enum GrantAuthPick {
    /// `client_secret_basic`.
    Basic,
    /// `client_secret_post`.
    Post,
    /// A public client.
    None,
    /// `client_secret_jwt`.
    SecretJwt,
    /// `private_key_jwt` with this key, or the setting without a key.
    PrivateKeyJwt(Option<KeyPick>),
}

/// The grant.
#[derive(Clone, Debug, Arbitrary)]
pub enum KindPick {
    /// The refresh-token grant.
    Refresh,
    /// Client credentials.
    ClientCredentials,
    /// The JWT bearer grant.
    JwtBearer(AssertionCase),
    /// Token exchange.
    TokenExchange {
        /// The subject token the context carries (none: refused).
        subject: Option<SubjectPick>,
        /// `subject_token_type` (default: the JWT type).
        subject_type: Option<String>,
        /// `requested_token_type`.
        requested: Option<String>,
    },
}

/// A subject token.
#[derive(Clone, Debug, Arbitrary)]
pub enum SubjectPick {
    /// Any text (a secret, when distinctive).
    Text(SecretPick),
    /// A JWT-shaped token with this `exp`, seconds after the epoch.
    Jwt(u32),
}

/// The JWT bearer grant's assertion.
#[derive(Clone, Debug, Arbitrary)]
pub struct AssertionCase {
    /// The key.
    pub key: KeyPick,
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: Option<String>,
    /// `aud` (default: the token URL).
    pub audience: Option<String>,
    /// The lifetime in seconds.
    pub lifetime: u16,
    /// Extra claims.
    pub claims: Vec<(ClaimName, String)>,
}

/// An extra claim's name.
#[derive(Clone, Debug, Arbitrary)]
pub enum ClaimName {
    /// One the assertion sets itself (refused).
    Reserved(u8),
    /// Any name.
    Name(String),
}

/// A token URL.
#[derive(Clone, Debug, Arbitrary)]
pub enum GrantUrl {
    /// `https://{host}/{path}`.
    Https(String, String),
    /// Any text.
    Raw(String),
}

/// One case: the settings, the refresh credential and the exchange's context.
#[derive(Clone, Debug, Arbitrary)]
pub struct GrantsCase {
    /// The token URL.
    pub url: GrantUrl,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Option<SecretPick>,
    /// The client authentication.
    pub auth: GrantAuthPick,
    /// The client assertion's lifetime, in seconds.
    pub client_lifetime: u16,
    /// The grant.
    pub kind: KindPick,
    /// `scope`.
    pub scope: Option<String>,
    /// `resource`s.
    pub resources: Vec<String>,
    /// `audience`s.
    pub audiences: Vec<String>,
    /// Extra parameters (a reserved name, or any).
    pub params: Vec<(Option<u8>, String, String)>,
    /// The refresh credential handed in.
    pub refresh_token: Option<SecretPick>,
    /// The context's time, seconds from the epoch (negative: before 1970).
    pub now: i64,
    /// The context's random bytes.
    pub random: [u8; 32],
}

/// The distinctive secrets of a case, to look for where they must not be.
struct Distinct(Vec<(&'static str, String)>);

impl Distinct {
    fn add(&mut self, what: &'static str, pick: &SecretPick) -> String {
        let (secret, distinctive) = pick.resolve();
        if distinctive {
            self.0.push((what, secret.clone()));
        }
        secret
    }

    fn find_in(&self, text: &str) -> Option<&'static str> {
        self.0
            .iter()
            .find(|(_, secret)| text.contains(secret.as_str()))
            .map(|(what, _)| *what)
    }
}

/// Reads the bytes as a [`GrantsCase`] and checks the request the codec builds (see
/// the module docs).
///
/// # Errors
///
/// What was found, in words.
pub fn grants(bytes: &[u8]) -> Result<(), String> {
    let mut input = Unstructured::new(bytes);
    let Ok(case) = GrantsCase::arbitrary(&mut input) else {
        return Ok(());
    };
    check_case(&case)
}

/// The context of a case.
fn context_of(case: &GrantsCase) -> (SystemTime, Option<ExchangeContext>) {
    let now = if case.now >= 0 {
        UNIX_EPOCH + Duration::from_secs(case.now.unsigned_abs() % (1 << 40))
    } else {
        UNIX_EPOCH - Duration::from_secs(case.now.unsigned_abs() % (1 << 40))
    };
    (now, Some(ExchangeContext::new(now, case.random)))
}

fn url_of(url: &GrantUrl) -> String {
    match url {
        GrantUrl::Https(host, path) => format!("https://{host}/{path}"),
        GrantUrl::Raw(raw) => raw.clone(),
    }
}

#[allow(clippy::too_many_lines)]
fn check_case(case: &GrantsCase) -> Result<(), String> {
    let mut secrets = Distinct(Vec::new());
    let url = url_of(&case.url);
    let client_secret = case
        .client_secret
        .as_ref()
        .map(|pick| secrets.add("the client secret", pick));
    let refresh = case
        .refresh_token
        .as_ref()
        .map(|pick| secrets.add("the refresh credential", pick));
    let (now, context) = context_of(case);
    let mut context = context.ok_or("no context")?;
    let client_lifetime = Duration::from_secs(u64::from(case.client_lifetime));

    // The settings.
    let mut subject_token: Option<String> = None;
    let mut grant = match &case.kind {
        KindPick::Refresh => RefreshGrant::new(url.as_str(), case.client_id.as_str()),
        KindPick::ClientCredentials => {
            RefreshGrant::client_credentials(url.as_str(), case.client_id.as_str())
        }
        // The JWT bearer grant has no client id of its own.
        KindPick::JwtBearer(assertion) => {
            RefreshGrant::jwt_bearer(url.as_str(), assertion_of(assertion))
        }
        KindPick::TokenExchange {
            subject,
            subject_type,
            requested,
        } => {
            let mut exchange = TokenExchange::new(SubjectTokenSource::file("/dev/null"));
            if let Some(kind) = subject_type {
                exchange = exchange.subject_token_type(kind.as_str());
            }
            if let Some(kind) = requested {
                exchange = exchange.requested_token_type(kind.as_str());
            }
            if let Some(subject) = subject {
                let token = match subject {
                    SubjectPick::Text(pick) => secrets.add("the subject token", pick),
                    SubjectPick::Jwt(exp) => format!(
                        "eyJhbGciOiJub25lIn0.{}.c2ln",
                        URL_SAFE_NO_PAD.encode(format!("{{\"exp\":{exp}}}"))
                    ),
                };
                context = context.with_subject_token(Secret::new(token.as_str()));
                subject_token = Some(token);
            }
            RefreshGrant::token_exchange(url.as_str(), case.client_id.as_str(), exchange)
        }
    };
    if let Some(secret) = &client_secret {
        grant = grant.client_secret(secret.as_str());
    }
    grant = match case.auth {
        GrantAuthPick::Basic => grant.auth(ClientAuth::Basic),
        GrantAuthPick::Post => grant.auth(ClientAuth::Post),
        GrantAuthPick::None => grant.auth(ClientAuth::None),
        GrantAuthPick::SecretJwt => grant.auth(ClientAuth::SecretJwt),
        GrantAuthPick::PrivateKeyJwt(Some(key)) => grant.private_key_jwt(key.key()),
        GrantAuthPick::PrivateKeyJwt(None) => grant.auth(ClientAuth::PrivateKeyJwt),
    }
    .client_assertion_lifetime(client_lifetime);
    if let Some(scope) = &case.scope {
        grant = grant.scope(scope.as_str());
    }
    for resource in &case.resources {
        grant = grant.resource(resource.as_str());
    }
    for audience in &case.audiences {
        grant = grant.audience(audience.as_str());
    }
    let params: Vec<(String, String)> = case
        .params
        .iter()
        .map(|(reserved, name, value)| match reserved {
            Some(n) => (
                RESERVED[usize::from(*n) % RESERVED.len()].to_owned(),
                value.clone(),
            ),
            None => (name.clone(), value.clone()),
        })
        .collect();
    for (name, value) in &params {
        grant = grant.param(name.as_str(), value.as_str());
    }
    // Secrets the case also uses as plain settings are not looked for.
    secrets
        .0
        .retain(|(_, secret)| !public_text(case, &url).contains(secret.as_str()));
    let client_id = match case.kind {
        KindPick::JwtBearer(_) => "",
        _ => case.client_id.as_str(),
    };
    let printed = format!("{grant:?} {context:?}");
    if let Some(what) = secrets.find_in(&printed) {
        return Err(format!("Debug shows {what}: {printed}"));
    }
    let key_lines = [ES256, RS256]
        .into_iter()
        .flat_map(str::lines)
        .filter(|line| line.len() >= 40 && !line.starts_with("-----"));
    if printed.contains("PRIVATE KEY") || key_lines.into_iter().any(|line| printed.contains(line)) {
        return Err(format!("Debug shows a key: {printed}"));
    }

    let sent_refresh = refresh.as_ref().map(|s| Secret::new(s.as_str()));
    let checked = grant.check();
    let request = match grant.request_with(sent_refresh.as_ref(), &context) {
        Ok(request) => request,
        Err(failure) => return refused(&failure, &secrets, checked.is_err()),
    };
    if let Err(error) = checked {
        return Err(format!(
            "check() refused ({error}) a grant whose request was built"
        ));
    }

    // The request as a whole.
    if request.method() != Method::POST {
        return Err(format!("method {}", request.method()));
    }
    if request.headers()[CONTENT_TYPE] != "application/x-www-form-urlencoded" {
        return Err("not a form".to_owned());
    }
    let body = std::str::from_utf8(request.body()).map_err(|_| "a body that is not UTF-8")?;
    let form: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut expected: Vec<(String, Option<String>)> = Vec::new();
    let mut push = |name: &str, value: Option<&str>| {
        expected.push((name.to_owned(), value.map(str::to_owned)));
    };

    // The grant's own parameters.
    let refresh_sent = matches!(case.kind, KindPick::Refresh) && refresh.is_some();
    match &case.kind {
        KindPick::Refresh if refresh_sent => {
            push("grant_type", Some("refresh_token"));
            push("refresh_token", refresh.as_deref());
        }
        KindPick::Refresh | KindPick::ClientCredentials => {
            push("grant_type", Some("client_credentials"));
        }
        KindPick::JwtBearer(_) => {
            push(
                "grant_type",
                Some("urn:ietf:params:oauth:grant-type:jwt-bearer"),
            );
            push("assertion", None);
        }
        KindPick::TokenExchange {
            subject_type,
            requested,
            ..
        } => {
            push(
                "grant_type",
                Some("urn:ietf:params:oauth:grant-type:token-exchange"),
            );
            push("subject_token", subject_token.as_deref());
            push(
                "subject_token_type",
                Some(
                    subject_type
                        .as_deref()
                        .unwrap_or("urn:ietf:params:oauth:token-type:jwt"),
                ),
            );
            if let Some(requested) = requested {
                push("requested_token_type", Some(requested));
            }
        }
    }
    if let Some(scope) = &case.scope {
        push("scope", Some(scope));
    }
    for resource in &case.resources {
        push("resource", Some(resource));
    }
    for audience in &case.audiences {
        push("audience", Some(audience));
    }
    // The client authentication.
    let signed = matches!(
        case.auth,
        GrantAuthPick::SecretJwt | GrantAuthPick::PrivateKeyJwt(_)
    );
    let secret_used = client_secret.is_some() && !matches!(case.auth, GrantAuthPick::None);
    let basic = secret_used && matches!(case.auth, GrantAuthPick::Basic);
    if !basic && !client_id.is_empty() {
        push("client_id", Some(client_id));
    }
    if signed {
        push(
            "client_assertion_type",
            Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        );
        push("client_assertion", None);
    } else if secret_used && matches!(case.auth, GrantAuthPick::Post) {
        push("client_secret", client_secret.as_deref());
    }
    for (name, value) in &params {
        push(name, Some(value));
    }
    if form.len() != expected.len()
        || form
            .iter()
            .zip(&expected)
            .any(|((name, value), (want, want_value))| {
                name != want || want_value.as_ref().is_some_and(|w| w != value)
            })
    {
        return Err(format!("the form {form:?}, expected {expected:?}"));
    }
    if request.headers().contains_key(AUTHORIZATION) != basic {
        return Err("a Basic header where none belongs, or none where one does".to_owned());
    }
    if basic {
        let header = request.headers()[AUTHORIZATION]
            .to_str()
            .map_err(|_| "a header that is not text")?;
        let decoded = header
            .strip_prefix("Basic ")
            .and_then(|b64| STANDARD.decode(b64).ok())
            .ok_or("a Basic header that does not decode")?;
        let id: String = form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
        if !decoded.starts_with(format!("{id}:").as_bytes()) {
            return Err("a Basic header without the client id".to_owned());
        }
    }
    // With a signed client assertion the client secret does not travel: the form
    // (checked exactly above) has no `client_secret` and there is no Basic header; the
    // assertions' claims are checked exactly below.
    // The signed assertions.
    let signs = signed || matches!(case.kind, KindPick::JwtBearer(_));
    let unix = match now.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs(),
        Err(_) if signs => return Err("an assertion dated before 1970".to_owned()),
        Err(_) => 0,
    };
    let value_of = |name: &str| {
        form.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or(format!("no {name}"))
    };
    if signed {
        let (key, alg) = match case.auth {
            GrantAuthPick::PrivateKeyJwt(Some(key)) => key.public(),
            _ => (
                DecodingKey::from_secret(client_secret.as_deref().unwrap_or_default().as_bytes())
                    .map_err(|e| format!("the client secret as a key: {e}"))?,
                Algorithm::HS256,
            ),
        };
        let claims = verified(&value_of("client_assertion")?, &key, alg)?;
        expect_claims(
            &claims,
            &[
                ("iss", Value::from(client_id)),
                ("sub", Value::from(client_id)),
                ("aud", Value::from(url.as_str())),
                (
                    "jti",
                    Value::from(URL_SAFE_NO_PAD.encode(&case.random[..16])),
                ),
                ("iat", Value::from(unix)),
                ("exp", Value::from(unix + client_lifetime.as_secs())),
            ],
        )?;
    }
    if let KindPick::JwtBearer(assertion) = &case.kind {
        let (key, alg) = assertion.key.public();
        let claims = verified(&value_of("assertion")?, &key, alg)?;
        let mut want = vec![
            ("iss", Value::from(assertion.issuer.as_str())),
            (
                "aud",
                Value::from(assertion.audience.as_deref().unwrap_or(url.as_str())),
            ),
            (
                "jti",
                Value::from(URL_SAFE_NO_PAD.encode(&case.random[16..])),
            ),
            ("iat", Value::from(unix)),
            ("exp", Value::from(unix + u64::from(assertion.lifetime))),
        ];
        if let Some(subject) = &assertion.subject {
            want.push(("sub", Value::from(subject.as_str())));
        }
        expect_claims(&claims, &want)?;
    }
    Ok(())
}

/// Every setting of a case that is not a secret, as one text.
fn public_text(case: &GrantsCase, url: &str) -> String {
    let mut text = format!(
        "{url} {} {:?} {:?} {:?} {:?}",
        case.client_id, case.scope, case.resources, case.audiences, case.params
    );
    match &case.kind {
        KindPick::JwtBearer(assertion) => {
            text.push_str(&format!("{assertion:?}"));
        }
        KindPick::TokenExchange {
            subject_type,
            requested,
            ..
        } => text.push_str(&format!("{subject_type:?} {requested:?}")),
        _ => {}
    }
    text
}

/// The assertion of a case.
fn assertion_of(case: &AssertionCase) -> JwtAssertion {
    let mut assertion = JwtAssertion::new(case.key.key(), case.issuer.as_str())
        .lifetime(Duration::from_secs(u64::from(case.lifetime)));
    if let Some(subject) = &case.subject {
        assertion = assertion.subject(subject.as_str());
    }
    if let Some(audience) = &case.audience {
        assertion = assertion.audience(audience.as_str());
    }
    for (name, value) in &case.claims {
        let name = match name {
            ClaimName::Reserved(n) => {
                RESERVED_CLAIMS[usize::from(*n) % RESERVED_CLAIMS.len()].to_owned()
            }
            ClaimName::Name(name) => name.clone(),
        };
        assertion = assertion.claim(name, value.as_str());
    }
    assertion
}

/// The claims of `jws`, whose signature verifies with `key`.
fn verified(jws: &str, key: &DecodingKey, alg: Algorithm) -> Result<Value, String> {
    let (message, signature) = jws
        .rsplit_once('.')
        .ok_or("an assertion that is not a JWS")?;
    let valid = jsonwebtoken::crypto::verify(signature, message.as_bytes(), key, alg)
        .map_err(|e| format!("an assertion that cannot be checked: {e}"))?;
    if !valid {
        return Err("an assertion whose signature does not verify".to_owned());
    }
    let mut parts = message.split('.');
    let header: Value = parts
        .next()
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("a header that does not decode")?;
    if header["alg"] != format!("{alg:?}").as_str() || header["typ"] != "JWT" {
        return Err(format!("the header {header}"));
    }
    parts
        .next()
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| "claims that do not decode".to_owned())
}

/// Checks `claims` against `want`.
fn expect_claims(claims: &Value, want: &[(&str, Value)]) -> Result<(), String> {
    for (name, value) in want {
        if &claims[name] != value {
            return Err(format!("claim {name}: {} instead of {value}", claims[name]));
        }
    }
    Ok(())
}

/// A refused request: its class and message.
fn refused(
    failure: &RefreshFailure,
    secrets: &Distinct,
    checked_refused: bool,
) -> Result<(), String> {
    let message = &failure.message;
    if message.trim().is_empty() || message.chars().any(char::is_control) {
        return Err(format!(
            "a message that is empty or holds control characters: {message:?}"
        ));
    }
    if message.chars().count() > MAX_MESSAGE {
        return Err("a message too long".to_owned());
    }
    if let Some(what) = secrets.find_in(message) {
        return Err(format!("a refusal that quotes {what}: {message}"));
    }
    let lower = message.to_ascii_lowercase();
    if lower.contains("sign in") != failure.is_terminal() {
        return Err(format!(
            "a {:?} failure that does or does not say to sign in: {message}",
            failure.kind
        ));
    }
    if checked_refused && failure.kind != FailureKind::Misconfigured {
        return Err(format!(
            "check() refused the grant but the request failed as {:?}: {message}",
            failure.kind
        ));
    }
    match failure.kind {
        FailureKind::Misconfigured => Ok(()),
        FailureKind::Terminal if lower.contains("refresh credential is empty") => Ok(()),
        FailureKind::Transient
            if lower.contains("subject token expired")
                || lower.contains("subject token is empty")
                || lower.contains("1970") =>
        {
            Ok(())
        }
        kind => Err(format!("a {kind:?} refusal: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_corpus_and_odd_inputs_pass() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/grants");
        let mut inputs: Vec<Vec<u8>> = vec![Vec::new(), vec![0], vec![0xff; 64], vec![0; 256]];
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                inputs.push(std::fs::read(entry.path()).unwrap_or_default());
            }
        }
        for input in &inputs {
            if let Err(finding) = grants(input) {
                panic!("{finding} on {input:?}");
            }
        }
    }

    #[test]
    fn a_well_formed_case_of_each_grant_passes() {
        let base = GrantsCase {
            url: GrantUrl::Https("auth.example.com".into(), "token".into()),
            client_id: "app".into(),
            client_secret: Some(SecretPick::Distinctive {
                body: b"secretbody".to_vec(),
                long: false,
            }),
            auth: GrantAuthPick::Basic,
            client_lifetime: 60,
            kind: KindPick::Refresh,
            scope: Some("read".into()),
            resources: vec!["https://api.example.com/".into()],
            audiences: vec!["api".into()],
            params: vec![(None, "x".into(), "y".into())],
            refresh_token: Some(SecretPick::Any("rt".into())),
            now: 1_700_000_000,
            random: [3; 32],
        };
        let kinds = [
            KindPick::Refresh,
            KindPick::ClientCredentials,
            KindPick::JwtBearer(AssertionCase {
                key: KeyPick::Rs256,
                issuer: "svc".into(),
                subject: Some("user".into()),
                audience: None,
                lifetime: 60,
                claims: vec![(ClaimName::Name("scope".into()), "a".into())],
            }),
            KindPick::TokenExchange {
                subject: Some(SubjectPick::Jwt(1_800_000_000)),
                subject_type: None,
                requested: Some("urn:ietf:params:oauth:token-type:access_token".into()),
            },
        ];
        let auths = [
            GrantAuthPick::Basic,
            GrantAuthPick::Post,
            GrantAuthPick::None,
            GrantAuthPick::SecretJwt,
            GrantAuthPick::PrivateKeyJwt(Some(KeyPick::Es256)),
            GrantAuthPick::PrivateKeyJwt(None),
        ];
        for kind in &kinds {
            for auth in auths {
                let case = GrantsCase {
                    kind: kind.clone(),
                    auth,
                    ..base.clone()
                };
                check_case(&case).unwrap_or_else(|finding| panic!("{finding}: {case:?}"));
            }
        }
        // An expired subject token and a clock before 1970 are refused, not sent.
        for case in [
            GrantsCase {
                kind: KindPick::TokenExchange {
                    subject: Some(SubjectPick::Jwt(5)),
                    subject_type: None,
                    requested: None,
                },
                ..base.clone()
            },
            GrantsCase {
                now: -5,
                auth: GrantAuthPick::SecretJwt,
                ..base.clone()
            },
        ] {
            check_case(&case).unwrap_or_else(|finding| panic!("{finding}: {case:?}"));
        }
    }
}
