#!/usr/bin/env bash
# The console in a headless browser: starts `tracewarden demo`, runs tests/browser/console.mjs
# against its console (playwright-core driving Debian's Chromium), stops the demo. Installs
# Chromium and the pinned npm packages when missing; builds nothing.
#
#   scripts/browser.sh [BINARY] [--update-readme]     (BINARY: default target/debug/tracewarden)
#
# Exits non-zero when a check fails, when the demo does not start or serve, or when it does not
# stop cleanly. Screenshots go to target/screenshots/, the demo's output to target/browser/.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/debug/tracewarden
passthrough=()
for arg in "$@"; do
  case $arg in
    --update-readme) passthrough+=("$arg") ;;
    -*) echo "browser.sh: unknown option $arg" >&2; exit 2 ;;
    *) bin=$arg ;;
  esac
done
fail() { echo "browser.sh: $*" >&2; exit 1; }

[[ -x $bin ]] || fail "no binary at $bin (build it first: cargo build --bin tracewarden)"
command -v node >/dev/null && command -v npm >/dev/null || fail "Node.js (>= 20) and npm are needed"

export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $CHROMIUM ]]; then
  echo "installing Debian's chromium"
  sudo=(); [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium >/dev/null
  [[ -x $CHROMIUM ]] || fail "no Chromium at $CHROMIUM after installing Debian's chromium"
fi

# The pinned packages, installed again only when package.json or the lock changes.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
stamp=tests/browser/node_modules/.installed-from
wanted=$(cat tests/browser/package.json tests/browser/package-lock.json | sha256sum | cut -d' ' -f1)
if [[ $(cat "$stamp" 2>/dev/null) != "$wanted" ]]; then
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
  echo "$wanted" >"$stamp"
fi

# The demo, on a free port. It stops by itself after --duration should this script be killed.
mkdir -p target/browser
out=target/browser/demo.out
log=target/browser/demo.log
# The console is tested as deployed with [http] bearer_token: it asks for the token once.
TRACEWARDEN_CONSOLE_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
export TRACEWARDEN_CONSOLE_TOKEN
TRACEWARDEN__HTTP__BEARER_TOKEN=$TRACEWARDEN_CONSOLE_TOKEN "$bin" demo --listen 127.0.0.1:0 --otlp-grpc-listen 127.0.0.1:0 --otlp-http-listen 127.0.0.1:0 --xray-listen 127.0.0.1:0 --canary-after 70s --duration 10m >"$out" 2>"$log" &
demo=$!
started_ms=$(date +%s%3N)
stop_demo() {
  kill -0 "$demo" 2>/dev/null || return 0
  kill -TERM "$demo" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$demo" 2>/dev/null || return 0; sleep 0.2; done
  echo "browser.sh: the demo did not stop within 30 s of SIGTERM; killing it" >&2
  kill -KILL "$demo" 2>/dev/null || true
}
trap stop_demo EXIT
demo_output() { echo "--- $out"; cat "$out"; echo "--- $log (last 20 lines)"; tail -n 20 "$log"; } >&2

# The console's URL is the first URL line; a demo without that line still has its metrics line.
url=
for _ in $(seq 300); do
  url=$(sed -n 's|^ *Console: *\(http://[^ ]*\).*|\1|p' "$out" | head -n 1)
  if [[ -z $url ]] && grep -q 'Prometheus metrics' "$out"; then
    url=$(sed -n 's|.*Prometheus metrics: *\(http://[^ ]*\)/metrics.*|\1/|p' "$out" | head -n 1)
  fi
  [[ -n $url ]] && break
  kill -0 "$demo" 2>/dev/null || { demo_output; fail "the demo exited before printing its URLs"; }
  sleep 0.2
done
[[ -n $url ]] || { demo_output; fail "the demo printed no console URL within 60 s"; }
echo "demo (pid $demo): console at $url"

set +e
timeout 520 node tests/browser/console.mjs "$url" --started-at "$started_ms" "${passthrough[@]}"
status=$?
set -e
[[ $status -eq 124 ]] && echo "browser.sh: the browser tests did not finish within 400 s" >&2

if ! kill -0 "$demo" 2>/dev/null; then
  wait "$demo" && demo_status=0 || demo_status=$?
  demo_output
  fail "the demo exited (status $demo_status) while the console was being tested"
fi
kill -TERM "$demo"
demo_status=0
# 30 s: Kubernetes' default grace period, what an operator's SIGTERM allows. A clean stop takes
# about a second; a worker whose group membership is stuck mid-rebalance makes the others wait
# for it up to 10 s (the workers leave together) before its commit is refused.
for _ in $(seq 150); do kill -0 "$demo" 2>/dev/null || break; sleep 0.2; done
if kill -0 "$demo" 2>/dev/null; then
  kill -KILL "$demo"
  fail "the demo did not stop within 30 s of SIGTERM"
fi
wait "$demo" || demo_status=$?
trap - EXIT
if [[ $demo_status -ne 0 ]]; then
  demo_output
  fail "the demo exited with status $demo_status on SIGTERM"
fi
exit "$status"
