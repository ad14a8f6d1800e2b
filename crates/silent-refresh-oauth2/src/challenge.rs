//! What a resource's answer means for the token that was sent with it, read from its
//! status and its `WWW-Authenticate` challenges (RFC 6750 §3, RFC 9470, RFC 9449 §9,
//! with RFC 9110's challenge syntax): the one rule every HTTP integration applies
//! after sending a request with a token.
//!
//! ```
//! use http::{HeaderMap, HeaderValue, StatusCode};
//! use silent_refresh_oauth2::challenge::{ResourceVerdict, resource_verdict};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("www-authenticate", HeaderValue::from_static(
//!     r#"Bearer error="insufficient_scope", scope="invoices:write""#));
//! assert_eq!(
//!     resource_verdict(StatusCode::FORBIDDEN, &headers),
//!     ResourceVerdict::InsufficientScope { scope: Some("invoices:write".to_owned()) }
//! );
//! assert_eq!(resource_verdict(StatusCode::UNAUTHORIZED, &HeaderMap::new()), ResourceVerdict::Rejected);
//! assert_eq!(resource_verdict(StatusCode::OK, &headers), ResourceVerdict::Accepted);
//! ```

use http::header::WWW_AUTHENTICATE;
use http::{HeaderMap, StatusCode};

/// What a resource's answer says about the token sent with it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceVerdict {
    /// Nothing about the token: a success, an error of the API's own, or a `403`
    /// without a token error (the API's authorization decision, not the token's).
    Accepted,
    /// The token was rejected (`401` with `invalid_token`, or a `401` that names no
    /// other error): report the rejection (the current token's starts one refresh) and
    /// send the request once more with the next token.
    Rejected,
    /// The token lacks a scope the request needs (`insufficient_scope`, on a `403` or a
    /// `401`): no refresh gives it one; the program must ask for that scope (a new
    /// sign-in, or a token for another key).
    InsufficientScope {
        /// The scope the server asked for, if it said.
        scope: Option<String>,
    },
    /// The server wants a stronger or fresher sign-in (RFC 9470
    /// `insufficient_user_authentication`): no refresh gives one; the program must
    /// start a sign-in asking for it.
    StepUpRequired {
        /// The authentication context classes the server accepts, if it said.
        acr_values: Option<String>,
        /// How recent the sign-in must be, in seconds, if the server said.
        max_age: Option<u64>,
    },
    /// A DPoP resource server's nonce challenge (RFC 9449 §9): send the request once
    /// more with a new proof carrying this nonce; no refresh, no rejection.
    UseDpopNonce(String),
}

/// What `status` and `headers` (the resource's `WWW-Authenticate` challenges, one
/// header or several) say about the token that was sent.
#[must_use]
pub fn resource_verdict(status: StatusCode, headers: &HeaderMap) -> ResourceVerdict {
    if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
        return ResourceVerdict::Accepted;
    }
    #[cfg(any(feature = "dpop", feature = "dpop-rustcrypto"))]
    if let Some(nonce) = crate::dpop::resource_nonce_challenge(status, headers) {
        return ResourceVerdict::UseDpopNonce(nonce);
    }
    let challenges: Vec<Challenge> = headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Challenge::parse_all)
        .collect();
    let with_error = |code: &str| {
        challenges.iter().find(|challenge| {
            challenge
                .param("error")
                .is_some_and(|error| error.eq_ignore_ascii_case(code))
        })
    };
    if let Some(challenge) = with_error("insufficient_scope") {
        return ResourceVerdict::InsufficientScope {
            scope: challenge.param("scope").map(str::to_owned),
        };
    }
    if let Some(challenge) = with_error("insufficient_user_authentication") {
        return ResourceVerdict::StepUpRequired {
            acr_values: challenge.param("acr_values").map(str::to_owned),
            max_age: challenge
                .param("max_age")
                .and_then(|age| age.trim().parse().ok()),
        };
    }
    if status == StatusCode::UNAUTHORIZED {
        ResourceVerdict::Rejected
    } else {
        ResourceVerdict::Accepted
    }
}

/// `tchar` (RFC 9110 §5.6.2).
pub(crate) fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// One challenge of a `WWW-Authenticate` header (RFC 9110 §11.6.1): a scheme, then a
/// `token68` or auth-params (`name=token` or `name="quoted string"`).
///
/// ```
/// use silent_refresh_oauth2::challenge::Challenge;
///
/// let all = Challenge::parse_all(r#"Bearer realm="x", DPoP algs="ES256 EdDSA", error="invalid_token""#);
/// assert_eq!(all.len(), 2);
/// assert_eq!(all[0].scheme(), "Bearer");
/// assert_eq!(all[0].param("realm"), Some("x"));
/// assert_eq!(all[1].scheme(), "DPoP");
/// assert_eq!(all[1].param("ALGS"), Some("ES256 EdDSA"));
/// assert_eq!(all[1].param("error"), Some("invalid_token"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    scheme: String,
    token68: Option<String>,
    params: Vec<(String, String)>,
}

impl Challenge {
    /// The challenges of one `WWW-Authenticate` value, in order. Lenient: what does not
    /// parse is skipped up to the next comma, an auth-param before any scheme is
    /// dropped, and a value with no challenge gives none.
    #[must_use]
    pub fn parse_all(value: &str) -> Vec<Self> {
        let mut parser = Parser {
            bytes: value.as_bytes(),
            at: 0,
        };
        let mut challenges: Vec<Self> = Vec::new();
        loop {
            parser.skip(|b| b == b',' || is_ows(b));
            if parser.at >= parser.bytes.len() {
                break;
            }
            let Some(name) = parser.token() else {
                parser.skip_to_comma();
                continue;
            };
            let after_name = parser.at;
            parser.skip(is_ows);
            if parser.peek() == Some(b'=') {
                // `name = value`: an auth-param of the current challenge.
                parser.at += 1;
                parser.skip(is_ows);
                let value = if parser.peek() == Some(b'"') {
                    parser.quoted()
                } else {
                    parser.token().map(str::to_owned)
                };
                match (value, challenges.last_mut()) {
                    (Some(value), Some(current)) if current.token68.is_none() => {
                        current.params.push((name.to_ascii_lowercase(), value));
                    }
                    (None, _) => parser.skip_to_comma(),
                    _ => {}
                }
                continue;
            }
            // A new challenge: its scheme, then maybe a token68.
            parser.at = after_name;
            let mut challenge = Self {
                scheme: name.to_owned(),
                token68: None,
                params: Vec::new(),
            };
            if parser.peek() == Some(b' ') {
                parser.skip(|b| b == b' ');
                challenge.token68 = parser.token68();
            }
            challenges.push(challenge);
        }
        challenges
    }

    /// The auth scheme, as sent (compare it ignoring case).
    #[must_use]
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The value of the auth-param `name` (matched ignoring case; quotes and escapes
    /// removed), the first if it is repeated.
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The auth-params, names in lower case, in order.
    #[must_use]
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The `token68` of a challenge that has one instead of auth-params.
    #[must_use]
    pub fn token68(&self) -> Option<&str> {
        self.token68.as_deref()
    }
}

/// Optional whitespace.
fn is_ows(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// A cursor over a header value.
struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip(&mut self, what: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&what) {
            self.at += 1;
        }
    }

    /// Skips past the next comma outside a quoted string.
    fn skip_to_comma(&mut self) {
        while let Some(byte) = self.peek() {
            match byte {
                b',' => return,
                b'"' => {
                    let _ = self.quoted();
                }
                _ => self.at += 1,
            }
        }
    }

    /// `1*tchar`.
    fn token(&mut self) -> Option<&'a str> {
        let start = self.at;
        self.skip(is_tchar);
        (self.at > start)
            .then(|| std::str::from_utf8(&self.bytes[start..self.at]).ok())
            .flatten()
    }

    /// `token68`, only when nothing but whitespace, a comma or the end follows it
    /// (otherwise it was the name of an auth-param, and the cursor does not move).
    fn token68(&mut self) -> Option<String> {
        let start = self.at;
        self.skip(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
        if self.at == start {
            return None;
        }
        self.skip(|b| b == b'=');
        let end = self.at;
        self.skip(is_ows);
        if matches!(self.peek(), None | Some(b',')) {
            std::str::from_utf8(&self.bytes[start..end])
                .ok()
                .map(str::to_owned)
        } else {
            self.at = start;
            None
        }
    }

    /// A quoted string (the cursor on its opening quote), unescaped. An unterminated
    /// one runs to the end and is refused.
    fn quoted(&mut self) -> Option<String> {
        self.at += 1;
        let mut value = Vec::new();
        while let Some(byte) = self.peek() {
            self.at += 1;
            match byte {
                b'"' => return String::from_utf8(value).ok(),
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        value.push(escaped);
                        self.at += 1;
                    }
                }
                other => value.push(other),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn challenged(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(WWW_AUTHENTICATE, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn a_401_is_a_rejection_unless_it_names_another_error() {
        let unauthorized = StatusCode::UNAUTHORIZED;
        for values in [
            &[][..],
            &[r#"Bearer realm="api""#][..],
            &[r#"Bearer error="invalid_token", error_description="expired""#][..],
            &["Basic realm=x", r#"Bearer error="invalid_token""#][..],
        ] {
            assert_eq!(
                resource_verdict(unauthorized, &challenged(values)),
                ResourceVerdict::Rejected,
                "{values:?}"
            );
        }
    }

    #[test]
    fn scope_and_step_up_name_what_the_program_must_ask_for() {
        let scope = challenged(&[r#"Bearer error="insufficient_scope", scope="a b""#]);
        for status in [StatusCode::FORBIDDEN, StatusCode::UNAUTHORIZED] {
            assert_eq!(
                resource_verdict(status, &scope),
                ResourceVerdict::InsufficientScope {
                    scope: Some("a b".to_owned())
                }
            );
        }
        let step_up = challenged(&[
            r#"Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="myACR", max_age="5""#,
        ]);
        assert_eq!(
            resource_verdict(StatusCode::UNAUTHORIZED, &step_up),
            ResourceVerdict::StepUpRequired {
                acr_values: Some("myACR".to_owned()),
                max_age: Some(5)
            }
        );
    }

    #[test]
    fn a_plain_403_and_other_statuses_say_nothing_about_the_token() {
        let none = HeaderMap::new();
        for status in [StatusCode::OK, StatusCode::FORBIDDEN, StatusCode::NOT_FOUND] {
            assert_eq!(resource_verdict(status, &none), ResourceVerdict::Accepted);
        }
        let invalid = challenged(&[r#"Bearer error="invalid_token""#]);
        assert_eq!(
            resource_verdict(StatusCode::FORBIDDEN, &invalid),
            ResourceVerdict::Accepted
        );
    }

    #[cfg(any(feature = "dpop", feature = "dpop-rustcrypto"))]
    #[test]
    fn a_dpop_nonce_challenge_is_a_resend_not_a_rejection() {
        let mut headers = challenged(&[r#"DPoP error="use_dpop_nonce""#]);
        headers.insert("dpop-nonce", HeaderValue::from_static("n-1"));
        assert_eq!(
            resource_verdict(StatusCode::UNAUTHORIZED, &headers),
            ResourceVerdict::UseDpopNonce("n-1".to_owned())
        );
    }
}
