//! Clipboard chunks through the ClipboardAssembler (the host's gate and the native viewer).
//! Run: `cd net/fuzz && cargo fuzz run clipboard`. The corpus in `corpus/clipboard` is replayed by
//! `cargo test` (net/tests/fuzz_corpora.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    net::fuzz::clipboard(data);
});
