#!/usr/bin/env bash
# Fuzzes every decoder, and what the receivers read from the network, for a bounded time:
# scripts/fuzz.sh [SECONDS_PER_TARGET] (default 20).
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
# No sanitizer: librdkafka's C build does not take the sanitizer flags, and the targets hunt for
# panics and broken round trips in safe Rust.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in decode_otlp_proto decode_otlp_json decode_zipkin_json decode_zipkin_proto decode_jaeger_proto decode_jaeger_json decode_xray_json ingest_requests; do
  mkdir -p "fuzz/corpus/$target"
  log="fuzz/$target.log"
  echo "fuzzing $target for ${seconds}s"
  if ! cargo fuzz run -O --sanitizer none "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
      -max_total_time="$seconds" > "$log" 2>&1; then
    grep -E -A12 'panicked|SUMMARY|error' "$log" | head -40
    echo "fuzzing $target failed: the input is in fuzz/artifacts/$target, the log in $log"
    exit 1
  fi
  grep -E '^Done' "$log"
done
