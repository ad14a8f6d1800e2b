//! Bytes → a grant's settings and a refresh credential; building the refresh request
//! must not panic, must carry exactly what the settings say, and a refused grant must
//! be a misconfigured failure (a terminal one for an empty refresh credential) that
//! quotes no secret (`silent_refresh_model::fuzz::oauth2_request`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(finding) = silent_refresh_model::fuzz::oauth2_request(data) {
        panic!("{finding}");
    }
});
