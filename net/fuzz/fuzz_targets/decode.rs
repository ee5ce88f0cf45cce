//! Fuzzes the data-channel decoder: no input may panic it, and whatever decodes must
//! encode back to the same bytes. Run: `cd net/fuzz && cargo fuzz run decode`.
//! The corpus in `corpus/decode` is replayed by `cargo test` (net/tests/fuzz_corpora.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    net::fuzz::decode(data);
});
