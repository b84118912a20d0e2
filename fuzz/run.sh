#!/bin/sh
# `make fuzz`: every fuzz target under libFuzzer for FUZZ_SECONDS seconds each, starting
# from the corpus kept in fuzz/corpus/. Fails when any target panics (a broken property
# is a panic), runs longer than FUZZ_TIMEOUT seconds on one input, or allocates more than
# FUZZ_MALLOC_MB at once; the input that did it is saved under fuzz/artifacts/<target>/
# and named in the output. New inputs libFuzzer finds go to a scratch corpus, so a run
# changes nothing in the repository; FUZZ_KEEP=1 merges what they add to coverage into
# fuzz/corpus/ instead (minimised by libFuzzer's -merge).
#
# Needs a nightly toolchain (cargo-fuzz builds with sanitizer flags that only nightly
# takes) and cargo-fuzz, which is installed from crates.io when missing.
set -eu

cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-15}
timeout=${FUZZ_TIMEOUT:-10}
malloc_mb=${FUZZ_MALLOC_MB:-512}
targets=${FUZZ_TARGETS:-$(ls fuzz/fuzz_targets | sed 's/\.rs$//')}
cargo_fuzz_version=0.13.2

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "make fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
    cargo +nightly install cargo-fuzz --locked --version "$cargo_fuzz_version"
fi

# Leaks in system libraries the project cannot free (see the file).
export LSAN_OPTIONS="suppressions=$(pwd)/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

# Memory-backed where there is such a place: some targets rewrite a file per input.
scratch_parent=${FUZZ_TMPDIR:-$( [ -d /dev/shm ] && [ -w /dev/shm ] && echo /dev/shm || echo /tmp)}
scratch=$(mktemp -d "$scratch_parent/kairos-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT INT TERM

cargo +nightly fuzz build --fuzz-dir fuzz
bin_dir="$(cargo +nightly metadata --format-version 1 --no-deps --manifest-path fuzz/Cargo.toml |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"

failed=
total=0
printf '%-12s %10s %6s %6s %8s\n' target runs cov corpus seconds
for target in $targets; do
    mkdir -p "$scratch/corpus/$target" "fuzz/artifacts/$target"
    log="$scratch/$target.log"
    start=$(date +%s)
    # libcrypto has no frame pointers: only the slow unwinder sees the frames that the
    # suppressions name, and it costs too much to use everywhere.
    case $target in
    signature) asan="fast_unwind_on_malloc=0" ;;
    *) asan="" ;;
    esac
    # TMPDIR: the targets' scratch files go where the trap removes them.
    if ASAN_OPTIONS="${asan}${ASAN_OPTIONS:+:$ASAN_OPTIONS}" TMPDIR="$scratch" "$bin_dir/$target" "$scratch/corpus/$target" "fuzz/corpus/$target" \
        -max_total_time="$seconds" -timeout="$timeout" -malloc_limit_mb="$malloc_mb" -rss_limit_mb=2048 \
        -artifact_prefix="fuzz/artifacts/$target/" -print_final_stats=1 >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed="$failed $target"
        sed -n '/==ERROR\|panicked\|Test unit written\|SUMMARY/p' "$log" | head -20 >&2
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    done_line=$(grep 'DONE\|INITED' "$log" | tail -n1)
    cov=$(echo "$done_line" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    corp=$(echo "$done_line" | sed -n 's/.*corp: \([0-9]*\).*/\1/p')
    printf '%-12s %10s %6s %6s %8s %s\n' "$target" "${runs:-?}" "${cov:-?}" "${corp:-?}" "$(($(date +%s) - start))" "$status"
    total=$((total + ${runs:-0}))
    if [ "${FUZZ_KEEP:-0}" = 1 ] && [ "$status" = ok ]; then
        ASAN_OPTIONS="${asan}${ASAN_OPTIONS:+:$ASAN_OPTIONS}" TMPDIR="$scratch" "$bin_dir/$target" -merge=1 \
            -artifact_prefix="fuzz/artifacts/$target/" "fuzz/corpus/$target" "$scratch/corpus/$target" >>"$log" 2>&1
    fi
done
echo "$total inputs run in all"
if [ -n "$failed" ]; then
    echo "fuzzing failed:$failed (the inputs are under fuzz/artifacts/; replay one with $bin_dir/TARGET INPUT)" >&2
    exit 1
fi
