//! A resource request's DPoP proof (feature `dpop`): it needs the wall clock and fresh
//! random bytes, which the codec takes as arguments; they are read here.

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use silent_refresh::AccessToken;
use silent_refresh_oauth2::dpop::DpopSession;

/// A proof of `session`'s key for a `method` request to `url`, carrying `token`'s hash
/// (`ath`), signed now with a fresh `jti`; `Err` when it cannot be made (no URL, no
/// random bytes, a URL or key the codec refuses), in which case the request is not
/// sent.
pub(crate) fn proof(
    session: &DpopSession,
    method: &http::Method,
    url: Option<&str>,
    token: &AccessToken,
) -> Result<HeaderValue, ()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // The URL is there for a source with a DPoP key, the only one that proves.
    let url = url.ok_or(())?;
    let mut jti = [0u8; 16];
    getrandom::fill(&mut jti).map_err(|_| ())?;
    let proof = session
        .proof(method.as_str(), url, Some(&token.secret), now, jti)
        .map_err(|error| tracing::warn!(%error, "no DPoP proof for the request"))?;
    HeaderValue::from_str(&proof).map_err(|_| ())
}
