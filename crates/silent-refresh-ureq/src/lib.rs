//! silent-refresh-ureq (in progress).
