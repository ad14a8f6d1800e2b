//! Bytes → a script of two to four processes, each a real driver kernel, sharing one
//! token store (a flock or an expiring lease) and one identity server that rotates
//! refresh credentials and revokes a grant on reuse; every invariant of
//! `silent_refresh_model::processes` is checked after every step
//! (`silent_refresh_model::processes::fuzz_processes`, the known bugs tolerated and
//! counted).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = silent_refresh_model::processes::fuzz_processes(data) {
        panic!("{violation}");
    }
});
