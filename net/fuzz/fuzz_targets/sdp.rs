//! SDP at the edge: the share's offer checks and loopback filter, the client's answer checks.
//! Run: `cd net/fuzz && cargo fuzz run sdp`. The corpus in `corpus/sdp` is replayed by
//! `cargo test` (net/tests/fuzz_corpora.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    net::fuzz::sdp(data);
});
