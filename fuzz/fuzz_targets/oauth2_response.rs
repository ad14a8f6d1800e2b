//! Bytes → a token endpoint's answer (status, headers, body) and a grant; the codec
//! must not panic, must return a sendable token or a failure in the class the table
//! of the `oauth2` docs gives (a `5xx` transient, a `3xx` misconfigured, `invalid_grant`
//! terminal, …), must say "sign in again" only for dead credentials, must not quote a
//! secret nor a redirect's query or user information, and the public
//! `oauth2::classify` must agree (`silent_refresh_model::fuzz::oauth2_response`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(finding) = silent_refresh_model::fuzz::oauth2_response(data) {
        panic!("{finding}");
    }
});
