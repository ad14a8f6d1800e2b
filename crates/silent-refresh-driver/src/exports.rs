//! The names both adapters export at their root (`silent_refresh_tokio::Config`,
//! `silent_refresh_ureq::Config`, …): one list, so that each item has one path, the
//! same in both.

#[doc(inline)]
pub use silent_refresh::{
    AccessToken, Config, ConfigBuilder, Credentials, Event, Expiry, FailureKind, Generation,
    RefreshFailure, RefreshMode, Secret, Status, Token, Trigger, WaitPolicy,
};
#[doc(inline)]
pub use silent_refresh_oauth2::{ClientAuth, RefreshGrant, SubjectTokenSource, TokenExchange};

pub use crate::Error;
pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::kernel::TokenChange;
pub use crate::runtime::NoRefresher;
pub use crate::signin::CancelSignIn;
#[cfg(not(target_arch = "wasm32"))]
pub use crate::signin::{Browser, SignedOut};
#[cfg(not(target_arch = "wasm32"))]
pub use crate::store::FileStore;
pub use crate::store::{Saved, TokenStore};
