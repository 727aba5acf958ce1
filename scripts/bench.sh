#!/usr/bin/env bash
# Benchmarks Berth against CNCF Distribution (Debian docker-registry) in one registry-bench
# invocation: both on filesystem storage under the same directory (same disk), Berth on its
# embedded default (SQLite + filesystem), each measured for CPU and RSS by pid.
#
# Usage: scripts/bench.sh [registry-bench args...]    e.g. scripts/bench.sh -w push-small -c 16,64
# Env: BENCH (harness wrapper, default ../shared/bench/registry-bench beside the checkout),
#      WORK (data directory, default /var/tmp/berth-bench), BERTH (binary, default the release
#      build in CARGO_TARGET_DIR), REPEAT (default 3), JSON (result file).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH:-$ROOT/../shared/bench/registry-bench}"
WORK="${WORK:-/var/tmp/berth-bench}"
TARGET="${CARGO_TARGET_DIR:-/var/tmp/berth-target}"
BERTH="${BERTH:-$TARGET/release/berth}"
REPEAT="${REPEAT:-3}"
JSON="${JSON:-$WORK/result.json}"
DPORT=5101
BPORT=5102

[[ -x $BERTH ]] || (cd "$ROOT" && cargo build --release -p berth)
command -v docker-registry >/dev/null || { apt-get update -qq && apt-get install -y -qq docker-registry; }
rm -rf "$WORK/dist" "$WORK/berth"
mkdir -p "$WORK/dist/data" "$WORK/berth"
cat > "$WORK/dist/config.yml" <<YML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  cache: {blobdescriptor: inmemory}
  filesystem: {rootdirectory: $WORK/dist/data}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$DPORT}
YML
docker-registry serve "$WORK/dist/config.yml" > "$WORK/dist/log" 2>&1 &
DPID=$!
# Berth asks for credentials (the token protocol); the harness logs in as the first
# administrator, who may create repositories anywhere. Distribution runs without auth.
ADMIN_PW=bench-admin-password
BERTH_LOG=warn BERTH_ADMIN_PASSWORD=$ADMIN_PW "$BERTH" serve --listen 127.0.0.1:$BPORT --data-dir "$WORK/berth" > "$WORK/berth/log" 2>&1 &
BPID=$!
trap 'kill $DPID $BPID 2>/dev/null || true' EXIT
for p in $DPORT $BPORT; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$p/v2/" && break; sleep 0.1; done
done
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); berth $("$BERTH" --version)" >&2
if [[ ${ONLY:-} == berth ]]; then
  "$BENCH" "http://127.0.0.1:$BPORT" --label berth --pid $BPID --repeat "$REPEAT" --json "$JSON" --user admin --password "$ADMIN_PW" "$@"
else
  "$BENCH" "http://127.0.0.1:$DPORT" --label distribution --pid $DPID \
    --compare "http://127.0.0.1:$BPORT" --label2 berth --pid2 $BPID \
    --repeat "$REPEAT" --json "$JSON" --user admin --password "$ADMIN_PW" "$@"
fi
