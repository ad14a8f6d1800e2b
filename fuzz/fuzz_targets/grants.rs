//! Bytes → the settings of any grant and client authentication and an exchange's
//! context (time, randomness, subject token); the request must carry exactly what the
//! settings say, every signed assertion must verify with its key and hold the claims
//! the context says, and a refusal must be in its class and quote no secret
//! (`silent_refresh_model::fuzz::grants`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(finding) = silent_refresh_model::fuzz::grants(data) {
        panic!("{finding}");
    }
});
