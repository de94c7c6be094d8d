//! Replays every committed seed and regression input of `fuzz/corpus/<target>/` through its
//! target, so that CI checks the corpora without cargo-fuzz or a nightly toolchain.

use std::fs;

#[test]
fn every_committed_corpus_file_passes_its_target() {
    for (target, run) in tollgate_fuzz::TARGETS {
        let dir = tollgate_fuzz::corpus_dir(target);
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut replayed = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            if !path.is_file() {
                continue;
            }
            let data = fs::read(&path).unwrap();
            // A panic here names the file: the input that broke the target.
            eprintln!("replaying {}", path.display());
            run(&data);
            replayed += 1;
        }
        assert!(
            replayed > 0,
            "{target}: no corpus file in {}",
            dir.display()
        );
    }
}
