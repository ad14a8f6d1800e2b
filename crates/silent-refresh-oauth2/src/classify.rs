//! Classifying a refusal in three (rule 7 of the contract): transient, credentials
//! dead (terminal), or misconfigured; `Retry-After`; and a message that is safe to show.

use std::time::Duration;

use http::header::{DATE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use zeroize::Zeroizing;

use silent_refresh::{FailureKind, RefreshFailure, Secret};

/// The longest piece of server text quoted in a message, in characters.
const MAX_QUOTE: usize = 200;

/// A word at least this long, made only of token characters, is taken for a credential
/// and redacted. A UUID (36) stays readable; real refresh credentials are longer.
const TOKEN_LIKE: usize = 40;

/// OAuth error codes that mean "try again later". `use_dpop_nonce` (RFC 9449 §8)
/// reaches classification only when it comes again right after the nonce it asked for
/// was sent (the exchange resends the first one at once): the server's nonce moved on
/// meanwhile, and the next attempt carries the newest one.
const TRANSIENT_CODES: [&str; 4] = [
    "temporarily_unavailable",
    "server_error",
    "slow_down",
    "use_dpop_nonce",
];

/// OAuth error codes that mean "the credentials are dead": the refresh credential
/// expired, was revoked or already used (`invalid_grant`, RFC 6749 §5.2; GitHub's
/// `bad_refresh_token`; `expired_token` and `invalid_token` from servers that use
/// them for a revoked grant), or the user must sign in interactively again (OpenID
/// Connect's `interaction_required`, `login_required`, `consent_required`, which Entra
/// ID sends when a policy needs a new sign-in).
const DEAD_CODES: [&str; 7] = [
    "invalid_grant",
    "bad_refresh_token",
    "expired_token",
    "invalid_token",
    "interaction_required",
    "login_required",
    "consent_required",
];

/// What a refusal said: the status, and the OAuth error (RFC 6749 §5.2) if there was one.
/// No `Debug`: the description is server text that may echo a credential.
pub(super) struct Refusal<'a> {
    /// The response's status.
    pub(super) status: StatusCode,
    /// The response's headers (`Retry-After`, `Date`, `Location`, `WWW-Authenticate`).
    pub(super) headers: &'a HeaderMap,
    /// The OAuth `error` code.
    pub(super) error: Option<&'a str>,
    /// The OAuth `error_description`.
    pub(super) description: Option<&'a str>,
    /// The secrets of the exchange (client secret, refresh credential), redacted should
    /// the server echo them.
    pub(super) secrets: &'a [&'a Secret],
    /// Whether `secrets` are all the secrets the request sent. Then they are redacted
    /// exactly, and a redirect's path is shown segment by segment (a segment that looks
    /// like a token is redacted); otherwise a run of token characters across `/` that
    /// is long enough to be a credential (base64 has `/`) is redacted whole, path and
    /// all.
    pub(super) credential_given: bool,
}

impl Refusal<'_> {
    /// The failure to report to the machine.
    ///
    /// The message is the library's own words (what happened and what to do), then,
    /// in parentheses, what the server said: `(HTTP 400, error `code`: description)`,
    /// or for a redirect `(HTTP 307, Location https://host/path)`.
    pub(super) fn failure(&self) -> RefreshFailure {
        let kind = self.kind();
        let mut message = format!("{} (HTTP {}", self.what(kind), self.status.as_u16());
        if self.status.is_redirection() {
            message.push_str(", ");
            message.push_str(&self.location());
        }
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

    /// The class, in this order: overload and server trouble are transient whatever
    /// the body says; a redirect is a wrong token URL; then the OAuth error code
    /// decides; without one, the status does (see the module docs of `oauth2`).
    fn kind(&self) -> FailureKind {
        let code = self.status.as_u16();
        if self.status.is_server_error() || matches!(code, 408 | 425 | 429) {
            return FailureKind::Transient;
        }
        if self.status.is_redirection() {
            return FailureKind::Misconfigured;
        }
        match self.error {
            Some(error) if is_one_of(error, &TRANSIENT_CODES) => FailureKind::Transient,
            Some(error) if is_one_of(error, &DEAD_CODES) => FailureKind::Terminal,
            // The five configuration codes of RFC 6749 §5.2, and any code this library
            // does not know: a deliberate refusal that retrying will not change, but
            // not proof that the credential is dead, so it is kept.
            Some(_) => FailureKind::Misconfigured,
            None => match code {
                404 | 405 | 410 => FailureKind::Misconfigured,
                // RFC 6749 §5.2: a failed client authentication is a 401 with a
                // `WWW-Authenticate` challenge. Without an OAuth error body this is
                // still, most often, a wrong client secret or authentication method.
                401 if self.headers.contains_key(WWW_AUTHENTICATE) => FailureKind::Misconfigured,
                // Any other 4xx without an OAuth error (a firewall's HTML 403, a
                // proxy's 407, a bare 401), and a 1xx or 2xx without a token: not the
                // authorization server's verdict, maybe not even from it.
                _ => FailureKind::Transient,
            },
        }
    }

    /// What happened, in words, and what to do. Only a terminal failure says to sign
    /// in again; a misconfiguration names the setting to fix.
    fn what(&self, kind: FailureKind) -> &'static str {
        let code = self.status.as_u16();
        match kind {
            FailureKind::Terminal => match self.error.map(str::to_ascii_lowercase).as_deref() {
                Some("invalid_grant") => {
                    "the token endpoint refused the refresh credential: it expired, was \
                     revoked or was already used; sign in again"
                }
                Some("interaction_required" | "login_required" | "consent_required") => {
                    "the authorization server needs the user to sign in again"
                }
                _ => {
                    "the token endpoint says the refresh credential is invalid or expired; \
                     sign in again"
                }
            },
            FailureKind::Misconfigured if self.status.is_redirection() => {
                "the token endpoint answered with a redirect, which a refresh never \
                 follows; configure the final token URL"
            }
            FailureKind::Misconfigured => {
                match self.error.map(str::to_ascii_lowercase).as_deref() {
                    Some("invalid_client" | "incorrect_client_credentials") => {
                        "the token endpoint refused the client authentication; check the client \
                     id, the client secret and the client authentication method"
                    }
                    Some("unauthorized_client") => {
                        "this client is not allowed to use this grant; check the client id, and \
                     enable the grant for the client at the authorization server"
                    }
                    Some("unsupported_grant_type") => {
                        "the token endpoint does not support this grant type; check the token URL \
                     and the grants enabled for the client at the authorization server"
                    }
                    Some("invalid_scope") => {
                        "the token endpoint refused the requested scope; configure a scope the \
                     client was granted, or none to keep the scope first granted"
                    }
                    Some("invalid_request") => {
                        "the token endpoint found the refresh request malformed; check the token \
                     URL, the client authentication method and the extra parameters"
                    }
                    Some("invalid_dpop_proof") => {
                        "the token endpoint refused the DPoP proof; check the system clock \
                     (a proof's iat must be close to the server's time) and that the server \
                     accepts the DPoP key's algorithm"
                    }
                    Some("invalid_target") => {
                        "the token endpoint refused the requested resource or audience; check \
                     the extra parameters"
                    }
                    Some(_) => {
                        "the token endpoint refused the refresh with an error code this library \
                     does not know; check the client configuration against the \
                     authorization server's documentation of that code"
                    }
                    None if code == 401 => {
                        "the token endpoint refused the client authentication without an OAuth \
                     error; check the client id, the client secret and the client \
                     authentication method"
                    }
                    None => {
                        "the token endpoint does not exist at this address or does not take a \
                     POST; check the token URL"
                    }
                }
            }
            FailureKind::Transient => match code {
                429 => "the token endpoint is rate limiting refreshes; retrying later",
                _ if self
                    .error
                    .is_some_and(|e| e.eq_ignore_ascii_case("use_dpop_nonce")) =>
                {
                    "the token endpoint asked again for a new DPoP nonce right after one was \
                     sent; retrying with the newest nonce"
                }
                408 => "the token endpoint timed out reading the refresh request; retrying",
                425 => "the token endpoint asked to retry the refresh later",
                407 => {
                    "a proxy on the way to the token endpoint asks for proxy \
                     authentication; retrying, check the proxy settings if this persists"
                }
                _ if self.status.is_server_error() || self.error.is_some() => {
                    "the token endpoint is failing or unavailable; retrying"
                }
                _ if self.status.is_client_error() => {
                    "the refresh was refused without an OAuth error, maybe by a firewall or \
                     proxy in front of the token endpoint; retrying"
                }
                _ => "the token endpoint gave an unexpected answer; retrying",
            },
        }
    }

    /// The `Location` of a redirect, as origin and path only (see [`origin_and_path`]).
    fn location(&self) -> String {
        match self.headers.get(LOCATION) {
            None => "no Location".to_owned(),
            Some(value) => {
                let value = String::from_utf8_lossy(value.as_bytes());
                // A secret may hold `?`, `#`, `@` or `/`: redacted first, it would hide
                // where the query starts; cut first, half of it could stay. So a
                // Location that holds one is not shown at all.
                let holds_secret = self
                    .secrets
                    .iter()
                    .any(|s| !s.is_empty() && value.contains(s.expose()));
                if holds_secret {
                    return "a Location that holds a credential, not shown".to_owned();
                }
                let shown = origin_and_path(&value);
                if shown.trim().is_empty() {
                    "an empty Location".to_owned()
                } else {
                    let shown = if self.credential_given {
                        // Words end at `/` too: a long path is not a token, a long
                        // segment may be.
                        clean_words(&shown, self.secrets, |c| c != '/' && is_token_char(c))
                    } else {
                        self.clean(&shown)
                    };
                    format!("Location {shown}")
                }
            }
        }
    }

    /// Server text made safe to show (see [`clean`]).
    fn clean(&self, text: &str) -> String {
        clean(text, self.secrets)
    }
}

/// Whether `error` is one of `codes`, ignoring ASCII case.
fn is_one_of(error: &str, codes: &[&str]) -> bool {
    codes.iter().any(|code| code.eq_ignore_ascii_case(error))
}

/// A URL (or a relative reference) without what may carry a secret: the query, the
/// fragment, and the user information. Everything from the start of the authority to
/// the last `@` goes, even when that `@` is in the path or the URL is not well formed
/// (a password holding a `/`): the name may lose a piece, never leak one.
pub(super) fn origin_and_path(url: &str) -> Zeroizing<String> {
    let url = url.trim();
    let url = &url[..url.find(['?', '#']).unwrap_or(url.len())];
    // Where the authority starts: after `scheme://`, after `//`, or (for a sloppy
    // `scheme:user@host`) after `scheme:`.
    let scheme_end = url
        .find(':')
        .filter(|&i| {
            i > 0
                && url[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        })
        .map_or(0, |i| i + 1);
    let after_scheme = &url[scheme_end..];
    let slashes = after_scheme.len() - after_scheme.trim_start_matches(['/', '\\']).len();
    let start = scheme_end + slashes;
    let rest = &url[start..];
    let rest = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    let mut shown = Zeroizing::new(String::with_capacity(url.len()));
    shown.push_str(&url[..start]);
    shown.push_str(rest);
    shown
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

/// `text` with every non-empty secret replaced by `[redacted]`, in buffers that are
/// sized once (no reallocation leaves a copy behind) and wiped when dropped.
pub(super) fn redact_secrets(text: &str, secrets: &[&Secret]) -> Zeroizing<String> {
    let mut text = Zeroizing::new(text.to_owned());
    for secret in secrets.iter().map(|s| s.expose()).filter(|s| !s.is_empty()) {
        let found = text.matches(secret).count();
        if found == 0 {
            continue;
        }
        let mut replaced = Zeroizing::new(String::with_capacity(
            text.len() - found * secret.len() + found * REDACTED.len(),
        ));
        let mut last = 0;
        for (at, _) in text.match_indices(secret) {
            replaced.push_str(&text[last..at]);
            replaced.push_str(REDACTED);
            last = at + secret.len();
        }
        replaced.push_str(&text[last..]);
        text = replaced;
    }
    text
}

/// What replaces a secret in a message.
const REDACTED: &str = "[redacted]";

/// Server text made safe for an error message: the given secrets and long token-like
/// words become `[redacted]`, control characters become spaces, and the result is cut
/// to [`MAX_QUOTE`] characters.
pub(super) fn clean(text: &str, secrets: &[&Secret]) -> String {
    clean_words(text, secrets, is_token_char)
}

/// [`clean`], with words made of the characters `in_word` accepts.
fn clean_words(text: &str, secrets: &[&Secret], in_word: fn(char) -> bool) -> String {
    let text = redact_secrets(text, secrets);
    let mut out = Quote::default();
    for word in text.split_inclusive(|c: char| !in_word(c)) {
        let token_len = word.chars().take_while(|&c| in_word(c)).count();
        let shown = if token_len >= TOKEN_LIKE {
            // Keep the separator that ended the word (one character, or none at the
            // end of the text).
            let separator = word
                .chars()
                .next_back()
                .filter(|&c| !in_word(c))
                .map_or(0, char::len_utf8);
            out.push_str(REDACTED) && out.push_str(&word[word.len() - separator..])
        } else {
            out.push_str(word)
        };
        if !shown {
            break;
        }
    }
    out.text
}

/// A quote being cut to [`MAX_QUOTE`] characters.
#[derive(Default)]
struct Quote {
    text: String,
    chars: usize,
}

impl Quote {
    /// Appends `piece`, control characters as spaces; `false` once the quote is full
    /// (and then it ends with `…`).
    fn push_str(&mut self, piece: &str) -> bool {
        for c in piece.chars() {
            if self.chars == MAX_QUOTE {
                self.text.push('…');
                return false;
            }
            self.text.push(if c.is_control() { ' ' } else { c });
            self.chars += 1;
        }
        true
    }
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
            credential_given: true,
        }
        .failure()
    }

    /// The library's own words: the message before what the server said.
    fn own_words(failure: &RefreshFailure) -> &str {
        failure
            .message
            .split(" (HTTP ")
            .next()
            .unwrap_or(&failure.message)
    }

    fn says_sign_in(text: &str) -> bool {
        let text = text.to_ascii_lowercase();
        text.contains("sign in") || text.contains("sign-in")
    }

    #[test]
    fn overload_and_server_errors_are_transient_whatever_the_code() {
        let headers = HeaderMap::new();
        for status in [500, 502, 503, 504, 599, 408, 425, 429] {
            for error in [
                None,
                Some("invalid_grant"),
                Some("invalid_client"),
                Some("x"),
            ] {
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
    fn oauth_error_codes_fall_in_three_classes() {
        let headers = HeaderMap::new();
        for status in [200, 400, 401, 403, 404] {
            for error in DEAD_CODES.into_iter().chain(["INVALID_GRANT"]) {
                let failure = refusal(status, &headers, Some(error), None);
                assert_eq!(failure.kind, FailureKind::Terminal, "{status} {error}");
                assert!(failure.message.contains(error), "{}", failure.message);
                assert!(says_sign_in(own_words(&failure)), "{}", failure.message);
            }
            for error in [
                "invalid_client",
                "unauthorized_client",
                "unsupported_grant_type",
                "invalid_scope",
                "invalid_request",
                "incorrect_client_credentials",
                "invalid_target",
                "some_new_code",
            ] {
                let failure = refusal(status, &headers, Some(error), None);
                assert_eq!(failure.kind, FailureKind::Misconfigured, "{status} {error}");
                assert!(failure.message.contains(error), "{}", failure.message);
                assert!(!says_sign_in(&failure.message), "{}", failure.message);
            }
            for error in TRANSIENT_CODES.into_iter().chain(["SLOW_DOWN"]) {
                let failure = refusal(status, &headers, Some(error), None);
                assert_eq!(failure.kind, FailureKind::Transient, "{status} {error}");
            }
        }
    }

    #[test]
    fn refusals_without_an_oauth_error_follow_the_status() {
        let headers = HeaderMap::new();
        let mut challenge = HeaderMap::new();
        challenge.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"token\""),
        );
        for status in [300, 301, 302, 303, 304, 307, 308, 404, 405, 410] {
            let failure = refusal(status, &headers, None, None);
            assert_eq!(failure.kind, FailureKind::Misconfigured, "{status}");
        }
        // A redirect is misconfigured whatever the body says.
        let failure = refusal(307, &headers, Some("invalid_grant"), None);
        assert_eq!(failure.kind, FailureKind::Misconfigured);
        let failure = refusal(401, &challenge, None, None);
        assert_eq!(failure.kind, FailureKind::Misconfigured);
        for status in [100, 200, 204, 400, 401, 402, 403, 407, 415, 451] {
            let failure = refusal(status, &headers, None, None);
            assert_eq!(failure.kind, FailureKind::Transient, "{status}");
        }
    }

    #[test]
    fn messages_name_what_to_fix_and_only_dead_credentials_say_sign_in() {
        let headers = HeaderMap::new();
        let grant = refusal(400, &headers, Some("invalid_grant"), Some("Token expired"));
        assert!(
            grant.message.contains("refresh credential")
                && grant.message.contains("sign in again")
                && grant.message.contains("Token expired"),
            "{}",
            grant.message
        );
        let fixes = [
            (401, Some("invalid_client"), "client secret"),
            (401, Some("invalid_client"), "authentication method"),
            (400, Some("unauthorized_client"), "client id"),
            (400, Some("unsupported_grant_type"), "grant"),
            (400, Some("invalid_scope"), "scope"),
            (400, Some("invalid_request"), "token URL"),
            (404, None, "token URL"),
            (405, None, "token URL"),
        ];
        for (status, error, fix) in fixes {
            let failure = refusal(status, &headers, error, None);
            assert!(failure.message.contains(fix), "{fix}: {}", failure.message);
            assert!(!says_sign_in(&failure.message), "{}", failure.message);
        }
        let mut challenge = HeaderMap::new();
        challenge.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        let unauthorized = refusal(401, &challenge, None, None);
        assert!(
            unauthorized.message.contains("client secret"),
            "{}",
            unauthorized.message
        );
        for status in [403, 407, 400] {
            let failure = refusal(status, &headers, None, None);
            assert!(failure.message.contains("retrying"), "{}", failure.message);
            assert!(!says_sign_in(&failure.message), "{}", failure.message);
        }
    }

    #[test]
    fn a_redirect_names_its_location_without_query_or_user_information() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LOCATION,
            HeaderValue::from_static(
                "https://admin:hunter2@new.example:8443/oauth2/token?client_secret=abc#frag",
            ),
        );
        for status in [301, 302, 303, 307, 308] {
            let failure = refusal(status, &headers, None, None);
            assert_eq!(failure.kind, FailureKind::Misconfigured);
            assert!(
                failure
                    .message
                    .contains("Location https://new.example:8443/oauth2/token)"),
                "{}",
                failure.message
            );
            assert!(
                failure.message.contains("configure the final token URL"),
                "{}",
                failure.message
            );
            for hidden in ["admin", "hunter2", "client_secret", "abc", "frag"] {
                assert!(!failure.message.contains(hidden), "{}", failure.message);
            }
        }
        // A long path is named; a token-like segment of it is not.
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N";
        let mut long = HeaderMap::new();
        long.insert(
            LOCATION,
            HeaderValue::from_str(&format!(
                "https://login.example.net/tenant/oauth2/v2.0/token/{jwt}/x"
            ))
            .expect("a header value"),
        );
        let failure = refusal(308, &long, None, None);
        assert!(
            failure.message.contains(
                "Location https://login.example.net/tenant/oauth2/v2.0/token/[redacted]/x)"
            ),
            "{}",
            failure.message
        );
        let failure = refusal(302, &HeaderMap::new(), None, None);
        assert!(
            failure.message.contains("no Location"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn without_the_credential_sent_a_long_location_is_redacted_whole() {
        // A base64 credential holds `/`: split at `/`, no piece would look like one.
        let credential = "Q7xxxxxx/Abcdefghijklmnopqrstuvwxyz0123456789";
        let mut headers = HeaderMap::new();
        headers.insert(
            LOCATION,
            HeaderValue::from_str(&format!("{credential}?q")).expect("a header value"),
        );
        let failure = Refusal {
            status: StatusCode::FOUND,
            headers: &headers,
            error: None,
            description: None,
            secrets: &[],
            credential_given: false,
        }
        .failure();
        assert!(!failure.message.contains(credential), "{}", failure.message);
        assert!(
            failure.message.contains("Location [redacted])"),
            "{}",
            failure.message
        );
        // A short path is still named.
        headers.insert(
            LOCATION,
            HeaderValue::from_static("https://a.example/oauth2/token?q"),
        );
        let failure = Refusal {
            status: StatusCode::FOUND,
            headers: &headers,
            error: None,
            description: None,
            secrets: &[],
            credential_given: false,
        }
        .failure();
        assert!(
            failure
                .message
                .contains("Location https://a.example/oauth2/token)"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn origin_and_path_drops_query_fragment_and_user_information() {
        for (url, shown) in [
            ("https://auth.example/token", "https://auth.example/token"),
            ("https://u:p@auth.example/t?q=1", "https://auth.example/t"),
            ("HTTPS://u@[::1]:8443/t#f", "HTTPS://[::1]:8443/t"),
            ("//u:p@auth.example/t", "//auth.example/t"),
            ("/oauth2/v2.0/token?x", "/oauth2/v2.0/token"),
            ("token", "token"),
            ("https:u:p@auth.example/t", "https:auth.example/t"),
            ("https://u:p/w@auth.example/t", "https://auth.example/t"),
            ("https:\\\\u:p@auth.example\\t", "https:\\\\auth.example\\t"),
            ("  https://a.example/t  ", "https://a.example/t"),
            ("?only=query", ""),
            ("", ""),
        ] {
            assert_eq!(origin_and_path(url).as_str(), shown, "{url}");
        }
    }

    #[test]
    fn a_location_that_echoes_a_secret_is_not_shown() {
        for (secret, location) in [
            // A secret with the characters that end a path: neither half may show.
            ("s3cret?part@two", "https://new.example/x/s3cret?part@two/y"),
            // A secret that is the start of the fragment: the fragment may not show.
            ("#", "https://new.example/token#frag-Qq7"),
        ] {
            let secret = Secret::new(secret);
            let mut headers = HeaderMap::new();
            headers.insert(LOCATION, HeaderValue::from_static(location));
            let failure = Refusal {
                status: StatusCode::TEMPORARY_REDIRECT,
                headers: &headers,
                error: None,
                description: None,
                secrets: &[&secret],
                credential_given: true,
            }
            .failure();
            assert_eq!(failure.kind, FailureKind::Misconfigured);
            assert!(
                failure
                    .message
                    .contains("(HTTP 307, a Location that holds a credential, not shown)"),
                "{}",
                failure.message
            );
            for hidden in ["s3cret", "two", "frag", "new.example"] {
                assert!(!failure.message.contains(hidden), "{}", failure.message);
            }
        }
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
        for (status, error) in [(503, None), (429, None), (403, None), (407, None)] {
            let failure = refusal(status, &headers, error, None);
            assert_eq!(failure.kind, FailureKind::Transient, "{status}");
            assert_eq!(
                failure.retry_after,
                Some(Duration::from_secs(30)),
                "{status}"
            );
        }
        for (status, error) in [
            (400, Some("invalid_grant")),
            (401, Some("invalid_client")),
            (307, None),
            (404, None),
        ] {
            let failure = refusal(status, &headers, error, None);
            assert_ne!(failure.kind, FailureKind::Transient, "{status}");
            assert_eq!(failure.retry_after, None, "{status}");
        }
    }

    #[test]
    fn clean_redacts_secrets_and_long_tokens() {
        let secret = Secret::new("client-s3cret");
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let text = format!(
            "bad secret client-s3cret, token {jwt}; trace 0b0c1f2e-3d4c-5b6a-7980-a1b2c3d4e5f6\r\nend"
        );
        let cleaned = clean(&text, &[&secret]);
        assert_eq!(
            cleaned,
            "bad secret [redacted], token [redacted]; trace 0b0c1f2e-3d4c-5b6a-7980-a1b2c3d4e5f6  end"
        );
        // A token-like word at the very end, and one before a multi-byte separator.
        assert_eq!(clean(jwt, &[]), "[redacted]");
        assert_eq!(clean(&format!("{jwt}é!"), &[]), "[redacted]é!");
        // Every occurrence, and secrets that overlap the words around them.
        let twice = clean("client-s3cret+client-s3cret", &[&secret]);
        assert_eq!(twice, "[redacted]+[redacted]");
    }

    #[test]
    fn clean_cuts_long_text() {
        let text = "word ".repeat(100);
        let cleaned = clean(&text, &[]);
        assert_eq!(cleaned.chars().count(), MAX_QUOTE + 1);
        assert!(cleaned.ends_with('…'));
        assert_eq!(clean("short", &[]), "short");
        assert_eq!(clean(&"é".repeat(MAX_QUOTE), &[]), "é".repeat(MAX_QUOTE));
    }
}
