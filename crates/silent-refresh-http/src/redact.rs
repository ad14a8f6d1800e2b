//! The caller's errors, with no URL's query, fragment or user in their text: what
//! [`AuthorizedClient::send`](crate::AuthorizedClient::send) passes on.

use http::Uri;

/// The caller's error, with no URL's query, fragment or user in its text (see
/// [`AuthorizedClient::send`](crate::AuthorizedClient::send)).
pub(crate) fn send_error(
    error: Box<dyn std::error::Error + Send + Sync>,
    uri: &Uri,
) -> Box<dyn std::error::Error + Send + Sync> {
    #[cfg(feature = "reqwest")]
    let error: Box<dyn std::error::Error + Send + Sync> = match error.downcast::<reqwest::Error>() {
        Ok(error) => Box::new(error.without_url()),
        Err(other) => other,
    };
    let query = uri.query().filter(|q| !q.is_empty());
    let text = chain(&*error);
    let debug = format!("{error:?}");
    let redacted = redact_urls(&text, query);
    if redacted == text && redact_urls(&debug, query) == debug {
        return error;
    }
    Box::new(Redacted(redacted))
}

/// An error's text and its sources', joined with `: `.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `text` with every `http://` or `https://` URL in it cut to its origin and path, and
/// `query` (the request's) replaced by `[redacted]` wherever it still shows.
fn redact_urls(text: &str, query: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = find_url(rest) {
        out.push_str(&rest[..start]);
        let url = &rest[start..];
        let end = url
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | ')'))
            .unwrap_or(url.len());
        out.push_str(&origin_and_path(&url[..end]));
        rest = &url[end..];
    }
    out.push_str(rest);
    match query {
        Some(query) => out.replace(query, "[redacted]"),
        None => out,
    }
}

/// Where the first `http://` or `https://` (in any case) starts in `text`.
fn find_url(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    [lower.find("http://"), lower.find("https://")]
        .into_iter()
        .flatten()
        .min()
}

/// An absolute URL without its user, query and fragment.
fn origin_and_path(url: &str) -> String {
    let url = &url[..url.find(['?', '#']).unwrap_or(url.len())];
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));
    let host = authority.rsplit('@').next().unwrap_or(authority);
    format!("{scheme}://{host}{path}")
}

/// The caller's error, as text with its URLs cut to origin and path: its type and
/// sources are gone, since they could print the full URL.
struct Redacted(String);

impl std::fmt::Display for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Redacted").field(&self.0).finish()
    }
}

impl std::error::Error for Redacted {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_error_text_keep_origin_and_path_only() {
        let text = "GET https://alice:pw@API.example.com:8443/v1/me?api_key=k3y#f failed \
                    (redirect to http://other.example/x?code=c0de); body: \"api_key=k3y\"";
        assert_eq!(
            redact_urls(text, Some("api_key=k3y")),
            "GET https://API.example.com:8443/v1/me failed (redirect to \
             http://other.example/x); body: \"[redacted]\""
        );
        assert_eq!(redact_urls("no url here", None), "no url here");
        assert_eq!(redact_urls("HTTPS://h/p?q", None), "HTTPS://h/p");
    }

    #[derive(Debug)]
    struct Failed(String);

    impl std::fmt::Display for Failed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "could not send to {}", self.0)
        }
    }

    impl std::error::Error for Failed {}

    #[test]
    fn a_callers_error_naming_the_url_is_redacted_and_one_without_is_kept() {
        let uri: Uri = "https://api.example.com/v1/me?token=s3cret"
            .parse()
            .expect("a URL");
        let error = send_error(Box::new(Failed(uri.to_string())), &uri);
        let text = format!("{error} {error:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("https://api.example.com/v1/me"), "{text}");

        let inner = send_error(Box::new(std::io::Error::other("connection reset")), &uri);
        assert!(
            inner.downcast_ref::<std::io::Error>().is_some(),
            "kept as it was"
        );
    }
}
