//! A redirect's `Location`, cut down to what may be shown.

use http::HeaderValue;
use http::header::LOCATION;

/// Replaces a redirect's `Location` with its origin and path only (a query or a user
/// may hold secrets), made absolute against the token URL when it is a path, so the
/// failure names where the server pointed and nothing more. Refreshers call it on a
/// `3xx` answer before [`RefreshGrant::parse_response_for`](super::RefreshGrant::parse_response_for)
/// (which cleans what it quotes too: this is the second safeguard).
pub fn redact_location(headers: &mut http::HeaderMap, token_url: &str) {
    let Some(location) = headers.get(LOCATION).and_then(|l| l.to_str().ok()) else {
        headers.remove(LOCATION);
        return;
    };
    match HeaderValue::try_from(origin_and_path(location, token_url)) {
        Ok(value) => {
            headers.insert(LOCATION, value);
        }
        Err(_) => {
            headers.remove(LOCATION);
        }
    }
}

/// `location` as `scheme://host[:port]/path`: no user, query or fragment. A relative
/// location is resolved against `base` when it is a path (`/…`) or scheme-relative
/// (`//host/…`); any other relative form is shown as its path alone.
pub(crate) fn origin_and_path(location: &str, base: &str) -> String {
    let location = location.trim();
    let cut = location.find(['?', '#']).unwrap_or(location.len());
    let location = &location[..cut];
    let base_scheme = base.split_once("://").map_or("https", |(scheme, _)| scheme);
    let (scheme, rest) = if let Some((scheme, rest)) = location.split_once("://") {
        (scheme, rest)
    } else if let Some(rest) = location.strip_prefix("//") {
        (base_scheme, rest)
    } else if location.starts_with('/') {
        let authority = base
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
            .unwrap_or_default();
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        return format!("{base_scheme}://{authority}{location}");
    } else {
        return location.to_owned();
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));
    let host = authority.rsplit('@').next().unwrap_or(authority);
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_keep_origin_and_path_only() {
        let base = "https://auth.example.com/oauth/token";
        for (location, shown) in [
            (
                "https://other.example/token?code=s3cret#frag",
                "https://other.example/token",
            ),
            (
                "https://user:pass@other.example:8443/t?x=1",
                "https://other.example:8443/t",
            ),
            (
                "/v2/token?refresh_token=s3cret",
                "https://auth.example.com/v2/token",
            ),
            ("//cdn.example/token?x", "https://cdn.example/token"),
            ("http://other.example", "http://other.example"),
            ("token?x=1", "token"),
        ] {
            assert_eq!(origin_and_path(location, base), shown, "{location}");
        }
    }

    #[test]
    fn the_redacted_location_replaces_the_header() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            LOCATION,
            HeaderValue::from_static("https://u:p@x.example/a?refresh_token=s3cret"),
        );
        redact_location(&mut headers, "https://auth.example.com/token");
        assert_eq!(headers[LOCATION], "https://x.example/a");
    }
}
