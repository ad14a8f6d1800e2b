//! Fresh OAuth access tokens in the browser (`wasm32-unknown-unknown`): the same
//! `TokenSource` as on tokio and threads, driven from the page's event loop, refreshing
//! with `fetch`, and one refresh across the tabs of an origin.
//!
//! ```ignore
//! use silent_refresh_wasm::{
//!     AuthorizedClient, AuthorizedFetch, Config, Credentials, OAuth2Refresher, RefreshGrant,
//!     TabsStore, TokenSource,
//! };
//!
//! async fn start(refresh_token: String) -> Result<(), silent_refresh_wasm::Error> {
//!     let grant = RefreshGrant::new("https://auth.example.com/oauth/token", "my-spa");
//!     // Shared by every tab of this origin that names the same session.
//!     let store = TabsStore::new("my-spa");
//!     let source = TokenSource::builder(Config::default())
//!         .store(store.clone())
//!         .credentials(Credentials::RefreshToken(refresh_token.into()))
//!         .refresher(OAuth2Refresher::builder(grant).build()?)
//!         .build()?;
//!     store.follow(&source); // adopt the tokens the other tabs refresh
//!     let api = AuthorizedClient::builder(source)
//!         .allow_origin("https://api.example.com")
//!         .build()?;
//!     let request = http::Request::get("https://api.example.com/me").body(Vec::new())?;
//!     let response = api.fetch(request).await?; // the token attached, once more after a 401
//!     assert!(response.status().is_success());
//!     Ok(())
//! }
//! ```
//!
//! (The example is compiled for wasm32 by `examples/browser`; on other targets this crate
//! is empty, so that a native `cargo build --workspace` still builds it.)
//!
//! # What it is
//!
//! - [`TokenSource`]: the driver's source on the browser's runtime
//!   ([`Wasm`]: the driver is a task of the page, its timer `setTimeout`); `token()` is
//!   a future to `.await`, and `subscribe()` gives [`Events`] for a page to show
//!   "signed in", "refreshing" or "sign in again".
//! - [`OAuth2Refresher`]: the OAuth 2.0 refresher over [`FetchClient`] (the page's
//!   `fetch`, which never follows a redirect for it and is aborted when the exchange
//!   is cancelled).
//! - [`AuthorizedClient`] and [`AuthorizedFetch`]: the API's requests through `fetch`,
//!   with the same origin and `401` rules as every other integration.
//! - [`TabsStore`]: the session shared by the tabs in IndexedDB, one refresh at a time
//!   between them under a Web Lock, each new token announced on a `BroadcastChannel`.
//!   Without a store the session lives in the tab's memory only.
//!
//! Every error is the driver's [`Error`]; no error, `Debug` or log line holds a token.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// The crate's items exist on wasm32 only: elsewhere the links above name nothing
// (document it with `--target wasm32-unknown-unknown`).
#![cfg_attr(not(target_arch = "wasm32"), allow(rustdoc::broken_intra_doc_links))]

#[cfg(target_arch = "wasm32")]
mod fetch;
#[cfg(target_arch = "wasm32")]
mod js;
#[cfg(target_arch = "wasm32")]
mod send;
#[cfg(target_arch = "wasm32")]
mod store;

#[cfg(target_arch = "wasm32")]
pub use browser::*;

/// Everything of the crate, on wasm32.
#[cfg(target_arch = "wasm32")]
mod browser {
    pub use crate::fetch::FetchClient;
    pub use crate::send::AuthorizedFetch;
    pub use crate::store::TabsStore;
    pub use silent_refresh;
    #[doc(inline)]
    pub use silent_refresh_driver::exports::*;
    pub use silent_refresh_driver::oauth2_refresher::LocalHttpClient;
    pub use silent_refresh_driver::runtime::wasm::{Events, Refresher, Wasm};
    pub use silent_refresh_driver::runtime::{BlockingWork, Runtime};
    pub use silent_refresh_http::{ResponseStatus, TokenHeaders};
    pub use silent_refresh_oauth2 as oauth2;

    /// A source of fresh access tokens, driven by one task of the page: the driver's
    /// generic source on [`Wasm`]. Cheap to clone; every clone shares one token and one
    /// refresh at a time.
    pub type TokenSource = silent_refresh_driver::TokenSource<Wasm>;

    /// Builds a [`TokenSource`]: start with `TokenSource::builder(config)`.
    pub type TokenSourceBuilder<R = NoRefresher> =
        silent_refresh_driver::TokenSourceBuilder<Wasm, R>;

    /// The OAuth 2.0 refresher, sending with the page's `fetch`.
    pub type OAuth2Refresher =
        silent_refresh_driver::oauth2_refresher::OAuth2Refresher<FetchClient>;

    /// Builds an [`OAuth2Refresher`].
    pub type OAuth2RefresherBuilder =
        silent_refresh_driver::oauth2_refresher::OAuth2RefresherBuilder<FetchClient>;

    /// Attaches the token to the API's requests (see [`AuthorizedFetch`]).
    pub type AuthorizedClient = silent_refresh_http::AuthorizedClient<TokenSource>;

    /// Builds an [`AuthorizedClient`].
    pub type AuthorizedClientBuilder = silent_refresh_http::AuthorizedClientBuilder<TokenSource>;

    /// An authorization server, by its discovered metadata, talked to with `fetch`: the
    /// device flow starts here (a page's own sign-in redirects to itself with the
    /// codec's `AuthorizationRequest`, as `examples/browser` does).
    pub type Issuer = silent_refresh_driver::signin::Issuer<Wasm, FetchClient>;

    /// Builds an [`Issuer`].
    pub type IssuerBuilder = silent_refresh_driver::signin::IssuerBuilder<Wasm, FetchClient>;

    /// The device authorization grant (RFC 8628) from the page.
    pub type DeviceFlow = silent_refresh_driver::signin::DeviceFlow<Wasm, FetchClient>;
}
