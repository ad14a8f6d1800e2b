//! Nonce challenges (RFC 9449 §8 and §9) and the `WWW-Authenticate` syntax they come
//! in (RFC 9110 §11.6.1).

use http::header::WWW_AUTHENTICATE;
use http::{HeaderMap, StatusCode};

use super::nonce::nonce_header;
use crate::challenge::Challenge;

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
