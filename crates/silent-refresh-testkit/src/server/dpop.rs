//! The embedded server's DPoP mode (RFC 9449), on when [`ServerConfig::dpop`] is set.
//!
//! - **Proofs on every token request**: a token request without a valid `DPoP` proof
//!   is refused (`400 invalid_dpop_proof`). A proof is checked as RFC 9449 §4.3 says:
//!   one `DPoP` header, a JWS with `typ` `dpop+jwt`, an asymmetric `alg`, a public
//!   `jwk` (no private member) that verifies its signature, `htm` the request's method,
//!   `htu` its URL (both sides normalised, as §4.3 asks), `iat` within
//!   [`DpopConfig::iat_window`] (and at most 5 s ahead), a `jti` never seen before
//!   (a replay is refused), the server's current nonce when nonces are demanded, and at
//!   the resource `ath`, the hash of the access token presented.
//! - **Bound tokens**: the refresh-token and client-credentials grants answer
//!   `token_type` `DPoP` and bind the access token to the proof key's thumbprint (the
//!   `cnf.jkt` of a JWT access token, kept here in a table). A public client's refresh
//!   tokens are bound to the key that first presented them (each rotation inherits the
//!   binding); a refresh token presented with another key is refused
//!   (`invalid_grant`) and not spent. The JWT bearer and token-exchange grants, and the
//!   sign-in flows' public client ([`signin`](super::signin)), still answer `Bearer`
//!   (with a proof checked all the same), as a server that does not bind every grant
//!   would: their tokens are bearer tokens.
//! - **At the resource**: `Authorization: DPoP <token>` with a proof made by the key
//!   the token is bound to; a bound token sent as `Bearer` is refused, and so is a
//!   bearer token sent as `DPoP`. Refusals are `401` with a `DPoP` challenge.
//! - **Server nonces** ([`DpopConfig::token_nonces`], [`DpopConfig::resource_nonces`]):
//!   a proof without the current nonce is answered with the challenge (`400
//!   use_dpop_nonce` at the token endpoint, `401` with `WWW-Authenticate: DPoP
//!   error="use_dpop_nonce"` at the resource) and the current nonce in `DPoP-Nonce`.
//!   Successful answers carry it too. Nonces rotate every
//!   [`DpopConfig::nonce_period`] ([`AuthServer::set_dpop_nonce_period`]), or when a
//!   test says ([`AuthServer::rotate_dpop_nonces`]); only the current one is accepted.
//! - **Counts** of every acceptance, challenge and refusal in [`Stats::dpop`].
//!
//! Signatures are verified with jsonwebtoken (`DecodingKey::from_jwk`) and thumbprints
//! computed with its `Jwk::thumbprint`: not the client's code.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use silent_refresh_oauth2::dpop;

use super::{AuthServer, Issued, ServerState, oauth_error, unix_now};

/// How far ahead of the server's clock a proof's `iat` may be, in seconds.
const FUTURE_LEEWAY_SECS: u64 = 5;
/// How many entries a table holds before expired ones are swept out.
const SWEEP_ABOVE: usize = 4096;

/// The DPoP mode's settings ([`ServerConfig::dpop`](super::ServerConfig::dpop)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpopConfig {
    /// Whether the token endpoint demands its nonce in every proof.
    pub token_nonces: bool,
    /// Whether the resource demands its nonce in every proof.
    pub resource_nonces: bool,
    /// How often the nonces change (`None`: only when
    /// [`AuthServer::rotate_dpop_nonces`] is called).
    pub nonce_period: Option<Duration>,
    /// How old a proof's `iat` may be.
    pub iat_window: Duration,
}

impl Default for DpopConfig {
    /// Nonces demanded at both ends, rotated every 10 s; proofs up to 60 s old.
    fn default() -> Self {
        Self {
            token_nonces: true,
            resource_nonces: true,
            nonce_period: Some(Duration::from_secs(10)),
            iat_window: Duration::from_secs(60),
        }
    }
}

/// What the DPoP mode counted since the last [`AuthServer::take_stats`] (in
/// [`Stats::dpop`](super::Stats::dpop)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DpopStats {
    /// Proofs accepted at the token endpoint.
    pub token_proofs: u64,
    /// Proofs accepted at the resource.
    pub resource_proofs: u64,
    /// Nonce challenges answered by the token endpoint (`400 use_dpop_nonce`).
    pub token_nonce_challenges: u64,
    /// Nonce challenges answered by the resource (`401`, `DPoP
    /// error="use_dpop_nonce"`).
    pub resource_nonce_challenges: u64,
    /// DPoP-bound access tokens issued (`token_type` `DPoP`).
    pub bound_issued: u64,
    /// Requests refused for want of a proof (none, or more than one `DPoP` header).
    pub missing_proof: u64,
    /// Proofs refused as malformed: not a JWS, a wrong `typ`, a symmetric or unknown
    /// `alg`, no `jwk` or a private one, a bad signature, missing claims.
    pub invalid_proof: u64,
    /// Proofs refused because their `jti` was seen before.
    pub replayed: u64,
    /// Proofs refused for an `htm` that is not the request's method.
    pub wrong_method: u64,
    /// Proofs refused for an `htu` that is not the request's URL.
    pub wrong_url: u64,
    /// Proofs refused for an `iat` out of the window.
    pub stale: u64,
    /// Resource proofs refused for an `ath` that is not the access token's hash.
    pub wrong_ath: u64,
    /// Resource requests refused because the access token is bound to another key
    /// (or to none: a bearer token sent as `DPoP`).
    pub wrong_key: u64,
    /// Refresh tokens refused because they are bound to another key.
    pub refresh_wrong_key: u64,
    /// DPoP-bound access tokens presented as `Bearer`, refused.
    pub bearer_refused: u64,
}

#[derive(Default)]
struct Counters {
    token_proofs: AtomicU64,
    resource_proofs: AtomicU64,
    token_nonce_challenges: AtomicU64,
    resource_nonce_challenges: AtomicU64,
    bound_issued: AtomicU64,
    missing_proof: AtomicU64,
    invalid_proof: AtomicU64,
    replayed: AtomicU64,
    wrong_method: AtomicU64,
    wrong_url: AtomicU64,
    stale: AtomicU64,
    wrong_ath: AtomicU64,
    wrong_key: AtomicU64,
    refresh_wrong_key: AtomicU64,
    bearer_refused: AtomicU64,
}

/// The DPoP mode's state, in the server's state.
pub(super) struct DpopState {
    config: DpopConfig,
    /// The token endpoint's `htu`.
    token_htu: String,
    /// The resource's origin, `http://127.0.0.1:PORT`.
    resource_origin: String,
    /// Whether refresh tokens are bound (a public client's are, RFC 9449 §5).
    bind_refresh_tokens: bool,
    /// When the nonces change.
    clock: Mutex<NonceClock>,
    keys: RandomState,
    tables: Mutex<Tables>,
    counters: Counters,
}

#[derive(Default)]
struct Tables {
    /// `jkt jti` of every proof accepted, with its `iat` (swept once out of window).
    seen: HashMap<String, u64>,
    /// The key each refresh token is bound to.
    refresh: HashMap<String, String>,
    /// The key each access token is bound to, and when the token expires.
    access: HashMap<String, (String, Instant)>,
}

/// Where a proof is presented.
#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    TokenEndpoint,
    Resource,
}

/// A proof that passed: the thumbprint of its key.
pub(super) struct Proven {
    jkt: String,
}

/// Why a proof or a token was refused, and the counter it adds to.
struct Refusal {
    counter: fn(&Counters) -> &AtomicU64,
    /// The OAuth error: `invalid_dpop_proof`, or `invalid_token` at the resource for a
    /// token that does not go with the proof.
    error: &'static str,
    description: &'static str,
}

impl Refusal {
    /// A refused proof.
    fn proof(counter: fn(&Counters) -> &AtomicU64, description: &'static str) -> Answer {
        Answer::Refused(Self {
            counter,
            error: "invalid_dpop_proof",
            description,
        })
    }

    /// A refused access token.
    fn token(counter: fn(&Counters) -> &AtomicU64, description: &'static str) -> Answer {
        Answer::Refused(Self {
            counter,
            error: "invalid_token",
            description,
        })
    }
}

/// When the nonces change: epoch `base` began at `since`, and a new one begins every
/// `period`.
struct NonceClock {
    base: u64,
    since: Instant,
    period: Option<Duration>,
}

impl NonceClock {
    fn epoch(&self) -> u64 {
        let periods = self.period.map_or(0, |period| {
            let elapsed = self.since.elapsed().as_micros();
            u64::try_from(elapsed / period.as_micros().max(1)).unwrap_or(u64::MAX)
        });
        self.base.saturating_add(periods)
    }
}

impl DpopState {
    pub(super) fn new(
        config: DpopConfig,
        token_url: &str,
        resource_origin: String,
        public_client: bool,
    ) -> Self {
        Self {
            clock: Mutex::new(NonceClock {
                base: 0,
                since: Instant::now(),
                period: config.nonce_period,
            }),
            token_htu: dpop::htu(token_url).unwrap_or_else(|_| token_url.to_owned()),
            resource_origin,
            bind_refresh_tokens: public_client,
            config,
            keys: RandomState::new(),
            tables: Mutex::new(Tables::default()),
            counters: Counters::default(),
        }
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn clock(&self) -> MutexGuard<'_, NonceClock> {
        self.clock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, counter: fn(&Counters) -> &AtomicU64) {
        counter(&self.counters).fetch_add(1, Ordering::SeqCst);
    }

    /// The current nonce of one end: a function of a secret, the end and the epoch.
    fn nonce(&self, at: At) -> String {
        let epoch = self.clock().epoch();
        let end = match at {
            At::TokenEndpoint => "as",
            At::Resource => "rs",
        };
        let a = self.keys.hash_one((end, epoch, 1u8));
        let b = self.keys.hash_one((end, epoch, 2u8));
        format!("{end}.{epoch}.{a:016x}{b:016x}")
    }

    fn demands_nonce(&self, at: At) -> bool {
        match at {
            At::TokenEndpoint => self.config.token_nonces,
            At::Resource => self.config.resource_nonces,
        }
    }

    /// Adds the current nonce to an answer of `at`, if nonces are demanded there.
    fn stamp(&self, at: At, response: &mut Response) {
        if !self.demands_nonce(at) {
            return;
        }
        if let Ok(value) = HeaderValue::from_str(&self.nonce(at)) {
            response.headers_mut().insert(dpop::DPOP_NONCE, value);
        }
    }

    /// Checks the proof of a request: see the module docs. `Err` is the refusal or
    /// the nonce challenge to answer.
    fn check(
        &self,
        at: At,
        headers: &HeaderMap,
        method: &str,
        htu: &str,
        access_token: Option<&str>,
    ) -> Result<Proven, Answer> {
        let refuse = Refusal::proof;
        let mut values = headers.get_all(dpop::DPOP).iter();
        let (Some(proof), None) = (values.next(), values.next()) else {
            return Err(refuse(
                |c| &c.missing_proof,
                "a request needs exactly one DPoP header",
            ));
        };
        let Ok(proof) = proof.to_str() else {
            return Err(refuse(|c| &c.invalid_proof, "the DPoP proof is not text"));
        };
        let invalid = |description| refuse(|c| &c.invalid_proof, description);
        let header = jsonwebtoken::decode_header(proof)
            .map_err(|_| invalid("the DPoP proof is not a JWS"))?;
        if header.typ.as_deref() != Some("dpop+jwt") {
            return Err(invalid("the DPoP proof's typ is not dpop+jwt"));
        }
        if !matches!(
            header.alg,
            Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::EdDSA
                | Algorithm::PS256
                | Algorithm::RS256
        ) {
            return Err(invalid("the DPoP proof's alg is not an asymmetric one"));
        }
        // The raw header: a private member in the jwk publishes the key.
        let raw_header: serde_json::Value = proof
            .split('.')
            .next()
            .and_then(|part| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .ok()
            })
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        if ["d", "p", "q", "dp", "dq", "qi", "k"]
            .iter()
            .any(|member| raw_header["jwk"].get(member).is_some())
        {
            return Err(invalid("the DPoP proof's jwk holds a private key"));
        }
        let Some(jwk) = header.jwk else {
            return Err(invalid("the DPoP proof has no jwk"));
        };
        let key =
            DecodingKey::from_jwk(&jwk).map_err(|_| invalid("the jwk is not a public key"))?;
        let mut validation = Validation::new(header.alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<serde_json::Value>(proof, &key, &validation)
            .map_err(|_| invalid("the DPoP proof's signature does not verify with its jwk"))?
            .claims;
        let jkt = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| invalid("the jwk has no thumbprint"))?;
        let (Some(jti), Some(htm), Some(claimed_htu), Some(iat)) = (
            claims["jti"].as_str().filter(|j| !j.is_empty()),
            claims["htm"].as_str(),
            claims["htu"].as_str(),
            claims["iat"].as_u64(),
        ) else {
            return Err(invalid("the DPoP proof lacks jti, htm, htu or iat"));
        };
        if htm != method {
            return Err(refuse(
                |c| &c.wrong_method,
                "htm is not this request's method",
            ));
        }
        // RFC 9449 §4.3: both sides normalised (RFC 3986 §6.2.2, §6.2.3).
        if dpop::htu(claimed_htu).ok().as_deref() != Some(htu) {
            return Err(refuse(|c| &c.wrong_url, "htu is not this request's URL"));
        }
        if self.demands_nonce(at) && claims["nonce"].as_str() != Some(self.nonce(at).as_str()) {
            return Err(Answer::UseNonce);
        }
        let now = unix_now();
        let window = self.config.iat_window.as_secs();
        if iat > now + FUTURE_LEEWAY_SECS || iat + window < now {
            return Err(refuse(
                |c| &c.stale,
                "iat is too far from the server's time",
            ));
        }
        if let Some(token) = access_token
            && claims["ath"].as_str() != Some(dpop::ath(token).as_str())
        {
            return Err(refuse(
                |c| &c.wrong_ath,
                "ath is not the access token's hash",
            ));
        }
        let mut tables = self.tables();
        if tables.seen.len() >= SWEEP_ABOVE {
            tables
                .seen
                .retain(|_, iat| *iat + window + FUTURE_LEEWAY_SECS >= now);
        }
        if tables.seen.insert(format!("{jkt} {jti}"), iat).is_some() {
            return Err(refuse(|c| &c.replayed, "the proof's jti was used before"));
        }
        drop(tables);
        Ok(Proven { jkt })
    }

    /// The answer for a failed check at `at`, counted.
    fn answer(&self, at: At, answer: Answer) -> Response {
        let mut response = match (at, answer) {
            (At::TokenEndpoint, Answer::UseNonce) => {
                self.count(|c| &c.token_nonce_challenges);
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "use_dpop_nonce",
                    "Authorization server requires nonce in DPoP proof",
                )
            }
            (At::TokenEndpoint, Answer::Refused(refusal)) => {
                self.count(refusal.counter);
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_dpop_proof",
                    refusal.description,
                )
            }
            (At::Resource, Answer::UseNonce) => {
                self.count(|c| &c.resource_nonce_challenges);
                challenge(
                    "use_dpop_nonce",
                    "Resource server requires nonce in DPoP proof",
                )
            }
            (At::Resource, Answer::Refused(refusal)) => {
                self.count(refusal.counter);
                challenge(refusal.error, refusal.description)
            }
        };
        self.stamp(at, &mut response);
        response
    }
}

/// What a failed check answers.
enum Answer {
    /// The nonce challenge.
    UseNonce,
    /// A refusal.
    Refused(Refusal),
}

/// `401` with a `DPoP` challenge.
fn challenge(error: &str, description: &str) -> Response {
    let value = format!(
        "DPoP algs=\"ES256 EdDSA\", error=\"{error}\", error_description=\"{description}\""
    );
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("DPoP")),
        )],
    )
        .into_response()
}

/// At the token endpoint, in DPoP mode: the proof of the request, or the answer that
/// refuses it (a nonce challenge or `invalid_dpop_proof`). `Ok(None)` when the mode
/// is off.
pub(super) fn token_request(
    state: &ServerState,
    headers: &HeaderMap,
) -> Result<Option<Proven>, Box<Response>> {
    let Some(dpop) = &state.dpop else {
        return Ok(None);
    };
    match dpop.check(At::TokenEndpoint, headers, "POST", &dpop.token_htu, None) {
        Ok(proven) => {
            dpop.count(|c| &c.token_proofs);
            Ok(Some(proven))
        }
        Err(answer) => Err(Box::new(dpop.answer(At::TokenEndpoint, answer))),
    }
}

/// Before a refresh: a refresh token bound to another key than the proof's is refused
/// (`invalid_grant`) and not spent.
pub(super) fn check_refresh_token(
    state: &ServerState,
    presented: &str,
    proven: Option<&Proven>,
) -> Result<(), Box<Response>> {
    let (Some(dpop), Some(proven)) = (&state.dpop, proven) else {
        return Ok(());
    };
    let bound = dpop.tables().refresh.get(presented).cloned();
    match bound {
        Some(jkt) if jkt != proven.jkt => {
            dpop.count(|c| &c.refresh_wrong_key);
            state.counters.invalid_grant.fetch_add(1, Ordering::SeqCst);
            let mut response = oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "the refresh token is bound to another DPoP key",
            );
            dpop.stamp(At::TokenEndpoint, &mut response);
            Err(Box::new(response))
        }
        _ => Ok(()),
    }
}

/// The answer of a token request that issued `issued`: with a proof, a DPoP-bound token
/// (`token_type` `DPoP`, the access token and, for a public client, the new refresh
/// token bound to the proof's key), with the current nonce.
pub(super) fn issue(state: &ServerState, issued: Issued, proven: Option<&Proven>) -> Response {
    let (Some(dpop), Some(proven)) = (&state.dpop, proven) else {
        return issued.into_response();
    };
    let expires = Instant::now() + Duration::from_secs(issued.expires_in.saturating_add(60));
    {
        let mut tables = dpop.tables();
        let now = Instant::now();
        if tables.access.len() >= SWEEP_ABOVE {
            tables.access.retain(|_, (_, expires)| *expires > now);
        }
        tables
            .access
            .insert(issued.access_token.clone(), (proven.jkt.clone(), expires));
        if let Some(refresh_token) = issued
            .refresh_token
            .as_ref()
            .filter(|_| dpop.bind_refresh_tokens)
        {
            tables
                .refresh
                .insert(refresh_token.clone(), proven.jkt.clone());
        }
    }
    dpop.count(|c| &c.bound_issued);
    let mut response = issued.into_response_as(dpop::TOKEN_TYPE);
    dpop.stamp(At::TokenEndpoint, &mut response);
    response
}

/// At the resource: `Ok(Some(token))` for a DPoP-bound token proven by its key,
/// `Ok(None)` to read the request as a bearer request (the mode is off, or a bearer
/// token that is not bound), `Err` for the refusal or the nonce challenge.
pub(super) fn resource_token(
    state: &ServerState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<Option<String>, Box<Response>> {
    let Some(dpop) = &state.dpop else {
        return Ok(None);
    };
    let refused = |answer| {
        state
            .counters
            .resource_unauthorized
            .fetch_add(1, Ordering::SeqCst);
        Err(Box::new(dpop.answer(At::Resource, answer)))
    };
    let Some((scheme, token)) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(scheme, token)| (scheme, token.trim()))
    else {
        return Ok(None);
    };
    let bound = dpop.tables().access.get(token).map(|(jkt, _)| jkt.clone());
    if scheme.eq_ignore_ascii_case("bearer") {
        return match bound {
            Some(_) => refused(Refusal::token(
                |c| &c.bearer_refused,
                "this access token is DPoP-bound: send it as DPoP, with a proof",
            )),
            None => Ok(None),
        };
    }
    if !scheme.eq_ignore_ascii_case("dpop") {
        return Ok(None);
    }
    let htu = dpop::htu(&format!("{}{path}", dpop.resource_origin)).unwrap_or_default();
    let proven = match dpop.check(At::Resource, headers, method.as_str(), &htu, Some(token)) {
        Ok(proven) => proven,
        Err(answer) => return refused(answer),
    };
    if bound.as_deref() != Some(proven.jkt.as_str()) {
        return refused(Refusal::token(
            |c| &c.wrong_key,
            "the access token is not bound to the proof's key",
        ));
    }
    dpop.count(|c| &c.resource_proofs);
    Ok(Some(token.to_owned()))
}

/// Adds the resource's current nonce to a successful answer.
pub(super) fn stamp_resource(state: &ServerState, response: &mut Response) {
    if let Some(dpop) = &state.dpop {
        dpop.stamp(At::Resource, response);
    }
}

impl DpopState {
    fn take_stats(&self) -> DpopStats {
        let c = &self.counters;
        let take = |counter: &AtomicU64| counter.swap(0, Ordering::SeqCst);
        DpopStats {
            token_proofs: take(&c.token_proofs),
            resource_proofs: take(&c.resource_proofs),
            token_nonce_challenges: take(&c.token_nonce_challenges),
            resource_nonce_challenges: take(&c.resource_nonce_challenges),
            bound_issued: take(&c.bound_issued),
            missing_proof: take(&c.missing_proof),
            invalid_proof: take(&c.invalid_proof),
            replayed: take(&c.replayed),
            wrong_method: take(&c.wrong_method),
            wrong_url: take(&c.wrong_url),
            stale: take(&c.stale),
            wrong_ath: take(&c.wrong_ath),
            wrong_key: take(&c.wrong_key),
            refresh_wrong_key: take(&c.refresh_wrong_key),
            bearer_refused: take(&c.bearer_refused),
        }
    }
}

/// The DPoP counts of `state` (zero when the mode is off), reset.
pub(super) fn take_stats(state: &ServerState) -> DpopStats {
    state
        .dpop
        .as_ref()
        .map(DpopState::take_stats)
        .unwrap_or_default()
}

impl DpopStats {
    /// Every refusal of a proof or of a token, added up (not the nonce challenges,
    /// which are part of normal operation).
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.missing_proof
            + self.invalid_proof
            + self.replayed
            + self.wrong_method
            + self.wrong_url
            + self.stale
            + self.wrong_ath
            + self.wrong_key
            + self.refresh_wrong_key
            + self.bearer_refused
    }
}

impl AuthServer {
    /// The DPoP mode's nonce rotation: from now on the nonces change every `period`
    /// (`None`: only at [`rotate_dpop_nonces`](Self::rotate_dpop_nonces)). Nothing
    /// when the mode is off.
    pub fn set_dpop_nonce_period(&self, period: Option<Duration>) {
        if let Some(dpop) = &self.state.dpop {
            // A new epoch starts now, and the next ones every `period`.
            let mut clock = dpop.clock();
            clock.base = clock.epoch().saturating_add(1);
            clock.since = Instant::now();
            clock.period = period;
        }
    }

    /// Changes both DPoP nonces now: the next proof with an old one gets a challenge.
    pub fn rotate_dpop_nonces(&self) {
        if let Some(dpop) = &self.state.dpop {
            let mut clock = dpop.clock();
            clock.base = clock.epoch().saturating_add(1);
            clock.since = Instant::now();
        }
    }

    /// The nonce the token endpoint (`true`) or the resource (`false`) accepts now, if
    /// the DPoP mode demands one there.
    #[must_use]
    pub fn dpop_nonce(&self, token_endpoint: bool) -> Option<String> {
        let dpop = self.state.dpop.as_ref()?;
        let at = if token_endpoint {
            At::TokenEndpoint
        } else {
            At::Resource
        };
        dpop.demands_nonce(at).then(|| dpop.nonce(at))
    }

    /// The thumbprint of the key a refresh token is bound to (`None`: unbound, or the
    /// DPoP mode is off).
    #[must_use]
    pub fn dpop_refresh_binding(&self, refresh_token: &str) -> Option<String> {
        self.state
            .dpop
            .as_ref()?
            .tables()
            .refresh
            .get(refresh_token)
            .cloned()
    }

    /// The thumbprint of the key an access token is bound to (`None`: a bearer token,
    /// or the DPoP mode is off).
    #[must_use]
    pub fn dpop_access_binding(&self, access_token: &str) -> Option<String> {
        let dpop = self.state.dpop.as_ref()?;
        dpop.tables()
            .access
            .get(access_token)
            .map(|(jkt, _)| jkt.clone())
    }
}
