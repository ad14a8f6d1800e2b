//! Bytes → allowed origins, excluded URLs and request URLs, their paths respelled
//! (case, doubled slashes, dot segments, percent-encoding, `;params`, encoded
//! separators); the policy must give the token exactly to requests for an allowed
//! origin that do not go to an excluded URL, whatever the spelling of the origin or of
//! the path a server could route there, and print no password, query or path
//! (`silent_refresh_model::fuzz::origin_policy`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(finding) = silent_refresh_model::fuzz::origin_policy(data) {
        panic!("{finding}");
    }
});
