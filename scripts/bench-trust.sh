#!/usr/bin/env bash
# Benchmarks Berth's trust service against the reference Notary server (Debian notary-server,
# memory storage, local signer): GETs of timestamp.json and targets.json at concurrency C
# with wrk, over TLS, on a repository the notary CLI signed the same way on both (N tags).
# Berth serves its embedded default; both get their certificate from one test CA.
#
# Usage: scripts/bench-trust.sh
# Env: BERTH (binary, default the release build in CARGO_TARGET_DIR), WORK (default
#      /var/tmp/berth-bench-trust), C (default 16), SECONDS_PER_RUN (default 10),
#      REPEAT (default 3, alternating notary-server and Berth), N (targets, default 50).
set -euo pipefail
source "$(dirname "$0")/bench-lib.sh"
WORK="${WORK:-/var/tmp/berth-bench-trust}"
C="${C:-16}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
REPEAT="${REPEAT:-3}"
N="${N:-50}"
NPORT=5201
BPORT=5202

bench_prepare wrk notary-server:notary openssl
trust_servers
trap 'kill $NPID $BPID 2>/dev/null || true' EXIT
wait_tls $NPORT $BPORT
machine_line "wrk -c$C -t2 -d${SECONDS_PER_RUN}s, $N targets"

# The same signing on both: init, N targets, publish (the client keeps the snapshot key).
export NOTARY_ROOT_PASSPHRASE=bench NOTARY_TARGETS_PASSPHRASE=bench NOTARY_SNAPSHOT_PASSPHRASE=bench
NOTARY_AUTH=$(printf 'admin:%s' "$ADMIN_PW" | base64 -w0)
export NOTARY_AUTH
for i in $(seq "$N"); do printf 'manifest %s' "$i" > "$WORK/m$i"; done
sign() { # port gun
  local n=(notary -s "https://127.0.0.1:$1" --tlscacert "$TLS/ca.crt" -d "$WORK/client-$1")
  "${n[@]}" init "$2" > /dev/null
  for i in $(seq "$N"); do "${n[@]}" add "$2" "v$i" "$WORK/m$i" > /dev/null; done
  "${n[@]}" publish "$2" > /dev/null
}
sign $NPORT "127.0.0.1:$NPORT/bench/app"
sign $BPORT "127.0.0.1:$BPORT/bench/app"
# Anonymous reads on both: Berth's repository made public.
curl -sf --cacert "$TLS/ca.crt" -u "admin:$ADMIN_PW" -X PATCH -H 'content-type: application/json' \
  -d '{"visibility":"public"}' "https://127.0.0.1:$BPORT/api/v0/repositories/bench/app" > /dev/null

run() { # port role -> "requests/s p50 p99"
  local url="https://127.0.0.1:$1/v2/127.0.0.1:$1/bench/app/_trust/tuf/$2.json"
  curl -sf --cacert "$TLS/ca.crt" -o /dev/null "$url"
  wrk -t2 -c"$C" -d"${SECONDS_PER_RUN}s" --latency "$url" | awk '
    /Requests\/sec/ {rps=$2}
    /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
    /Non-2xx/ {bad=$NF}
    END {printf "%s %s %s %s\n", rps, p50, p99, (bad == "" ? 0 : bad)}'
}
echo "| file | server | rep | requests/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|---|---|"
for role in timestamp targets; do
  for rep in $(seq "$REPEAT"); do
    for side in "notary-server $NPORT" "berth $BPORT"; do
      set -- $side
      read -r rps p50 p99 bad < <(run "$2" "$role")
      echo "| $role.json | $1 | $rep | $rps | $p50 | $p99 | $bad |"
    done
  done
done
echo "peak RSS: notary-server $(awk '/VmHWM/ {print $2}' /proc/$NPID/status) kB, berth $(awk '/VmHWM/ {print $2}' /proc/$BPID/status) kB"
