#!/usr/bin/env bash
# The one test command: installs what the tests need, then runs every check and every test.
# Used by developers and by CI (.ci/run). Safe to re-run; installs are skipped when present.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "toolchain"
cargo --version
rustup component list --installed 2>/dev/null | grep -qE '^(rustfmt|clippy)' || rustup component add rustfmt clippy

step "system tools: openssl (test certificates), curl (a real HTTP client), stunnel4 (TLS in front of the broker)"
missing=()
for tool in openssl curl stunnel4; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [[ ${#missing[@]} -gt 0 ]]; then
  sudo=(); [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step "Python tools: OpenTelemetry SDK, Zipkin exporter, X-Ray SDK (real-client fixtures), Compose validation"
python3 -m pip install --quiet --disable-pip-version-check --requirement tests/requirements.txt 2>&1 \
  | grep -v 'as the .root. user' || true
fixture_dir="target/python-sdk-fixture"
mkdir -p "$fixture_dir"
python3 tests/fixtures/python_sdk.py "$fixture_dir"
python3 tests/fixtures/python_xray.py "$fixture_dir"
# The Zipkin protobuf exporter pins protobuf 3, which the OTLP packages refuse: its own virtualenv.
zipkin_venv="target/zipkin-venv"
[ -x "$zipkin_venv/bin/python" ] || python3 -m venv "$zipkin_venv"
"$zipkin_venv/bin/pip" install --quiet --disable-pip-version-check 'opentelemetry-exporter-zipkin-proto-http>=1.20' 2>&1 \
  | grep -v 'as the .root. user' || true
"$zipkin_venv/bin/python" tests/fixtures/python_zipkin_proto.py "$fixture_dir"
export TRACEWARDEN_PYTHON_FIXTURE_DIR="$PWD/$fixture_dir"

step "an OAuth 2.0 server for the OAUTHBEARER tests (npm, pinned)"
idp_stamp=tests/identity-provider/node_modules/.installed-from
idp_wanted=$(cat tests/identity-provider/package.json tests/identity-provider/package-lock.json | sha256sum | cut -d' ' -f1)
if [[ $(cat "$idp_stamp" 2>/dev/null) != "$idp_wanted" ]]; then
  npm ci --prefix tests/identity-provider --no-audit --no-fund --loglevel=error
  echo "$idp_wanted" >"$idp_stamp"
fi

step "the console's modules: their JSDoc types (TypeScript, pinned) and their helpers' unit tests (node --test)"
console_stamp=tests/console/node_modules/.installed-from
console_wanted=$(cat tests/console/package.json tests/console/package-lock.json | sha256sum | cut -d' ' -f1)
if [[ $(cat "$console_stamp" 2>/dev/null) != "$console_wanted" ]]; then
  npm ci --prefix tests/console --no-audit --no-fund --loglevel=error
  echo "$console_wanted" >"$console_stamp"
fi
tests/console/node_modules/.bin/tsc -p tests/console/tsconfig.json
mkdir -p target
node --test --test-reporter=tap tests/console/*.test.mjs 2>&1 | tee target/console-output.log

step "docker-compose.yml (no Docker engine here: validated against the Compose schema)"
python3 scripts/validate-compose.py

step "Grafana dashboards (schema, and every PromQL metric exported by tracewarden)"
# Two commands, not `a && b`: under `set -e` a failure on the left of && would not stop the script.
python3 scripts/validate-dashboards.py --self-test
python3 scripts/validate-dashboards.py

step "format"
cargo fmt --check

step "module graph has no cycles"
python3 scripts/check-module-cycles.py

step "lint"
cargo clippy --all-targets --locked -- -D warnings

step "fuzz every decoder and the receivers (${FUZZ_SECONDS:-60}s a target)"
scripts/fuzz.sh "${FUZZ_SECONDS:-60}"

step "a real broker process for the multi-process tests"
# shellcheck source=scripts/broker.sh
source scripts/broker.sh

step "tests (unit, property, Kafka mock cluster and real broker, CLI and demo; benches run once each)"
# The real-broker tests are #[ignore]d so that a plain `cargo test` without a broker reports them
# as ignored, not passed; here the broker above is running, so every test runs.
mkdir -p target
set +e
cargo test --all-targets --locked --no-fail-fast -- --include-ignored 2>&1 | tee target/test-output.log
status=${PIPESTATUS[0]}
set -e

step "delivery through TLS: kill -9 mid-stream and dead letters, on Tansu behind a TLS listener"
set +e
(unset TRACEWARDEN_TEST_BROKERS TRACEWARDEN_TEST_CLIENT
 scripts/secured-kafka.sh kill_9_of_an_instance_mid_stream_loses_no_trace bad_input_on_a_real_broker) 2>&1 \
  | tee -a target/test-output.log
[[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
set -e

step "the console in a headless browser"
# The binary the tests above just built; a check that fails here fails the run.
set +e
scripts/browser.sh target/debug/tracewarden 2>&1 | tee target/browser-output.log
browser_status=${PIPESTATUS[0]}
set -e
if [[ $browser_status -eq 0 ]]; then
  echo "browser: the console passed (screenshots in target/screenshots/)"
else
  echo "browser: FAILED (status $browser_status; output in target/browser-output.log, screenshots in target/screenshots/)"
fi

# One closing line for the whole run (cargo prints one per test binary, node's test runner and the
# browser checks one of their own). "ignored" stays 0 with --include-ignored; a test that is ignored
# anyway shows there instead of among the passed. A browser step that failed before counting
# counts as one failure.
awk -v browser_status="$browser_status" '
  /^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i } }
  FILENAME ~ /console-output/ && /^# pass [0-9]+$/ { p += $3 }
  FILENAME ~ /console-output/ && /^# fail [0-9]+$/ { f += $3 }
  /^browser: [0-9]+ passed, [0-9]+ failed$/ { p += $2; f += $4; bf += $4 }
  END { if (browser_status != 0 && bf == 0) f += 1
        printf "\ntests: %d passed, %d failed, %d ignored\n", p, f, g }' target/console-output.log target/test-output.log target/browser-output.log
[[ $status -ne 0 ]] && exit "$status"
exit "$browser_status"
