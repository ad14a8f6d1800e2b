//! Origins (scheme, host, port): where a token may be sent.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use http::Uri;

use crate::error::Error;

/// The scheme, host and port of a URL, normalised: lowercase, default port filled in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of an absolute `http` or `https` URL, and the parsed URL.
    pub(crate) fn parse(url: &str) -> Result<(Self, Uri), Error> {
        let uri: Uri = url.parse().map_err(|_| Error::InvalidUrl {
            reason: "it does not parse as a URL",
        })?;
        let origin = Self::of(&uri)?;
        Ok((origin, uri))
    }

    /// The origin of a parsed URL.
    pub(crate) fn of(uri: &Uri) -> Result<Self, Error> {
        let https = match uri.scheme_str() {
            Some(scheme) if scheme.eq_ignore_ascii_case("https") => true,
            Some(scheme) if scheme.eq_ignore_ascii_case("http") => false,
            Some(_) => {
                return Err(Error::InvalidUrl {
                    reason: "its scheme is neither http nor https",
                });
            }
            None => {
                return Err(Error::InvalidUrl {
                    reason: "it is not absolute (no scheme)",
                });
            }
        };
        let authority = uri.authority().ok_or(Error::InvalidUrl {
            reason: "it has no host",
        })?;
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() {
            return Err(Error::InvalidUrl {
                reason: "it has no host",
            });
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Self { https, host, port })
    }

    /// Plain `http`.
    pub(crate) fn is_plain_http(&self) -> bool {
        !self.https
    }

    /// The host is this machine: `localhost` (and its subdomains), 127.0.0.0/8, `::1`.
    pub(crate) fn is_loopback(&self) -> bool {
        let host = self.host.trim_end_matches('.');
        if host == "localhost" || host.ends_with(".localhost") {
            return true;
        }
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            return ip.is_loopback();
        }
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .and_then(|h| h.parse::<Ipv6Addr>().ok())
            .is_some_and(|ip| {
                ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// A URL's origin and path, to recognise the token endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) origin: Origin,
    path: String,
}

impl Endpoint {
    pub(crate) fn parse(url: &str) -> Result<Self, Error> {
        let (origin, uri) = Origin::parse(url)?;
        Ok(Self {
            origin,
            path: normalise_path(uri.path()),
        })
    }

    /// Whether `uri`, of origin `origin`, names this endpoint (query ignored).
    pub(crate) fn matches(&self, origin: &Origin, uri: &Uri) -> bool {
        self.origin == *origin && self.path == normalise_path(uri.path())
    }
}

fn normalise_path(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(url: &str) -> Origin {
        match Origin::parse(url) {
            Ok((origin, _)) => origin,
            Err(error) => panic!("{url}: {error}"),
        }
    }

    #[test]
    fn default_ports_and_case_are_normalised() {
        assert_eq!(
            origin("https://API.Example.com/a?b"),
            origin("https://api.example.com:443/")
        );
        assert_eq!(
            origin("http://example.com/"),
            origin("HTTP://example.com:80")
        );
        assert_ne!(
            origin("https://example.com"),
            origin("http://example.com:443")
        );
        assert_ne!(
            origin("https://example.com"),
            origin("https://example.com:8443")
        );
        assert_eq!(
            origin("https://user:pw@example.com/x").to_string(),
            "https://example.com:443"
        );
    }

    #[test]
    fn loopback_hosts() {
        for url in [
            "http://localhost:8080",
            "http://127.0.0.1:3000",
            "http://127.1.2.3",
            "http://[::1]:9000",
            "http://api.localhost",
        ] {
            assert!(origin(url).is_loopback(), "{url}");
        }
        for url in [
            "http://example.com",
            "http://10.0.0.1",
            "http://localhost.example.com",
            "http://[::2]",
        ] {
            assert!(!origin(url).is_loopback(), "{url}");
        }
    }

    #[test]
    fn rejects_what_is_not_an_http_url() {
        for url in [
            "/relative/path",
            "ftp://example.com/",
            "not a url",
            "https://",
        ] {
            assert!(
                matches!(Origin::parse(url), Err(Error::InvalidUrl { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn endpoint_matches_its_path_only() {
        let endpoint = Endpoint::parse("https://auth.example.com/oauth/token")
            .unwrap_or_else(|e| panic!("{e}"));
        let check = |url: &str| {
            let (origin, uri) = Origin::parse(url).unwrap_or_else(|e| panic!("{e}"));
            endpoint.matches(&origin, &uri)
        };
        assert!(check("https://auth.example.com/oauth/token"));
        assert!(check("https://AUTH.example.com:443/oauth/token/?x=1"));
        assert!(!check("https://auth.example.com/userinfo"));
        assert!(!check("https://api.example.com/oauth/token"));
    }
}
