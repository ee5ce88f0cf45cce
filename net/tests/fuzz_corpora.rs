//! Replays every fuzz target's corpus (`net/fuzz/corpus/<target>`, a small minimised set
//! kept in git) through the same entry points the fuzzers run (`net::fuzz`), so a
//! regression on any input the fuzzers found interesting fails `cargo test`. A missing or
//! empty corpus fails too: the replay must not pass by having nothing to replay.

use std::path::Path;

/// Fewest inputs a corpus may hold (the seeds alone are more).
const MIN_INPUTS: usize = 5;

#[test]
fn every_fuzz_target_has_a_corpus_and_it_replays_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut report = Vec::new();
    for (name, target) in net::fuzz::TARGETS {
        // The target is built by cargo fuzz from this file.
        let source = root.join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&source)
            .unwrap_or_else(|e| panic!("no fuzz target {}: {e}", source.display()));
        assert!(
            text.contains(&format!("net::fuzz::{name}(")),
            "{} runs net::fuzz::{name}",
            source.display()
        );
        let dir = root.join("corpus").join(name);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("the corpus {} is missing: {e}", dir.display()));
        let mut n = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&input));
            assert!(outcome.is_ok(), "{name}: {} panics", path.display());
            n += 1;
        }
        assert!(
            n >= MIN_INPUTS,
            "the corpus {} has {n} inputs (at least {MIN_INPUTS})",
            dir.display()
        );
        report.push(format!("{name}: {n}"));
    }
    eprintln!("replayed {}", report.join(", "));
}
