//! Discovery: from an issuer URL, the authorization server's metadata (RFC 8414,
//! OpenID Connect Discovery 1.0), sans-IO.
//!
//! Where the document is (for the issuer `https://login.example.com/tenant`):
//!
//! | [`WellKnown`] | URL |
//! |---|---|
//! | [`OpenIdConnect`](WellKnown::OpenIdConnect) | `https://login.example.com/tenant/.well-known/openid-configuration` (appended, OpenID Connect Discovery §4) |
//! | [`OAuth`](WellKnown::OAuth) | `https://login.example.com/.well-known/oauth-authorization-server/tenant` (inserted between host and path, RFC 8414 §3.1) |
//!
//! A terminating `/` of the issuer's path is removed first (both specifications say
//! so); for an issuer without a path the two differ only in their last segment.
//!
//! [`Discovery`] asks for the OpenID Connect document first (every provider this
//! library is tested against serves it; Microsoft Entra ID and Google serve no other),
//! then the RFC 8414 one when the first URL holds no document (a `3xx` or `4xx`, or a
//! `2xx` that is not a JSON object, such as a web application's catch-all page). A
//! `5xx` or `429` stops it: the server is there, but failing (transient).
//!
//! The document is checked as both specifications say: its `issuer` must be the
//! issuer asked for (RFC 8414 §3.3, OpenID Connect Discovery §4.3). The comparison
//! is of strings, after no normalisation but RFC 3986's syntax- and scheme-based
//! equivalences for `http(s)` (§6.2.2.1 case of scheme and host, §6.2.3 a default
//! port and an empty path being `/`): `https://Tenant.example.com` matches a document
//! that says `https://tenant.example.com/`, while `https://host/realms/a/` does not
//! match `https://host/realms/a`. Its endpoints follow the token exchange's scheme
//! rule: `https`, or plain `http` to a loopback host, or anywhere when allowed. A
//! redirect is never followed: the error names its `Location` as origin and path.
//!
//! ```
//! use silent_refresh_oauth2::{Discovery, WellKnown};
//!
//! let mut discovery = Discovery::new("https://login.example.com")?;
//! let request = discovery.request()?;
//! assert_eq!(request.uri(), "https://login.example.com/.well-known/openid-configuration");
//!
//! // The server has no OpenID Connect document: try RFC 8414's.
//! let missing = http::Response::builder().status(404).body(Vec::new())?;
//! assert!(discovery.handle_response(&missing)?.is_none());
//! let request = discovery.request()?;
//! assert_eq!(request.uri(), "https://login.example.com/.well-known/oauth-authorization-server");
//! assert_eq!(discovery.current(), WellKnown::OAuth);
//!
//! let document = r#"{"issuer":"https://login.example.com",
//!     "token_endpoint":"https://login.example.com/token",
//!     "device_authorization_endpoint":"https://login.example.com/device"}"#;
//! let found = http::Response::builder().status(200).body(document.as_bytes().to_vec())?;
//! let metadata = discovery.handle_response(&found)?.expect("a document");
//! assert_eq!(metadata.token_endpoint(), "https://login.example.com/token");
//! assert_eq!(metadata.device_authorization_endpoint(), Some("https://login.example.com/device"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use http::header::{ACCEPT, LOCATION};
use http::{Method, Request, StatusCode};
use serde_json::{Map, Value};

use crate::origin::{self, Origin};
use crate::{ClientAuth, Error, RefreshGrant};

/// Where a metadata document is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WellKnown {
    /// `/.well-known/openid-configuration`, appended to the issuer (OpenID Connect
    /// Discovery 1.0 §4).
    OpenIdConnect,
    /// `/.well-known/oauth-authorization-server`, inserted between the issuer's host
    /// and its path (RFC 8414 §3.1).
    OAuth,
}

impl WellKnown {
    /// The well-known suffix.
    #[must_use]
    pub const fn suffix(self) -> &'static str {
        match self {
            Self::OpenIdConnect => "/.well-known/openid-configuration",
            Self::OAuth => "/.well-known/oauth-authorization-server",
        }
    }

    /// The URL of the document of `issuer` (see the [module docs](self)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] when `issuer` is not an absolute `http(s)` URL with a
    /// host and without user information, query or fragment.
    pub fn url(self, issuer: &str) -> Result<String, Error> {
        let (origin, path) = split_issuer(issuer)?;
        let path = path.strip_suffix('/').unwrap_or(path);
        Ok(match self {
            Self::OpenIdConnect => format!("{origin}{path}{}", self.suffix()),
            Self::OAuth => format!("{origin}{}{path}", self.suffix()),
        })
    }
}

/// `issuer` as its `scheme://authority` and its path (maybe empty), checked.
fn split_issuer(issuer: &str) -> Result<(&str, &str), Error> {
    let invalid = |reason| Err(Error::InvalidUrl { reason });
    if issuer.contains(['?', '#']) {
        return invalid("an issuer has no query or fragment (RFC 8414 §2)");
    }
    let uri = origin::parse_url(issuer)?;
    Origin::of(&uri)?;
    let Some(authority) = uri.authority() else {
        return invalid("it has no host");
    };
    if authority.as_str().contains('@') {
        return invalid("an issuer has no user information (`user@`)");
    }
    let Some(after_scheme) = issuer.find("://").map(|at| at + 3) else {
        return invalid("it is not absolute (no scheme)");
    };
    let origin_end = issuer[after_scheme..]
        .find('/')
        .map_or(issuer.len(), |at| after_scheme + at);
    Ok(issuer.split_at(origin_end))
}

/// The order [`Discovery`] tries by default.
const ORDER: [WellKnown; 2] = [WellKnown::OpenIdConnect, WellKnown::OAuth];

/// Fetching the metadata of one issuer: the request of each well-known URL in turn,
/// and the reading of its answer (see the [module docs](self)). Sans-IO: the caller
/// sends each [`request`](Self::request) (without following redirects) and hands the
/// answer to [`handle_response`](Self::handle_response).
#[derive(Clone, Debug)]
pub struct Discovery {
    issuer: String,
    order: Vec<WellKnown>,
    next: usize,
    allow_insecure_http: bool,
    /// What the URLs tried so far answered, for the final error.
    tried: Vec<String>,
}

impl Discovery {
    /// Discovery of `issuer`: the OpenID Connect document, then RFC 8414's.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] when `issuer` is not an absolute `http(s)` URL with a
    /// host and without user information, query or fragment.
    pub fn new(issuer: impl Into<String>) -> Result<Self, Error> {
        let issuer = issuer.into();
        split_issuer(&issuer)?;
        Ok(Self {
            issuer,
            order: ORDER.to_vec(),
            next: 0,
            allow_insecure_http: false,
            tried: Vec::new(),
        })
    }

    /// Asks only for the document at `well_known` (no fallback).
    #[must_use]
    pub fn only(mut self, well_known: WellKnown) -> Self {
        self.order = vec![well_known];
        self.next = 0;
        self
    }

    /// Allows plain `http` to hosts that are not loopback, for the metadata URL and
    /// the endpoints the document names (off by default: a refresh credential or a
    /// client secret would then cross the network in clear text).
    #[must_use]
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// The issuer asked for.
    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The well-known URL the next [`request`](Self::request) asks.
    #[must_use]
    pub fn current(&self) -> WellKnown {
        self.order[self.next.min(self.order.len() - 1)]
    }

    /// The `GET` of the current well-known URL (`Accept: application/json`).
    ///
    /// # Errors
    ///
    /// [`Error::InsecureHttp`] for a plain `http` issuer that is not loopback (unless
    /// allowed).
    pub fn request(&self) -> Result<Request<Vec<u8>>, Error> {
        let url = self.current().url(&self.issuer)?;
        let uri = origin::parse_url(&url)?;
        let origin = Origin::of(&uri)?;
        if !origin.is_https() && !origin.is_loopback() && !self.allow_insecure_http {
            return Err(Error::InsecureHttp {
                origin: origin.to_string(),
            });
        }
        Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|_| Error::InvalidUrl {
                reason: "the metadata URL cannot be requested",
            })
    }

    /// Reads the answer to the last [`request`](Self::request): `Ok(Some(metadata))`
    /// when it holds the document; `Ok(None)` when that URL holds none and another is
    /// left to try (call [`request`](Self::request) again).
    ///
    /// # Errors
    ///
    /// When no URL is left: [`Error::MetadataUnavailable`] (naming what each URL
    /// answered); at once, for a document that was served but is wrong:
    /// [`Error::InvalidMetadata`], [`Error::IssuerMismatch`]; and for a `5xx` or
    /// `429`, [`Error::MetadataUnavailable`] with `transient` set.
    pub fn handle_response<B: AsRef<[u8]>>(
        &mut self,
        response: &http::Response<B>,
    ) -> Result<Option<Metadata>, Error> {
        let kind = self.current();
        match self.read_response(kind, response) {
            Ok(metadata) => Ok(Some(metadata)),
            Err(Error::MetadataUnavailable {
                url,
                reason,
                transient: false,
            }) if self.next + 1 < self.order.len() => {
                self.tried.push(format!("{url}: {reason}"));
                self.next += 1;
                Ok(None)
            }
            Err(Error::MetadataUnavailable {
                url,
                mut reason,
                transient,
            }) => {
                for tried in &self.tried {
                    reason.push_str("; and at ");
                    reason.push_str(tried);
                }
                Err(Error::MetadataUnavailable {
                    url,
                    reason,
                    transient,
                })
            }
            Err(other) => Err(other),
        }
    }

    /// Reads the answer of the document at `well_known`, with no fallback: the
    /// document, checked (see the [module docs](self)).
    ///
    /// # Errors
    ///
    /// [`Error::MetadataUnavailable`] for an answer that is not a document (an HTTP
    /// error, a redirect, a body that is not a JSON object),
    /// [`Error::InvalidMetadata`] for a document with a missing or malformed field or
    /// an endpoint that is not `https`, [`Error::IssuerMismatch`].
    pub fn read_response<B: AsRef<[u8]>>(
        &self,
        well_known: WellKnown,
        response: &http::Response<B>,
    ) -> Result<Metadata, Error> {
        let url = well_known.url(&self.issuer)?;
        let status = response.status();
        let unavailable = |reason: String, transient: bool| Error::MetadataUnavailable {
            url: url.clone(),
            reason,
            transient,
        };
        if status.is_redirection() {
            let location = response
                .headers()
                .get(LOCATION)
                .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned())
                .map(|l| crate::location::origin_and_path(&l, &url));
            let location = location.map_or_else(
                || "no Location".to_owned(),
                |l| format!("Location {}", crate::endpoint::clean(&l, &[])),
            );
            return Err(unavailable(
                format!(
                    "HTTP {} to {location}, a redirect discovery never follows; configure the \
                     issuer the server's documentation gives",
                    status.as_u16()
                ),
                false,
            ));
        }
        if !status.is_success() {
            let transient = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
            let what = if transient {
                "the server is failing or overloaded; try again later"
            } else {
                "no document there"
            };
            return Err(unavailable(
                format!("HTTP {} ({what})", status.as_u16()),
                transient,
            ));
        }
        let document: Map<String, Value> = match serde_json::from_slice(response.body().as_ref()) {
            Ok(Value::Object(document)) => document,
            Ok(_) => {
                return Err(unavailable(
                    format!("HTTP {}, JSON but not an object", status.as_u16()),
                    false,
                ));
            }
            Err(_) => {
                return Err(unavailable(
                    format!(
                        "HTTP {}, but the body is not JSON (a web page?)",
                        status.as_u16()
                    ),
                    false,
                ));
            }
        };
        Metadata::read(&url, &self.issuer, document, self.allow_insecure_http)
    }
}

/// An authorization server's metadata, checked: its issuer is the one asked for, and
/// every endpoint it names is an absolute URL that may carry credentials (see the
/// [module docs](self)). Other fields are kept as they came ([`get`](Self::get)).
#[derive(Clone, Debug, PartialEq)]
pub struct Metadata {
    url: String,
    issuer: String,
    token_endpoint: String,
    authorization_endpoint: Option<String>,
    device_authorization_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    dpop_signing_alg_values_supported: Vec<String>,
    token_endpoint_auth_methods_supported: Vec<String>,
    code_challenge_methods_supported: Vec<String>,
    authorization_response_iss_parameter_supported: bool,
    document: Map<String, Value>,
}

impl Metadata {
    /// Reads and checks a document fetched from `url` for `issuer`.
    fn read(
        url: &str,
        issuer: &str,
        document: Map<String, Value>,
        allow_insecure_http: bool,
    ) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidMetadata {
            url: url.to_owned(),
            reason,
        };
        let found = match document.get("issuer") {
            Some(Value::String(found)) => found.clone(),
            Some(_) => return Err(invalid("`issuer` is not a string".to_owned())),
            None => return Err(invalid("it has no `issuer`".to_owned())),
        };
        if !same_issuer(issuer, &found) {
            return Err(Error::IssuerMismatch {
                url: url.to_owned(),
                expected: issuer.to_owned(),
                found: crate::endpoint::clean(&found, &[]),
                hint: mismatch_hint(issuer, &found),
            });
        }
        let endpoint = |name: &'static str| -> Result<Option<String>, Error> {
            let value = match document.get(name) {
                None | Some(Value::Null) => return Ok(None),
                Some(Value::String(value)) => value,
                Some(_) => return Err(invalid(format!("`{name}` is not a string"))),
            };
            match crate::endpoint::endpoint_uri(
                value,
                name == "authorization_endpoint",
                allow_insecure_http,
            ) {
                Ok(_) => Ok(Some(value.clone())),
                Err(Error::InsecureHttp { origin }) => Err(invalid(format!(
                    "`{name}` is plain http ({origin}), not https; a credential sent there \
                     would cross the network in clear text (allow plain http only on a \
                     trusted network)"
                ))),
                Err(_) => Err(invalid(format!(
                    "`{name}` is not an absolute https URL without a fragment"
                ))),
            }
        };
        let token_endpoint = endpoint("token_endpoint")?.ok_or_else(|| {
            invalid("it has no `token_endpoint`, which every flow of this library needs".into())
        })?;
        let authorization_endpoint = endpoint("authorization_endpoint")?;
        let device_authorization_endpoint = endpoint("device_authorization_endpoint")?;
        let revocation_endpoint = endpoint("revocation_endpoint")?;
        let list = |name: &'static str| -> Result<Option<Vec<String>>, Error> {
            match document.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .map(Some)
                    .ok_or_else(|| invalid(format!("`{name}` is not a list of strings"))),
                Some(_) => Err(invalid(format!("`{name}` is not a list of strings"))),
            }
        };
        let iss_supported = match document.get("authorization_response_iss_parameter_supported") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(supported)) => *supported,
            Some(_) => {
                return Err(invalid(
                    "`authorization_response_iss_parameter_supported` is not a boolean".into(),
                ));
            }
        };
        Ok(Self {
            url: url.to_owned(),
            issuer: found,
            token_endpoint,
            authorization_endpoint,
            device_authorization_endpoint,
            revocation_endpoint,
            dpop_signing_alg_values_supported: list("dpop_signing_alg_values_supported")?
                .unwrap_or_default(),
            // RFC 8414 §2: omitted, the default is client_secret_basic.
            token_endpoint_auth_methods_supported: list("token_endpoint_auth_methods_supported")?
                .unwrap_or_else(|| vec!["client_secret_basic".to_owned()]),
            code_challenge_methods_supported: list("code_challenge_methods_supported")?
                .unwrap_or_default(),
            authorization_response_iss_parameter_supported: iss_supported,
            document,
        })
    }

    /// The URL the document was read from.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `issuer`, as the document says it: the value RFC 9207's `iss` is compared
    /// with.
    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `token_endpoint`.
    #[must_use]
    pub fn token_endpoint(&self) -> &str {
        &self.token_endpoint
    }

    /// The `authorization_endpoint` (the authorization code flow), if any.
    #[must_use]
    pub fn authorization_endpoint(&self) -> Option<&str> {
        self.authorization_endpoint.as_deref()
    }

    /// The `device_authorization_endpoint` (RFC 8628), if any.
    #[must_use]
    pub fn device_authorization_endpoint(&self) -> Option<&str> {
        self.device_authorization_endpoint.as_deref()
    }

    /// The `revocation_endpoint` (RFC 7009), if any.
    #[must_use]
    pub fn revocation_endpoint(&self) -> Option<&str> {
        self.revocation_endpoint.as_deref()
    }

    /// `dpop_signing_alg_values_supported` (RFC 9449 §5.1); empty when omitted (the
    /// server says nothing of DPoP).
    #[must_use]
    pub fn dpop_signing_alg_values_supported(&self) -> &[String] {
        &self.dpop_signing_alg_values_supported
    }

    /// `token_endpoint_auth_methods_supported`; when omitted, RFC 8414 §2's default
    /// `["client_secret_basic"]`.
    #[must_use]
    pub fn token_endpoint_auth_methods_supported(&self) -> &[String] {
        &self.token_endpoint_auth_methods_supported
    }

    /// `code_challenge_methods_supported` (RFC 7636); empty when omitted. Some servers
    /// that support PKCE omit it (Microsoft Entra ID), so an empty list is no proof
    /// that they do not.
    #[must_use]
    pub fn code_challenge_methods_supported(&self) -> &[String] {
        &self.code_challenge_methods_supported
    }

    /// `authorization_response_iss_parameter_supported` (RFC 9207); `false` when
    /// omitted. When `true`, a redirect without `iss` is refused.
    #[must_use]
    pub fn authorization_response_iss_parameter_supported(&self) -> bool {
        self.authorization_response_iss_parameter_supported
    }

    /// Any field of the document as it came (`end_session_endpoint`, `jwks_uri`…).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.document.get(name)
    }

    /// The client authentication to use at the token endpoint: a public client
    /// (`confidential` false) sends none; a confidential one `client_secret_basic`
    /// when the server lists it (or lists nothing), else `client_secret_post` when
    /// listed, else `client_secret_basic` all the same.
    #[must_use]
    pub fn client_auth(&self, confidential: bool) -> ClientAuth {
        let listed = |method: &str| {
            self.token_endpoint_auth_methods_supported
                .iter()
                .any(|m| m == method)
        };
        if !confidential {
            ClientAuth::None
        } else if !listed("client_secret_basic") && listed("client_secret_post") {
            ClientAuth::Post
        } else {
            ClientAuth::Basic
        }
    }

    /// A [`RefreshGrant`] for `client_id` at this server's token endpoint, as a public
    /// client; give it a client secret (and [`client_auth`](Self::client_auth)) for a
    /// confidential one. The sign-in flows take it as the client.
    #[must_use]
    pub fn grant(&self, client_id: impl Into<String>) -> RefreshGrant {
        RefreshGrant::new(self.token_endpoint.clone(), client_id).auth(self.client_auth(false))
    }
}

/// Whether the document's issuer `found` is the `expected` one: equal strings, or
/// equal after RFC 3986's case (scheme, host), default-port and empty-path
/// equivalences for `http(s)`.
fn same_issuer(expected: &str, found: &str) -> bool {
    expected == found || normalised(expected).is_some_and(|e| Some(e) == normalised(found))
}

/// `scheme://host:port/path` with the scheme and host in lower case, the port
/// explicit and an empty path as `/`; `None` if it is not an issuer.
fn normalised(issuer: &str) -> Option<String> {
    let (_, path) = split_issuer(issuer).ok()?;
    let origin = Origin::of(&origin::parse_url(issuer).ok()?).ok()?;
    let path = if path.is_empty() { "/" } else { path };
    Some(format!("{origin}{path}"))
}

/// What to do about an issuer mismatch.
fn mismatch_hint(expected: &str, found: &str) -> &'static str {
    if found.contains("{tenantid}") || found.contains("{tenant}") {
        "Microsoft Entra ID's multi-tenant endpoints (common, organizations, consumers) \
         publish a templated issuer: configure your tenant's issuer, \
         `https://login.microsoftonline.com/<tenant id>/v2.0`"
    } else if expected.trim_end_matches('/') == found.trim_end_matches('/') {
        "configure the issuer exactly as the document says it, with or without its \
         trailing `/`"
    } else {
        "configure the issuer the document names if it is the server you trust, or check \
         that the issuer URL points at the right server"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> http::Response<Vec<u8>> {
        http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(body.as_bytes().to_vec())
            .expect("response")
    }

    fn document(issuer: &str) -> String {
        format!(
            r#"{{"issuer":"{issuer}","token_endpoint":"https://a.example/token",
            "authorization_endpoint":"https://a.example/authorize?p=b2c",
            "device_authorization_endpoint":"https://a.example/device",
            "revocation_endpoint":"https://a.example/revoke",
            "dpop_signing_alg_values_supported":["ES256","RS256"],
            "token_endpoint_auth_methods_supported":["client_secret_post","none"],
            "code_challenge_methods_supported":["S256"],
            "authorization_response_iss_parameter_supported":true,
            "end_session_endpoint":"https://a.example/logout"}}"#
        )
    }

    #[test]
    fn well_known_urls_are_inserted_or_appended() {
        for (issuer, oidc, oauth) in [
            (
                "https://a.example",
                "https://a.example/.well-known/openid-configuration",
                "https://a.example/.well-known/oauth-authorization-server",
            ),
            (
                "https://a.example/",
                "https://a.example/.well-known/openid-configuration",
                "https://a.example/.well-known/oauth-authorization-server",
            ),
            (
                "https://a.example:8443/issuer1",
                "https://a.example:8443/issuer1/.well-known/openid-configuration",
                "https://a.example:8443/.well-known/oauth-authorization-server/issuer1",
            ),
            (
                "https://a.example/realms/my%20realm/",
                "https://a.example/realms/my%20realm/.well-known/openid-configuration",
                "https://a.example/.well-known/oauth-authorization-server/realms/my%20realm",
            ),
            (
                "http://127.0.0.1:9/t",
                "http://127.0.0.1:9/t/.well-known/openid-configuration",
                "http://127.0.0.1:9/.well-known/oauth-authorization-server/t",
            ),
        ] {
            assert_eq!(WellKnown::OpenIdConnect.url(issuer).expect("url"), oidc);
            assert_eq!(WellKnown::OAuth.url(issuer).expect("url"), oauth);
        }
        for bad in [
            "https://a.example/?x=1",
            "https://a.example/#f",
            "https://user:pw@a.example/",
            "a.example",
            "ftp://a.example",
            "",
        ] {
            assert!(
                matches!(Discovery::new(bad), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn reads_every_field_the_flows_use() {
        let discovery = Discovery::new("https://a.example").expect("issuer");
        let metadata = discovery
            .read_response(
                WellKnown::OpenIdConnect,
                &answer(200, &document("https://a.example")),
            )
            .expect("metadata");
        assert_eq!(
            metadata.url(),
            "https://a.example/.well-known/openid-configuration"
        );
        assert_eq!(metadata.issuer(), "https://a.example");
        assert_eq!(metadata.token_endpoint(), "https://a.example/token");
        assert_eq!(
            metadata.authorization_endpoint(),
            Some("https://a.example/authorize?p=b2c")
        );
        assert_eq!(
            metadata.device_authorization_endpoint(),
            Some("https://a.example/device")
        );
        assert_eq!(
            metadata.revocation_endpoint(),
            Some("https://a.example/revoke")
        );
        assert_eq!(
            metadata.dpop_signing_alg_values_supported(),
            ["ES256", "RS256"]
        );
        assert_eq!(
            metadata.token_endpoint_auth_methods_supported(),
            ["client_secret_post", "none"]
        );
        assert_eq!(metadata.code_challenge_methods_supported(), ["S256"]);
        assert!(metadata.authorization_response_iss_parameter_supported());
        assert_eq!(
            metadata.get("end_session_endpoint"),
            Some(&Value::from("https://a.example/logout"))
        );
        assert_eq!(metadata.client_auth(true), ClientAuth::Post);
        assert_eq!(metadata.client_auth(false), ClientAuth::None);
        let grant = metadata.grant("cli");
        assert_eq!(grant.token_url(), "https://a.example/token");
    }

    #[test]
    fn omitted_fields_take_the_rfc_defaults() {
        let discovery = Discovery::new("https://a.example").expect("issuer");
        let metadata = discovery
            .read_response(
                WellKnown::OAuth,
                &answer(
                    200,
                    r#"{"issuer":"https://a.example","token_endpoint":"https://a.example/t"}"#,
                ),
            )
            .expect("metadata");
        assert_eq!(
            metadata.token_endpoint_auth_methods_supported(),
            ["client_secret_basic"]
        );
        assert!(metadata.dpop_signing_alg_values_supported().is_empty());
        assert!(metadata.code_challenge_methods_supported().is_empty());
        assert!(!metadata.authorization_response_iss_parameter_supported());
        assert_eq!(metadata.authorization_endpoint(), None);
        assert_eq!(metadata.client_auth(true), ClientAuth::Basic);
    }

    #[test]
    fn the_issuer_must_be_the_one_asked_for() {
        // Equal after RFC 3986's equivalences: accepted, and the document's wins.
        for (asked, said) in [
            ("https://a.example", "https://a.example/"),
            ("https://A.Example/", "https://a.example"),
            ("https://a.example:443", "https://a.example"),
            ("HTTPS://a.example/t", "https://a.example/t"),
        ] {
            let metadata = Discovery::new(asked)
                .expect("issuer")
                .read_response(WellKnown::OAuth, &answer(200, &document(said)))
                .unwrap_or_else(|e| panic!("{asked} {said}: {e}"));
            assert_eq!(metadata.issuer(), said);
        }
        for (asked, said, hint) in [
            ("https://a.example/t/", "https://a.example/t", "trailing"),
            (
                "https://a.example/t",
                "https://a.example/T",
                "points at the right",
            ),
            (
                "https://a.example",
                "https://evil.example",
                "points at the right",
            ),
            (
                "https://a.example",
                "http://a.example",
                "points at the right",
            ),
            (
                "https://login.microsoftonline.com/common/v2.0",
                "https://login.microsoftonline.com/{tenantid}/v2.0",
                "tenant id",
            ),
        ] {
            let error = Discovery::new(asked)
                .expect("issuer")
                .read_response(WellKnown::OpenIdConnect, &answer(200, &document(said)))
                .expect_err("a mismatch");
            let Error::IssuerMismatch {
                url,
                expected,
                found,
                ..
            } = &error
            else {
                panic!("{error:?}")
            };
            assert_eq!(expected, asked);
            assert_eq!(found, said);
            assert!(url.ends_with("/.well-known/openid-configuration"), "{url}");
            let message = error.to_string();
            assert!(message.contains(hint), "{message}");
            assert!(message.contains(said), "{message}");
        }
    }

    #[test]
    fn bad_documents_name_the_url_and_the_field() {
        let discovery = Discovery::new("https://a.example/t").expect("issuer");
        for (body, field) in [
            (r#"{"token_endpoint":"https://a.example/t"}"#, "no `issuer`"),
            (r#"{"issuer":5}"#, "`issuer` is not a string"),
            (r#"{"issuer":"https://a.example/t"}"#, "no `token_endpoint`"),
            (
                r#"{"issuer":"https://a.example/t","token_endpoint":"http://a.example/t"}"#,
                "`token_endpoint` is plain http",
            ),
            (
                r#"{"issuer":"https://a.example/t","token_endpoint":"/token"}"#,
                "`token_endpoint` is not an absolute https URL",
            ),
            (
                r#"{"issuer":"https://a.example/t","token_endpoint":"https://a.example/t",
                   "revocation_endpoint":["x"]}"#,
                "`revocation_endpoint` is not a string",
            ),
            (
                r#"{"issuer":"https://a.example/t","token_endpoint":"https://a.example/t",
                   "dpop_signing_alg_values_supported":"ES256"}"#,
                "`dpop_signing_alg_values_supported` is not a list",
            ),
            (
                r#"{"issuer":"https://a.example/t","token_endpoint":"https://a.example/t",
                   "authorization_response_iss_parameter_supported":"yes"}"#,
                "not a boolean",
            ),
        ] {
            let error = discovery
                .read_response(WellKnown::OAuth, &answer(200, body))
                .expect_err(field);
            assert!(matches!(error, Error::InvalidMetadata { .. }), "{error:?}");
            let message = error.to_string();
            assert!(message.contains(field), "{message}");
            assert!(
                message.contains("https://a.example/.well-known/oauth-authorization-server/t"),
                "{message}"
            );
        }
        // Plain http endpoints pass when allowed, and to loopback.
        let allowed = Discovery::new("https://a.example/t")
            .expect("issuer")
            .allow_insecure_http(true);
        assert!(
            allowed
                .read_response(
                    WellKnown::OAuth,
                    &answer(
                        200,
                        r#"{"issuer":"https://a.example/t","token_endpoint":"http://a.example/t"}"#
                    )
                )
                .is_ok()
        );
    }

    #[test]
    fn falls_back_to_rfc_8414_when_the_first_url_holds_no_document() {
        for first in [
            answer(404, "not found"),
            answer(200, "<!doctype html><title>app</title>"),
            answer(403, ""),
            http::Response::builder()
                .status(302)
                .header("location", "https://login.example/?next=/secret")
                .body(Vec::new())
                .expect("response"),
        ] {
            let mut discovery = Discovery::new("https://a.example").expect("issuer");
            assert_eq!(discovery.current(), WellKnown::OpenIdConnect);
            assert!(
                discovery
                    .handle_response(&first)
                    .expect("fallback")
                    .is_none()
            );
            assert_eq!(discovery.current(), WellKnown::OAuth);
            // Nothing there either: the error names both.
            let error = discovery
                .handle_response(&answer(404, ""))
                .expect_err("none left");
            let message = error.to_string();
            assert!(
                message.contains("/.well-known/oauth-authorization-server"),
                "{message}"
            );
            assert!(
                message.contains("/.well-known/openid-configuration"),
                "{message}"
            );
            assert!(!message.contains("secret"), "{message}");
            assert!(!error.is_transient());
        }
    }

    #[test]
    fn server_trouble_and_wrong_documents_stop_at_once() {
        let mut discovery = Discovery::new("https://a.example").expect("issuer");
        let error = discovery
            .handle_response(&answer(503, ""))
            .expect_err("transient");
        assert!(error.is_transient(), "{error}");
        let mut discovery = Discovery::new("https://a.example").expect("issuer");
        let error = discovery
            .handle_response(&answer(200, &document("https://b.example")))
            .expect_err("mismatch");
        assert!(matches!(error, Error::IssuerMismatch { .. }));
    }

    #[test]
    fn a_redirect_names_its_location_by_origin_and_path() {
        let discovery = Discovery::new("https://a.example")
            .expect("issuer")
            .only(WellKnown::OAuth);
        let moved = http::Response::builder()
            .status(301)
            .header("location", "https://u:p@b.example/meta?sig=abc#x")
            .body(Vec::new())
            .expect("response");
        let error = discovery
            .read_response(WellKnown::OAuth, &moved)
            .expect_err("refused");
        let message = error.to_string();
        assert!(
            message.contains("Location https://b.example/meta"),
            "{message}"
        );
        assert!(
            !message.contains("sig=abc") && !message.contains("u:p"),
            "{message}"
        );
        let mut only = discovery;
        assert!(only.handle_response(&moved).is_err(), "no fallback");
    }

    #[test]
    fn plain_http_issuers_are_refused_beyond_loopback() {
        let request = |issuer: &str, allow: bool| {
            Discovery::new(issuer)
                .expect("issuer")
                .allow_insecure_http(allow)
                .request()
        };
        assert!(matches!(
            request("http://a.example", false),
            Err(Error::InsecureHttp { .. })
        ));
        assert!(request("http://a.example", true).is_ok());
        let local = request("http://127.0.0.1:8080", false).expect("loopback");
        assert_eq!(local.method(), Method::GET);
        assert_eq!(local.headers()[ACCEPT], "application/json");
    }
}
