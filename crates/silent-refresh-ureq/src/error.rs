//! The one error type, the driver's (shared with the tokio adapter).

pub(crate) use silent_refresh_driver::Error;
