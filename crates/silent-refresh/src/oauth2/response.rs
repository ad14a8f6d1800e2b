//! Reading the token endpoint's answer: a token (RFC 6749 §5.1) or a refusal (§5.2).

use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use super::classify::{Refusal, clean};
use crate::failure::RefreshFailure;
use crate::secret::Secret;
use crate::token::{Expiry, Token};

/// The answer to a refresh request (see [`super::RefreshGrant::parse_response`]).
pub(super) fn parse(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&Secret],
) -> Result<Token, RefreshFailure> {
    let fields = read_fields(headers, body);
    let unusable = |why: &str| {
        RefreshFailure::transient(format!(
            "the token endpoint answered HTTP {} without a usable token: {why}",
            status.as_u16()
        ))
    };
    if status.is_success() {
        let fields = fields.map_err(|why| {
            let mut failure = unusable(why);
            failure
                .message
                .push_str(&what_came_back(headers, body, secrets));
            failure
        })?;
        if fields.contains_key("access_token") {
            return token(fields).map_err(unusable);
        }
        if text(&fields, "error").is_none() {
            return Err(unusable("it has no access_token"));
        }
        // An error in a 2xx body (GitHub does this): a refusal like any other.
        return Err(refusal(status, headers, Some(&fields), secrets));
    }
    let mut failure = refusal(status, headers, fields.as_ref().ok(), secrets);
    if fields.is_err() {
        failure
            .message
            .push_str(&what_came_back(headers, body, secrets));
    }
    Err(failure)
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
    fields: Option<&Map<String, Value>>,
    secrets: &[&Secret],
) -> RefreshFailure {
    Refusal {
        status,
        headers,
        error: fields.and_then(|f| text(f, "error")),
        description: fields.and_then(|f| text(f, "error_description")),
        secrets,
    }
    .failure()
}

/// A string field, if present and a string.
fn text<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    fields.get(name).and_then(Value::as_str)
}

/// The body's fields: JSON, or a form when the server says so (some servers answer
/// `application/x-www-form-urlencoded` despite `Accept: application/json`).
fn read_fields(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, &'static str> {
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
        return Ok(form_urlencoded::parse(body)
            .map(|(name, value)| (name.into_owned(), Value::String(value.into_owned())))
            .collect());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err("the body is JSON but not an object"),
        Err(_) => Err("the body is not JSON"),
    }
}

/// The token in a success body. The fields are consumed so that the secrets move into
/// [`Secret`]s without a copy.
fn token(mut fields: Map<String, Value>) -> Result<Token, &'static str> {
    let access_token = match fields.remove("access_token") {
        Some(Value::String(value)) => Secret::from(value),
        _ => return Err("access_token is not a string"),
    };
    if access_token.is_empty() || !access_token.expose().bytes().all(|b| b.is_ascii_graphic()) {
        return Err("access_token is empty or holds characters an HTTP header cannot carry");
    }
    let token_type = match fields.remove("token_type") {
        None | Some(Value::Null) => "Bearer".to_owned(),
        Some(Value::String(value)) if value.is_empty() => "Bearer".to_owned(),
        Some(Value::String(value)) if value.bytes().all(|b| b.is_ascii_graphic()) => value,
        Some(_) => return Err("token_type is not a single word"),
    };
    let refresh_token = match fields.remove("refresh_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(value)) if value.is_empty() => None,
        Some(Value::String(value)) => Some(Secret::from(value)),
        Some(_) => return Err("refresh_token is not a string"),
    };
    let expiry = match fields.get("expires_in") {
        None | Some(Value::Null) => Expiry::Never,
        Some(Value::String(value)) if value.trim().is_empty() => Expiry::Never,
        Some(value) => Expiry::In(lifetime(value).ok_or("expires_in is not a number of seconds")?),
    };
    let scope = match fields.remove("scope") {
        None | Some(Value::Null) => None,
        Some(Value::String(value)) => Some(value),
        // A few servers send a list.
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|item| item.as_str().ok_or("scope is not a list of strings"))
                .collect::<Result<Vec<_>, _>>()?
                .join(" "),
        ),
        Some(_) => return Err("scope is neither a string nor a list"),
    }
    .filter(|scope| !scope.trim().is_empty());
    Ok(Token {
        access_token,
        token_type,
        expiry,
        refresh_token,
        scope,
    })
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
    use crate::failure::FailureKind;
    use http::HeaderValue;
    use http::header::RETRY_AFTER;

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
        let token = parse(StatusCode::OK, &headers, body, &[]).expect("token");
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
        let failure =
            parse(StatusCode::OK, &HeaderMap::new(), &[0xff, 0xfe], &[]).expect_err("not utf-8");
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

        // A non-string error code counts as none.
        let failure = parse_json(400, r#"{"error":{"code":"x"}}"#).expect_err("refused");
        assert_eq!(failure.kind, FailureKind::Terminal);
        assert!(!failure.message.contains("`"), "{}", failure.message);
    }

    #[test]
    fn refusals_keep_retry_after() {
        let mut headers = json_headers();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("17"));
        let failure =
            parse(StatusCode::TOO_MANY_REQUESTS, &headers, b"", &[]).expect_err("rate limited");
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
}
