//! The corpus, replayed on any toolchain: every input kept in `corpus/<target>/` (the
//! seeds and what libFuzzer found worth keeping) and in `regressions/<target>/` (inputs
//! that once broke a target, fixed since) runs through its target again. This is the
//! part of the fuzzing that needs neither nightly nor libFuzzer.

use std::fs;
use std::path::Path;

use kairos_extensions_fuzz::targets::ALL;

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    files
}

#[test]
fn every_target_has_seeds() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, _) in ALL {
        assert!(!inputs(&corpus.join(target)).is_empty(), "corpus/{target}/ is empty");
    }
}

#[test]
fn the_corpus_and_the_regressions_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for (target, run) in ALL {
        for dir in ["corpus", "regressions"] {
            for input in inputs(&root.join(dir).join(target)) {
                let data = fs::read(&input).expect("reading an input");
                let outcome = std::panic::catch_unwind(|| run(&data));
                assert!(outcome.is_ok(), "{} fails", input.display());
                count += 1;
            }
        }
    }
    println!("{count} inputs replayed");
    // The targets' scratch directory outlives them on purpose (libFuzzer exits without
    // unwinding); here the test can remove it.
    fs::remove_dir_all(kairos_extensions_fuzz::scratch::dir()).expect("removing the scratch directory");
}

/// The binary seeds are what they claim: without a verity image that holds and a
/// signature that verifies, the fuzzer would start far from the code that matters.
#[test]
fn the_seeds_reach_the_deep_paths() {
    use kairos_extensionsd::engine::trust::{self, Proof, TrustStore, signature};

    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let proof = trust::prove(&corpus.join("gpt/seed-verity-signed"));
    assert!(matches!(proof, Ok(Proof::Verity { signature: Some(_), .. })), "{proof:?}");
    let proof = trust::prove(&corpus.join("gpt/seed-verity-4k"));
    assert!(matches!(proof, Ok(Proof::Verity { signature: None, .. })), "{proof:?}");
    assert!(trust::prove(&corpus.join("gpt/seed-verity-tampered")).is_err());

    let trusted = TrustStore::load(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")]).expect("trust");
    let seed = fs::read(corpus.join("signature/seed-root-hash")).expect("seed");
    let split = seed.iter().position(|b| *b == b'\n').expect("a newline");
    let root = std::str::from_utf8(&seed[..split]).expect("text");
    let encoded = openssl::base64::encode_block(&seed[split + 1..]);
    let subject = signature::verify(root, &encoded, &trusted);
    assert_eq!(subject.ok().as_deref(), Some(kairos_extensions_fuzz::targets::signature::SUBJECT));
}
