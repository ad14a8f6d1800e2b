//! What the HTTP integrations (`silent-refresh-http`) need of a source, for the sources
//! of each runtime: `BearerSession` (its 401 report, its token endpoint, its DPoP key,
//! its errors) and how its token is had (`BearerSource`, awaited; the threads runtime
//! adds `BlockingBearerSource`). Written once here; each runtime's module names itself.

/// `BearerSession` (what the HTTP integrations need of a source besides its token) for
/// the sources of runtime `$runtime`: each method is the source's own. The runtime's
/// module adds how the token is had: `BearerSource` (awaited) or `BlockingBearerSource`.
#[cfg(feature = "http")]
macro_rules! bearer_session {
    ($runtime:ty) => {
        impl silent_refresh_http::BearerSession for crate::source::TokenSource<$runtime> {
            type Error = crate::Error;

            fn report_rejected(&self, generation: silent_refresh::Generation) {
                crate::source::TokenSource::report_rejected(self, generation);
            }

            fn token_endpoint(&self) -> Option<&str> {
                crate::source::TokenSource::token_endpoint(self)
            }

            fn invalid_token() -> crate::Error {
                crate::Error::InvalidToken
            }

            fn send_failed(error: Box<dyn std::error::Error + Send + Sync>) -> crate::Error {
                crate::Error::Send(error)
            }

            fn insufficient_scope(scope: Option<String>) -> crate::Error {
                crate::Error::InsufficientScope { scope }
            }

            fn step_up_required(acr_values: Option<String>, max_age: Option<u64>) -> crate::Error {
                crate::Error::StepUpRequired {
                    acr_values,
                    max_age,
                }
            }

            fn not_replayable() -> crate::Error {
                crate::Error::NotReplayable
            }

            #[cfg(feature = "dpop")]
            fn dpop(&self) -> Option<&silent_refresh_oauth2::dpop::DpopSession> {
                crate::source::TokenSource::dpop(self)
            }
        }
    };
}
#[cfg(feature = "http")]
pub(crate) use bearer_session;

/// `BearerSource` (the integrations' awaited token) for the sources of an async runtime
/// `$runtime`, with its `BearerSession`.
#[cfg(any(feature = "tokio", all(feature = "wasm", target_arch = "wasm32")))]
macro_rules! bearer_source {
    ($runtime:ty) => {
        $crate::source::bearer_session!($runtime);

        impl silent_refresh_http::BearerSource for crate::source::TokenSource<$runtime> {
            fn token(
                &self,
            ) -> impl std::future::Future<
                Output = Result<std::sync::Arc<silent_refresh::AccessToken>, crate::Error>,
            > + Send {
                crate::source::TokenSource::token(self)
            }
        }
    };
}
#[cfg(any(feature = "tokio", all(feature = "wasm", target_arch = "wasm32")))]
pub(crate) use bearer_source;
