//! silent-refresh-tokio (in progress).
