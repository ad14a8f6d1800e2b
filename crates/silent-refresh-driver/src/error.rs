//! The one error type of the driver, and of both adapters (`silent_refresh_tokio::Error`
//! and `silent_refresh_ureq::Error` are this type): a token source's calls, its stores,
//! its refresher and its HTTP integrations all fail with it.

use silent_refresh::Error as CoreError;
use silent_refresh_oauth2::Error as OAuth2Error;
use silent_refresh_oauth2::origin::Refusal;

/// What went wrong, and what to do about it. Never contains a token or a refresh
/// credential, nor the text of a stored file, nor a request's path or query: URLs
/// appear only as their origin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token machine could not give a token: sign-in required, signed out, no
    /// token before the request's deadline, or too many requests waiting. The wrapped
    /// error says which, and what to do. Also a setting the codec refuses when an
    /// `OAuth2Refresher` is built (`InvalidConfig`).
    #[error(transparent)]
    Token(CoreError),
    /// The token source's driver has stopped: its runtime shut down (tokio), or it
    /// panicked.
    #[error(
        "the token source's driver has stopped (its runtime shut down); build a new TokenSource inside a running runtime"
    )]
    DriverStopped,
    /// A token was asked for from inside the token-change callback, which runs while
    /// the source is locked.
    #[error(
        "a token was requested from inside the token-change callback; ask for it after the callback returns, from another task or thread"
    )]
    Reentrant,
    /// There is no tokio runtime to run the token source's driver on.
    #[error(
        "no tokio runtime is running on this thread; build the TokenSource from inside a tokio runtime"
    )]
    NoRuntime,
    /// The thread that runs the token source's driver (its timer) could not be started.
    #[error(
        "could not start the token source's timer thread: {reason}; the system may be out of threads or memory"
    )]
    Spawn {
        /// The operating system's error.
        reason: String,
    },
    /// A request's URL (or a token endpoint) is not an absolute http or https URL with
    /// a host.
    #[error("invalid URL: {reason}; give an absolute http or https URL")]
    InvalidUrl {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An origin given to a builder's `allow_origin` is not `scheme://host[:port]`: not a
    /// URL, or one with a path, a query or a user.
    #[error(
        "invalid origin{}: {reason}; give it to allow_origin as `https://host` or `https://host:port`",
        origin.as_deref().map(|o| format!(" `{o}`")).unwrap_or_default()
    )]
    InvalidOrigin {
        /// The origin (scheme, host, port) read from it, if any: never the text as
        /// given, which may hold a password, a path or a query.
        origin: Option<String>,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `for_target` on a source whose refresher cannot ask for a target.
    #[error(
        "this token source cannot get a token for the target `{target}`: its refresher asks \
         for one kind of token only; build the source with an OAuth2Refresher (or a \
         refresher that implements `refresh_for` and `supports_targets`)"
    )]
    TargetsUnsupported {
        /// The target's name (its resource indicators, audiences and scope).
        target: String,
    },
    /// The client or middleware was built without any allowed origin, so it would never
    /// attach the token.
    #[error("no origin was allowed: call `allow_origin` with the origin of the API")]
    NoOrigin,
    /// The request's origin is not on the allow-list: the token was not attached, and
    /// the request was not sent (the tokio `AuthorizedClient`, or a strict middleware).
    #[error(
        "refusing the request to {origin}: it is not an allowed origin, so it would go out without the token; add it with `allow_origin` if it is the API's"
    )]
    OriginNotAllowed {
        /// The request's origin (scheme, host, port).
        origin: String,
    },
    /// The request goes to the token endpoint, which never gets the access token.
    #[error(
        "refusing to send the access token to the token endpoint at {origin}; the refresher talks to it"
    )]
    TokenEndpoint {
        /// The token endpoint's origin (scheme, host, port).
        origin: String,
    },
    /// Plain `http` to a host other than loopback, without the user's opt-in: an
    /// allowed origin, or the token URL of an `OAuth2Refresher`. The token, or the
    /// refresh credential and the client secret, would cross the network in clear text.
    #[error(
        "refusing to send a token or credential over plain http to {origin}; use https, or opt in with the builder's `allow_insecure_http(true)` if the network is trusted"
    )]
    InsecureHttp {
        /// The origin (scheme, host, port).
        origin: String,
    },
    /// The access token holds characters an HTTP header may not hold.
    #[error(
        "the access token cannot be put in an Authorization header (it holds characters a header may not); the authorization server sent a malformed token"
    )]
    InvalidToken,
    /// The HTTP client failed to send the request or read the response.
    #[error("the request failed: {0}; retry it if it is safe to repeat")]
    Send(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The API refused the token for a scope it lacks (`insufficient_scope`, RFC 6750
    /// §3). No refresh was started: refreshing gives the same scope.
    #[error(
        "the API requires a scope the token lacks{}; ask for it at sign-in (or for this API's token), a refresh gives the same scope",
        scope.as_deref().map(|s| format!(" (`{s}`)")).unwrap_or_default()
    )]
    InsufficientScope {
        /// The scope the API asked for, if it said.
        scope: Option<String>,
    },
    /// The API asks for a stronger or more recent sign-in (RFC 9470
    /// `insufficient_user_authentication`). No refresh was started: start a sign-in
    /// asking for it.
    #[error(
        "the API requires a step-up sign-in{}{}; start a new sign-in asking for it",
        acr_values.as_deref().map(|a| format!(" (acr_values `{a}`)")).unwrap_or_default(),
        max_age.map(|m| format!(" (at most {m} s ago)")).unwrap_or_default()
    )]
    StepUpRequired {
        /// The authentication context classes the API accepts, if it said.
        acr_values: Option<String>,
        /// How recent the sign-in must be, in seconds, if it said.
        max_age: Option<u64>,
    },
    /// A DPoP resource server asked for a nonce, and the request's body cannot be sent
    /// again (a stream): it was not resent. The nonce is kept: send the request again.
    #[error(
        "the API asked for a DPoP nonce, and the request's body cannot be sent again (a stream), so it was not resent; send it again: the next proof carries the nonce"
    )]
    NotReplayable,
    /// The codec (`silent-refresh-oauth2`) refused what it was given, such as a signing
    /// key. Its origin errors become this enum's own variants, and a setting it refuses
    /// becomes [`Error::Token`].
    #[error(transparent)]
    OAuth2(OAuth2Error),
    /// The HTTP client of an `OAuth2Refresher` could not be built.
    #[error("could not build the HTTP client: {0}; check the TLS setup")]
    HttpClient(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The ureq bearer middleware ran outside a ureq agent, so it could not turn off
    /// redirects for the authorized request.
    #[error(
        "the bearer middleware must run inside a ureq agent: install it with `Agent::config_builder().middleware(..)`"
    )]
    NotInAgent,
    /// Reading or writing the token store failed.
    #[error(
        "the token store at {path} could not be {action}: {source}; check that the folder exists and is writable by this user"
    )]
    StoreIo {
        /// What was being done (`read`, `written`, `locked`, …).
        action: &'static str,
        /// The file or folder.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The stored file is not a token this library wrote (or it is damaged). It is left
    /// as it is: nothing overwrites it silently.
    #[error(
        "the token store at {path} holds no session this program can read ({reason}); move it away or delete it, then sign in again"
    )]
    StoreUnreadable {
        /// The file.
        path: String,
        /// What is wrong with it (never its content).
        reason: String,
    },
    /// Another process (or another lock of this one) kept the token store locked for
    /// longer than this store waits. Nothing was written.
    #[error(
        "the token store at {path} is locked by another process (waited {waited:?}); it is probably refreshing the same session: retry later, or give the store a longer lock timeout"
    )]
    StoreLocked {
        /// The token file (its lock is the file beside it, ending in `.lock`).
        path: String,
        /// How long this process waited.
        waited: std::time::Duration,
    },
    /// The token store's server could not be reached (or answered with an error).
    /// Nothing is known to be written; the driver tries again.
    #[error(
        "the token store {store} could not be {action}: {source}; check that it is running and reachable"
    )]
    StoreUnavailable {
        /// The store, as it may be printed (never a password).
        store: String,
        /// What was being done (`read`, `written`, `locked`, …).
        action: &'static str,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The token store holds an older session than this process saw there (its version
    /// went back: Redis lost writes to `FLUSHALL`, eviction, a restart without
    /// persistence or a failover to a replica behind). Another process may have spent
    /// the refresh credential this one holds, so it is not presented again.
    #[error(
        "the token store {store} lost sessions this program saw there (version {seen}, now {found}): data was lost, and the refresh token held here may have been spent by another process, so it is not sent; sign in again, and keep the store durable (Redis: appendonly yes, appendfsync always, maxmemory-policy noeviction)"
    )]
    StoreLost {
        /// The store, as it may be printed (never a password).
        store: String,
        /// The newest version this process saw.
        seen: u64,
        /// The version the store holds now (0: none at all).
        found: u64,
    },
    /// The token store was not read within the time a program gave
    /// [`TokenSource::ready_within`](crate::TokenSource::ready_within) (or
    /// `request_timeout` for `ready`): it could not be reached, and the source keeps
    /// trying. Whether a session is stored is not known yet: do not start a sign-in
    /// on this answer.
    #[error(
        "the token store was not read within {waited:?} (it could not be reached; the source keeps trying), so whether a session is stored is not known yet; check that the store is reachable, then ask again"
    )]
    StoreNotRead {
        /// How long the call waited.
        waited: std::time::Duration,
    },
    /// A request of a sign-in or sign-out step (discovery, the device flow, the code
    /// exchange, revocation) got no answer: the server could not be reached, the
    /// connection broke, or the request's timeout passed. Nothing was changed here.
    #[error("the request to {origin} failed: {reason}")]
    NoAnswer {
        /// The origin the request went to (scheme, host, port).
        origin: String,
        /// What happened, naming the endpoint (never a secret).
        reason: String,
        /// No connection could be made at all (refused, DNS, connect timeout).
        unreachable: bool,
    },
    /// The authorization server's metadata names no endpoint for this flow: it does
    /// not offer it (or not to this issuer).
    #[error(
        "the authorization server {issuer} has no {endpoint} in its metadata, so it does not offer {flow}; {hint}"
    )]
    NoEndpoint {
        /// The issuer.
        issuer: String,
        /// The metadata field (`device_authorization_endpoint`, `authorization_endpoint`).
        endpoint: &'static str,
        /// The flow that needs it.
        flow: &'static str,
        /// What to do instead.
        hint: &'static str,
    },
    /// The program cancelled the sign-in (its [`CancelSignIn`](crate::signin::CancelSignIn)
    /// handle). Nothing was signed in.
    #[error("the sign-in was cancelled; start it again to sign in")]
    SignInCancelled,
    /// The browser sign-in's time limit passed before the browser came back to the
    /// loopback redirect URI. Nothing was signed in, and the listener is closed.
    #[error(
        "no answer from the browser within {waited:?}: the sign-in page was not completed in time; start the sign-in again (and finish it in the browser that opens), or give a longer time limit"
    )]
    SignInTimedOut {
        /// The time limit.
        waited: std::time::Duration,
    },
    /// The loopback listener of the browser sign-in could not be opened on
    /// `127.0.0.1`.
    #[error(
        "could not listen on 127.0.0.1 for the sign-in redirect: {reason}; check that loopback connections are allowed here, or sign in with the device flow"
    )]
    Loopback {
        /// The operating system's error.
        reason: String,
    },
    /// The command that opens the browser could not be started, or said it failed.
    /// Nothing was signed in, and the listener is closed.
    #[error(
        "the browser could not be opened with `{command}`: {reason}; give the command that opens a URL here, or sign in with the device flow"
    )]
    BrowserNotOpened {
        /// The command (its program, as given; never the URL).
        command: String,
        /// Why: the operating system's error, or the command's exit status.
        reason: String,
    },
    /// A DPoP proof could not be made for a sign-in's token request (feature `dpop`).
    #[error("could not make a DPoP proof for the token request ({reason}); check the DPoP key")]
    DpopProof {
        /// Why (never the key).
        reason: String,
    },
    /// The operating system's random generator failed: a browser sign-in needs it for
    /// its `state` and PKCE verifier.
    #[error(
        "the operating system's random generator failed ({reason}); the sign-in needs it for its state and PKCE verifier"
    )]
    Random {
        /// The operating system's error.
        reason: String,
    },
    /// A sign-out could not revoke the session at the authorization server (RFC 7009):
    /// the session was forgotten here all the same (no token is held, none is
    /// stored), but the server may accept its refresh token until it expires.
    #[error(
        "signed out here, but the authorization server did not confirm the revocation: {reason}; the refresh token may stay valid at the server until it expires (revoke the session in the server's account page if that matters)"
    )]
    NotRevoked {
        /// What the revocation endpoint answered, or why it could not be asked.
        reason: String,
    },
    /// The token to store has a relative expiry ([`Expiry::In`](silent_refresh::Expiry::In)),
    /// which means nothing once the process ends. Nothing was written.
    #[error(
        "the token to store at {path} has a relative expiry; a store keeps wall-clock expiries: convert it to `Expiry::At` when the token arrives (this is a bug in the program or the adapter)"
    )]
    StoreRelativeExpiry {
        /// The token file.
        path: String,
    },
}

impl Error {
    /// Whether the credentials are dead or gone: the program must sign in again
    /// (terminal refresh failure, or signed out).
    #[must_use]
    pub fn needs_sign_in(&self) -> bool {
        matches!(
            self,
            Self::Token(
                CoreError::SignInRequired { .. } | CoreError::SignedOut | CoreError::AwaitingSignIn
            )
        )
    }

    /// Whether the token endpoint could not be reached and no usable token is left:
    /// retry later (the status says when the next refresh is tried).
    #[must_use]
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Token(CoreError::Unreachable { .. }))
    }
}

impl From<CoreError> for Error {
    /// Wraps the core's error in `Error::Token`.
    fn from(error: CoreError) -> Self {
        Self::Token(error)
    }
}

impl From<OAuth2Error> for Error {
    /// The codec's origin errors become this enum's own variants (their messages name
    /// the adapters' builders); a setting the codec refuses is `Error::Token` with the
    /// core's `InvalidConfig`; any other is wrapped in `Error::OAuth2`.
    fn from(error: OAuth2Error) -> Self {
        match error {
            OAuth2Error::InvalidUrl { reason } => Self::InvalidUrl { reason },
            OAuth2Error::InvalidOrigin { origin, reason } => Self::InvalidOrigin { origin, reason },
            OAuth2Error::NoOrigin => Self::NoOrigin,
            OAuth2Error::InsecureHttp { origin } => Self::InsecureHttp { origin },
            OAuth2Error::InvalidConfig(reason) => Self::Token(CoreError::InvalidConfig(reason)),
            other => Self::OAuth2(other),
        }
    }
}

impl From<Refusal> for Error {
    /// Why a request did not get the token, as an error that names only its origin.
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::InvalidUrl { reason } => Self::InvalidUrl { reason },
            Refusal::Excluded { origin } => Self::TokenEndpoint {
                origin: origin.to_string(),
            },
            Refusal::NotAllowed { origin } => Self::OriginNotAllowed {
                origin: origin.to_string(),
            },
        }
    }
}
