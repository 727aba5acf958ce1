#!/usr/bin/env bash
# Benchmarks Berth against CNCF Distribution (Debian docker-registry) in one registry-bench
# invocation: both on filesystem storage under the same directory (same disk), Berth on its
# embedded default (SQLite + filesystem), each measured for CPU and RSS by pid.
#
# Usage: scripts/bench.sh [registry-bench args...]    e.g. scripts/bench.sh -w push-small -c 16,64
# Env: BENCH (harness wrapper, default ../shared/bench/registry-bench beside the checkout),
#      WORK (data directory, default /var/tmp/berth-bench), BERTH (binary, default the release
#      build in CARGO_TARGET_DIR), REPEAT (default 3), JSON (result file), AGAINST (another
#      Berth binary: compared in place of Distribution, the same day on the same machine,
#      e.g. the release build of an earlier commit).
set -euo pipefail
source "$(dirname "$0")/bench-lib.sh"
WORK="${WORK:-/var/tmp/berth-bench}"
REPEAT="${REPEAT:-3}"
JSON="${JSON:-$WORK/result.json}"
DPORT=5101
BPORT=5102

bench_prepare docker-registry
rm -rf "$WORK/dist" "$WORK/berth"
mkdir -p "$WORK/berth"
# Berth asks for credentials (the token protocol); the harness logs in as the first
# administrator, who may create repositories anywhere. Distribution runs without auth.
berth_serve() { # binary port dir
  mkdir -p "$3"
  BERTH_LOG=warn BERTH_ADMIN_PASSWORD=$ADMIN_PW "$1" serve --listen 127.0.0.1:$2 --data-dir "$3" > "$3/log" 2>&1 &
}
if [[ -n ${AGAINST:-} ]]; then
  berth_serve "$AGAINST" $DPORT "$WORK/dist"
  DLABEL=berth-before
else
  dist_config "$WORK/dist" $DPORT
  docker-registry serve "$WORK/dist/config.yml" > "$WORK/dist/log" 2>&1 &
  DLABEL=distribution
fi
DPID=$!
berth_serve "$BERTH" $BPORT "$WORK/berth"
BPID=$!
trap 'kill $DPID $BPID 2>/dev/null || true' EXIT
wait_v2 $DPORT; wait_v2 $BPORT
machine_line
if [[ ${ONLY:-} == berth ]]; then
  "$BENCH" "http://127.0.0.1:$BPORT" --label berth --pid $BPID --repeat "$REPEAT" --json "$JSON" --user admin --password "$ADMIN_PW" "$@"
else
  "$BENCH" "http://127.0.0.1:$DPORT" --label "$DLABEL" --pid $DPID \
    --compare "http://127.0.0.1:$BPORT" --label2 berth --pid2 $BPID \
    --repeat "$REPEAT" --json "$JSON" --user admin --password "$ADMIN_PW" "$@"
fi
