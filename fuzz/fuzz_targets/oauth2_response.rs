//! Bytes → a token endpoint's answer (status, headers, body) and a grant; the codec
//! must not panic, must return a sendable token or a classified failure, and must not
//! quote a secret (`silent_refresh::model::fuzz::oauth2_response`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(finding) = silent_refresh::model::fuzz::oauth2_response(data) {
        panic!("{finding}");
    }
});
