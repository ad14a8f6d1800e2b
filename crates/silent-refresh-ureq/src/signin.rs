//! Starting and ending a session over ureq: the driver's flows
//! (`silent_refresh_driver::signin`: discovery, the device flow, the browser sign-in
//! with PKCE, a sign-out that revokes) with this crate's client, [`UreqAgent`]. Every
//! call blocks the calling thread; a flow's `cancel_handle()` ends it from another.
//!
//! ```no_run
//! use std::time::Duration;
//! use silent_refresh_ureq::{Config, FileStore, Issuer, OAuth2Refresher, TokenSource};
//!
//! let issuer = Issuer::discover("https://login.example.com")?;
//! let client = issuer.client("my-cli");
//! let source = TokenSource::builder(Config::default())
//!     .store(FileStore::new("session.json"))
//!     .refresher(OAuth2Refresher::new(client.clone())?)
//!     .build()?;
//! if !source.ready()?.is_signed_in() {
//!     let code = issuer.device(&client).scope("openid offline_access").start(&source)?;
//!     eprintln!("Open {} and enter the code {}", code.verification_uri(), code.user_code());
//!     code.sign_in()?;
//!     let _ = source.until_durable(Duration::from_secs(10));
//! }
//! let token = source.token()?;
//! # let _ = token;
//! // Logging out: revoked at the server, then forgotten in the store.
//! issuer.sign_out(&source, &client)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use silent_refresh_driver::signin;

use crate::{Threads, UreqAgent};

pub use silent_refresh_driver::signin::DEFAULT_REDIRECT_PATH;

/// An authorization server, by its metadata, and the ureq agent to talk to it:
/// `Issuer::discover(url)?` (see `silent_refresh_driver::signin::Issuer`).
pub type Issuer = signin::Issuer<Threads, UreqAgent>;

/// Builds an [`Issuer`]: `Issuer::builder(url)`; its client settings are a ureq
/// [`Agent`](ureq::Agent).
pub type IssuerBuilder = signin::IssuerBuilder<Threads, UreqAgent>;

/// A device sign-in to start: [`Issuer::device`].
pub type DeviceFlow = signin::DeviceFlow<Threads, UreqAgent>;

/// A device code to show the user: [`DeviceFlow::start`].
pub type DeviceCode = signin::DeviceCode<Threads, UreqAgent>;

/// A browser sign-in to start: [`Issuer::browser`].
pub type BrowserFlow = signin::BrowserFlow<Threads, UreqAgent>;

/// A browser sign-in with its listener open: [`BrowserFlow::start`].
pub type BrowserSignIn = signin::BrowserSignIn<Threads, UreqAgent>;
