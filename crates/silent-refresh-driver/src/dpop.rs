//! DPoP for the driver's own requests (feature `dpop`): the token and sign-in requests'
//! proofs. A proof needs the wall clock and fresh random bytes, which the codec takes
//! as arguments; they are read here.

use silent_refresh::time::SystemTime;

use http::HeaderValue;
use silent_refresh::Secret;
use silent_refresh_oauth2::dpop::{DPOP, DpopSession};

/// A proof of `session`'s key for a `method` request to `url` (with `access_token`, a
/// resource request's), signed now, with a fresh `jti`, as the `DPoP` header's value.
///
/// # Errors
///
/// The proof could not be made (no random bytes, a URL or key the codec refuses), in
/// words.
pub fn proof(
    session: &DpopSession,
    method: &http::Method,
    url: &str,
    access_token: Option<&Secret>,
) -> Result<HeaderValue, String> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut jti = [0u8; 16];
    getrandom::fill(&mut jti).map_err(|e| format!("the random generator failed: {e}"))?;
    let proof = session
        .proof(method.as_str(), url, access_token, now, jti)
        .map_err(|e| e.to_string())?;
    HeaderValue::from_str(&proof).map_err(|e| e.to_string())
}

/// Adds [`proof`] for `request` in its `DPoP` header.
///
/// # Errors
///
/// As [`proof`].
pub fn prove<B>(
    session: &DpopSession,
    request: &mut http::Request<B>,
    access_token: Option<&Secret>,
) -> Result<(), String> {
    let url = request.uri().to_string();
    let value = proof(session, request.method(), &url, access_token)?;
    request.headers_mut().insert(DPOP, value);
    Ok(())
}
