//! The time types of the core's API: `web-time`'s [`Instant`] and [`SystemTime`], which
//! are std's own types on native targets and exist on `wasm32-unknown-unknown` too
//! (where `std::time::Instant` cannot be created). The core never reads them: every
//! instant is an argument the driver gives.

pub use web_time::{Instant, SystemTime};
