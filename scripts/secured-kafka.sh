#!/usr/bin/env bash
# The real-broker suite (tests/broker.rs: kill -9 mid-stream, rebalances, unkeyed input, dead
# letters, SLO ownership, the group view) through secured Kafka, every client of the tests and of
# the tracewarden processes they start going through it.
#
#   TRACEWARDEN_TEST_BROKERS=host:9096 TRACEWARDEN_TEST_CLIENT=client.properties scripts/secured-kafka.sh
#     against your Kafka (MSK, Confluent Cloud, Aiven, your own): client.properties holds the
#     librdkafka properties, key=value per line, e.g.
#       security.protocol=SASL_SSL
#       sasl.mechanisms=SCRAM-SHA-512
#       sasl.username=tracewarden
#       sasl.password=...
#   scripts/secured-kafka.sh
#     against Tansu behind a TLS listener (stunnel4) on this machine, with a CA and a broker
#     certificate made here by openssl.
#
# Extra arguments select tests by name (cargo test's filter), e.g. kill_9_of_an_instance.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${TRACEWARDEN_TEST_BROKERS:-}" ]; then
  for tool in tansu stunnel4 openssl; do
    command -v "$tool" >/dev/null || { echo "$tool is needed (scripts/test.sh installs it)" >&2; exit 1; }
  done
  dir="$PWD/target/secured-kafka"
  rm -rf "$dir" && mkdir -p "$dir"
  free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
  tls_port=$(free_port)
  tansu_port=$(free_port)
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  (
    cd "$dir"
    openssl req -x509 "${ec[@]}" -days 1 -subj "/CN=tracewarden secured-kafka CA" -keyout ca.key -out ca.pem 2>/dev/null
    openssl req "${ec[@]}" -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null
    echo "subjectAltName=DNS:localhost" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile server.ext -out server.pem 2>/dev/null
  )
  tansu broker --listener-url "tcp://127.0.0.1:$tansu_port" --advertised-listener-url "tcp://localhost:$tls_port" \
    --storage-engine memory://tansu/ >"$dir/tansu.log" 2>&1 &
  tansu_pid=$!
  cat >"$dir/stunnel.conf" <<CONF
foreground = yes
pid =
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
[kafka]
accept = 127.0.0.1:$tls_port
connect = 127.0.0.1:$tansu_port
cert = $dir/server.pem
key = $dir/server.key
CONF
  stunnel4 "$dir/stunnel.conf" >"$dir/stunnel.log" 2>&1 &
  stunnel_pid=$!
  trap 'kill "$tansu_pid" "$stunnel_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$tls_port") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$tansu_port") 2>/dev/null; then break; fi
    sleep 0.1
  done
  cat >"$dir/client.properties" <<PROPS
security.protocol=SSL
ssl.ca.location=$dir/ca.pem
# localhost may resolve to ::1 first, where nothing listens.
broker.address.family=v4
PROPS
  export TRACEWARDEN_TEST_BROKERS="localhost:$tls_port"
  export TRACEWARDEN_TEST_CLIENT="$dir/client.properties"
  echo "Tansu behind TLS at $TRACEWARDEN_TEST_BROKERS (logs in $dir)"
fi

[ -n "${TRACEWARDEN_TEST_CLIENT:-}" ] || echo "TRACEWARDEN_TEST_CLIENT is not set: the clients connect without security settings" >&2
cargo test --locked --test broker -- --include-ignored --test-threads 1 "$@"
