# Sourced by scripts/test.sh: makes a real Kafka broker process available to the tests as
# TRACEWARDEN_TEST_BROKERS. If that variable is already set, the suite uses that Kafka instead.
# Otherwise Tansu (a Kafka-compatible broker) is installed once into ~/.cargo/bin (about 15 minutes
# on 2 cores, then cached) and started on a free loopback port with in-memory storage; it is
# stopped when the calling script exits. Tansu is built with SQLite storage too: the SASL tests
# (tests/sasl.rs) make their SCRAM users on a broker without authentication, then restart it with
# authentication on the same file.

# Whether the installed Tansu was built with SQLite storage (cargo's own record of the install).
tansu_has_sqlite() {
  python3 - <<'PY'
import json, os, sys
home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
try:
    installs = json.load(open(os.path.join(home, ".crates2.json")))["installs"]
except (OSError, ValueError, KeyError):
    sys.exit(1)
sys.exit(0 if any(k.startswith("tansu ") and "libsql" in v.get("features", []) for k, v in installs.items()) else 1)
PY
}

if [ -z "${TRACEWARDEN_TEST_BROKERS:-}" ]; then
  if ! command -v tansu >/dev/null 2>&1 || ! tansu_has_sqlite; then
    echo "installing the Tansu broker with SQLite storage (cached in ~/.cargo/bin after the first time)"
    cargo install tansu --version 0.6.0 --features dynostore,libsql --locked --force
  fi
  tansu_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p target
  tansu broker --listener-url "tcp://127.0.0.1:$tansu_port" --advertised-listener-url "tcp://127.0.0.1:$tansu_port" \
    --storage-engine memory://tansu/ > target/tansu.log 2>&1 &
  tansu_pid=$!
  trap 'kill "$tansu_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$tansu_port") 2>/dev/null; then break; fi
    sleep 0.1
  done
  export TRACEWARDEN_TEST_BROKERS="127.0.0.1:$tansu_port"
  echo "Tansu $(tansu --version 2>/dev/null | head -1) listening on $TRACEWARDEN_TEST_BROKERS (log: target/tansu.log)"
else
  echo "using the Kafka at TRACEWARDEN_TEST_BROKERS=$TRACEWARDEN_TEST_BROKERS"
fi
