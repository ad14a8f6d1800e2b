//! Nonce challenges (RFC 9449 §8 and §9) and the `WWW-Authenticate` syntax they come
//! in (RFC 9110 §11.6.1).

use http::header::WWW_AUTHENTICATE;
use http::{HeaderMap, StatusCode};

use super::nonce::nonce_header;
use super::proof::is_tchar;

/// The error code of a nonce challenge.
const USE_DPOP_NONCE: &str = "use_dpop_nonce";

/// A token endpoint's nonce challenge (RFC 9449 §8): `400` with the OAuth error
/// `use_dpop_nonce` (in a JSON or form body) and a valid `DPoP-Nonce` header. Returns
/// the nonce: the server refused the request before looking at the grant, so the same
/// request is sent again at once, with a new proof carrying this nonce, as part of the
/// same exchange (same credential, not a failure, not a second exchange).
///
/// Resend once per exchange. The exchange loop counts: if the answer to the resent
/// request is a challenge again, it is not asked here but read as any answer
/// ([`RefreshGrant::parse_response`](crate::RefreshGrant::parse_response)), where
/// `use_dpop_nonce` is a transient failure (retried later with the newest nonce),
/// never a dead credential. Any other answer (`None` here) is read as usual too.
///
/// ```
/// use silent_refresh_oauth2::dpop::{NonceCache, token_nonce_challenge};
/// # let token_url = "https://as.example.com/token";
/// # let send = |_proof_nonce: Option<&str>| {
/// #     http::Response::builder().status(400).header("dpop-nonce", "n-1")
/// #         .body(br#"{"error":"use_dpop_nonce"}"#.to_vec()).expect("response")
/// # };
/// let mut nonces = NonceCache::new();
/// let mut answer = send(nonces.get(token_url));
/// nonces.observe(token_url, answer.headers());
/// if let Some(nonce) = token_nonce_challenge(answer.status(), answer.headers(), answer.body()) {
///     // Once, at once, with a new proof carrying `nonce`.
///     answer = send(Some(&nonce));
///     nonces.observe(token_url, answer.headers());
/// }
/// // Then `answer` goes to RefreshGrant::parse_response, whatever it is.
/// # let _ = answer;
/// ```
#[must_use]
pub fn token_nonce_challenge(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<String> {
    if status != StatusCode::BAD_REQUEST {
        return None;
    }
    let nonce = nonce_header(headers)?;
    let code = crate::response::oauth_error_code(headers, body)?;
    code.eq_ignore_ascii_case(USE_DPOP_NONCE).then_some(nonce)
}

/// A resource server's nonce challenge (RFC 9449 §9): `401` with a `DPoP` challenge
/// whose `error` is `use_dpop_nonce` in a `WWW-Authenticate` header (among other
/// challenges, in one header or several) and a valid `DPoP-Nonce`. Returns the nonce:
/// send the request once more with a new proof carrying it, with no refresh and no
/// rejection reported to the state machine. A second challenge in a row, and any other
/// `401`, is a rejection as usual.
///
/// ```
/// use silent_refresh_oauth2::dpop::resource_nonce_challenge;
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("www-authenticate", http::HeaderValue::from_static(
///     r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#));
/// headers.insert("dpop-nonce", http::HeaderValue::from_static("eyJ7S_zG.eyJH0-Z.HX4w-7v"));
/// assert_eq!(
///     resource_nonce_challenge(http::StatusCode::UNAUTHORIZED, &headers).as_deref(),
///     Some("eyJ7S_zG.eyJH0-Z.HX4w-7v")
/// );
/// ```
#[must_use]
pub fn resource_nonce_challenge(status: StatusCode, headers: &HeaderMap) -> Option<String> {
    if status != StatusCode::UNAUTHORIZED {
        return None;
    }
    let nonce = nonce_header(headers)?;
    let challenged = headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Challenge::parse_all)
        .any(|challenge| {
            challenge.scheme().eq_ignore_ascii_case("DPoP")
                && challenge
                    .param("error")
                    .is_some_and(|e| e.eq_ignore_ascii_case(USE_DPOP_NONCE))
        });
    challenged.then_some(nonce)
}

/// One challenge of a `WWW-Authenticate` header (RFC 9110 §11.6.1): a scheme, then a
/// `token68` or auth-params (`name=token` or `name="quoted string"`).
///
/// ```
/// use silent_refresh_oauth2::dpop::Challenge;
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
