#!/usr/bin/env bash
# Fuzzes every decoder, and what the receivers read from the network, for a bounded time:
# scripts/fuzz.sh [SECONDS_PER_TARGET] (default: $FUZZ_SECONDS, else 20).
# FUZZ_RUNS=N stops each target after N executions instead (within the seconds, still a cap):
# the documented long run is FUZZ_RUNS=100000000 FUZZ_SECONDS=3600 scripts/fuzz.sh.
# FUZZ_TARGETS="a b" fuzzes only those targets.
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
# No sanitizer: librdkafka's C build does not take the sanitizer flags, and the targets hunt for
# panics and broken round trips in safe Rust.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-${FUZZ_SECONDS:-20}}"
runs="${FUZZ_RUNS:--1}"
targets="${FUZZ_TARGETS:-decode_otlp_proto decode_otlp_json decode_zipkin_json decode_zipkin_proto decode_jaeger_proto decode_jaeger_json decode_xray_json ingest_requests}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
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
