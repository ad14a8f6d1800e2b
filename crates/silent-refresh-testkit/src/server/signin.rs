//! The embedded server's side of starting a session: discovery, the device flow, the
//! authorization endpoint with PKCE, the authorization code grant, revocation, and a
//! registered public client. All of it lives on the token endpoint's origin
//! ([`AuthServer::auth_origin`], the issuer).
//!
//! - **Discovery**: the metadata at `/.well-known/openid-configuration` and
//!   `/.well-known/oauth-authorization-server`, issuer [`AuthServer::issuer`]; and a
//!   second issuer with a path, [`AuthServer::tenant_issuer`] (`…/tenant`), at
//!   `/tenant/.well-known/openid-configuration` and
//!   `/.well-known/oauth-authorization-server/tenant` (RFC 8414 §3.1's insertion).
//!   [`AuthServer::set_metadata_issuer`] makes the documents name another issuer.
//! - **Device flow** (RFC 8628): `POST /oauth/device_authorization`, then the
//!   `device_code` grant at the token endpoint, which answers `authorization_pending`
//!   until a test calls [`AuthServer::approve_device`] or [`AuthServer::deny_device`]
//!   with the user code (`access_denied` then), `slow_down` to a poll that comes
//!   sooner than the interval after the previous one (or after
//!   [`AuthServer::slow_down_device`]), and `expired_token` once the code's lifetime
//!   passed (or [`AuthServer::expire_device`]).
//! - **Authorization code with PKCE**: `GET /oauth/authorize` checks the client, the
//!   redirect URI (the registered loopback one, `http://127.0.0.1/callback`, with any
//!   port, RFC 8252 §7.3), `response_type=code` and an `S256` challenge; its test user
//!   approves at once: a `302` to the redirect URI with `code`, the `state` as sent
//!   and `iss` (RFC 9207), or `error=access_denied` while
//!   [`AuthServer::set_user_denies`] is on. The `authorization_code` grant checks the
//!   code (once only: a second use revokes the grant it started), the client, the
//!   redirect URI and the `code_verifier` against the challenge.
//! - **Revocation** (RFC 7009): `POST /oauth/revoke`; a refresh token revokes its
//!   whole grant (its access tokens too), an access token only itself; an unknown
//!   token is `200` too.
//! - **A public client**, [`SignInConfig::public_client_id`]: no secret, its
//!   `client_id` in the body, for the device, code and refresh grants.
//!
//! A session started by either flow is a grant like [`AuthServer::sign_in`]'s:
//! rotating refresh tokens, reuse detection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;

use super::{
    AuthServer, GrantState, Issued, RefreshEntry, Refused, ServerState, TOKEN_PATH, authenticate,
    invalid_client, oauth_error, refresh,
};

/// The device authorization endpoint's path.
pub const DEVICE_AUTHORIZATION_PATH: &str = "/oauth/device_authorization";
/// The authorization endpoint's path.
pub const AUTHORIZE_PATH: &str = "/oauth/authorize";
/// The revocation endpoint's path.
pub const REVOKE_PATH: &str = "/oauth/revoke";
/// The verification URI shown to the user (a page this server does not serve: tests
/// approve with [`AuthServer::approve_device`]).
pub const DEVICE_PAGE_PATH: &str = "/device";
/// The path of the second issuer, [`AuthServer::tenant_issuer`].
pub const TENANT_PATH: &str = "/tenant";
/// The `grant_type` of the device flow.
const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// How long an authorization code lives.
const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// A poll that comes this much sooner than the interval is still on time (the
/// client counts the interval from the answer, the server from the request).
const POLL_TOLERANCE: Duration = Duration::from_millis(50);

/// How the sign-in side behaves; change it with [`AuthServer::set_signin_config`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignInConfig {
    /// The registered public client (no secret).
    pub public_client_id: String,
    /// The device flow's polling interval (sent in whole seconds, at least 1).
    pub device_interval: Duration,
    /// How long a device code lives (sent in whole seconds).
    pub device_code_lifetime: Duration,
    /// The path of the registered loopback redirect URI.
    pub redirect_path: String,
}

impl Default for SignInConfig {
    fn default() -> Self {
        Self {
            public_client_id: "cli-public".to_owned(),
            device_interval: Duration::from_secs(1),
            device_code_lifetime: Duration::from_secs(60),
            redirect_path: "/callback".to_owned(),
        }
    }
}

/// The sign-in counts since the last [`AuthServer::take_stats`] (its
/// [`Stats::signin`](super::Stats::signin)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignInStats {
    /// Metadata documents served.
    pub metadata_requests: u64,
    /// Device authorization requests answered with a code.
    pub device_authorizations: u64,
    /// Token requests of the device code grant.
    pub device_polls: u64,
    /// `authorization_pending` answers.
    pub authorization_pending: u64,
    /// `slow_down` answers (a poll sooner than the interval).
    pub slow_down: u64,
    /// `access_denied` answers to device polls.
    pub device_denied: u64,
    /// `expired_token` answers.
    pub device_expired: u64,
    /// Sessions started by the device flow.
    pub device_sessions: u64,
    /// Authorization requests answered with a code.
    pub authorizations: u64,
    /// Authorization requests answered with an error (denied by the user, no PKCE…).
    pub authorization_errors: u64,
    /// Authorization requests that carried `prompt=consent`.
    pub consent_prompts: u64,
    /// Sessions started by the authorization code grant.
    pub code_sessions: u64,
    /// Authorization codes refused (unknown, expired, used, another client or
    /// redirect URI, a `code_verifier` that does not match).
    pub code_refused: u64,
    /// Of those, a `code_verifier` that does not match the challenge.
    pub pkce_failures: u64,
    /// Revocation requests (whatever the token).
    pub revocations: u64,
    /// Grants revoked through their refresh token.
    pub revoked_grants: u64,
    /// Access tokens revoked.
    pub revoked_access_tokens: u64,
    /// Requests (token, device, revocation) of the public client.
    pub public_client_requests: u64,
}

/// The sign-in side's state, one in each [`ServerState`].
#[derive(Default)]
pub(super) struct SignIn {
    config: Mutex<SignInConfig>,
    metadata_issuer: Mutex<Option<String>>,
    user_denies: std::sync::atomic::AtomicBool,
    tables: Mutex<Tables>,
    counts: Counts,
}

#[derive(Default)]
struct Tables {
    /// By device code.
    devices: HashMap<String, Device>,
    /// By authorization code.
    codes: HashMap<String, Code>,
}

/// What the user decided about a device code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Pending,
    Approved,
    Denied,
}

struct Device {
    client_id: String,
    user_code: String,
    scope: Option<String>,
    expires: Instant,
    interval: Duration,
    last_poll: Option<Instant>,
    /// The next poll is answered `slow_down`, however late it comes
    /// ([`AuthServer::slow_down_device`]).
    slow_down_next: bool,
    decision: Decision,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    scope: Option<String>,
    expires: Instant,
    /// The grant it started, once used.
    grant: Option<u64>,
}

#[derive(Default)]
struct Counts {
    metadata_requests: AtomicU64,
    device_authorizations: AtomicU64,
    device_polls: AtomicU64,
    authorization_pending: AtomicU64,
    slow_down: AtomicU64,
    device_denied: AtomicU64,
    device_expired: AtomicU64,
    device_sessions: AtomicU64,
    authorizations: AtomicU64,
    authorization_errors: AtomicU64,
    consent_prompts: AtomicU64,
    code_sessions: AtomicU64,
    code_refused: AtomicU64,
    pkce_failures: AtomicU64,
    revocations: AtomicU64,
    revoked_grants: AtomicU64,
    revoked_access_tokens: AtomicU64,
    public_client_requests: AtomicU64,
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::SeqCst);
}

impl SignIn {
    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn config(&self) -> SignInConfig {
        self.config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The counts, reset.
    pub(super) fn take_stats(&self) -> SignInStats {
        let c = &self.counts;
        let take = |counter: &AtomicU64| counter.swap(0, Ordering::SeqCst);
        SignInStats {
            metadata_requests: take(&c.metadata_requests),
            device_authorizations: take(&c.device_authorizations),
            device_polls: take(&c.device_polls),
            authorization_pending: take(&c.authorization_pending),
            slow_down: take(&c.slow_down),
            device_denied: take(&c.device_denied),
            device_expired: take(&c.device_expired),
            device_sessions: take(&c.device_sessions),
            authorizations: take(&c.authorizations),
            authorization_errors: take(&c.authorization_errors),
            consent_prompts: take(&c.consent_prompts),
            code_sessions: take(&c.code_sessions),
            code_refused: take(&c.code_refused),
            pkce_failures: take(&c.pkce_failures),
            revocations: take(&c.revocations),
            revoked_grants: take(&c.revoked_grants),
            revoked_access_tokens: take(&c.revoked_access_tokens),
            public_client_requests: take(&c.public_client_requests),
        }
    }

    /// Sets the decision on the pending device code with `user_code`.
    fn decide(&self, user_code: &str, decision: Decision) -> bool {
        self.pending_device(user_code, |device| device.decision = decision)
    }

    /// Changes the pending device code with `user_code`; whether there is one.
    fn pending_device(&self, user_code: &str, change: impl FnOnce(&mut Device)) -> bool {
        let mut tables = self.tables();
        let pending = tables
            .devices
            .values_mut()
            .find(|d| d.user_code == user_code && d.decision == Decision::Pending);
        pending.map(change).is_some()
    }
}

/// The sign-in routes, added to the token endpoint's origin.
pub(super) fn routes(router: Router<Arc<ServerState>>) -> Router<Arc<ServerState>> {
    let oauth = "/.well-known/oauth-authorization-server";
    let oidc = "/.well-known/openid-configuration";
    router
        .route(oauth, get(|s: State<_>| metadata(s, false)))
        .route(oidc, get(|s: State<_>| metadata(s, false)))
        .route(
            &format!("{oauth}{TENANT_PATH}"),
            get(|s: State<_>| metadata(s, true)),
        )
        .route(
            &format!("{TENANT_PATH}{oidc}"),
            get(|s: State<_>| metadata(s, true)),
        )
        .route(DEVICE_AUTHORIZATION_PATH, post(device_authorization))
        .route(AUTHORIZE_PATH, get(authorize))
        .route(REVOKE_PATH, post(revoke))
}

impl ServerState {
    /// The token endpoint's origin: the issuer.
    fn issuer(&self) -> String {
        self.token_url
            .strip_suffix(TOKEN_PATH)
            .unwrap_or(&self.token_url)
            .to_owned()
    }
}

impl AuthServer {
    /// The issuer: the token endpoint's origin, `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn issuer(&self) -> String {
        self.state.issuer()
    }

    /// A second issuer with a path, `http://127.0.0.1:PORT/tenant`, with the same
    /// endpoints (its RFC 8414 document is at
    /// `/.well-known/oauth-authorization-server/tenant`).
    #[must_use]
    pub fn tenant_issuer(&self) -> String {
        format!("{}{TENANT_PATH}", self.state.issuer())
    }

    /// The device authorization endpoint's URL.
    #[must_use]
    pub fn device_authorization_url(&self) -> String {
        format!("{}{DEVICE_AUTHORIZATION_PATH}", self.state.issuer())
    }

    /// The authorization endpoint's URL.
    #[must_use]
    pub fn authorization_url(&self) -> String {
        format!("{}{AUTHORIZE_PATH}", self.state.issuer())
    }

    /// The revocation endpoint's URL.
    #[must_use]
    pub fn revocation_url(&self) -> String {
        format!("{}{REVOKE_PATH}", self.state.issuer())
    }

    /// The sign-in settings in force.
    #[must_use]
    pub fn signin_config(&self) -> SignInConfig {
        self.state.signin.config()
    }

    /// Changes the sign-in settings (codes already issued keep theirs).
    pub fn set_signin_config(&self, config: SignInConfig) {
        *self
            .state
            .signin
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = config;
    }

    /// Makes the metadata documents name `issuer` instead of the real one (`None`:
    /// the real one again): a misconfigured, or impersonating, server.
    pub fn set_metadata_issuer(&self, issuer: Option<String>) {
        *self
            .state
            .signin
            .metadata_issuer
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = issuer;
    }

    /// While on, the test user denies every authorization request
    /// (`error=access_denied`).
    pub fn set_user_denies(&self, denies: bool) {
        self.state
            .signin
            .user_denies
            .store(denies, Ordering::SeqCst);
    }

    /// The user approves the pending device code `user_code`: its next poll gets a
    /// session. Returns whether such a code was pending.
    pub fn approve_device(&self, user_code: &str) -> bool {
        self.state.signin.decide(user_code, Decision::Approved)
    }

    /// The user denies the pending device code `user_code`: its next poll gets
    /// `access_denied`. Returns whether such a code was pending.
    pub fn deny_device(&self, user_code: &str) -> bool {
        self.state.signin.decide(user_code, Decision::Denied)
    }

    /// The next poll of the pending device code `user_code` is answered `slow_down`
    /// (as if it came too soon), whatever its decision: a client must then wait 5 s
    /// more between polls (RFC 8628 §3.5). Returns whether such a code was pending.
    pub fn slow_down_device(&self, user_code: &str) -> bool {
        self.state
            .signin
            .pending_device(user_code, |device| device.slow_down_next = true)
    }

    /// The device code `user_code` expires now: its next poll gets `expired_token`.
    /// Returns whether such a code was pending.
    pub fn expire_device(&self, user_code: &str) -> bool {
        self.state
            .signin
            .pending_device(user_code, |device| device.expires = Instant::now())
    }

    /// The grant a refresh token this server issued belongs to.
    #[must_use]
    pub fn grant_of(&self, refresh_token: &str) -> Option<u64> {
        self.state
            .tables()
            .refresh
            .get(refresh_token)
            .map(|entry| entry.grant)
    }

    /// Whether an access token this server issued is still accepted by the resource
    /// (known, unexpired, of a grant not revoked).
    #[must_use]
    pub fn access_token_is_active(&self, access_token: &str) -> bool {
        let tables = self.state.tables();
        tables.access.get(access_token).is_some_and(|entry| {
            entry.expires > Instant::now()
                && tables.grants.get(&entry.grant).is_some_and(|g| !g.revoked)
        })
    }
}

/// The metadata document of the issuer (or of the tenant issuer).
async fn metadata(State(state): State<Arc<ServerState>>, tenant: bool) -> Response {
    count(&state.signin.counts.metadata_requests);
    let base = state.issuer();
    let issuer = state
        .signin
        .metadata_issuer
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_else(|| {
            if tenant {
                format!("{base}{TENANT_PATH}")
            } else {
                base.clone()
            }
        });
    let mut metadata = serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}{AUTHORIZE_PATH}"),
        "token_endpoint": state.token_url,
        "device_authorization_endpoint": format!("{base}{DEVICE_AUTHORIZATION_PATH}"),
        "revocation_endpoint": format!("{base}{REVOKE_PATH}"),
        "response_types_supported": ["code"],
        "grant_types_supported": [
            "authorization_code", "refresh_token", "client_credentials", DEVICE_CODE,
            super::JWT_BEARER, super::TOKEN_EXCHANGE,
        ],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "client_secret_jwt",
            "private_key_jwt", "none",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "none",
        ],
        "authorization_response_iss_parameter_supported": true,
        "scopes_supported": ["openid", "offline_access", "read", "write"],
    });
    // RFC 9449 §5.1: the proofs' algorithms, in DPoP mode only (the ones its
    // proof check accepts).
    if state.dpop.is_some() {
        metadata["dpop_signing_alg_values_supported"] =
            serde_json::json!(["ES256", "ES384", "EdDSA", "PS256", "RS256"]);
    }
    axum::Json(metadata).into_response()
}

/// The client of a device, token or revocation request: the public client (its id
/// in the body, no secret, no `Authorization`), or the confidential one,
/// authenticated as at the token endpoint. Its id, or why it is refused (for an
/// `invalid_client` answer).
fn client_of(
    state: &ServerState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<String, &'static str> {
    let public = state.signin.config().public_client_id;
    let is_public = !headers.contains_key(header::AUTHORIZATION)
        && form.get("client_id") == Some(&public)
        && !form.contains_key("client_secret")
        && !form.contains_key("client_assertion");
    if is_public {
        count(&state.signin.counts.public_client_requests);
        return Ok(public);
    }
    authenticate(state, headers, form, false).map(|_| state.config.client_id.clone())
}

/// `POST /oauth/device_authorization` (RFC 8628 §3.1, §3.2).
async fn device_authorization(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let client_id = match client_of(&state, &headers, &form) {
        Ok(client_id) => client_id,
        Err(why) => return invalid_client(&state, why),
    };
    let config = state.signin.config();
    let device_code = state.random_token("dc");
    let user_code = user_code(&state.random_token("uc"));
    let interval = config.device_interval.max(Duration::from_secs(1));
    state.signin.tables().devices.insert(
        device_code.clone(),
        Device {
            client_id,
            user_code: user_code.clone(),
            scope: form.get("scope").cloned(),
            expires: Instant::now() + config.device_code_lifetime,
            interval,
            last_poll: None,
            slow_down_next: false,
            decision: Decision::Pending,
        },
    );
    count(&state.signin.counts.device_authorizations);
    let page = format!("{}{DEVICE_PAGE_PATH}", state.issuer());
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(serde_json::json!({
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": page,
            "verification_uri_complete": format!("{page}?user_code={user_code}"),
            "expires_in": config.device_code_lifetime.as_secs(),
            "interval": interval.as_secs(),
        })),
    )
        .into_response()
}

/// Eight letters a user types easily (no vowels, so no words), `XXXX-XXXX`, from a
/// random token.
fn user_code(random: &str) -> String {
    const LETTERS: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let mut code: String = random
        .bytes()
        .rev()
        .take(8)
        .map(|b| char::from(LETTERS[usize::from(b) % LETTERS.len()]))
        .collect();
    code.insert(4, '-');
    code
}

/// The sign-in side of the token endpoint: every request of the public client, and
/// the device code and authorization code grants of the confidential one. `None`
/// for the others (the token endpoint goes on as before).
pub(super) fn token_request(
    state: &ServerState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    proven: Option<&super::dpop::Proven>,
) -> Option<Response> {
    let grant_type = form.get("grant_type").map_or("", String::as_str);
    let public = state.signin.config().public_client_id;
    let from_public = form.get("client_id") == Some(&public);
    if !from_public && !matches!(grant_type, DEVICE_CODE | "authorization_code") {
        return None;
    }
    let client_id = match client_of(state, headers, form) {
        Ok(client_id) => client_id,
        Err(why) => return Some(invalid_client(state, why)),
    };
    let requested_scope = form.get("scope").map(String::as_str);
    let answer = match grant_type {
        DEVICE_CODE => device_code(state, &client_id, form),
        "authorization_code" => authorization_code(state, &client_id, form),
        "refresh_token" => match form.get("refresh_token") {
            Some(presented) => {
                if let Err(refused) = super::dpop::check_refresh_token(state, presented, proven) {
                    return Some(*refused);
                }
                refresh(state, presented, requested_scope, None)
            }
            None => Err(refused("invalid_request", "refresh_token is missing")),
        },
        _ => Err(refused(
            "unauthorized_client",
            "the public client may use the device, authorization code and refresh grants only",
        )),
    };
    // In DPoP mode a proven request gets tokens bound to its key, whatever the grant.
    Some(match answer {
        Ok(issued) => super::dpop::issue(state, issued, proven),
        Err(refused) => oauth_error(StatusCode::BAD_REQUEST, refused.error, refused.description),
    })
}

fn refused(error: &'static str, description: &'static str) -> Refused {
    Refused { error, description }
}

/// A new grant, as a sign-in makes one, and its first tokens.
fn start_session(state: &ServerState, scope: Option<&str>) -> Result<Issued, Refused> {
    let first = state.random_token("rt");
    {
        let mut tables = state.tables();
        tables.next_grant += 1;
        let grant = tables.next_grant;
        let session = GrantState {
            serial: 0,
            revoked: false,
            scope: scope.map(str::to_owned),
            served: Vec::new(),
        };
        tables.grants.insert(grant, session);
        let entry = RefreshEntry {
            grant,
            used: false,
            serial: 0,
        };
        tables.refresh.insert(first.clone(), entry);
    }
    // The first refresh issues the session's first access token and refresh token.
    refresh(state, &first, None, None)
}

/// The device code grant (RFC 8628 §3.4, §3.5).
fn device_code(
    state: &ServerState,
    client_id: &str,
    form: &HashMap<String, String>,
) -> Result<Issued, Refused> {
    let counts = &state.signin.counts;
    count(&counts.device_polls);
    let Some(presented) = form.get("device_code") else {
        return Err(refused("invalid_request", "device_code is missing"));
    };
    let now = Instant::now();
    let mut tables = state.signin.tables();
    let Some(device) = tables
        .devices
        .get_mut(presented)
        .filter(|d| d.client_id == client_id)
    else {
        return Err(refused("invalid_grant", "the device code is unknown"));
    };
    if now >= device.expires {
        tables.devices.remove(presented);
        count(&counts.device_expired);
        return Err(refused("expired_token", "the device code expired"));
    }
    let too_soon = device
        .last_poll
        .is_some_and(|last| now + POLL_TOLERANCE < last + device.interval)
        || std::mem::take(&mut device.slow_down_next);
    device.last_poll = Some(now);
    if too_soon {
        count(&counts.slow_down);
        return Err(refused("slow_down", "polled sooner than the interval"));
    }
    match device.decision {
        Decision::Pending => {
            count(&counts.authorization_pending);
            Err(refused(
                "authorization_pending",
                "the user has not approved the request yet",
            ))
        }
        Decision::Denied => {
            tables.devices.remove(presented);
            count(&counts.device_denied);
            Err(refused("access_denied", "the user denied the request"))
        }
        Decision::Approved => {
            let scope = device.scope.clone();
            tables.devices.remove(presented);
            drop(tables);
            let issued = start_session(state, scope.as_deref())?;
            count(&counts.device_sessions);
            Ok(issued)
        }
    }
}

/// The authorization code grant with PKCE (RFC 6749 §4.1.3, RFC 7636 §4.6).
fn authorization_code(
    state: &ServerState,
    client_id: &str,
    form: &HashMap<String, String>,
) -> Result<Issued, Refused> {
    let counts = &state.signin.counts;
    let invalid = |description| {
        count(&counts.code_refused);
        Err(refused("invalid_grant", description))
    };
    let (Some(presented), Some(verifier)) = (form.get("code"), form.get("code_verifier")) else {
        count(&counts.code_refused);
        return Err(refused(
            "invalid_request",
            "code and code_verifier are required",
        ));
    };
    let mut tables = state.signin.tables();
    let Some(code) = tables.codes.get_mut(presented) else {
        return invalid("the authorization code is unknown");
    };
    if let Some(grant) = code.grant {
        // A code used twice: two parties hold it, so the session it started ends
        // (RFC 6749 §4.1.2).
        drop(tables);
        revoke_grant(state, grant);
        return invalid("the authorization code was already used; its session is revoked");
    }
    if Instant::now() >= code.expires {
        return invalid("the authorization code expired");
    }
    if code.client_id != client_id {
        return invalid("the authorization code was issued to another client");
    }
    if form.get("redirect_uri") != Some(&code.redirect_uri) {
        return invalid("redirect_uri is not the one of the authorization request");
    }
    if s256(verifier) != code.challenge {
        count(&counts.pkce_failures);
        return invalid("the code_verifier does not match the code_challenge");
    }
    let scope = code.scope.clone();
    drop(tables);
    let issued = start_session(state, scope.as_deref())?;
    if let Some(grant) = state
        .tables()
        .refresh
        .get(issued.refresh_token.as_deref().unwrap_or_default())
        .map(|entry| entry.grant)
        && let Some(code) = state.signin.tables().codes.get_mut(presented)
    {
        code.grant = Some(grant);
    }
    count(&counts.code_sessions);
    Ok(issued)
}

/// `BASE64URL(SHA256(verifier))`, computed here with aws-lc-rs (not the codec under
/// test).
fn s256(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// Revokes a grant: its refresh tokens and access tokens stop working.
fn revoke_grant(state: &ServerState, grant: u64) -> bool {
    let mut tables = state.tables();
    let newly = tables
        .grants
        .get_mut(&grant)
        .is_some_and(|g| !std::mem::replace(&mut g.revoked, true));
    if newly {
        tables.access.retain(|_, a| a.grant != grant);
    }
    newly
}

/// Whether `redirect_uri` is the registered loopback redirect URI, with any port
/// (RFC 8252 §7.3): `http://127.0.0.1:PORT/PATH` or `http://[::1]:PORT/PATH`.
fn is_registered_redirect(redirect_uri: &str, path: &str) -> bool {
    let Some(rest) = redirect_uri.strip_prefix("http://") else {
        return false;
    };
    let (authority, tail) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.parse::<u16>().is_ok())
        .map_or(authority, |(host, _)| host);
    matches!(host, "127.0.0.1" | "[::1]") && tail == path
}

/// `GET /oauth/authorize`: the test user approves (or denies) at once.
async fn authorize(State(state): State<Arc<ServerState>>, RawQuery(query): RawQuery) -> Response {
    let counts = &state.signin.counts;
    let params: HashMap<String, String> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let get = |name: &str| params.get(name).map(String::as_str);
    let config = state.signin.config();
    let known_client = get("client_id")
        .is_some_and(|id| id == config.public_client_id || id == state.config.client_id);
    let redirect_uri = get("redirect_uri").unwrap_or_default();
    // Without a known client and its registered redirect URI, nothing is redirected
    // (RFC 6749 §4.1.2.1): a page says what is wrong.
    if !known_client || !is_registered_redirect(redirect_uri, &config.redirect_path) {
        count(&counts.authorization_errors);
        return (
            StatusCode::BAD_REQUEST,
            "unknown client, or a redirect_uri that is not the registered loopback one",
        )
            .into_response();
    }
    let issuer = state.issuer();
    let redirect = |pairs: &[(&str, &str)]| {
        let mut location = format!("{redirect_uri}?");
        let mut query = form_urlencoded::Serializer::for_suffix(location.clone(), location.len());
        query.extend_pairs(pairs);
        if let Some(state) = get("state") {
            query.append_pair("state", state);
        }
        query.append_pair("iss", &issuer);
        location = query.finish();
        let location =
            HeaderValue::from_str(&location).unwrap_or_else(|_| HeaderValue::from_static("/"));
        (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
    };
    if get("prompt") == Some("consent") {
        count(&counts.consent_prompts);
    }
    let error = if get("response_type") != Some("code") {
        Some(("unsupported_response_type", "only response_type=code"))
    } else if get("code_challenge").is_none_or(str::is_empty)
        || get("code_challenge_method") != Some("S256")
    {
        Some((
            "invalid_request",
            "PKCE with code_challenge_method=S256 is required",
        ))
    } else if state.signin.user_denies.load(Ordering::SeqCst) {
        Some(("access_denied", "the user denied the request"))
    } else {
        None
    };
    if let Some((error, description)) = error {
        count(&counts.authorization_errors);
        return redirect(&[("error", error), ("error_description", description)]);
    }
    let code = state.random_token("ac");
    state.signin.tables().codes.insert(
        code.clone(),
        Code {
            client_id: get("client_id").unwrap_or_default().to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            challenge: get("code_challenge").unwrap_or_default().to_owned(),
            scope: get("scope").map(str::to_owned),
            expires: Instant::now() + CODE_LIFETIME,
            grant: None,
        },
    );
    count(&counts.authorizations);
    redirect(&[("code", &code)])
}

/// `POST /oauth/revoke` (RFC 7009).
async fn revoke(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    if let Err(why) = client_of(&state, &headers, &form) {
        return invalid_client(&state, why);
    }
    let counts = &state.signin.counts;
    count(&counts.revocations);
    let Some(token) = form.get("token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is missing",
        );
    };
    let grant = state.tables().refresh.get(token).map(|entry| entry.grant);
    if let Some(grant) = grant {
        if revoke_grant(&state, grant) {
            count(&counts.revoked_grants);
        }
    } else if state.tables().access.remove(token).is_some() {
        count(&counts.revoked_access_tokens);
    }
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_with_any_port_are_registered() {
        for uri in [
            "http://127.0.0.1:49152/callback",
            "http://127.0.0.1/callback",
            "http://[::1]:8080/callback",
        ] {
            assert!(is_registered_redirect(uri, "/callback"), "{uri}");
        }
        for uri in [
            "http://localhost:1/callback",
            "https://127.0.0.1:1/callback",
            "http://127.0.0.1:1/other",
            "http://127.0.0.1.evil.example/callback",
            "http://127.0.0.1:x/callback",
        ] {
            assert!(!is_registered_redirect(uri, "/callback"), "{uri}");
        }
    }

    #[test]
    fn user_codes_are_two_groups_of_four() {
        let code = user_code("uc_0123456789abcdef");
        assert_eq!(code.len(), 9);
        assert_eq!(code.as_bytes()[4], b'-');
    }

    #[test]
    fn s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
