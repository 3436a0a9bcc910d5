#!/usr/bin/env bash
# Fuzzes every target `cargo fuzz list` names (every decoder, in one target; what the receivers
# read from the network) for a bounded time:
# scripts/fuzz.sh [SECONDS_PER_TARGET] (default: $FUZZ_SECONDS, else 60).
# FUZZ_RUNS=N stops each target after N executions instead (within the seconds, still a cap):
# the documented long run is FUZZ_RUNS=100000000 FUZZ_SECONDS=3600 scripts/fuzz.sh.
# FUZZ_TARGETS="a b" fuzzes only those targets.
# cargo-fuzz needs nightly compiler flags (-Zsanitizer, -Cpasses=sancov-module); no nightly
# toolchain can be installed on the machines this runs on (the toolchain servers are out of reach),
# so RUSTC_BOOTSTRAP=1 lets the pinned stable toolchain accept them.
# No sanitizer: librdkafka's C build does not take the sanitizer flags, and the targets hunt for
# panics and broken round trips in safe Rust.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-${FUZZ_SECONDS:-60}}"
runs="${FUZZ_RUNS:--1}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
export RUSTC_BOOTSTRAP=1
targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
for target in $targets; do
  mkdir -p "fuzz/corpus/$target"
  log="fuzz/$target.log"
  echo "fuzzing $target for ${seconds}s"
  if ! cargo fuzz run -O --sanitizer none "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
      -max_total_time="$seconds" -runs="$runs" > "$log" 2>&1; then
    grep -E -A12 'panicked|SUMMARY|error' "$log" | head -40
    echo "fuzzing $target failed: the input is in fuzz/artifacts/$target, the log in $log"
    exit 1
  fi
  grep -E '^Done' "$log"
done
