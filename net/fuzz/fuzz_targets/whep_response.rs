//! The client's handling of a share's HTTP answer (status, Location, body) and of links.
//! Run: `cd net/fuzz && cargo fuzz run whep_response`. The corpus in `corpus/whep_response` is replayed by
//! `cargo test` (net/tests/fuzz_corpora.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    net::fuzz::whep_response(data);
});
