//! Crash points, for proving that every change survives `kill -9` at any step.
//!
//! Each visible file change of the engine passes through [`point`]. Built with the
//! `failpoints` feature (the integration suite enables it; the release binaries are
//! built without it), a process started with `KAIROS_FAILPOINT=N` aborts at the N-th
//! point it reaches: no destructor runs and nothing is cleaned up, as with `kill -9`.
//! The next process that opens the store must then find exactly the old state or
//! exactly the new one. Without the feature, [`point`] is empty and compiles away.

/// The environment variable that names the crash point to abort at (counted from 1).
pub const ENV: &str = "KAIROS_FAILPOINT";

/// Marks a point between two durable steps; `label` says which, for the test's log.
#[cfg(feature = "failpoints")]
pub fn point(label: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static TARGET: OnceLock<Option<u64>> = OnceLock::new();
    static PASSED: AtomicU64 = AtomicU64::new(0);
    let Some(target) = *TARGET.get_or_init(|| std::env::var(ENV).ok().and_then(|v| v.parse().ok())) else {
        return;
    };
    let reached = PASSED.fetch_add(1, Ordering::SeqCst) + 1;
    if reached == target {
        eprintln!("{ENV}={target}: aborting at {label}");
        std::process::abort();
    }
}

/// Marks a point between two durable steps (inert: built without `failpoints`).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn point(_label: &str) {}
