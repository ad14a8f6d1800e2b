//! More APIs beside the embedded server's own resource (issue 22): each on an origin of
//! its own on `127.0.0.1`, with its own audience. The token endpoint issues a token
//! for one when the refresh asks for it with RFC 8707's `resource` (its URL); the API
//! accepts only tokens issued for it, and answers `403 insufficient_scope` (naming
//! the scope) to a token without the scope it requires.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

use super::{AuthServer, RESOURCE_PATH, ServerState};
use crate::serve::Served;

/// An API the token endpoint knows: its audience (the resource indicator a client
/// asks for), and the scope it requires.
pub(super) struct Registered {
    audience: String,
}

/// Whether `resource` is the audience of a registered API.
pub(super) fn is_registered(state: &ServerState, resource: &str) -> bool {
    state
        .apis
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .any(|api| api.audience == resource)
}

/// What an API counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApiStats {
    /// Requests answered `200`.
    pub ok: u64,
    /// Requests answered `401` (no token, unknown, expired, revoked, another's).
    pub unauthorized: u64,
    /// Requests with a token issued for another API, or for the main resource.
    pub wrong_audience: u64,
    /// Requests answered `403 insufficient_scope`.
    pub insufficient_scope: u64,
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    unauthorized: AtomicU64,
    wrong_audience: AtomicU64,
    insufficient_scope: AtomicU64,
}

struct Api {
    state: Arc<ServerState>,
    audience: String,
    required_scope: Option<String>,
    counts: Counts,
}

/// A running API; dropping it stops it.
pub struct ApiServer {
    addr: SocketAddr,
    api: Arc<Api>,
    _served: Served,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("audience", &self.api.audience)
            .field("required_scope", &self.api.required_scope)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Its origin, `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its audience: the RFC 8707 resource indicator a client asks a token for.
    #[must_use]
    pub fn audience(&self) -> &str {
        &self.api.audience
    }

    /// The URL of its resource.
    #[must_use]
    pub fn resource_url(&self) -> String {
        format!("{}{RESOURCE_PATH}", self.origin())
    }

    /// The counts since the last call, reset.
    pub fn take_stats(&self) -> ApiStats {
        let c = &self.api.counts;
        let take = |counter: &AtomicU64| counter.swap(0, Ordering::SeqCst);
        ApiStats {
            ok: take(&c.ok),
            unauthorized: take(&c.unauthorized),
            wrong_audience: take(&c.wrong_audience),
            insufficient_scope: take(&c.insufficient_scope),
        }
    }
}

impl AuthServer {
    /// Starts another API, on an origin of its own, with its own audience (its origin
    /// with a trailing `/`), requiring `required_scope` (every word of it) if given.
    ///
    /// # Errors
    ///
    /// When its socket cannot be bound or its runtime started.
    pub fn start_api(&self, required_scope: Option<&str>) -> io::Result<ApiServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let audience = format!("http://{addr}/");
        self.state
            .apis
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Registered {
                audience: audience.clone(),
            });
        let api = Arc::new(Api {
            state: self.state.clone(),
            audience,
            required_scope: required_scope.map(str::to_owned),
            counts: Counts::default(),
        });
        let app = Router::new()
            .route(RESOURCE_PATH, any(serve))
            .with_state(api.clone());
        let served = Served::start("embedded API", listener, app)?;
        Ok(ApiServer {
            addr,
            api,
            _served: served,
        })
    }
}

/// What a request's token is worth to this API.
enum Verdict {
    Ok(u64, u64),
    Unauthorized,
    WrongAudience,
    InsufficientScope,
}

async fn serve(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    let verdict = token.map_or(Verdict::Unauthorized, |token| {
        let tables = api.state.tables();
        let Some(entry) = tables
            .access
            .get(&token)
            .filter(|a| Instant::now() < a.expires)
        else {
            return Verdict::Unauthorized;
        };
        if tables.grants.get(&entry.grant).is_none_or(|g| g.revoked) {
            return Verdict::Unauthorized;
        }
        if entry.audience.as_deref() != Some(api.audience.as_str()) {
            return Verdict::WrongAudience;
        }
        let granted = entry.scope.as_deref().unwrap_or("");
        let enough = api.required_scope.as_deref().is_none_or(|required| {
            required
                .split_whitespace()
                .all(|s| granted.split_whitespace().any(|g| g == s))
        });
        if enough {
            Verdict::Ok(entry.grant, entry.serial)
        } else {
            Verdict::InsufficientScope
        }
    });
    let counts = &api.counts;
    match verdict {
        Verdict::Ok(grant, serial) => {
            counts.ok.fetch_add(1, Ordering::SeqCst);
            axum::Json(serde_json::json!({ "grant": grant, "token": serial, "api": api.audience }))
                .into_response()
        }
        Verdict::InsufficientScope => {
            counts.insufficient_scope.fetch_add(1, Ordering::SeqCst);
            let scope = api.required_scope.as_deref().unwrap_or_default();
            let challenge = format!(
                "Bearer error=\"insufficient_scope\", scope=\"{scope}\", error_description=\"the token lacks a scope this API requires\""
            );
            (
                StatusCode::FORBIDDEN,
                [(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_str(&challenge)
                        .unwrap_or_else(|_| HeaderValue::from_static("Bearer")),
                )],
            )
                .into_response()
        }
        Verdict::WrongAudience | Verdict::Unauthorized => {
            if matches!(verdict, Verdict::WrongAudience) {
                counts.wrong_audience.fetch_add(1, Ordering::SeqCst);
            }
            counts.unauthorized.fetch_add(1, Ordering::SeqCst);
            (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer error=\"invalid_token\", error_description=\"the access token is missing, unknown, expired, revoked, or for another API\"",
                    ),
                )],
            )
                .into_response()
        }
    }
}
