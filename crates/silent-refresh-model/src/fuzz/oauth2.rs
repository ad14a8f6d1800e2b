//! The OAuth 2.0 codec targets: `oauth2_response` and `oauth2_request`.

use std::fmt::Write as _;

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, StatusCode};

use super::{MAX_MESSAGE, SecretPick, Unstructured, token_like};
use silent_refresh::Secret;
use silent_refresh::{Expiry, Token};
use silent_refresh::{FailureKind, RefreshFailure};
use silent_refresh_oauth2::{ClientAuth, RefreshGrant};

/// The token URL of the response cases (the response does not depend on it).
const TOKEN_URL: &str = "https://auth.example.com/oauth/token";

/// The password in the user information of a redirect's `Location`: never printed.
const USERINFO_MARK: &str = "Uq7pw";
/// The query (or fragment) of a redirect's `Location`: never printed.
const QUERY_MARK: &str = "Qq7qs";

/// How the client authenticates.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub enum AuthPick {
    /// `client_secret_basic`.
    Basic,
    /// `client_secret_post`.
    Post,
    /// A public client.
    None,
}

impl AuthPick {
    /// The codec's setting.
    #[must_use]
    pub fn auth(self) -> ClientAuth {
        match self {
            AuthPick::Basic => ClientAuth::Basic,
            AuthPick::Post => ClientAuth::Post,
            AuthPick::None => ClientAuth::None,
        }
    }
}

/// A piece of server text: the server may echo what it was sent.
#[derive(Clone, Debug, Arbitrary)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// The client secret, echoed.
    ClientSecret,
    /// The refresh credential of the request, echoed.
    RefreshToken,
    /// A word of this many token characters (a JWT-like credential of the server's
    /// own, or an id).
    Word(u8),
    /// An OAuth error code (known ones, transient ones, odd cases).
    Code(u8),
}

/// OAuth error codes the pieces draw from.
const CODES: [&str; 10] = [
    "invalid_grant",
    "invalid_client",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_request",
    "temporarily_unavailable",
    "server_error",
    "SLOW_DOWN",
    "bad_refresh_token",
];

/// The secrets of one case, resolved.
struct Secrets {
    client: Option<(String, bool)>,
    refresh: Option<(String, bool)>,
}

impl Secrets {
    fn text(&self, pieces: &[Piece]) -> String {
        let mut text = String::new();
        for piece in pieces {
            match piece {
                Piece::Text(literal) => text.push_str(literal),
                Piece::ClientSecret => {
                    text.push_str(self.client.as_ref().map_or("", |(s, _)| s));
                }
                Piece::RefreshToken => {
                    text.push_str(self.refresh.as_ref().map_or("", |(s, _)| s));
                }
                Piece::Word(n) => {
                    for i in 0..usize::from(*n) {
                        text.push(char::from(b"eyJhbGciOiJ9.x_-Z0"[i % 18]));
                    }
                }
                Piece::Code(n) => text.push_str(CODES[usize::from(*n) % CODES.len()]),
            }
        }
        text
    }

    /// The secrets a message must not contain; `only_token_like` keeps the refresh
    /// credential only if it is token-like (for a codec not given it).
    fn checked(&self, only_token_like: bool) -> Vec<(&'static str, &str)> {
        let mut checked = Vec::new();
        if let Some((secret, true)) = &self.client {
            checked.push(("the client secret", secret.as_str()));
        }
        if let Some((secret, true)) = &self.refresh
            && (!only_token_like || token_like(secret))
        {
            checked.push(("the refresh credential", secret.as_str()));
        }
        checked
    }
}

/// A header of the answer.
#[derive(Clone, Debug, Arbitrary)]
pub enum HeaderPick {
    /// `Content-Type: application/json`.
    Json,
    /// `Content-Type: application/x-www-form-urlencoded` (with or without a charset).
    Form(bool),
    /// `Content-Type` with any value.
    ContentType(Vec<Piece>),
    /// `Retry-After` as seconds.
    RetryAfterSeconds(u64),
    /// `Retry-After` and `Date` as HTTP dates, this many seconds after the epoch.
    RetryAfterDate {
        /// The `Retry-After` date.
        until: u32,
        /// The `Date`, if sent.
        date: Option<u32>,
    },
    /// `Location` (for a redirect).
    Location(Vec<Piece>),
    /// `Location` as a URL with user information and a query holding marks that must
    /// never be printed (`Uq7pw` in the password, `Qq7qs` in the query).
    RedirectTo {
        /// With `user:password@` before the host.
        userinfo: bool,
        /// The path.
        path: Vec<Piece>,
        /// With a query (`?…`), or else a fragment (`#…`).
        query: bool,
    },
    /// `WWW-Authenticate` (a client authentication challenge).
    Challenge,
    /// Any name and value (skipped if `http` refuses them).
    Other(String, Vec<u8>),
}

/// A field of a JSON or form body.
#[derive(Clone, Debug, Arbitrary)]
pub enum FieldPick {
    /// `access_token`.
    AccessToken,
    /// `token_type`.
    TokenType,
    /// `expires_in`.
    ExpiresIn,
    /// `refresh_token`.
    RefreshToken,
    /// `scope`.
    Scope,
    /// `error`.
    Error,
    /// `error_description`.
    ErrorDescription,
    /// Any other name.
    Other(String),
}

impl FieldPick {
    fn name(&self) -> &str {
        match self {
            FieldPick::AccessToken => "access_token",
            FieldPick::TokenType => "token_type",
            FieldPick::ExpiresIn => "expires_in",
            FieldPick::RefreshToken => "refresh_token",
            FieldPick::Scope => "scope",
            FieldPick::Error => "error",
            FieldPick::ErrorDescription => "error_description",
            FieldPick::Other(name) => name,
        }
    }
}

/// A JSON value.
#[derive(Clone, Debug, Arbitrary)]
pub enum JsonPick {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    Uint(u64),
    /// A float (written as `null` when not finite, as JSON has no such numbers).
    Float(f64),
    /// A string.
    Text(Vec<Piece>),
    /// A number written as this literal text (`1e400`, `-0`, `3.`).
    Raw(String),
    /// A list of strings.
    List(Vec<Vec<Piece>>),
    /// An object with one string field.
    Object(String, Vec<Piece>),
}

/// The body of the answer.
#[derive(Clone, Debug, Arbitrary)]
pub enum BodyPick {
    /// Any bytes.
    Raw(Vec<u8>),
    /// A JSON object, fields in this order (duplicates kept), cut after this many
    /// bytes if `cut` is set.
    Json {
        /// The fields.
        fields: Vec<(FieldPick, JsonPick)>,
        /// Where to cut the text.
        cut: Option<u16>,
    },
    /// A form body.
    Form(Vec<(FieldPick, Vec<Piece>)>),
}

impl BodyPick {
    fn bytes(&self, secrets: &Secrets) -> Vec<u8> {
        match self {
            BodyPick::Raw(bytes) => bytes.clone(),
            BodyPick::Json { fields, cut } => {
                let mut text = String::from("{");
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    text.push_str(&json_string(name.name()));
                    text.push(':');
                    json_value(&mut text, value, secrets);
                }
                text.push('}');
                let mut bytes = text.into_bytes();
                if let Some(cut) = cut {
                    bytes.truncate(usize::from(*cut));
                }
                bytes
            }
            BodyPick::Form(fields) => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                for (name, value) in fields {
                    form.append_pair(name.name(), &secrets.text(value));
                }
                form.finish().into_bytes()
            }
        }
    }
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn json_value(out: &mut String, value: &JsonPick, secrets: &Secrets) {
    match value {
        JsonPick::Null => out.push_str("null"),
        JsonPick::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        JsonPick::Int(n) => {
            let _ = write!(out, "{n}");
        }
        JsonPick::Uint(n) => {
            let _ = write!(out, "{n}");
        }
        JsonPick::Float(x) => out.push_str(&serde_json::Value::from(*x).to_string()),
        JsonPick::Text(pieces) => out.push_str(&json_string(&secrets.text(pieces))),
        JsonPick::Raw(raw) => out.push_str(raw),
        JsonPick::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&json_string(&secrets.text(item)));
            }
            out.push(']');
        }
        JsonPick::Object(name, pieces) => {
            out.push('{');
            out.push_str(&json_string(name));
            out.push(':');
            out.push_str(&json_string(&secrets.text(pieces)));
            out.push('}');
        }
    }
}

/// An answer of the token endpoint, and the grant that reads it.
#[derive(Clone, Debug, Arbitrary)]
pub struct ResponseCase {
    /// The status (mapped into `100..=999`).
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<HeaderPick>,
    /// The body.
    pub body: BodyPick,
    /// The grant's client secret.
    pub client_secret: Option<SecretPick>,
    /// How the client authenticates.
    pub auth: AuthPick,
    /// The refresh credential the request carried (the server may echo it).
    pub refresh_token: Option<SecretPick>,
}

impl ResponseCase {
    fn secrets(&self) -> Secrets {
        Secrets {
            client: self.client_secret.as_ref().map(SecretPick::resolve),
            refresh: self.refresh_token.as_ref().map(SecretPick::resolve),
        }
    }

    fn response(&self, secrets: &Secrets) -> http::Response<Vec<u8>> {
        let status = StatusCode::from_u16(100 + self.status % 900).unwrap_or(StatusCode::OK);
        let mut response = http::Response::new(self.body.bytes(secrets));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        let date = |secs: u32| {
            httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(secs)),
            )
        };
        for header in &self.headers {
            let (name, value): (HeaderName, Vec<u8>) = match header {
                HeaderPick::Json => (CONTENT_TYPE, b"application/json".to_vec()),
                HeaderPick::Form(charset) => (
                    CONTENT_TYPE,
                    if *charset {
                        b"application/x-www-form-urlencoded; charset=utf-8".to_vec()
                    } else {
                        b"Application/X-WWW-Form-Urlencoded".to_vec()
                    },
                ),
                HeaderPick::ContentType(pieces) => {
                    (CONTENT_TYPE, secrets.text(pieces).into_bytes())
                }
                HeaderPick::RetryAfterSeconds(seconds) => {
                    (http::header::RETRY_AFTER, seconds.to_string().into_bytes())
                }
                HeaderPick::RetryAfterDate { until, date: sent } => {
                    if let Some(sent) = sent
                        && let Ok(value) = HeaderValue::from_str(&date(*sent))
                    {
                        headers.append(http::header::DATE, value);
                    }
                    (http::header::RETRY_AFTER, date(*until).into_bytes())
                }
                HeaderPick::Location(pieces) => {
                    (http::header::LOCATION, secrets.text(pieces).into_bytes())
                }
                HeaderPick::RedirectTo {
                    userinfo,
                    path,
                    query,
                } => {
                    let user = if *userinfo {
                        format!("admin:{USERINFO_MARK}@")
                    } else {
                        String::new()
                    };
                    let tail = if *query { '?' } else { '#' };
                    let path = secrets.text(path);
                    let url = format!("https://{user}login.example.net/{path}{tail}{QUERY_MARK}=1");
                    (http::header::LOCATION, url.into_bytes())
                }
                HeaderPick::Challenge => (
                    http::header::WWW_AUTHENTICATE,
                    b"Basic realm=\"token\"".to_vec(),
                ),
                HeaderPick::Other(name, value) => match HeaderName::from_bytes(name.as_bytes()) {
                    Ok(name) => (name, value.clone()),
                    Err(_) => continue,
                },
            };
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                headers.append(name, value);
            }
        }
        response
    }
}

/// Reads the bytes as a [`ResponseCase`] and checks how the codec reads the answer:
/// no panic; a token only for a `2xx`, with an access token and a type that can be
/// sent in an `Authorization` header; otherwise a failure in the class a reference
/// reading of the answer gives (the table of the `oauth2` docs: a `5xx`, `408`, `425`, `429` is
/// always transient, a `3xx` always misconfigured, `invalid_grant` terminal, …); a
/// `Retry-After` only on a transient failure that had one; a message that is short,
/// one line, quotes no distinctive client secret and no distinctive refresh credential
/// (in the message or in `Display`), says to sign in again exactly when the failure is
/// terminal (in its own words, before what the server said), and names a redirect's
/// `Location` without its user information, query or fragment. The outcome is the same
/// whether or not the codec is given the credential sent (`parse_response_for` or
/// `parse_response`; without it, only a token-like credential must not be quoted), and
/// the public [`classify`](silent_refresh_oauth2::classify) agrees with it: `Ok` for a token
/// or a `2xx` without one, and the very same failure otherwise.
///
/// # Errors
///
/// What is wrong, without the secrets.
pub fn oauth2_response(bytes: &[u8]) -> Result<(), String> {
    let Ok(case) = ResponseCase::arbitrary_take_rest(Unstructured::new(bytes)) else {
        return Ok(());
    };
    check_response(&case)
}

fn check_response(case: &ResponseCase) -> Result<(), String> {
    let secrets = case.secrets();
    let mut grant = RefreshGrant::new(TOKEN_URL, "app").auth(case.auth.auth());
    if let Some((secret, _)) = &secrets.client {
        grant = grant.client_secret(secret.as_str());
    }
    let sent = secrets
        .refresh
        .as_ref()
        .map(|(secret, _)| Secret::new(secret.as_str()));
    let response = case.response(&secrets);
    let status = response.status();
    let told = grant.parse_response_for(&response, sent.as_ref());
    let untold = grant.parse_response(&response);
    check_classify(&response, &secrets, sent.as_ref(), &told)?;
    match (&told, &untold) {
        (Ok(token), Ok(same)) if token == same => check_token(status, token),
        (Err(failure), Err(other))
            if failure.kind == other.kind && failure.retry_after == other.retry_after =>
        {
            check_failure(failure, &secrets.checked(false))?;
            check_failure(other, &secrets.checked(true))?;
            check_classification(&response, failure)?;
            check_classification(&response, other)
        }
        _ => Err("the outcome depends on whether the credential sent is given".to_owned()),
    }
}

/// The public classifier, given the secrets of the exchange, agrees with
/// `parse_response_for`: `Ok` for a token or a `2xx` without one, and otherwise a
/// failure of the same class and `Retry-After` (its message may differ: given the
/// credential sent, it names a long redirect path segment by segment), that keeps the
/// same invariants.
fn check_classify(
    response: &http::Response<Vec<u8>>,
    secrets: &Secrets,
    sent: Option<&Secret>,
    parsed: &Result<Token, RefreshFailure>,
) -> Result<(), String> {
    let client = secrets
        .client
        .as_ref()
        .map(|(secret, _)| Secret::new(secret.as_str()));
    let given: Vec<&Secret> = client.iter().chain(sent).collect();
    let classified = silent_refresh_oauth2::classify(
        response.status(),
        response.headers(),
        response.body(),
        &given,
    );
    let success = response.status().is_success();
    match (parsed, classified) {
        (Ok(_), Ok(())) => Ok(()),
        (Ok(_), Err(_)) => Err("classify refuses an answer that holds a token".to_owned()),
        (Err(failure), Ok(())) if success && failure.kind == FailureKind::Transient => Ok(()),
        (Err(_), Ok(())) => Err("classify passes an answer the codec refuses".to_owned()),
        (Err(failure), Err(other))
            if failure.kind == other.kind && failure.retry_after == other.retry_after =>
        {
            check_failure(&other, &secrets.checked(false))?;
            check_classification(response, &other)
        }
        (Err(_), Err(_)) => Err("classify and the codec classify differently".to_owned()),
    }
}

fn check_token(status: StatusCode, token: &Token) -> Result<(), String> {
    if !status.is_success() {
        return Err(format!("a token from an HTTP {} answer", status.as_u16()));
    }
    let access = token.access_token.expose();
    if access.is_empty() || !access.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("an access token that is empty or not one header word".to_owned());
    }
    if token.token_type.is_empty() || !token.token_type.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "a token type that is empty or not one word: {:?}",
            token.token_type
        ));
    }
    if HeaderValue::from_str(&format!("{} {access}", token.token_type)).is_err() {
        return Err("a token that cannot be sent in an Authorization header".to_owned());
    }
    if token.refresh_token.as_ref().is_some_and(Secret::is_empty) {
        return Err("an empty refresh credential (it must keep the old one)".to_owned());
    }
    if token.scope.as_ref().is_some_and(|s| s.trim().is_empty()) {
        return Err("a blank scope instead of none".to_owned());
    }
    if matches!(token.expiry, Expiry::At(_)) {
        return Err("a wall-clock expiry from a relative expires_in".to_owned());
    }
    // Rule 15: a DPoP-bound token (token_type DPoP, in any case) is never sent as Bearer.
    let granted = silent_refresh::AccessToken {
        generation: silent_refresh::Generation(1),
        secret: token.access_token.clone(),
        token_type: token.token_type.clone(),
        scope: token.scope.clone(),
        usable_until: None,
    };
    let header = granted.authorization();
    if token.token_type.eq_ignore_ascii_case("dpop") != header.starts_with("DPoP ")
        || (granted.is_dpop_bound() && header.starts_with("Bearer"))
    {
        return Err(format!(
            "a token of type {:?} is sent with the wrong scheme",
            token.token_type
        ));
    }
    Ok(())
}

fn check_failure(failure: &RefreshFailure, secrets: &[(&str, &str)]) -> Result<(), String> {
    let message = &failure.message;
    if message.trim().is_empty() {
        return Err("a failure without a message".to_owned());
    }
    if let Some(c) = message.chars().find(|c| c.is_control()) {
        return Err(format!("a control character {c:?} in the message"));
    }
    if message.chars().count() > MAX_MESSAGE {
        return Err(format!(
            "a message of {} characters",
            message.chars().count()
        ));
    }
    if failure.kind != FailureKind::Transient && failure.retry_after.is_some() {
        return Err(format!("a {:?} failure with a Retry-After", failure.kind));
    }
    let own = own_words(message).to_ascii_lowercase();
    let says_sign_in = own.contains("sign in") || own.contains("sign-in");
    if says_sign_in != failure.is_terminal() {
        return Err(format!(
            "a {:?} failure that {} to sign in again: {own}",
            failure.kind,
            if says_sign_in { "says" } else { "does not say" }
        ));
    }
    let shown = failure.to_string();
    for (what, secret) in secrets {
        if message.contains(secret) || shown.contains(secret) {
            return Err(format!("the failure quotes {what}"));
        }
    }
    Ok(())
}

/// The library's own words in a failure message: what comes before the server's
/// (` (HTTP …` for a refusal, ` (content-type …` for a body that could not be read).
fn own_words(message: &str) -> &str {
    let end = [" (HTTP ", " (content-type "]
        .iter()
        .filter_map(|mark| message.find(mark))
        .min()
        .unwrap_or(message.len());
    &message[..end]
}

fn check_classification(
    response: &http::Response<Vec<u8>>,
    failure: &RefreshFailure,
) -> Result<(), String> {
    let status = response.status();
    let code = status.as_u16();
    let expected = expected_kind(response);
    if failure.kind != expected {
        return Err(format!(
            "HTTP {code} classified as {:?} where the table says {expected:?}",
            failure.kind
        ));
    }
    if failure.retry_after.is_some() && !response.headers().contains_key(http::header::RETRY_AFTER)
    {
        return Err("a Retry-After the answer did not have".to_owned());
    }
    if status.is_redirection() {
        if !failure.message.contains("configure the final token URL") {
            return Err("a redirect that does not say to configure the final URL".to_owned());
        }
        // The marks are checked unless the server wrote them elsewhere too.
        let elsewhere = |mark: &str| {
            let body = String::from_utf8_lossy(response.body());
            body.contains(mark)
                || response
                    .headers()
                    .iter()
                    .filter(|(name, _)| *name != http::header::LOCATION)
                    .any(|(_, value)| String::from_utf8_lossy(value.as_bytes()).contains(mark))
        };
        for (what, mark) in [
            ("user information", USERINFO_MARK),
            ("query or fragment", QUERY_MARK),
        ] {
            if failure.message.contains(mark) && !elsewhere(mark) {
                return Err(format!("a redirect's message shows its {what}"));
            }
        }
    }
    Ok(())
}

/// The class of a failed answer, read independently of the codec (the table of the
/// `oauth2` module docs): overload is transient; a redirect misconfigured; then the
/// OAuth `error` (in a JSON object, or a form when the content type says so) decides;
/// without one, `404`/`405`/`410` and a challenged `401` are misconfigured and the
/// rest (another `4xx`, a `1xx`, a `2xx` without a usable token) transient.
#[must_use]
fn expected_kind(response: &http::Response<Vec<u8>>) -> FailureKind {
    let status = response.status();
    let code = status.as_u16();
    let error = oauth_error(response);
    if status.is_success() {
        return match error {
            Some(error) => code_kind(&error),
            None => FailureKind::Transient,
        };
    }
    if status.is_server_error() || matches!(code, 408 | 425 | 429) {
        return FailureKind::Transient;
    }
    if status.is_redirection() {
        return FailureKind::Misconfigured;
    }
    match error {
        Some(error) => code_kind(&error),
        None if matches!(code, 404 | 405 | 410) => FailureKind::Misconfigured,
        None if code == 401
            && response
                .headers()
                .contains_key(http::header::WWW_AUTHENTICATE) =>
        {
            FailureKind::Misconfigured
        }
        None => FailureKind::Transient,
    }
}

/// The class of an OAuth error code: "later" codes transient, dead credentials
/// terminal, anything else (the five configuration codes, unknown codes)
/// misconfigured.
fn code_kind(error: &str) -> FailureKind {
    let error = error.to_ascii_lowercase();
    if ["temporarily_unavailable", "server_error", "slow_down"].contains(&error.as_str()) {
        FailureKind::Transient
    } else if [
        "invalid_grant",
        "bad_refresh_token",
        "expired_token",
        "invalid_token",
        "interaction_required",
        "login_required",
        "consent_required",
    ]
    .contains(&error.as_str())
    {
        FailureKind::Terminal
    } else {
        FailureKind::Misconfigured
    }
}

/// The OAuth `error` of an answer, if its body is a JSON object (or a form, when the
/// first content type says so) with a string `error`; in a `2xx`, only without an
/// `access_token` (with one, the answer is read as a token).
fn oauth_error(response: &http::Response<Vec<u8>>) -> Option<String> {
    let body = response.body();
    if body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let is_form = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let fields: serde_json::Map<String, serde_json::Value> = if is_form {
        form_urlencoded::parse(body)
            .map(|(name, value)| {
                (
                    name.into_owned(),
                    serde_json::Value::from(value.into_owned()),
                )
            })
            .collect()
    } else {
        match serde_json::from_slice(body) {
            Ok(serde_json::Value::Object(fields)) => fields,
            _ => return None,
        }
    };
    if response.status().is_success() && fields.contains_key("access_token") {
        return None;
    }
    fields
        .get("error")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// The token URL of a request case.
#[derive(Clone, Debug, Arbitrary)]
pub enum UrlPick {
    /// `https://{host}/{path}`.
    Https(String, String),
    /// `http://{host}:{port}/{path}`.
    Http(String, u16, String),
    /// Any text.
    Raw(String),
}

impl UrlPick {
    fn url(&self) -> String {
        match self {
            UrlPick::Https(host, path) => format!("https://{host}/{path}"),
            UrlPick::Http(host, port, path) => format!("http://{host}:{port}/{path}"),
            UrlPick::Raw(url) => url.clone(),
        }
    }
}

/// An extra form parameter's name.
#[derive(Clone, Debug, Arbitrary)]
pub enum ParamPick {
    /// One the codec sets itself (refused).
    Reserved(u8),
    /// Any name.
    Name(String),
}

/// The names the codec sets itself (also those of the other grants and of client
/// assertions, refused whatever the grant).
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

impl ParamPick {
    fn name(&self) -> String {
        match self {
            ParamPick::Reserved(n) => RESERVED[usize::from(*n) % RESERVED.len()].to_owned(),
            ParamPick::Name(name) => name.clone(),
        }
    }
}

/// A grant's settings and the refresh credential of one request.
#[derive(Clone, Debug, Arbitrary)]
pub struct RequestCase {
    /// The token URL.
    pub url: UrlPick,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Option<SecretPick>,
    /// How the client authenticates.
    pub auth: AuthPick,
    /// The scope.
    pub scope: Option<String>,
    /// Extra form parameters.
    pub params: Vec<(ParamPick, String)>,
    /// The refresh credential (none: the client-credentials grant).
    pub refresh_token: Option<SecretPick>,
}

/// Reads the bytes as a [`RequestCase`] and checks the request the codec builds: no
/// panic; a grant that cannot work is a misconfigured failure (terminal, saying to sign
/// in again, only for an empty refresh credential) without `Retry-After` that quotes no
/// distinctive secret; otherwise a `POST` to an absolute `http(s)` URL whose form body
/// holds exactly the grant type, the credential, the scope, the client authentication
/// and the extra parameters, in that order, in the buffer first allocated for it (so no
/// reallocation left a copy of a secret behind), with the client secret in a sensitive
/// Basic header only for `Basic` and in the body only for `Post`.
///
/// # Errors
///
/// What is wrong, without the secrets.
pub fn oauth2_request(bytes: &[u8]) -> Result<(), String> {
    let Ok(case) = RequestCase::arbitrary_take_rest(Unstructured::new(bytes)) else {
        return Ok(());
    };
    check_request(&case)
}

fn check_request(case: &RequestCase) -> Result<(), String> {
    let secrets = Secrets {
        client: case.client_secret.as_ref().map(SecretPick::resolve),
        refresh: case.refresh_token.as_ref().map(SecretPick::resolve),
    };
    let url = case.url.url();
    let mut grant = RefreshGrant::new(url.as_str(), case.client_id.as_str()).auth(case.auth.auth());
    if let Some((secret, _)) = &secrets.client {
        grant = grant.client_secret(secret.as_str());
    }
    if let Some(scope) = &case.scope {
        grant = grant.scope(scope.as_str());
    }
    let params: Vec<(String, String)> = case
        .params
        .iter()
        .map(|(name, value)| (name.name(), value.clone()))
        .collect();
    for (name, value) in &params {
        grant = grant.param(name.as_str(), value.as_str());
    }
    let refresh = secrets
        .refresh
        .as_ref()
        .map(|(s, _)| Secret::new(s.as_str()));
    let reserved = params
        .iter()
        .any(|(name, _)| RESERVED.contains(&name.as_str()));
    let empty = refresh.as_ref().is_some_and(Secret::is_empty);

    let request = match grant.request(refresh.as_ref()) {
        Ok(request) => request,
        Err(failure) => {
            // A dead credential is terminal; settings that cannot work are misconfigured.
            let expected = if empty && !reserved && !failure.message.contains("token URL") {
                FailureKind::Terminal
            } else {
                FailureKind::Misconfigured
            };
            if failure.kind != expected {
                return Err(format!(
                    "a grant that cannot work, as a {:?} failure",
                    failure.kind
                ));
            }
            check_failure(&failure, &secrets.checked(false))?;
            let explained = reserved
                || empty
                || failure.message.contains("token URL")
                || failure.message.contains("could not build");
            if !explained {
                return Err(format!("a refusal without a reason: {}", failure.message));
            }
            return Ok(());
        }
    };
    if reserved {
        return Err("a request with a reserved extra parameter".to_owned());
    }
    if empty {
        return Err("a request with an empty refresh credential".to_owned());
    }
    if request.method() != Method::POST {
        return Err(format!("method {}", request.method()));
    }
    let scheme_ok = request
        .uri()
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("http"));
    if !scheme_ok || request.uri().host().is_none_or(str::is_empty) {
        return Err("a request to a URL that is not absolute http(s)".to_owned());
    }
    let headers = request.headers();
    if headers.get(CONTENT_TYPE).map(HeaderValue::as_bytes)
        != Some(b"application/x-www-form-urlencoded".as_slice())
    {
        return Err("a request without the form content type".to_owned());
    }
    if headers.get(ACCEPT).map(HeaderValue::as_bytes) != Some(b"application/json".as_slice()) {
        return Err("a request that does not accept JSON".to_owned());
    }

    let client_secret = secrets.client.as_ref().map(|(s, _)| s.as_str());
    let auth = case.auth.auth();
    let basic = client_secret.filter(|_| auth == ClientAuth::Basic);
    let mut expected = Vec::new();
    match &refresh {
        Some(credential) => {
            expected.push(("grant_type".to_owned(), "refresh_token".to_owned()));
            expected.push(("refresh_token".to_owned(), credential.expose().to_owned()));
        }
        None => expected.push(("grant_type".to_owned(), "client_credentials".to_owned())),
    }
    if let Some(scope) = &case.scope {
        expected.push(("scope".to_owned(), scope.clone()));
    }
    if basic.is_none() && !case.client_id.is_empty() {
        expected.push(("client_id".to_owned(), case.client_id.clone()));
    }
    if let Some(secret) = client_secret.filter(|_| auth == ClientAuth::Post) {
        expected.push(("client_secret".to_owned(), secret.to_owned()));
    }
    expected.extend(params);
    let first: usize = expected
        .iter()
        .map(|(name, value)| 3 * (name.len() + value.len()) + 2)
        .sum();
    if request.body().capacity() != first {
        return Err("a form body that was reallocated while it was written".to_owned());
    }
    let body: Vec<(String, String)> = form_urlencoded::parse(request.body())
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    if body != expected {
        return Err(format!(
            "a form body with {} fields where {} were expected, or in another order",
            body.len(),
            expected.len()
        ));
    }

    match (basic, headers.get(AUTHORIZATION)) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err("an Authorization header without Basic auth".to_owned()),
        (Some(_), None) => Err("Basic auth without an Authorization header".to_owned()),
        (Some(secret), Some(header)) => {
            if !header.is_sensitive() {
                return Err("an Authorization header not marked sensitive".to_owned());
            }
            let decoded = header
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Basic "))
                .and_then(|v| STANDARD.decode(v).ok())
                .and_then(|v| String::from_utf8(v).ok())
                .ok_or("an Authorization header that is not Basic base64")?;
            let unescape = |s: &str| -> String {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            match decoded.split_once(':') {
                Some((id, pw)) if unescape(id) == case.client_id && unescape(pw) == secret => {
                    Ok(())
                }
                _ => Err("a Basic header that is not the client id and secret".to_owned()),
            }
        }
    }
}
