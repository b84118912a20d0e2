//! Giving memory back to the system once a burst of calls is over.
//!
//! A burst (a thousand listings and descriptions, large `GetManagedObjects` replies)
//! allocates a lot for a short time. glibc's malloc keeps what was freed: it returns
//! only the top of each heap on its own, and the free chunks left between live ones
//! stay resident, so an idle service would keep the size of its worst burst for the
//! rest of its life. `malloc_trim(0)` hands every whole free page of every arena back
//! to the kernel. Calling it on every free would cost time in the burst itself;
//! calling it on a timer would wake an idle service for nothing. So the service looks
//! at its anonymous memory every second and trims once that grew and then stopped
//! growing: after a burst, once.

use std::time::Duration;

/// How often the anonymous memory is looked at.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// Growth since the last trim that is worth a trim, in KiB.
const WORTH_TRIMMING_KIB: u64 = 1024;
/// Change between two looks under which the burst is taken to be over, in KiB.
const SETTLED_KIB: u64 = 256;

/// Trims now, which returns what building the first picture of the store freed, then
/// after each burst, for the life of the process.
pub async fn release_after_bursts() {
    trim();
    let Some(mut baseline) = anonymous_kib() else {
        tracing::debug!("cannot read RssAnon from /proc/self/status; freed memory stays with malloc");
        return;
    };
    let mut previous = baseline;
    let mut tick = tokio::time::interval(LOOK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(now) = anonymous_kib() else { continue };
        let grew = now > baseline + WORTH_TRIMMING_KIB;
        let settled = now.abs_diff(previous) < SETTLED_KIB;
        previous = now;
        if grew && settled {
            trim();
            let after = anonymous_kib().unwrap_or(now);
            tracing::debug!(before_kib = now, after_kib = after, "returned freed memory to the system");
            baseline = after;
            previous = after;
        } else if now < baseline {
            baseline = now;
        }
    }
}

/// The process's resident anonymous memory (`RssAnon`), in KiB.
fn anonymous_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("RssAnon:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Returns every whole free page malloc holds to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() {
    // SAFETY: this declares glibc's `int malloc_trim(size_t pad)` (malloc.h) with its
    // exact C signature: `size_t` is `usize` and `int` is `c_int` on every Linux target
    // Rust supports, and the symbol is always present in the glibc this cfg selects.
    // The function has no preconditions: any `pad` is valid, it touches only malloc's
    // own state under malloc's own locks (so it is safe from any thread, concurrently
    // with allocation), and it frees no memory that is still allocated. Calling it can
    // therefore not cause undefined behaviour, which is what marking it `safe` asserts.
    #[allow(unsafe_code)]
    unsafe extern "C" {
        safe fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    malloc_trim(0);
}

/// Other C libraries keep no arenas to trim, or offer no call for it.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_anonymous_memory_and_trims_without_harm() {
        let before = anonymous_kib();
        assert!(before.is_some_and(|kib| kib > 0), "RssAnon is readable: {before:?}");
        // Memory freed in the middle of the heap, behind a block still in use.
        let blocks: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 64 * 1024]).collect();
        let kept = blocks.last().cloned();
        drop(blocks);
        trim();
        assert_eq!(kept.map(|b| b.iter().all(|&x| x == 63)), Some(true), "live memory is untouched");
    }
}
