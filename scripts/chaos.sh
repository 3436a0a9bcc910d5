#!/usr/bin/env bash
# The chaos run (README "Reliability", RELIABILITY.md): three `tracewarden run` processes in one
# group on a real broker (Tansu, installed and started by scripts/broker.sh, or the Kafka named by
# TRACEWARDEN_TEST_BROKERS), PetClinic traffic and an SLO incident, while a random instance is
# killed with SIGKILL at a random moment and restarted, CHAOS_KILLS times (default 100, about 20
# minutes). CHAOS_SEED replays a run's random choices (every run prints its seed).
# The last line printed is the summary:
#   chaos: kills=K traces=T lost=L duplicates=D alerts_duplicated=A unresolved=U
# The exit status is non-zero unless lost, alerts_duplicated and unresolved are 0 and the input
# backlog was committed. The test command (scripts/test.sh) runs the same with 5 kills.
set -euo pipefail
cd "$(dirname "$0")/.."
export CHAOS_KILLS="${CHAOS_KILLS:-100}"
# shellcheck source=scripts/broker.sh
source scripts/broker.sh
mkdir -p target
set +e
cargo test --release --locked --test chaos -- --include-ignored --nocapture 2>&1 | tee target/chaos.log
status=${PIPESTATUS[0]}
set -e
summary=$(grep '^chaos: kills=' target/chaos.log | tail -1 || true)
echo "${summary:-chaos: no summary (the run failed before counting; see target/chaos.log)}"
exit "$status"
