//! Origins (scheme, host, port) and endpoints: what the bearer middleware compares.

use std::fmt;
use std::net::IpAddr;

use http::Uri;

use crate::error::Error;

/// `scheme://host:port`, with the host in lower case and the port made explicit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin a request goes to; `None` for a URI without an http(s) scheme or
    /// a host (never authorized).
    pub(crate) fn of(uri: &Uri) -> Option<Self> {
        let https = match uri.scheme_str()? {
            s if s.eq_ignore_ascii_case("https") => true,
            s if s.eq_ignore_ascii_case("http") => false,
            _ => return None,
        };
        let authority = uri.authority()?;
        let host = authority.host();
        if host.is_empty() {
            return None;
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Some(Self {
            https,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Parses an origin given by the user: `scheme://host[:port]`, an optional
    /// trailing `/`, nothing else.
    pub(crate) fn parse(text: &str) -> Result<Self, Error> {
        let uri = parse_uri(text)?;
        let invalid = |reason| Error::InvalidOrigin {
            origin: text.to_owned(),
            reason,
        };
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(invalid("it holds user information"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(invalid(
                "it has a path or a query; an origin is only scheme, host and port",
            ));
        }
        Self::of_parsed(text, &uri)
    }

    /// The origin of a full URL (path and query allowed).
    pub(crate) fn parse_url(text: &str) -> Result<Self, Error> {
        Self::of_parsed(text, &parse_uri(text)?)
    }

    fn of_parsed(text: &str, uri: &Uri) -> Result<Self, Error> {
        Self::of(uri).ok_or_else(|| Error::InvalidOrigin {
            origin: text.to_owned(),
            reason: "it needs an http or https scheme and a host",
        })
    }

    pub(crate) fn is_https(&self) -> bool {
        self.https
    }

    /// `localhost`, `127.0.0.0/8` or `::1`: plain http never leaves the machine.
    pub(crate) fn is_loopback(&self) -> bool {
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        bare == "localhost"
            || bare.ends_with(".localhost")
            || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// An origin and a path: a URL without its query, such as the token endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    origin: Origin,
    path: String,
}

impl Endpoint {
    pub(crate) fn parse(text: &str) -> Result<Self, Error> {
        let uri = parse_uri(text)?;
        Ok(Self {
            origin: Origin::of_parsed(text, &uri)?,
            path: normalize_path(uri.path()),
        })
    }

    /// Whether a request for `uri` goes to this endpoint (whatever its query).
    pub(crate) fn matches(&self, origin: &Origin, uri: &Uri) -> bool {
        self.origin == *origin && self.path == normalize_path(uri.path())
    }
}

fn parse_uri(text: &str) -> Result<Uri, Error> {
    text.parse().map_err(|_| Error::InvalidOrigin {
        origin: text.to_owned(),
        reason: "it is not a URL",
    })
}

/// `""` and `"/"` are the same path; so are `/token` and `/token/`.
fn normalize_path(path: &str) -> String {
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

    fn uri(text: &str) -> Uri {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn same_origin_needs_same_scheme_host_and_port() {
        let allowed = Origin::parse("https://API.example.com").expect("valid");
        let same = [
            "https://api.example.com/v1/items?x=1",
            "https://api.example.com:443/",
            "HTTPS://api.EXAMPLE.com",
        ];
        for text in same {
            assert_eq!(Origin::of(&uri(text)).as_ref(), Some(&allowed), "{text}");
        }
        let other = [
            "http://api.example.com/",
            "https://api.example.com:8443/",
            "https://api.example.com.evil.test/",
            "https://evil.test/?https://api.example.com",
            "https://user@evil.test/",
        ];
        for text in other {
            assert_ne!(Origin::of(&uri(text)).as_ref(), Some(&allowed), "{text}");
        }
    }

    #[test]
    fn origins_with_more_than_an_origin_are_refused() {
        for text in [
            "https://api.example.com/v1",
            "https://api.example.com?q=1",
            "https://user:pw@api.example.com",
            "ftp://api.example.com",
            "api.example.com",
            "not a url",
        ] {
            assert!(
                matches!(Origin::parse(text), Err(Error::InvalidOrigin { .. })),
                "{text}"
            );
        }
    }

    #[test]
    fn loopback_hosts() {
        for text in [
            "http://localhost:8080",
            "http://127.0.0.1",
            "http://[::1]:3000",
            "http://127.1.2.3",
        ] {
            assert!(Origin::parse(text).expect("valid").is_loopback(), "{text}");
        }
        for text in [
            "http://example.com",
            "http://10.0.0.1",
            "http://localhost.example.com",
        ] {
            assert!(!Origin::parse(text).expect("valid").is_loopback(), "{text}");
        }
    }

    #[test]
    fn endpoint_ignores_query_and_trailing_slash() {
        let endpoint = Endpoint::parse("https://auth.example.com/oauth/token").expect("valid");
        let origin = |text: &str| Origin::of(&uri(text)).expect("origin");
        for text in [
            "https://auth.example.com/oauth/token",
            "https://auth.example.com/oauth/token/?a=b",
        ] {
            assert!(endpoint.matches(&origin(text), &uri(text)), "{text}");
        }
        let other = "https://auth.example.com/oauth/userinfo";
        assert!(!endpoint.matches(&origin(other), &uri(other)));
    }
}
