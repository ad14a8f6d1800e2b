//! Classifying a refusal: transient or terminal, `Retry-After`, and a message that is
//! safe to show.

use std::time::Duration;

use http::header::{DATE, LOCATION, RETRY_AFTER};
use http::{HeaderMap, StatusCode};

use crate::failure::{FailureKind, RefreshFailure};
use crate::secret::Secret;

/// The longest piece of server text quoted in a message, in characters.
const MAX_QUOTE: usize = 200;

/// A word at least this long, made only of token characters, is taken for a credential
/// and redacted. A UUID (36) stays readable; real refresh credentials are longer.
const TOKEN_LIKE: usize = 40;

/// What a refusal said: the status, and the OAuth error (RFC 6749 §5.2) if there was one.
/// No `Debug`: the description is server text that may echo a credential.
pub(super) struct Refusal<'a> {
    /// The response's status.
    pub(super) status: StatusCode,
    /// The response's headers (`Retry-After`, `Date`, `Location`).
    pub(super) headers: &'a HeaderMap,
    /// The OAuth `error` code.
    pub(super) error: Option<&'a str>,
    /// The OAuth `error_description`.
    pub(super) description: Option<&'a str>,
    /// The secrets of the exchange (client secret, refresh credential), redacted should
    /// the server echo them.
    pub(super) secrets: &'a [&'a Secret],
}

impl Refusal<'_> {
    /// The failure to report to the machine.
    pub(super) fn failure(&self) -> RefreshFailure {
        let kind = self.kind();
        let what = self.what(kind);
        let mut message = format!("{what} (HTTP {}", self.status.as_u16());
        if let Some(error) = self.error {
            message.push_str(", error `");
            message.push_str(&self.clean(error));
            message.push('`');
        }
        if let Some(description) = self.description.filter(|d| !d.trim().is_empty()) {
            message.push_str(": ");
            message.push_str(&self.clean(description));
        }
        message.push(')');
        match kind {
            FailureKind::Transient => {
                let failure = RefreshFailure::transient(message);
                match retry_after(self.headers) {
                    Some(after) => failure.with_retry_after(after),
                    None => failure,
                }
            }
            FailureKind::Terminal => RefreshFailure::terminal(message),
            FailureKind::Misconfigured => RefreshFailure::misconfigured(message),
        }
    }

    /// Overload and server trouble are worth retrying whatever the body says; a
    /// deliberate OAuth error and any other refusal are not.
    fn kind(&self) -> FailureKind {
        let code = self.status.as_u16();
        if self.status.is_server_error() || matches!(code, 408 | 425 | 429) {
            return FailureKind::Transient;
        }
        match self.error {
            Some(error) if is_transient_code(error) => FailureKind::Transient,
            Some(_) => FailureKind::Terminal,
            None if self.status.is_redirection() || self.status.is_client_error() => {
                FailureKind::Terminal
            }
            // 1xx or 2xx without a token: a broken answer, maybe not from the server.
            None => FailureKind::Transient,
        }
    }

    /// What happened, in words, and for a terminal failure what to do.
    fn what(&self, kind: FailureKind) -> String {
        let code = self.status.as_u16();
        if let Some(error) = self.error.filter(|_| kind == FailureKind::Terminal) {
            let what = match error.to_ascii_lowercase().as_str() {
                "invalid_grant" => {
                    "the token endpoint refused the refresh credential (expired, revoked or already used)"
                }
                "invalid_client" => {
                    "the token endpoint refused the client authentication; check the client id, \
                     secret and authentication method"
                }
                "unauthorized_client" => "this client is not allowed to use this grant",
                "unsupported_grant_type" => "the token endpoint does not support this grant",
                "invalid_scope" => "the token endpoint refused the requested scope",
                "invalid_request" => "the token endpoint found the refresh request malformed",
                _ => "the token endpoint refused the refresh",
            };
            return what.to_owned();
        }
        match kind {
            FailureKind::Transient if code == 429 => {
                "the token endpoint is rate limiting refreshes".to_owned()
            }
            FailureKind::Transient if code == 408 => {
                "the token endpoint timed out reading the refresh request".to_owned()
            }
            FailureKind::Transient if code == 425 => {
                "the token endpoint asked to retry the refresh later".to_owned()
            }
            FailureKind::Transient if self.status.is_server_error() || self.error.is_some() => {
                "the token endpoint is failing or unavailable".to_owned()
            }
            FailureKind::Transient => "the token endpoint gave an unexpected answer".to_owned(),
            FailureKind::Terminal if self.status.is_redirection() => {
                let to = self
                    .headers
                    .get(LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .map(|l| format!(" to {}", self.clean(l)))
                    .unwrap_or_default();
                format!(
                    "the token endpoint redirected{to}; configure the token URL as the final address"
                )
            }
            FailureKind::Terminal | FailureKind::Misconfigured => match code {
                401 => {
                    "the token endpoint refused the client authentication without an OAuth \
                        error; check the client id, secret and authentication method"
                }
                404 | 405 | 410 => {
                    "the token endpoint does not exist at this address; check the token URL"
                }
                _ => "the token endpoint refused the refresh without an OAuth error",
            }
            .to_owned(),
        }
    }

    /// Server text made safe to show (see [`clean`]).
    fn clean(&self, text: &str) -> String {
        clean(text, self.secrets)
    }
}

/// OAuth error codes that mean "try again later".
fn is_transient_code(error: &str) -> bool {
    ["temporarily_unavailable", "server_error", "slow_down"]
        .iter()
        .any(|code| code.eq_ignore_ascii_case(error))
}

/// How long the server asked to wait: `Retry-After` as seconds, or as an HTTP date
/// counted from the response's own `Date` (there is no clock here to count from).
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let until = httpdate::parse_http_date(value).ok()?;
    let date = httpdate::parse_http_date(headers.get(DATE)?.to_str().ok()?.trim()).ok()?;
    Some(until.duration_since(date).unwrap_or(Duration::ZERO))
}

/// Server text made safe for an error message: control characters become spaces, the
/// client secret and long token-like words become `[redacted]`, and the result is cut
/// to [`MAX_QUOTE`] characters.
pub(super) fn clean(text: &str, secrets: &[&Secret]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret.expose(), "[redacted]");
    }
    let mut out = String::new();
    let mut chars = 0;
    for word in text.split_inclusive(|c: char| !is_token_char(c)) {
        let token_len = word.chars().take_while(|&c| is_token_char(c)).count();
        let piece = if token_len >= TOKEN_LIKE {
            // Keep the separator that ended the word.
            let rest: String = word.chars().skip(token_len).collect();
            format!("[redacted]{rest}")
        } else {
            word.to_owned()
        };
        for c in piece.chars() {
            if chars == MAX_QUOTE {
                out.push('…');
                return out;
            }
            out.push(if c.is_control() { ' ' } else { c });
            chars += 1;
        }
    }
    out
}

/// Characters of access tokens, refresh tokens and JWTs (RFC 6750 `b64token`, plus `.`).
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '+' | '/' | '=')
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn refusal<'a>(
        status: u16,
        headers: &'a HeaderMap,
        error: Option<&'a str>,
        description: Option<&'a str>,
    ) -> RefreshFailure {
        Refusal {
            status: StatusCode::from_u16(status).expect("status"),
            headers,
            error,
            description,
            secrets: &[],
        }
        .failure()
    }

    #[test]
    fn overload_and_server_errors_are_transient_whatever_the_code() {
        let headers = HeaderMap::new();
        for status in [500, 502, 503, 504, 599, 408, 425, 429] {
            for error in [None, Some("invalid_grant"), Some("whatever")] {
                let failure = refusal(status, &headers, error, None);
                assert_eq!(failure.kind, FailureKind::Transient, "{status} {error:?}");
                assert!(
                    failure.message.contains(&status.to_string()),
                    "{}",
                    failure.message
                );
            }
        }
    }

    #[test]
    fn oauth_error_codes_are_terminal_unless_they_say_later() {
        let headers = HeaderMap::new();
        for status in [200, 400, 401, 403] {
            for error in [
                "invalid_grant",
                "invalid_client",
                "unauthorized_client",
                "unsupported_grant_type",
                "invalid_scope",
                "invalid_request",
                "bad_refresh_token",
            ] {
                let failure = refusal(status, &headers, Some(error), None);
                assert_eq!(failure.kind, FailureKind::Terminal, "{status} {error}");
                assert!(failure.message.contains(error), "{}", failure.message);
            }
            for error in ["temporarily_unavailable", "server_error", "SLOW_DOWN"] {
                let failure = refusal(status, &headers, Some(error), None);
                assert_eq!(failure.kind, FailureKind::Transient, "{status} {error}");
            }
        }
    }

    #[test]
    fn refusals_without_an_oauth_error_follow_the_status() {
        let headers = HeaderMap::new();
        for status in [301, 302, 307, 308, 400, 401, 403, 404, 405, 410, 415] {
            let failure = refusal(status, &headers, None, None);
            assert_eq!(failure.kind, FailureKind::Terminal, "{status}");
        }
        for status in [100, 200, 204] {
            let failure = refusal(status, &headers, None, None);
            assert_eq!(failure.kind, FailureKind::Transient, "{status}");
        }
    }

    #[test]
    fn messages_explain_the_common_terminal_errors() {
        let headers = HeaderMap::new();
        let grant = refusal(400, &headers, Some("invalid_grant"), Some("Token expired"));
        assert!(
            grant.message.contains("refresh credential") && grant.message.contains("Token expired"),
            "{}",
            grant.message
        );
        let client = refusal(401, &headers, Some("invalid_client"), None);
        assert!(
            client.message.contains("client authentication"),
            "{}",
            client.message
        );
        let mut redirect = HeaderMap::new();
        redirect.insert(
            LOCATION,
            HeaderValue::from_static("https://new.example/token"),
        );
        let unauthorized = refusal(401, &headers, None, None);
        assert!(
            unauthorized.message.contains("client authentication"),
            "{}",
            unauthorized.message
        );
        let missing = refusal(404, &headers, None, None);
        assert!(missing.message.contains("token URL"), "{}", missing.message);
        let moved = refusal(301, &redirect, None, None);
        assert!(
            moved.message.contains("https://new.example/token"),
            "{}",
            moved.message
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 120 "));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        // A date needs the server's Date to count from.
        assert_eq!(retry_after(&headers), None);
        headers.insert(
            DATE,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:26:30 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(90)));
        headers.insert(
            DATE,
            HeaderValue::from_static("Wed, 21 Oct 2015 08:00:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        for garbage in ["soon", "-5", "1.5", ""] {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(garbage));
            assert_eq!(retry_after(&headers), None, "{garbage}");
        }
    }

    #[test]
    fn retry_after_is_kept_on_transient_failures_only() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("30"));
        let busy = refusal(503, &headers, None, None);
        assert_eq!(busy.retry_after, Some(Duration::from_secs(30)));
        let limited = refusal(429, &headers, None, None);
        assert_eq!(limited.retry_after, Some(Duration::from_secs(30)));
        let dead = refusal(400, &headers, Some("invalid_grant"), None);
        assert_eq!(dead.retry_after, None);
    }

    #[test]
    fn clean_redacts_secrets_and_long_tokens() {
        let secret = Secret::new("client-s3cret");
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let text = format!(
            "bad secret client-s3cret, token {jwt}; trace 0b0c1f2e-3d4c-5b6a-7980-a1b2c3d4e5f6\r\nend"
        );
        let cleaned = clean(&text, &[&secret]);
        assert!(!cleaned.contains("client-s3cret"), "{cleaned}");
        assert!(!cleaned.contains(jwt), "{cleaned}");
        assert!(
            cleaned.contains("0b0c1f2e-3d4c-5b6a-7980-a1b2c3d4e5f6"),
            "{cleaned}"
        );
        assert!(
            !cleaned.contains('\n') && !cleaned.contains('\r'),
            "{cleaned}"
        );
        assert_eq!(
            cleaned,
            "bad secret [redacted], token [redacted]; trace 0b0c1f2e-3d4c-5b6a-7980-a1b2c3d4e5f6  end"
        );
    }

    #[test]
    fn clean_cuts_long_text() {
        let text = "word ".repeat(100);
        let cleaned = clean(&text, &[]);
        assert_eq!(cleaned.chars().count(), MAX_QUOTE + 1);
        assert!(cleaned.ends_with('…'));
        assert_eq!(clean("short", &[]), "short");
    }
}
