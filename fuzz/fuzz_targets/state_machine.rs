//! Bytes → a setup and a sequence of core inputs and time steps, run through the
//! machine beside the reference model; every rule of the contract is checked after
//! every step (`silent_refresh_model::fuzz::state_machine`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) =
        silent_refresh_model::fuzz::state_machine(std::time::Instant::now(), data)
    {
        panic!("{violation}");
    }
});
