//! The authorization code flow with PKCE for a native program (RFC 6749 §4.1,
//! RFC 7636, RFC 8252), with the issuer check of RFC 9207, sans-IO.
//!
//! 1. [`AuthorizationRequest::new`] takes the authorization endpoint, the client id,
//!    the redirect URI (for a command-line tool, a loopback one:
//!    `http://127.0.0.1:PORT/callback`, RFC 8252 §7.3) and 64 random bytes: 32 for the
//!    PKCE code verifier ([`Pkce`]), 32 for the `state`.
//! 2. [`url`](AuthorizationRequest::url) is the URL to open in the browser:
//!    `response_type=code`, `client_id`, `redirect_uri`, `scope`, `state`,
//!    `code_challenge`, `code_challenge_method=S256`, then `prompt=consent` when
//!    `offline_access` is among the scopes (OpenID Connect Core §11: servers issue a
//!    refresh token for it only after consent) and no `prompt` was given, then the
//!    extra parameters. A query the endpoint already has is kept (RFC 6749 §3.1).
//! 3. The browser comes back to the redirect URI. [`is_callback`](AuthorizationRequest::is_callback)
//!    tells the listener's request for it from others (a browser also asks for
//!    `/favicon.ico`); [`read_redirect`](AuthorizationRequest::read_redirect) checks it,
//!    in this order, and takes nothing from it before every check passed:
//!    - `iss` (RFC 9207), when the issuer is known: present and equal to it; absent
//!      only if the server does not say it always sends one
//!      ([`Metadata::authorization_response_iss_parameter_supported`]);
//!    - `state`: present and equal to the one sent, compared in constant time
//!      ([`Error::StateMismatch`] otherwise);
//!    - `error`: `access_denied` is [`Error::AccessDenied`], any other code
//!      [`Error::AuthorizationFailed`] naming it;
//!    - `code`: the [`AuthorizationCode`].
//!
//!    A parameter given twice is refused (RFC 6749 §3.1).
//! 4. [`token_request`](AuthorizationRequest::token_request) exchanges the code at the
//!    token endpoint (`grant_type=authorization_code`, `code`, `redirect_uri`,
//!    `code_verifier`, the client's authentication);
//!    [`read_token_response`](AuthorizationRequest::read_token_response) reads the
//!    token.
//!
//! The listener answers the browser with [`SIGNED_IN_PAGE`] or
//! [`SIGN_IN_FAILED_PAGE`]: neither repeats anything from the request, so no page of
//! this flow can be made to show an attacker's text.
//!
//! ```
//! use silent_refresh_oauth2::{AuthorizationRequest, RefreshGrant};
//!
//! let flow = AuthorizationRequest::new(
//!     "https://auth.example.com/authorize",
//!     "my-cli",
//!     "http://127.0.0.1:49152/callback",
//!     [7; 64],
//! )
//! .scope("openid offline_access")
//! .issuer("https://auth.example.com", true);
//! let url = flow.url()?;
//! assert!(url.starts_with("https://auth.example.com/authorize?response_type=code&client_id=my-cli"));
//! assert!(url.ends_with("&code_challenge_method=S256&prompt=consent"));
//!
//! let state = flow.state().expose();
//! let target = format!("/callback?code=c-1&state={state}&iss=https%3A%2F%2Fauth.example.com");
//! assert!(flow.is_callback(&target));
//! let code = flow.read_redirect(&target)?;
//!
//! let client = RefreshGrant::new("https://auth.example.com/token", "my-cli");
//! let request = flow.token_request(&client, &code)?;
//! assert!(std::str::from_utf8(request.body())?.starts_with("grant_type=authorization_code&code=c-1&redirect_uri="));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use subtle::ConstantTimeEq as _;

use crate::endpoint::{self, endpoint_uri, form_post};
use crate::{Error, Metadata, Pkce, RefreshGrant};
use silent_refresh::{FailureKind, Secret, Token};

/// The page the loopback listener shows once the code came back: the user can go
/// back to the terminal.
pub const SIGNED_IN_PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Signed in</title></head>\n<body style=\"font-family: sans-serif; margin: 3em\">\
<h1>Signed in</h1><p>You can close this tab and go back to the terminal.</p></body></html>\n";

/// The page the loopback listener shows when the redirect did not complete the
/// sign-in (denied, wrong `state`, an error): the terminal says why. It repeats
/// nothing from the request.
pub const SIGN_IN_FAILED_PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Sign-in failed</title></head>\n<body style=\"font-family: sans-serif; margin: 3em\">\
<h1>Sign-in failed</h1><p>Go back to the terminal to see why, and try again.</p></body></html>\n";

/// Query parameters the authorization URL sets itself.
const RESERVED: [&str; 7] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

/// One sign-in with the authorization code flow: the URL to open, the check of the
/// redirect, and the code's exchange (see the [module docs](self)). `Debug` shows
/// neither the code verifier nor the `state`.
#[derive(Clone, Debug)]
pub struct AuthorizationRequest {
    endpoint: String,
    client_id: String,
    redirect_uri: String,
    scope: Option<String>,
    params: Vec<(String, String)>,
    state: Secret,
    pkce: Pkce,
    issuer: Option<String>,
    iss_required: bool,
    allow_insecure_http: bool,
}

/// The code the redirect brought back: a secret, good for one exchange. `Debug`
/// prints `[redacted]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizationCode(Secret);

impl AuthorizationCode {
    /// The code (send it only to the token endpoint).
    #[must_use]
    pub fn secret(&self) -> &Secret {
        &self.0
    }
}

impl AuthorizationRequest {
    /// A sign-in at `endpoint` for `client_id`, redirected to `redirect_uri`, with
    /// `random` (64 bytes of the operating system's generator: the first 32 make the
    /// code verifier, the last 32 the `state`).
    pub fn new(
        endpoint: impl Into<String>,
        client_id: impl Into<String>,
        redirect_uri: impl Into<String>,
        random: [u8; 64],
    ) -> Self {
        let random = zeroize::Zeroizing::new(random);
        let mut verifier = [0u8; 32];
        verifier.copy_from_slice(&random[..32]);
        let mut state = String::with_capacity(43);
        base64::Engine::encode_string(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            &random[32..],
            &mut state,
        );
        let pkce = Pkce::from_random(verifier);
        zeroize::Zeroize::zeroize(&mut verifier);
        Self {
            endpoint: endpoint.into(),
            client_id: client_id.into(),
            redirect_uri: redirect_uri.into(),
            scope: None,
            params: Vec::new(),
            state: Secret::from(state),
            pkce,
            issuer: None,
            iss_required: false,
            allow_insecure_http: false,
        }
    }

    /// A sign-in at the server `metadata` describes: its authorization endpoint, and
    /// its issuer for the `iss` check (required when it says it always sends one).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when the metadata names no authorization endpoint.
    pub fn from_metadata(
        metadata: &Metadata,
        client_id: impl Into<String>,
        redirect_uri: impl Into<String>,
        random: [u8; 64],
    ) -> Result<Self, Error> {
        let endpoint = metadata
            .authorization_endpoint()
            .ok_or(Error::InvalidConfig(
                "the authorization server's metadata names no authorization_endpoint, so it has no \
             browser sign-in; use the device flow if it has a device_authorization_endpoint",
            ))?;
        Ok(Self::new(endpoint, client_id, redirect_uri, random).issuer(
            metadata.issuer(),
            metadata.authorization_response_iss_parameter_supported(),
        ))
    }

    /// The scope to ask for (space-separated).
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// An extra query parameter (`login_hint`, `resource`, `audience`, `prompt`…).
    /// May be repeated. The parameters the URL sets itself are refused when it is
    /// built.
    #[must_use]
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// The issuer the redirect's `iss` must equal (RFC 9207); `always_sent`: the
    /// server says it always sends one, so a redirect without it is refused.
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>, always_sent: bool) -> Self {
        self.issuer = Some(issuer.into());
        self.iss_required = always_sent;
        self
    }

    /// Allows a plain `http` authorization endpoint on a host that is not loopback.
    #[must_use]
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// The `state` sent (a per-sign-in secret that ties the redirect to it).
    #[must_use]
    pub fn state(&self) -> &Secret {
        &self.state
    }

    /// The PKCE verifier and challenge.
    #[must_use]
    pub fn pkce(&self) -> &Pkce {
        &self.pkce
    }

    /// The redirect URI.
    #[must_use]
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The URL to open in the browser (see the [module docs](self)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`], [`Error::InsecureHttp`] for the endpoint;
    /// [`Error::InvalidConfig`] for an extra parameter the URL sets itself.
    pub fn url(&self) -> Result<String, Error> {
        endpoint_uri(&self.endpoint, true, self.allow_insecure_http)?;
        if self
            .params
            .iter()
            .any(|(name, _)| RESERVED.contains(&name.as_str()))
        {
            return Err(Error::InvalidConfig(
                "an extra parameter of the authorization URL is one it sets itself \
                 (response_type, client_id, redirect_uri, scope, state, code_challenge…); use \
                 the request's settings",
            ));
        }
        let mut url = self.endpoint.clone();
        let separator = match url.find('?') {
            None => "?",
            Some(at) if at + 1 == url.len() || url.ends_with('&') => "",
            Some(_) => "&",
        };
        url.push_str(separator);
        let mut query =
            form_urlencoded::Serializer::for_suffix(url, self.endpoint.len() + separator.len());
        query.append_pair("response_type", "code");
        query.append_pair("client_id", &self.client_id);
        query.append_pair("redirect_uri", &self.redirect_uri);
        if let Some(scope) = &self.scope {
            query.append_pair("scope", scope);
        }
        query.append_pair("state", self.state.expose());
        query.append_pair("code_challenge", self.pkce.challenge());
        query.append_pair("code_challenge_method", self.pkce.method());
        let offline = self
            .scope
            .as_deref()
            .is_some_and(|s| s.split_whitespace().any(|s| s == "offline_access"));
        if offline && !self.params.iter().any(|(name, _)| name == "prompt") {
            query.append_pair("prompt", "consent");
        }
        for (name, value) in &self.params {
            query.append_pair(name, value);
        }
        Ok(query.finish())
    }

    /// Whether the request `target` a loopback listener received (origin form,
    /// `/callback?…`, or an absolute URL) is for the redirect URI's path: only then
    /// is it the redirect to read.
    #[must_use]
    pub fn is_callback(&self, target: &str) -> bool {
        path_of(target) == path_of(&self.redirect_uri)
    }

    /// Reads the redirect (the request target the listener received, or the whole
    /// URL), checked as the [module docs](self) say.
    ///
    /// # Errors
    ///
    /// [`Error::AuthorizationIssuerMismatch`], [`Error::StateMismatch`],
    /// [`Error::AccessDenied`], [`Error::AuthorizationFailed`] (an OAuth error, a
    /// parameter given twice, no code). Nothing of the redirect is quoted but the
    /// server's `iss`, `error` and `error_description`, cleaned.
    pub fn read_redirect(&self, target: &str) -> Result<AuthorizationCode, Error> {
        let query = target.split('#').next().unwrap_or_default();
        let query = query.split_once('?').map_or("", |(_, query)| query);
        let mut params: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if params.iter().any(|(seen, _)| *seen == name) {
                return Err(Error::AuthorizationFailed {
                    reason: format!(
                        "the redirect holds `{}` twice (RFC 6749 §3.1 forbids it); start the \
                         sign-in again",
                        endpoint::clean(&name, &[])
                    ),
                });
            }
            params.push((name.into_owned(), value.into_owned()));
        }
        let get = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let secrets = [&self.state, self.pkce.verifier()];
        if let Some(issuer) = &self.issuer {
            match get("iss") {
                Some(iss) if iss == issuer => {}
                Some(iss) => {
                    return Err(Error::AuthorizationIssuerMismatch {
                        expected: issuer.clone(),
                        what: format!("names the issuer `{}`", endpoint::clean(iss, &secrets)),
                    });
                }
                None if self.iss_required => {
                    return Err(Error::AuthorizationIssuerMismatch {
                        expected: issuer.clone(),
                        what: "has no `iss` although the server says it always sends one"
                            .to_owned(),
                    });
                }
                None => {}
            }
        }
        match get("state") {
            None => return Err(Error::StateMismatch("is missing")),
            Some(state) => {
                let same: bool = state
                    .as_bytes()
                    .ct_eq(self.state.expose().as_bytes())
                    .into();
                if !same {
                    return Err(Error::StateMismatch("is not the one sent"));
                }
            }
        }
        if let Some(error) = get("error") {
            let description = get("error_description")
                .filter(|d| !d.trim().is_empty())
                .map(|d| format!(" ({})", endpoint::clean(d, &secrets)))
                .unwrap_or_default();
            if error == "access_denied" {
                return Err(Error::AccessDenied {
                    detail: description,
                });
            }
            let error = endpoint::clean(error, &secrets);
            let what = match error.as_str() {
                "invalid_scope" => "configure a scope the client may ask for",
                "unauthorized_client" | "unsupported_response_type" => {
                    "check that the client may use the authorization code flow, and the client id"
                }
                "invalid_request" => {
                    "check the client id, the redirect URI registered for it (a loopback one \
                     for a command-line tool) and the extra parameters"
                }
                "server_error" | "temporarily_unavailable" => {
                    "the authorization server is failing; try again later"
                }
                "login_required" | "consent_required" | "interaction_required" => {
                    "sign in again without `prompt=none`"
                }
                _ => {
                    "check the client configuration against the authorization server's \
                      documentation of that code"
                }
            };
            return Err(Error::AuthorizationFailed {
                reason: format!("the authorization server answered `{error}`{description}; {what}"),
            });
        }
        match get("code").filter(|code| !code.is_empty()) {
            Some(code) => Ok(AuthorizationCode(Secret::new(code))),
            None => Err(Error::AuthorizationFailed {
                reason: "the redirect holds neither a code nor an error; start the sign-in again"
                    .to_owned(),
            }),
        }
    }

    /// The exchange of `code` at `client`'s token endpoint: `grant_type=authorization_code`,
    /// `code`, `redirect_uri`, `code_verifier`, and the client's authentication. It
    /// carries secrets: send it without following redirects.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`], [`Error::InsecureHttp`] for the token URL, or the
    /// client's configuration errors.
    pub fn token_request(
        &self,
        client: &RefreshGrant,
        code: &AuthorizationCode,
    ) -> Result<http::Request<Vec<u8>>, Error> {
        let uri = endpoint_uri(client.token_url(), false, self.allow_insecure_http)?;
        form_post(
            client,
            uri,
            vec![
                ("grant_type", "authorization_code"),
                ("code", code.0.expose()),
                ("redirect_uri", &self.redirect_uri),
                ("code_verifier", self.pkce.verifier().expose()),
            ],
        )
    }

    /// Reads the token endpoint's answer to [`token_request`](Self::token_request).
    ///
    /// # Errors
    ///
    /// [`Error::Endpoint`], classified as a refresh's answer is: `invalid_grant` (the
    /// code expired or was used, or the verifier or redirect URI do not match) is
    /// terminal and says to start the sign-in again. Neither the code, the verifier
    /// nor the client secret is ever quoted.
    pub fn read_token_response<B: AsRef<[u8]>>(
        &self,
        client: &RefreshGrant,
        code: &AuthorizationCode,
        response: &http::Response<B>,
    ) -> Result<Token, Error> {
        let secrets: Vec<&Secret> = client
            .client_secret
            .iter()
            .chain([&code.0, self.pkce.verifier(), &self.state])
            .collect();
        let failure = match crate::response::parse(
            response.status(),
            response.headers(),
            response.body().as_ref(),
            &secrets,
            true,
        ) {
            Ok(token) => return Ok(token),
            Err(failure) => failure,
        };
        Err(Error::Endpoint(match failure.kind {
            FailureKind::Terminal => endpoint::reword(
                failure,
                "the token endpoint refused the authorization code (it expired or was already \
                 used, or the code verifier or redirect URI do not match); start the sign-in \
                 again",
            ),
            FailureKind::Misconfigured => {
                endpoint::reworded("the token endpoint", failure, response)
            }
            FailureKind::Transient => failure,
        }))
    }
}

/// The path of a request target or URL: no scheme, authority, query or fragment.
fn path_of(target: &str) -> &str {
    let target = target.split(['?', '#']).next().unwrap_or_default();
    let target = match target.find("://") {
        Some(at) => {
            let rest = &target[at + 3..];
            rest.find('/').map_or("/", |slash| &rest[slash..])
        }
        None => target,
    };
    if target.is_empty() { "/" } else { target }
}

#[cfg(test)]
mod tests {
    use super::*;
    use silent_refresh::Expiry;

    const REDIRECT: &str = "http://127.0.0.1:49152/callback";

    fn flow() -> AuthorizationRequest {
        let mut random = [0u8; 64];
        for (i, byte) in random.iter_mut().enumerate() {
            *byte = u8::try_from(i).expect("small");
        }
        AuthorizationRequest::new(
            "https://auth.example.com/authorize",
            "cli",
            REDIRECT,
            random,
        )
    }

    fn query(url: &str) -> Vec<(String, String)> {
        let query = url.split_once('?').expect("query").1;
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }

    fn redirect(flow: &AuthorizationRequest, extra: &str) -> String {
        format!("/callback?state={}{extra}", flow.state().expose())
    }

    #[test]
    fn the_url_holds_every_parameter_in_order() {
        let flow = flow().scope("openid profile");
        let url = flow.url().expect("url");
        assert!(
            url.starts_with("https://auth.example.com/authorize?"),
            "{url}"
        );
        let names: Vec<String> = query(&url).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "response_type",
                "client_id",
                "redirect_uri",
                "scope",
                "state",
                "code_challenge",
                "code_challenge_method"
            ]
        );
        let params = query(&url);
        assert_eq!(params[2].1, REDIRECT);
        assert_eq!(params[4].1, flow.state().expose());
        assert_eq!(params[5].1, flow.pkce().challenge());
        assert_eq!(params[6].1, "S256");
        assert!(!url.contains(flow.pkce().verifier().expose()));
        assert_eq!(flow.state().expose().len(), 43);
    }

    #[test]
    fn offline_access_asks_for_consent_unless_a_prompt_is_given() {
        let url = flow().scope("openid offline_access").url().expect("url");
        assert!(url.ends_with("&prompt=consent"), "{url}");
        let url = flow()
            .scope("openid offline_access")
            .param("prompt", "login")
            .url()
            .expect("url");
        assert!(!url.contains("prompt=consent"), "{url}");
        assert!(url.ends_with("&prompt=login"), "{url}");
        let url = flow()
            .scope("openid offline_accessible")
            .url()
            .expect("url");
        assert!(!url.contains("prompt"), "{url}");
    }

    #[test]
    fn an_endpoint_query_is_kept() {
        for (endpoint, start) in [
            (
                "https://b2c.example.com/authorize?p=B2C_1_signin",
                "https://b2c.example.com/authorize?p=B2C_1_signin&response_type=code",
            ),
            (
                "https://b2c.example.com/authorize?",
                "https://b2c.example.com/authorize?response_type=code",
            ),
        ] {
            let url = AuthorizationRequest::new(endpoint, "cli", REDIRECT, [1; 64])
                .url()
                .expect("url");
            assert!(url.starts_with(start), "{url}");
        }
        for name in RESERVED {
            assert!(matches!(
                flow().param(name, "x").url(),
                Err(Error::InvalidConfig(_))
            ));
        }
        assert!(matches!(
            AuthorizationRequest::new("http://auth.example.com/a", "c", REDIRECT, [1; 64]).url(),
            Err(Error::InsecureHttp { .. })
        ));
    }

    #[test]
    fn the_redirect_is_read_only_with_the_right_state() {
        let flow = flow();
        let code = flow
            .read_redirect(&redirect(&flow, "&code=c-1"))
            .expect("code");
        assert_eq!(code.secret().expose(), "c-1");
        assert_eq!(format!("{code:?}"), "AuthorizationCode([redacted])");
        // The whole URL, and a fragment, work too.
        let whole = format!("{REDIRECT}?code=c-2&state={}#_=_", flow.state().expose());
        assert_eq!(
            flow.read_redirect(&whole).expect("code").secret().expose(),
            "c-2"
        );
        // Wrong, missing, truncated state: refused, nothing taken.
        let truncated = &flow.state().expose()[..20];
        for target in [
            "/callback?code=c-1&state=wrong".to_owned(),
            "/callback?code=c-1".to_owned(),
            format!("/callback?code=c-1&state={truncated}"),
            "/callback?error=access_denied&state=wrong".to_owned(),
        ] {
            let error = flow.read_redirect(&target).expect_err("refused");
            assert!(
                matches!(error, Error::StateMismatch(_)),
                "{target}: {error:?}"
            );
            assert!(error.to_string().contains("start the sign-in again"));
        }
        let twice = flow
            .read_redirect(&redirect(&flow, "&code=a&code=b"))
            .expect_err("twice");
        assert!(twice.to_string().contains("`code` twice"), "{twice}");
        let none = flow
            .read_redirect(&redirect(&flow, ""))
            .expect_err("no code");
        assert!(matches!(none, Error::AuthorizationFailed { .. }));
    }

    #[test]
    fn errors_in_the_redirect_are_named() {
        let flow = flow();
        let denied = flow
            .read_redirect(&redirect(
                &flow,
                "&error=access_denied&error_description=User+cancelled",
            ))
            .expect_err("denied");
        assert_eq!(
            denied,
            Error::AccessDenied {
                detail: " (User cancelled)".to_owned()
            }
        );
        let scope = flow
            .read_redirect(&redirect(&flow, "&error=invalid_scope"))
            .expect_err("scope");
        let message = scope.to_string();
        assert!(message.contains("`invalid_scope`") && message.contains("configure a scope"));
        let odd = flow
            .read_redirect(&redirect(&flow, "&error=%3Cscript%3E%0Aalert"))
            .expect_err("odd");
        assert!(!odd.to_string().contains('\n'), "{odd}");
    }

    #[test]
    fn the_issuer_is_checked_when_known() {
        let known = flow().issuer("https://auth.example.com", false);
        let ok = redirect(&known, "&code=c&iss=https%3A%2F%2Fauth.example.com");
        assert!(known.read_redirect(&ok).is_ok());
        assert!(known.read_redirect(&redirect(&known, "&code=c")).is_ok());
        let evil = redirect(&known, "&code=c&iss=https%3A%2F%2Fevil.example");
        let error = known.read_redirect(&evil).expect_err("mix-up");
        assert!(matches!(error, Error::AuthorizationIssuerMismatch { .. }));
        assert!(
            error.to_string().contains("https://evil.example"),
            "{error}"
        );
        // Checked before the state and the error: a mixed-up answer says so.
        let evil_error = "/callback?error=access_denied&iss=https%3A%2F%2Fevil.example";
        assert!(matches!(
            known.read_redirect(evil_error),
            Err(Error::AuthorizationIssuerMismatch { .. })
        ));
        let required = flow().issuer("https://auth.example.com", true);
        assert!(matches!(
            required.read_redirect(&redirect(&required, "&code=c")),
            Err(Error::AuthorizationIssuerMismatch { .. })
        ));
        // An unknown issuer: `iss` cannot be checked, and is ignored.
        let unknown = flow();
        assert!(
            unknown
                .read_redirect(&evil.replace(known.state().expose(), unknown.state().expose()))
                .is_ok()
        );
    }

    #[test]
    fn callbacks_are_told_from_other_requests() {
        let flow = flow();
        for target in [
            "/callback",
            "/callback?code=1",
            "http://127.0.0.1:49152/callback?x#y",
        ] {
            assert!(flow.is_callback(target), "{target}");
        }
        for target in ["/favicon.ico", "/", "/callback/x", "/callbacks"] {
            assert!(!flow.is_callback(target), "{target}");
        }
        let root =
            AuthorizationRequest::new("https://a.example/a", "c", "http://127.0.0.1:5", [0; 64]);
        assert!(root.is_callback("/?code=1"));
    }

    #[test]
    fn the_code_is_exchanged_with_its_verifier() {
        let flow = flow();
        let code = flow
            .read_redirect(&redirect(&flow, "&code=c-1"))
            .expect("code");
        let client = RefreshGrant::new("https://auth.example.com/token", "cli");
        let request = flow.token_request(&client, &code).expect("request");
        let form: Vec<(String, String)> = form_urlencoded::parse(request.body())
            .into_owned()
            .collect();
        assert_eq!(
            form,
            [
                ("grant_type".to_owned(), "authorization_code".to_owned()),
                ("code".to_owned(), "c-1".to_owned()),
                ("redirect_uri".to_owned(), REDIRECT.to_owned()),
                (
                    "code_verifier".to_owned(),
                    flow.pkce().verifier().expose().to_owned()
                ),
                ("client_id".to_owned(), "cli".to_owned()),
            ]
        );
        let answer = |status: u16, body: &str| {
            http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(body.as_bytes().to_vec())
                .expect("response")
        };
        let token = flow
            .read_token_response(
                &client,
                &code,
                &answer(
                    200,
                    r#"{"access_token":"at","expires_in":60,"refresh_token":"rt"}"#,
                ),
            )
            .expect("token");
        assert_eq!(token.expiry, Expiry::In(std::time::Duration::from_secs(60)));
        assert_eq!(token.refresh_token.expect("rt").expose(), "rt");
        let verifier = flow.pkce().verifier().expose().to_owned();
        let refused = flow
            .read_token_response(
                &client,
                &code,
                &answer(
                    400,
                    &format!(r#"{{"error":"invalid_grant","error_description":"code c-1 verifier {verifier}"}}"#),
                ),
            )
            .expect_err("refused");
        let Error::Endpoint(failure) = &refused else {
            panic!("{refused:?}")
        };
        assert_eq!(failure.kind, FailureKind::Terminal);
        assert!(
            failure.message.contains("refused the authorization code"),
            "{}",
            failure.message
        );
        assert!(!failure.message.contains(&verifier), "{}", failure.message);
        assert!(!failure.message.contains("c-1"), "{}", failure.message);
        let misconfigured = flow
            .read_token_response(
                &client,
                &code,
                &answer(400, r#"{"error":"invalid_request"}"#),
            )
            .expect_err("refused");
        let message = misconfigured.to_string();
        assert!(
            message.starts_with("the token endpoint refused the request with `invalid_request`"),
            "{message}"
        );
    }

    #[test]
    fn debug_hides_the_verifier_and_the_state() {
        let flow = flow();
        let printed = format!("{flow:?}");
        assert!(!printed.contains(flow.state().expose()), "{printed}");
        assert!(
            !printed.contains(flow.pkce().verifier().expose()),
            "{printed}"
        );
    }
}
