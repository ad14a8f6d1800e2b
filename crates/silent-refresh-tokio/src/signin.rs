//! Starting and ending a session over reqwest (feature `reqwest`): the driver's flows
//! (`silent_refresh_driver::signin`: discovery, the device flow, the browser sign-in
//! with PKCE, a sign-out that revokes) with this crate's client, [`Reqwest`]. Every
//! call returns a future to `.await`; dropping it cancels the flow.
//!
//! ```no_run
//! use std::time::Duration;
//! use silent_refresh_tokio::{Config, FileStore, Issuer, OAuth2Refresher, TokenSource};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let issuer = Issuer::discover("https://login.example.com").await?;
//! let client = issuer.client("my-cli");
//! let source = TokenSource::builder(Config::default())
//!     .store(FileStore::new("session.json"))
//!     .refresher(OAuth2Refresher::new(client.clone())?)
//!     .build()?;
//! if !source.ready().await?.is_signed_in() {
//!     let sign_in = issuer.browser(&client).scope("openid offline_access").start(&source)?;
//!     eprintln!("Opening {} in your browser", sign_in.url());
//!     sign_in.sign_in().await?;
//!     let _ = source.until_durable(Duration::from_secs(10)).await;
//! }
//! let token = source.token().await?;
//! # let _ = token;
//! // Logging out: revoked at the server, then forgotten in the store.
//! issuer.sign_out(&source, &client).await?;
//! # Ok(())
//! # }
//! ```

use silent_refresh_driver::signin;

use crate::{Reqwest, Tokio};

pub use silent_refresh_driver::signin::DEFAULT_REDIRECT_PATH;

/// An authorization server, by its metadata, and the reqwest client to talk to it:
/// `Issuer::discover(url).await?` (see `silent_refresh_driver::signin::Issuer`).
pub type Issuer = signin::Issuer<Tokio, Reqwest>;

/// Builds an [`Issuer`]: `Issuer::builder(url)`; its client settings are a
/// [`reqwest::ClientBuilder`].
pub type IssuerBuilder = signin::IssuerBuilder<Tokio, Reqwest>;

/// A device sign-in to start: [`Issuer::device`].
pub type DeviceFlow = signin::DeviceFlow<Tokio, Reqwest>;

/// A device code to show the user: [`DeviceFlow::start`].
pub type DeviceCode = signin::DeviceCode<Tokio, Reqwest>;

/// A browser sign-in to start: [`Issuer::browser`].
pub type BrowserFlow = signin::BrowserFlow<Tokio, Reqwest>;

/// A browser sign-in with its listener open: [`BrowserFlow::start`].
pub type BrowserSignIn = signin::BrowserSignIn<Tokio, Reqwest>;
