# Sourced by scripts/test.sh: makes a real Kafka broker process available to the tests as
# TRACEWARDEN_TEST_BROKERS. If that variable is already set, the suite uses that Kafka instead.
# Otherwise Tansu (a Kafka-compatible broker) is installed once into ~/.cargo/bin (about 12 minutes
# on 2 cores, then cached) and started on a free loopback port with in-memory storage; it is
# stopped when the calling script exits.

if [ -z "${TRACEWARDEN_TEST_BROKERS:-}" ]; then
  if ! command -v tansu >/dev/null 2>&1; then
    echo "installing the Tansu broker (cached in ~/.cargo/bin after the first time)"
    cargo install tansu --features dynostore --locked
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
