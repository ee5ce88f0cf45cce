//! Every data-channel message kind in equal measure: the first byte picks the type.
//! Run: `cd net/fuzz && cargo fuzz run message_kinds`. The corpus in `corpus/message_kinds` is replayed by
//! `cargo test` (net/tests/fuzz_corpora.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    net::fuzz::message_kinds(data);
});
