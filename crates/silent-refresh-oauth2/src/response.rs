//! Reading the token endpoint's answer: a token (RFC 6749 §5.1) or a refusal (§5.2).
//!
//! The body's fields are read into a [`Fields`] map that wipes every string it still
//! holds when dropped; the access token and the refresh credential move out of it into
//! [`Secret`]s without a copy.

use std::fmt;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, StatusCode};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use zeroize::Zeroize;

use super::classify::{Refusal, clean};
use silent_refresh::{Expiry, RefreshFailure, Secret, Token};

/// The answer to a refresh request (see [`super::RefreshGrant::parse_response`]).
///
/// `credential_given`: whether `secrets` are all the secrets the request sent (see
/// [`Refusal::credential_given`]).
pub(super) fn parse(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&Secret],
    credential_given: bool,
) -> Result<Token, RefreshFailure> {
    let mut fields = read_fields(headers, body);
    match fields.as_mut() {
        Ok(fields) if status.is_success() && fields.0.contains_key("access_token") => {
            return token(fields).map_err(|why| unusable(status, why));
        }
        // An error in a 2xx body (GitHub does this) is a refusal like any other.
        Ok(fields) if status.is_success() && text(fields, "error").is_none() => {
            return Err(unusable(status, "it has no access_token"));
        }
        _ => {}
    }
    Err(failure(
        status,
        headers,
        body,
        secrets,
        credential_given,
        &fields,
    ))
}

/// Whether an answer stands for a failure, and which (see [`super::classify`]).
pub(super) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&Secret],
    credential_given: bool,
) -> Result<(), RefreshFailure> {
    let fields = read_fields(headers, body);
    let refused = match &fields {
        Ok(fields) => !fields.0.contains_key("access_token") && text(fields, "error").is_some(),
        Err(_) => false,
    };
    if status.is_success() && !refused {
        return Ok(());
    }
    Err(failure(
        status,
        headers,
        body,
        secrets,
        credential_given,
        &fields,
    ))
}

/// The OAuth `error` code of an answer's body (JSON, or a form when the server says
/// so), if it has one: the DPoP nonce challenge is read from it.
#[cfg_attr(
    not(any(feature = "dpop", feature = "dpop-rustcrypto")),
    allow(dead_code)
)]
pub(super) fn oauth_error_code(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let fields = read_fields(headers, body).ok()?;
    text(&fields, "error").map(str::to_owned)
}

/// A `2xx` without a usable token: transient (a proxy's page, a truncated answer).
fn unusable(status: StatusCode, why: &str) -> RefreshFailure {
    RefreshFailure::transient(format!(
        "the token endpoint answered HTTP {} without a usable token: {why}",
        status.as_u16()
    ))
}

/// The failure an answer stands for: a `2xx` whose body could not be read is
/// [`unusable`]; anything else is a classified refusal. A body that could not be read
/// is described (see [`what_came_back`]).
fn failure(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&Secret],
    credential_given: bool,
    fields: &Result<Fields, &'static str>,
) -> RefreshFailure {
    let mut failure = match fields {
        Err(why) if status.is_success() => unusable(status, why),
        _ => refusal(
            status,
            headers,
            fields.as_ref().ok(),
            secrets,
            credential_given,
        ),
    };
    if fields.is_err() {
        failure
            .message
            .push_str(&what_came_back(headers, body, secrets));
    }
    failure
}

/// What a body that is neither JSON nor a form looked like (a proxy's HTML page, a
/// plain-text error), for the failure message: its content type and first bytes,
/// cleaned like any server text. Only for bodies that did not parse, so never a token.
fn what_came_back(headers: &HeaderMap, body: &[u8], secrets: &[&Secret]) -> String {
    let content_type = headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let content_type = match content_type {
        Some(value) => clean(&value, secrets),
        None => "none".to_owned(),
    };
    let trimmed = body.trim_ascii_start();
    if trimmed.is_empty() {
        return format!(" (content-type {content_type}, empty body)");
    }
    if trimmed.starts_with(b"{") || trimmed.starts_with(b"[") {
        // Broken JSON may be a truncated success: it could hold a token, so no quote.
        return format!(
            " (content-type {content_type}, {} bytes of malformed JSON, not quoted)",
            body.len()
        );
    }
    let head = String::from_utf8_lossy(&trimmed[..trimmed.len().min(BODY_PREVIEW)]);
    format!(
        " (content-type {content_type}, body starts: {})",
        clean(head.trim_end(), secrets)
    )
}

/// How many bytes of an unreadable body a failure message quotes.
const BODY_PREVIEW: usize = 120;

/// The failure for a refusal, with its OAuth error if the body held one.
fn refusal(
    status: StatusCode,
    headers: &HeaderMap,
    fields: Option<&Fields>,
    secrets: &[&Secret],
    credential_given: bool,
) -> RefreshFailure {
    Refusal {
        status,
        headers,
        error: fields.and_then(|f| text(f, "error")),
        description: fields.and_then(|f| text(f, "error_description")),
        secrets,
        credential_given,
    }
    .failure()
}

/// A string field, if present and a string.
pub(super) fn text<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields.0.get(name).and_then(Value::as_str)
}

/// The fields of a body. Every string still in it (names and values, nested ones too)
/// is wiped when it is dropped, so the parts of an answer the codec does not keep (an
/// `id_token`, an echoed credential in an `error_description`) do not linger in freed
/// memory.
#[derive(Default)]
pub(super) struct Fields(Map<String, Value>);

impl Drop for Fields {
    fn drop(&mut self) {
        wipe_map(std::mem::take(&mut self.0));
    }
}

/// Wipes every string of a JSON value.
fn wipe(value: Value) {
    match value {
        Value::String(mut text) => text.zeroize(),
        Value::Array(items) => items.into_iter().for_each(wipe),
        Value::Object(map) => wipe_map(map),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Wipes every name and string of a JSON object.
fn wipe_map(map: Map<String, Value>) {
    for (mut name, value) in map {
        name.zeroize();
        wipe(value);
    }
}

impl Fields {
    /// Sets a field; a field given twice keeps its last value (as JSON readers do).
    fn insert(&mut self, mut name: String, value: Value) {
        if let Some(old) = self.0.get_mut(&name) {
            wipe(std::mem::replace(old, value));
            name.zeroize();
        } else {
            self.0.insert(name, value);
        }
    }

    /// Takes a field out; the caller owns (and wipes) it from then on.
    fn remove(&mut self, name: &str) -> Option<Value> {
        self.0.remove(name)
    }
}

/// A JSON object read straight into [`Fields`], so that the fields read before a
/// syntax error are wiped too.
impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// Reads a JSON object into [`Fields`].
struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Fields, A::Error> {
        let mut fields = Fields::default();
        while let Some(name) = access.next_key::<String>()? {
            let value = access.next_value::<Value>()?;
            fields.insert(name, value);
        }
        Ok(fields)
    }
}

/// The body's fields: JSON, or a form when the server says so (some servers answer
/// `application/x-www-form-urlencoded` despite `Accept: application/json`).
pub(super) fn read_fields(headers: &HeaderMap, body: &[u8]) -> Result<Fields, &'static str> {
    let is_form = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("the body is empty");
    }
    if is_form {
        return Ok(read_form(body));
    }
    serde_json::from_slice::<Fields>(body).map_err(|error| {
        if error.is_data() {
            "the body is JSON but not an object"
        } else {
            "the body is not JSON"
        }
    })
}

/// A form body (`application/x-www-form-urlencoded`, as the URL Standard parses it),
/// each name and value decoded into a buffer sized once, so that no reallocation leaves
/// a copy of a credential behind.
fn read_form(body: &[u8]) -> Fields {
    let mut fields = Fields::default();
    for pair in body.split(|&b| b == b'&').filter(|pair| !pair.is_empty()) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &[][..]),
        };
        fields.insert(form_decode(name), Value::String(form_decode(value)));
    }
    fields
}

/// `+` as a space, `%XX` as that byte, then UTF-8 (invalid sequences as U+FFFD).
fn form_decode(encoded: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut at = 0;
    while at < encoded.len() {
        let byte = match encoded[at] {
            b'+' => b' ',
            b'%' => match (
                encoded.get(at + 1).copied().and_then(hex),
                encoded.get(at + 2).copied().and_then(hex),
            ) {
                (Some(high), Some(low)) => {
                    at += 2;
                    high << 4 | low
                }
                _ => b'%',
            },
            other => other,
        };
        bytes.push(byte);
        at += 1;
    }
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let mut bytes = error.into_bytes();
            // Each invalid byte becomes at most three: no reallocation.
            let mut text = String::with_capacity(bytes.len() * 3);
            for chunk in bytes.utf8_chunks() {
                text.push_str(chunk.valid());
                if !chunk.invalid().is_empty() {
                    text.push(char::REPLACEMENT_CHARACTER);
                }
            }
            bytes.zeroize();
            text
        }
    }
}

/// The value of a hexadecimal digit.
fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The token in a success body. The secrets move out of the fields into [`Secret`]s
/// without a copy; what is left is wiped with the fields.
fn token(fields: &mut Fields) -> Result<Token, &'static str> {
    let access_token = match fields.remove("access_token") {
        Some(Value::String(value)) => Secret::from(value),
        other => return Err(refuse(other, "access_token is not a string")),
    };
    if access_token.is_empty() || !access_token.expose().bytes().all(|b| b.is_ascii_graphic()) {
        return Err("access_token is empty or holds characters an HTTP header cannot carry");
    }
    let token_type = match fields.remove("token_type") {
        None | Some(Value::Null) => "Bearer".to_owned(),
        Some(Value::String(value)) if value.is_empty() => "Bearer".to_owned(),
        // A DPoP-bound token, whatever the case the server wrote: `DPoP` is the scheme
        // it is sent with (RFC 9449 §7.1).
        Some(Value::String(value)) if value.eq_ignore_ascii_case("DPoP") => "DPoP".to_owned(),
        Some(Value::String(value)) if value.bytes().all(|b| b.is_ascii_graphic()) => value,
        other => return Err(refuse(other, "token_type is not a single word")),
    };
    let refresh_token = match fields.remove("refresh_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(value)) if value.is_empty() => None,
        Some(Value::String(value)) => Some(Secret::from(value)),
        other => return Err(refuse(other, "refresh_token is not a string")),
    };
    let expiry = match fields.0.get("expires_in") {
        None | Some(Value::Null) => Expiry::Never,
        Some(Value::String(value)) if value.trim().is_empty() => Expiry::Never,
        Some(value) => Expiry::In(lifetime(value).ok_or("expires_in is not a number of seconds")?),
    };
    let scope = match fields.remove("scope") {
        None | Some(Value::Null) => None,
        Some(Value::String(value)) => Some(value),
        // A few servers send a list.
        Some(Value::Array(items)) => {
            let joined = items
                .iter()
                .map(|item| item.as_str().ok_or("scope is not a list of strings"))
                .collect::<Result<Vec<_>, _>>()
                .map(|words| words.join(" "));
            wipe(Value::Array(items));
            Some(joined?)
        }
        other => return Err(refuse(other, "scope is neither a string nor a list")),
    }
    .filter(|scope| !scope.trim().is_empty());
    Ok(Token {
        access_token,
        token_type,
        expiry,
        refresh_token,
        scope,
        // The response does not say; the machine counts from when the request was sent.
        issued_at: None,
        // The refresher adds the session's key when the exchange was DPoP.
        dpop_key: None,
        keyed: Vec::new(),
    })
}

/// Wipes a field that was taken out but cannot be used, and says why.
fn refuse(value: Option<Value>, why: &'static str) -> &'static str {
    if let Some(value) = value {
        wipe(value);
    }
    why
}

/// `expires_in` as a non-negative number of seconds, or a string holding one (some
/// servers quote it). A lifetime too long for a `Duration` saturates (the machine then
/// treats it as no expiry).
fn lifetime(value: &Value) -> Option<Duration> {
    let seconds = match value {
        Value::Number(number) => {
            if let Some(whole) = number.as_u64() {
                return Some(Duration::from_secs(whole));
            }
            number.as_f64()?
        }
        Value::String(text) => {
            let text = text.trim();
            if let Ok(whole) = text.parse::<u64>() {
                return Some(Duration::from_secs(whole));
            }
            text.parse::<f64>().ok()?
        }
        _ => return None,
    };
    if seconds.is_nan() || seconds < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http::header::RETRY_AFTER;
    use silent_refresh::FailureKind;

    fn json_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers
    }

    fn parse_json(status: u16, body: &str) -> Result<Token, RefreshFailure> {
        parse(
            StatusCode::from_u16(status).expect("status"),
            &json_headers(),
            body.as_bytes(),
            &[],
            false,
        )
    }

    #[test]
    fn reads_a_full_success() {
        let token = parse_json(
            200,
            r#"{"access_token":"at-1","token_type":"Bearer","expires_in":3600,
                "refresh_token":"rt-2","scope":"read write","id_token":"ignored"}"#,
        )
        .expect("token");
        assert_eq!(token.access_token.expose(), "at-1");
        assert_eq!(token.token_type, "Bearer");
        assert_eq!(token.expiry, Expiry::In(Duration::from_secs(3600)));
        assert_eq!(
            token.refresh_token.as_ref().map(Secret::expose),
            Some("rt-2")
        );
        assert_eq!(token.scope.as_deref(), Some("read write"));
    }

    #[test]
    fn optional_fields_have_careful_defaults() {
        let token = parse_json(200, r#"{"access_token":"at-1"}"#).expect("token");
        assert_eq!(token.token_type, "Bearer");
        assert_eq!(token.expiry, Expiry::Never);
        assert_eq!(token.refresh_token, None);
        assert_eq!(token.scope, None);

        let token = parse_json(
            200,
            r#"{"access_token":"at-1","token_type":"bearer","expires_in":"",
                "refresh_token":"","scope":""}"#,
        )
        .expect("token");
        assert_eq!(token.token_type, "bearer");
        assert_eq!(token.expiry, Expiry::Never);
        assert_eq!(
            token.refresh_token, None,
            "an empty credential keeps the old one"
        );
        assert_eq!(token.scope, None);

        let token = parse_json(200, r#"{"access_token":"at-1","expires_in":null}"#).expect("token");
        assert_eq!(token.expiry, Expiry::Never);
    }

    #[test]
    fn expires_in_takes_numbers_and_numeric_strings() {
        for (raw, expected) in [
            ("3600", Duration::from_secs(3600)),
            ("\"3600\"", Duration::from_secs(3600)),
            ("\" 60 \"", Duration::from_secs(60)),
            ("0", Duration::ZERO),
            ("1.5", Duration::from_millis(1500)),
            ("\"2.25\"", Duration::from_millis(2250)),
            ("18446744073709551615", Duration::from_secs(u64::MAX)),
            ("1e300", Duration::MAX),
        ] {
            let body = format!(r#"{{"access_token":"at","expires_in":{raw}}}"#);
            let token = parse_json(200, &body).expect(raw);
            assert_eq!(token.expiry, Expiry::In(expected), "{raw}");
        }
        for raw in ["-1", "-0.5", "\"soon\"", "true", "[]", "{}"] {
            let body = format!(r#"{{"access_token":"at","expires_in":{raw}}}"#);
            let failure = parse_json(200, &body).expect_err(raw);
            assert_eq!(failure.kind, FailureKind::Transient, "{raw}");
            assert!(
                failure.message.contains("expires_in"),
                "{}",
                failure.message
            );
        }
    }

    #[test]
    fn scope_lists_are_joined() {
        let token =
            parse_json(200, r#"{"access_token":"at","scope":["read","write"]}"#).expect("token");
        assert_eq!(token.scope.as_deref(), Some("read write"));
        let failure =
            parse_json(200, r#"{"access_token":"at","scope":[1]}"#).expect_err("not strings");
        assert_eq!(failure.kind, FailureKind::Transient);
    }

    #[test]
    fn form_bodies_are_read_when_the_server_says_so() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        let body = b"access_token=at%2B1&token_type=bearer&expires_in=28800&refresh_token=rt-2&scope=repo+user";
        let token = parse(StatusCode::OK, &headers, body, &[], false).expect("token");
        assert_eq!(token.access_token.expose(), "at+1");
        assert_eq!(token.expiry, Expiry::In(Duration::from_secs(28800)));
        assert_eq!(
            token.refresh_token.as_ref().map(Secret::expose),
            Some("rt-2")
        );
        assert_eq!(token.scope.as_deref(), Some("repo user"));

        let refused = parse(
            StatusCode::OK,
            &headers,
            b"error=bad_refresh_token&error_description=The+refresh+token+is+invalid",
            &[],
            false,
        )
        .expect_err("refused");
        assert_eq!(refused.kind, FailureKind::Terminal);
        assert!(
            refused.message.contains("The refresh token is invalid"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn an_error_in_a_success_body_is_a_refusal() {
        let failure = parse_json(
            200,
            r#"{"error":"bad_refresh_token","error_description":"expired"}"#,
        )
        .expect_err("refused");
        assert_eq!(failure.kind, FailureKind::Terminal);
        assert!(
            failure.message.contains("bad_refresh_token"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn broken_success_bodies_are_transient() {
        for body in [
            "",
            "  \n",
            "<html>captive portal</html>",
            r#"{"access_token":"at""#,
            "[1,2]",
            "{}",
            r#"{"access_token":42}"#,
            r#"{"access_token":""}"#,
            r#"{"access_token":"a b"}"#,
            "{\"access_token\":\"a\\r\\nX-Evil: 1\"}",
            r#"{"access_token":"é"}"#,
            r#"{"access_token":"at","token_type":"Bearer X"}"#,
            r#"{"access_token":"at","token_type":7}"#,
            r#"{"access_token":"at","refresh_token":7}"#,
        ] {
            let failure = parse_json(200, body).expect_err(body);
            assert_eq!(failure.kind, FailureKind::Transient, "{body}");
            assert!(failure.message.contains("HTTP 200"), "{}", failure.message);
        }
        let failure = parse(StatusCode::OK, &HeaderMap::new(), &[0xff, 0xfe], &[], false)
            .expect_err("not utf-8");
        assert_eq!(failure.kind, FailureKind::Transient);
    }

    #[test]
    fn refusals_read_the_oauth_error() {
        let failure = parse_json(
            400,
            r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
        )
        .expect_err("refused");
        assert_eq!(failure.kind, FailureKind::Terminal);
        assert!(
            failure.message.contains("invalid_grant")
                && failure
                    .message
                    .contains("Token has been expired or revoked."),
            "{}",
            failure.message
        );

        // An HTML error page is classified by its status alone, and quoted.
        let failure = parse_json(502, "<html>Bad gateway</html>").expect_err("refused");
        assert_eq!(failure.kind, FailureKind::Transient);
        assert!(
            failure.message.contains("body starts: <html>Bad gateway"),
            "{}",
            failure.message
        );

        // Broken JSON is never quoted: it may be a truncated token.
        let failure = parse_json(200, r#"{"access_token":"at-secret-part"#).expect_err("broken");
        assert!(
            !failure.message.contains("at-secret-part"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("malformed JSON"),
            "{}",
            failure.message
        );

        // A non-string error code counts as none: a 400 without an OAuth error.
        let failure = parse_json(400, r#"{"error":{"code":"x"}}"#).expect_err("refused");
        assert_eq!(failure.kind, FailureKind::Transient);
        assert!(!failure.message.contains("`"), "{}", failure.message);
    }

    #[test]
    fn refusals_keep_retry_after() {
        let mut headers = json_headers();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("17"));
        let failure = parse(StatusCode::TOO_MANY_REQUESTS, &headers, b"", &[], false)
            .expect_err("rate limited");
        assert_eq!(failure.kind, FailureKind::Transient);
        assert_eq!(failure.retry_after, Some(Duration::from_secs(17)));
    }

    #[test]
    fn refusal_messages_never_carry_the_client_secret() {
        let secret = Secret::new("short-secret");
        let failure = parse(
            StatusCode::UNAUTHORIZED,
            &json_headers(),
            br#"{"error":"invalid_client","error_description":"secret short-secret is wrong"}"#,
            &[&secret],
            true,
        )
        .expect_err("refused");
        assert!(
            !failure.message.contains("short-secret"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("[redacted]"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn form_bodies_decode_as_the_url_standard_says() {
        for body in [
            &b"a=1&b=2"[..],
            b"a=%41%2b+%zz%4&&=x&b&c==d&a=last",
            b"%FF%FE=%C3%A9%C3&x=%e2%82%ac",
            b"%",
            b"%%%%",
            b"++=+",
            b"name=%F0%9F%98%80%F0%9F",
        ] {
            let ours = read_form(body);
            let mut theirs = Map::new();
            for (name, value) in form_urlencoded::parse(body) {
                theirs.insert(name.into_owned(), Value::String(value.into_owned()));
            }
            assert_eq!(ours.0, theirs, "{}", String::from_utf8_lossy(body));
        }
    }

    proptest::proptest! {
        #[test]
        fn any_form_body_decodes_as_form_urlencoded_does(
            body in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(b"%+=&aF0".to_vec()),
                    proptest::prelude::any::<u8>(),
                ],
                0..40,
            )
        ) {
            let ours = read_form(&body);
            let mut theirs = Map::new();
            for (name, value) in form_urlencoded::parse(&body) {
                theirs.insert(name.into_owned(), Value::String(value.into_owned()));
            }
            proptest::prop_assert_eq!(&ours.0, &theirs);
        }
    }

    #[test]
    fn json_fields_keep_the_last_of_a_repeated_name_and_tell_objects_from_other_json() {
        let fields = read_fields(&json_headers(), br#"{"a":"1","a":"2","b":{"c":["d"]}}"#)
            .map_err(str::to_owned)
            .expect("an object");
        assert_eq!(text(&fields, "a"), Some("2"));
        assert_eq!(fields.0.len(), 2);
        for (body, why) in [
            (&b"[1]"[..], "the body is JSON but not an object"),
            (br#""text""#, "the body is JSON but not an object"),
            (b"{\"a\":", "the body is not JSON"),
            (b"{} x", "the body is not JSON"),
            (b"<html>", "the body is not JSON"),
        ] {
            assert_eq!(read_fields(&json_headers(), body).err(), Some(why));
        }
    }

    #[test]
    fn a_repeated_field_keeps_its_last_value() {
        let mut fields = Fields::default();
        fields.insert("refresh_token".to_owned(), Value::from("rt-1"));
        fields.insert("refresh_token".to_owned(), Value::from("rt-2"));
        fields.insert("access_token".to_owned(), Value::from("at"));
        let token = token(&mut fields).expect("a token");
        assert_eq!(
            token.refresh_token.as_ref().map(Secret::expose),
            Some("rt-2")
        );
        // The secrets moved out; what is left is wiped when the fields drop.
        assert!(fields.0.is_empty());
    }

    #[test]
    fn classify_passes_successes_on_and_classifies_the_rest() {
        let ok = |status: u16, body: &str| {
            classify(
                StatusCode::from_u16(status).expect("status"),
                &json_headers(),
                body.as_bytes(),
                &[],
                false,
            )
        };
        for body in [
            r#"{"accessToken":"at","expiresIn":900}"#,
            r#"{"access_token":"at","error":"ignored"}"#,
            "<html>not json</html>",
            "",
        ] {
            assert_eq!(ok(200, body).err().map(|f| f.message), None, "{body}");
        }
        let refused = ok(200, r#"{"error":"invalid_grant"}"#).expect_err("refused");
        assert_eq!(refused.kind, FailureKind::Terminal);
        let refused = ok(403, "<html>Request blocked</html>").expect_err("refused");
        assert_eq!(refused.kind, FailureKind::Transient);
        assert!(
            refused
                .message
                .contains("body starts: <html>Request blocked"),
            "{}",
            refused.message
        );
        let refused = ok(404, "").expect_err("refused");
        assert_eq!(refused.kind, FailureKind::Misconfigured);
        let secret = Secret::new("s3");
        let refused = classify(
            StatusCode::UNAUTHORIZED,
            &json_headers(),
            br#"{"error":"invalid_client","error_description":"secret s3 is wrong"}"#,
            &[&secret],
            true,
        )
        .expect_err("refused");
        assert_eq!(refused.kind, FailureKind::Misconfigured);
        assert!(
            refused.message.contains("secret [redacted] is wrong"),
            "{}",
            refused.message
        );
    }
}
