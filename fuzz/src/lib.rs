//! Fuzz targets for the parsers of kairos-extensions.
//!
//! Each target is a plain function over the raw input, so the same code runs under
//! libFuzzer (`fuzz_targets/`, built by cargo-fuzz on nightly) and under the stable
//! replay test (`tests/replay.rs`), which feeds it the corpus kept in the repository.
//! A target asserts more than "no panic": every property it checks is written next to
//! the parser call, and a broken one panics, which libFuzzer reports as a crash.

pub mod scratch;
pub mod targets;

/// The input as text, or `None` when it is not UTF-8: the parsers behind D-Bus strings,
/// TOML and JSON only ever see valid UTF-8.
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}
