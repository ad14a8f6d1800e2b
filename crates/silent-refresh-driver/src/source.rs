//! The part of a token source's public API that is the same in every runtime, written
//! once: the getters and commands of `TokenSource`, the settings of its builder, the
//! conversions of an adapter's error, and how a call's deadline is read.
//!
//! An adapter differs from another only in how a caller waits (`token()` is `async` in
//! one, blocking in the other) and how it runs its driver loop. The rest of its public
//! API is expanded from the macros here, so the names, the behaviour and the docs are
//! the same in both, and a fix lands in both at once. The macros are for the adapters
//! of this workspace; they expect the fields named in each macro's docs.

use std::time::{Duration, Instant};

use crate::clock::Clock;

/// The deadline of a call that may wait at most `limit` from now, on `clock`.
#[must_use]
pub fn deadline_in(clock: &dyn Clock, limit: Duration) -> Instant {
    let now = clock.now();
    now.checked_add(limit).unwrap_or(now)
}

/// How long a blocked caller waits for its outcome before giving up by itself: until
/// its `deadline` (`None`: `request_timeout` from now), plus `grace` for a driver whose
/// timer fires late. The driver answers at the deadline; this only bounds a late one.
#[must_use]
pub fn wait_bound(
    clock: &dyn Clock,
    deadline: Option<Instant>,
    request_timeout: Duration,
    grace: Duration,
) -> Duration {
    let now = clock.now();
    let deadline = deadline.unwrap_or_else(|| now.checked_add(request_timeout).unwrap_or(now));
    deadline
        .saturating_duration_since(now)
        .saturating_add(grace)
}

/// The getters and commands of a `TokenSource`, expanded inside its `impl` block. The
/// type must have the fields `kernel` (an `Arc` of the [`Kernel`](crate::kernel::Kernel))
/// and `alive`, whose `token_endpoint` is an `Option<Arc<str>>`.
#[doc(hidden)]
#[macro_export]
macro_rules! token_source_getters {
    () => {
        /// A request sent with the token of `generation` was rejected (HTTP 401). If
        /// that is the current token, the next `token` call waits for a new one (many
        /// reports of one generation cause one refresh); an older generation causes
        /// nothing, since the current token is already newer.
        pub fn report_rejected(&self, generation: $crate::source::reexport::Generation) {
            self.kernel
                .command($crate::kernel::Command::Rejected(generation));
        }

        /// Signs in with new credentials: replaces the token, forgets any failure, and
        /// releases the calls waiting for a token.
        pub fn sign_in(&self, credentials: $crate::source::reexport::Credentials) {
            self.kernel
                .command($crate::kernel::Command::SignIn(credentials));
        }

        /// Signs out: clears the token, fails every waiting call, and reports
        /// [`TokenChange::Forget`](crate::TokenChange::Forget) so the program deletes
        /// its stored token (a store given to the builder forgets it by itself).
        pub fn sign_out(&self) {
            self.kernel.command($crate::kernel::Command::SignOut);
        }

        /// Where the source stands with the credentials: signed in, misconfigured, the
        /// token endpoint unreachable (backing off), sign-in required, signed out. Like
        /// every getter it reads a published snapshot: no lock, so it is safe anywhere,
        /// also inside the token-change callback.
        #[must_use]
        pub fn status(&self) -> $crate::source::reexport::Status {
            self.kernel.snapshot().status.clone()
        }

        /// The generation of the newest token (0 before the first).
        #[must_use]
        pub fn generation(&self) -> $crate::source::reexport::Generation {
            self.kernel.snapshot().generation
        }

        /// Whether the current token is known to be stored (always `true` without a
        /// store once the token-change callback returned; `false` with no token, or
        /// while its save is pending or failing: a restart now would lose the session).
        #[must_use]
        pub fn is_durable(&self) -> bool {
            self.kernel.snapshot().durable
        }

        /// How many calls are waiting for a token.
        #[must_use]
        pub fn waiting(&self) -> usize {
            self.kernel.snapshot().waiting
        }

        /// The token endpoint, as the builder or the refresher named it: the send
        /// helpers never attach the access token to a request for it.
        #[must_use]
        pub fn token_endpoint(&self) -> Option<&str> {
            self.alive.token_endpoint.as_deref()
        }
    };
}

/// `Debug` for a `TokenSource` with the fields of [`token_source_getters!`]: no lock,
/// so it never blocks, also inside the token-change callback.
#[doc(hidden)]
#[macro_export]
macro_rules! token_source_debug {
    ($source:ty) => {
        impl ::std::fmt::Debug for $source {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                let snapshot = self.kernel.snapshot();
                f.debug_struct("TokenSource")
                    .field("status", &snapshot.status)
                    .field("generation", &snapshot.generation)
                    .field("waiting", &snapshot.waiting)
                    .field("token_endpoint", &self.alive.token_endpoint)
                    .finish_non_exhaustive()
            }
        }
    };
}

/// The settings of a `TokenSourceBuilder` that are the same in every runtime, expanded
/// inside its `impl` block. The type must have the fields `credentials`
/// (`Option<Credentials>`), `token_endpoint` (`Option<Arc<str>>`), `store`
/// (`Option<Arc<dyn TokenStore>>`), `clock` (`Option<Arc<dyn Clock>>`) and `on_change`
/// (`Option<ChangeCallback>`).
#[doc(hidden)]
#[macro_export]
macro_rules! token_source_settings {
    () => {
        /// The credentials to start with. Without them, `token` calls wait (until
        /// their deadline) for `TokenSource::sign_in`.
        #[must_use]
        pub fn credentials(mut self, credentials: $crate::source::reexport::Credentials) -> Self {
            self.credentials = Some(credentials);
            self
        }

        /// The URL of the token endpoint, for a refresher that cannot name it itself (a
        /// closure): the send helpers never attach the access token to a request for
        /// it. Overrides what the refresher says.
        #[must_use]
        pub fn token_endpoint(mut self, url: impl Into<String>) -> Self {
            self.token_endpoint = Some(::std::sync::Arc::from(url.into()));
            self
        }

        /// Keep the session in `store` (a [`FileStore`](crate::FileStore), or your
        /// own): its session is loaded at start and wins over the credentials given
        /// here when it holds one; every new token is saved to it (compare-and-swap: a
        /// newer token saved by another process is adopted, not overwritten); the
        /// source signs out of it on `sign_out`. Store calls never run on a caller's
        /// thread nor on an async runtime's workers (tokio: its blocking pool;
        /// blocking: a thread of their own). A failed save is retried and reported
        /// (see `TokenSource::is_durable`).
        #[must_use]
        pub fn store(mut self, store: impl $crate::store::TokenStore) -> Self {
            self.store = Some(::std::sync::Arc::new(store));
            self
        }

        /// Read time from `clock` instead of the runtime's monotonic clock and the
        /// system's wall clock (tests: a [`ManualClock`](crate::ManualClock) moves only
        /// when told to; suspends and wall-clock jumps).
        #[must_use]
        pub fn clock(mut self, clock: impl $crate::clock::Clock) -> Self {
            self.clock = Some(::std::sync::Arc::new(clock));
            self
        }

        /// Called with each [`TokenChange`](crate::TokenChange), synchronously and in
        /// order, before any caller gets the new token: store the rotated refresh
        /// credential here. It runs with the source locked: it may call `sign_in`,
        /// `sign_out`, `report_rejected` and the getters, but a `token` call there
        /// fails with `Error::Reentrant`.
        #[must_use]
        pub fn on_token_change(
            mut self,
            callback: impl Fn($crate::kernel::TokenChange) + Send + Sync + 'static,
        ) -> Self {
            self.on_change = Some(Box::new(callback));
            self
        }
    };
}

/// The conversions into an adapter's `Error` that are the same in every runtime, and
/// its `needs_sign_in`. The enum must have the variants `Token(silent_refresh::Error)`,
/// `OAuth2(silent_refresh_oauth2::Error)`, `InvalidUrl { reason }`,
/// `InvalidOrigin { origin, reason }`, `NoOrigin`, `InsecureHttp { origin }`,
/// `Reentrant` and `DriverStopped`.
#[doc(hidden)]
#[macro_export]
macro_rules! adapter_error_conversions {
    ($error:ty) => {
        impl From<$crate::source::reexport::CoreError> for $error {
            /// Wraps the core's error in `Error::Token`.
            fn from(error: $crate::source::reexport::CoreError) -> Self {
                Self::Token(error)
            }
        }

        impl From<$crate::source::reexport::OAuth2Error> for $error {
            /// The codec's origin errors become this crate's own variants (their
            /// messages name this crate's builders); a setting the codec refuses is
            /// `Error::Token` with the core's `InvalidConfig`, as it always was; any
            /// other is wrapped in `Error::OAuth2`.
            fn from(error: $crate::source::reexport::OAuth2Error) -> Self {
                use $crate::source::reexport::OAuth2Error as OAuth2;
                match error {
                    OAuth2::InvalidUrl { reason } => Self::InvalidUrl { reason },
                    OAuth2::InvalidOrigin { origin, reason } => {
                        Self::InvalidOrigin { origin, reason }
                    }
                    OAuth2::NoOrigin => Self::NoOrigin,
                    OAuth2::InsecureHttp { origin } => Self::InsecureHttp { origin },
                    OAuth2::InvalidConfig(reason) => {
                        Self::Token($crate::source::reexport::CoreError::InvalidConfig(reason))
                    }
                    other => Self::OAuth2(other),
                }
            }
        }

        impl From<$crate::kernel::NoToken> for $error {
            /// Why a caller got no token, as this crate's error.
            fn from(no_token: $crate::kernel::NoToken) -> Self {
                match no_token {
                    $crate::kernel::NoToken::Token(error) => Self::from(error),
                    $crate::kernel::NoToken::Reentrant => Self::Reentrant,
                    $crate::kernel::NoToken::Stopped => Self::DriverStopped,
                }
            }
        }

        impl $error {
            /// Whether the credentials are dead or gone: the program must sign in
            /// again (terminal refresh failure, or signed out).
            #[must_use]
            pub fn needs_sign_in(&self) -> bool {
                matches!(
                    self,
                    Self::Token(
                        $crate::source::reexport::CoreError::SignInRequired { .. }
                            | $crate::source::reexport::CoreError::SignedOut
                    )
                )
            }

            /// Whether the token endpoint could not be reached and no usable token is
            /// left: retry later (the status says when the next refresh is tried).
            #[must_use]
            pub fn is_unreachable(&self) -> bool {
                matches!(
                    self,
                    Self::Token($crate::source::reexport::CoreError::Unreachable { .. })
                )
            }
        }
    };
}

/// The core's types the macros name, under paths that do not depend on how the adapter
/// imports them.
#[doc(hidden)]
pub mod reexport {
    pub use silent_refresh::{Credentials, Error as CoreError, Generation, Status};
    pub use silent_refresh_oauth2::{Error as OAuth2Error, RefreshGrant};
}

/// The settings every `OAuth2RefresherBuilder` has, expanded inside its `impl` block,
/// with a sentence on how the runtime ends an exchange (`$timeout_note`). The type must
/// have the fields `allow_insecure_http` (`bool`) and `timeout` (`Duration`), which its
/// `build` hands to `RefreshGrant::check_refresher`.
#[doc(hidden)]
#[macro_export]
macro_rules! oauth2_refresher_settings {
    ($timeout_note:literal) => {
        /// Allow a plain `http` token URL whose host is not loopback (refused by
        /// default: the refresh credential and the client secret would cross the
        /// network in clear text). Loopback (`localhost`, `127.0.0.0/8`, `[::1]`) is
        /// always allowed.
        pub fn allow_insecure_http(mut self, allow: bool) -> Self {
            self.allow_insecure_http = allow;
            self
        }

        /// The timeout of one refresh exchange, from connecting to the end of the
        /// response; when it passes, the refresh fails as transient and is retried with
        /// backoff. Default: 30 s, the core's default `refresh_timeout`.
        ///
        #[doc = $timeout_note]
        pub fn timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.timeout = timeout;
            self
        }
    };
}

/// The getters every `OAuth2Refresher` has, expanded inside its `impl` block. The type
/// must have the fields `grant` (`RefreshGrant`) and `timeout` (`Duration`).
#[doc(hidden)]
#[macro_export]
macro_rules! oauth2_refresher_getters {
    () => {
        /// The grant's settings.
        #[must_use]
        pub fn grant(&self) -> &$crate::source::reexport::RefreshGrant {
            &self.grant
        }

        /// The timeout of one refresh exchange.
        #[must_use]
        pub fn timeout(&self) -> ::std::time::Duration {
            self.timeout
        }
    };
}
