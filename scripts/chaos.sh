#!/usr/bin/env bash
# The chaos run (README "Reliability", RELIABILITY.md): three `tracewarden run` processes in one
# group on a real broker (Tansu, installed and started by scripts/broker.sh, or the Kafka named by
# TRACEWARDEN_TEST_BROKERS), PetClinic traffic and an SLO incident, while a random instance is
# killed with SIGKILL at a random moment and restarted, CHAOS_KILLS times (default 100, about 20
# minutes); then the same group through a proxy that cuts, stalls or slows every connection to
# the broker for seconds at a time, CHAOS_NETWORK_FAULTS times (default 30); then one instance
# whose forwarding the proxy holds back while input comes about 15 times faster, for
# CHAOS_OVERLOAD_SECONDS (default 300). CHAOS_SEED replays a run's random choices (every run prints
# its seed). The last three lines printed are the summaries:
#   network: faults=F traces=T lost=L duplicates=D
#   overload: seconds=S traces=T peak_rss_mib=P bound_mib=B paused_share=F lost=L duplicates=D
#   chaos: kills=K traces=T lost=L duplicates=D alerts_duplicated=A unresolved=U
# The exit status is non-zero unless nothing was lost, no alert duplicated or left open, the
# input backlog committed, (network) every instance ready again and (overload) the RSS within its
# bound. The test command (scripts/test.sh) runs the same with 5 kills, 4 faults and 30 s.
set -euo pipefail
cd "$(dirname "$0")/.."
export CHAOS_KILLS="${CHAOS_KILLS:-100}" CHAOS_NETWORK_FAULTS="${CHAOS_NETWORK_FAULTS:-30}" \
  CHAOS_OVERLOAD_SECONDS="${CHAOS_OVERLOAD_SECONDS:-300}"
# shellcheck source=scripts/broker.sh
source scripts/broker.sh
mkdir -p target
set +e
cargo test --release --locked --test chaos -- --include-ignored --nocapture 2>&1 | tee target/chaos.log
status=${PIPESTATUS[0]}
set -e
network=$(grep '^network: faults=' target/chaos.log | tail -1 || true)
echo "${network:-network: no summary (the run failed before counting; see target/chaos.log)}"
overload=$(grep '^overload: seconds=' target/chaos.log | tail -1 || true)
echo "${overload:-overload: no summary (the run failed before counting; see target/chaos.log)}"
summary=$(grep '^chaos: kills=' target/chaos.log | tail -1 || true)
echo "${summary:-chaos: no summary (the run failed before counting; see target/chaos.log)}"
exit "$status"
