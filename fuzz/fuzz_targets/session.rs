//! Bytes → a session of one to five keys and a sequence of requests, results, 401s,
//! sign-ins and time steps; the lineage rules (rule 13: one exchange on the wire for
//! the lineage, the newest credential sent, a request granted only its own key's
//! tokens, a dead lineage ending every key, one outcome per request) are checked after
//! every step (`silent_refresh_model::fuzz::session`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = silent_refresh_model::fuzz::session(data) {
        panic!("{violation}");
    }
});
