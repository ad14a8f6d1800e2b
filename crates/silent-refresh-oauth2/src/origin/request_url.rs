//! A request's URL, read once for the origin policy and the routes.

use http::Uri;

use crate::Error;

/// A request's URL as the policy and the routes read it: whether it is `https`, its
/// host, its port (the scheme's default made explicit) and its path, borrowed from the
/// URL it was read from. An integration reads it once per request and asks the policy
/// ([`OriginPolicy::permits_url`](crate::origin::OriginPolicy::permits_url)) and the routes
/// ([`Routes::select_url`](crate::routes::Routes::select_url)) with it, without
/// parsing the URL again or allocating.
///
/// Read it from an [`http::Uri`] ([`RequestUrl::of`]), from a `url::Url` (feature
/// `url`, [`RequestUrl::of_url`]: what reqwest's requests hold), or from the parts of
/// any other URL type ([`RequestUrl::from_parts`]). Its `Debug` shows the path, never
/// a query or user information.
///
/// ```
/// use silent_refresh_oauth2::origin::RequestUrl;
///
/// let uri: http::Uri = "HTTPS://API.example.com/v1/me?page=2".parse().unwrap();
/// let url = RequestUrl::of(&uri)?;
/// assert_eq!((url.is_https(), url.port(), url.path()), (true, 443, "/v1/me"));
/// assert_eq!(url, RequestUrl::from_parts("https", "API.example.com", None, "/v1/me")?);
/// # Ok::<(), silent_refresh_oauth2::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestUrl<'a> {
    pub(super) https: bool,
    pub(super) host: &'a str,
    pub(super) port: u16,
    pub(super) path: &'a str,
}

impl<'a> RequestUrl<'a> {
    /// Reads a parsed URL.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] when `uri` is not absolute, its scheme is neither `http`
    /// nor `https`, or it has no host.
    pub fn of(uri: &'a Uri) -> Result<Self, Error> {
        let (host, port) = uri
            .authority()
            .map_or(("", None), |authority| host_and_port(authority.as_str()));
        Self::from_parts(uri.scheme_str().unwrap_or(""), host, port, uri.path())
    }

    /// Reads a URL parsed by the `url` crate (reqwest's `Url`), as [`of`](Self::of)
    /// reads the same URL written out and parsed as an [`http::Uri`].
    ///
    /// # Errors
    ///
    /// As [`of`](Self::of).
    #[cfg(feature = "url")]
    pub fn of_url(url: &'a url::Url) -> Result<Self, Error> {
        Self::from_parts(
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port(),
            url.path(),
        )
    }

    /// The URL of these parts: `scheme` (`""`: none), `host` as the URL's authority
    /// writes it (IPv6 in brackets; `""`: none), `port` (`None`: the scheme's
    /// default) and `path`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] when there is no scheme, it is neither `http` nor `https`,
    /// or there is no host.
    pub fn from_parts(
        scheme: &str,
        host: &'a str,
        port: Option<u16>,
        path: &'a str,
    ) -> Result<Self, Error> {
        let https = match scheme {
            "" => Err("it is not absolute (no scheme)"),
            s if s.eq_ignore_ascii_case("https") => Ok(true),
            s if s.eq_ignore_ascii_case("http") => Ok(false),
            _ => Err("its scheme is neither http nor https"),
        }
        .map_err(|reason| Error::InvalidUrl { reason })?;
        if host.is_empty() {
            return Err(Error::InvalidUrl {
                reason: "it has no host",
            });
        }
        let port = port.unwrap_or(if https { 443 } else { 80 });
        Ok(Self {
            https,
            host,
            port,
            path,
        })
    }

    /// Whether the scheme is `https` (`false`: `http`).
    #[must_use]
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The host, as the URL writes it (IPv6 in brackets, case kept).
    #[must_use]
    pub fn host(&self) -> &'a str {
        self.host
    }

    /// The port, the scheme's default made explicit.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path.
    #[must_use]
    pub fn path(&self) -> &'a str {
        self.path
    }
}

/// The host and the port of an authority (`user@host:port`), as
/// [`Authority::host`](http::uri::Authority::host) and
/// [`Authority::port_u16`](http::uri::Authority::port_u16) read them, in one pass over
/// its bytes (half their time: every authorized request reads them).
fn host_and_port(authority: &str) -> (&str, Option<u16>) {
    let bytes = authority.as_bytes();
    let start = bytes
        .iter()
        .rposition(|&b| b == b'@')
        .map_or(0, |at| at + 1);
    let host_port = &authority[start..];
    let host_end = if host_port.starts_with('[') {
        host_port.bytes().position(|b| b == b']').map(|end| end + 1)
    } else {
        host_port.bytes().position(|b| b == b':')
    };
    let host = &host_port[..host_end.unwrap_or(host_port.len())];
    let port = bytes
        .iter()
        .rposition(|&b| b == b':')
        .and_then(|colon| authority[colon + 1..].parse().ok());
    (host, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authority_reads_as_http_reads_it() {
        for url in [
            "https://api.example.com/v1",
            "HTTPS://API.Example.COM:8443/v1?x=1",
            "http://user:pw@127.0.0.1:8080/",
            "http://a@b:pw@127.0.0.1/",
            "http://[::1]:8080/",
            "http://[::1]/",
            "http://user@[::1]/x",
            "https://api.example.com:99999/",
            "https://api.example.com:/",
        ] {
            let Ok(uri) = url.parse::<Uri>() else {
                continue;
            };
            let authority = uri.authority().expect("an authority");
            let read = RequestUrl::of(&uri).expect("an http(s) URL");
            let default = if read.is_https() { 443 } else { 80 };
            assert_eq!(read.host(), authority.host(), "{url}");
            assert_eq!(
                read.port(),
                authority.port_u16().unwrap_or(default),
                "{url}"
            );
            assert_eq!(read.path(), uri.path(), "{url}");
        }
    }

    #[test]
    fn what_is_not_an_http_url_is_refused_with_why() {
        let reason = |url: &str| match RequestUrl::of(&url.parse::<Uri>().expect("a URI")) {
            Err(Error::InvalidUrl { reason }) => reason,
            other => panic!("{url}: {other:?}"),
        };
        assert_eq!(reason("/relative"), "it is not absolute (no scheme)");
        assert_eq!(
            reason("ftp://example.com/"),
            "its scheme is neither http nor https"
        );
        assert!(RequestUrl::from_parts("https", "", None, "/").is_err());
    }
}
