#!/usr/bin/env bash
# Benchmarks Berth with token authentication against CNCF Distribution (Debian
# docker-registry) with the same Docker token flow served by the reference token issuer
# ../shared/peers/token_server.py: one registry-bench invocation drives both (it probes
# /v2/, follows the Bearer challenge, fetches a token per scope with Basic credentials and
# caches it). Then measures the token endpoints themselves with ab (Debian apache2-utils).
#
# Usage: scripts/bench-auth.sh [registry-bench args...]   e.g. scripts/bench-auth.sh -w manifest-get -c 16,64
# Env: BENCH, TOKEN_SERVER (the reference issuer, default beside the checkout), WORK (default /var/tmp/berth-bench-auth), BERTH, REPEAT (default 3), JSON,
#      TOKEN_N (requests per token measurement, default 2000).
set -euo pipefail
source "$(dirname "$0")/bench-lib.sh"
TOKEN_SERVER="${TOKEN_SERVER:-$ROOT/../shared/peers/token_server.py}"
WORK="${WORK:-/var/tmp/berth-bench-auth}"
REPEAT="${REPEAT:-3}"
JSON="${JSON:-$WORK/result.json}"
TOKEN_N="${TOKEN_N:-2000}"
DPORT=5111
BPORT=5112
TPORT=5113
USER=bench
PASS=bench-password-123

bench_prepare docker-registry ab:apache2-utils
python3 -c 'import cryptography' 2>/dev/null || bench_prepare python3-cryptography
rm -rf "$WORK"
mkdir -p "$WORK/berth" "$WORK/token"

python3 "$TOKEN_SERVER" --port $TPORT --dir "$WORK/token" --users "$USER:$PASS" \
  --service registry --issuer peers-token-issuer --grant all > "$WORK/token/out" 2>&1 &
TPID=$!
for _ in $(seq 100); do [[ -s $WORK/token/cert.pem ]] && break; sleep 0.1; done
dist_config "$WORK/dist" $DPORT "auth:
  token:
    realm: http://127.0.0.1:$TPORT/token
    service: registry
    issuer: peers-token-issuer
    rootcertbundle: $WORK/token/cert.pem"
docker-registry serve "$WORK/dist/config.yml" > "$WORK/dist/log" 2>&1 &
DPID=$!
# Berth: the bench user is a system administrator (the harness pushes to fresh namespaces).
printf '%s\n' "$PASS" > "$WORK/pw"
BERTH_ADMIN_PASSWORD=unused-admin-pw "$BERTH" admin --data-dir "$WORK/berth" --init user create $USER --admin --password-file "$WORK/pw" >/dev/null
BERTH_LOG=warn BERTH_ADMIN_PASSWORD=unused-admin-pw "$BERTH" serve --listen 127.0.0.1:$BPORT --data-dir "$WORK/berth" > "$WORK/berth/log" 2>&1 &
BPID=$!
trap 'kill $DPID $BPID $TPID 2>/dev/null || true' EXIT
wait_v2 $DPORT 401; wait_v2 $BPORT 401
machine_line
"$BENCH" "http://127.0.0.1:$DPORT" --label distribution+token_server.py --pid $DPID \
  --compare "http://127.0.0.1:$BPORT" --label2 berth --pid2 $BPID \
  --user $USER --password "$PASS" --repeat "$REPEAT" --json "$JSON" "$@"

echo
echo "== token issue: $TOKEN_N GET requests with Basic credentials, scope repository:rb/x:pull,push =="
for c in 1 16; do
  for target in "token_server.py http://127.0.0.1:$TPORT/token?service=registry" \
                "berth http://127.0.0.1:$BPORT/auth/token?service=berth"; do
    name=${target%% *}
    url=${target#* }
    out=$(ab -q -n "$TOKEN_N" -c $c -A "$USER:$PASS" "$url&scope=repository:rb/x:pull,push" 2>&1)
    rps=$(awk '/Requests per second/{print $4}' <<<"$out")
    p50=$(awk '/ 50% /{print $2}' <<<"$out")
    p99=$(awk '/ 99% /{print $2}' <<<"$out")
    fails=$(awk '/Failed requests/{print $3}' <<<"$out")
    non2xx=$(awk '/Non-2xx/{print $3}' <<<"$out")
    echo "$name c=$c: ${rps} req/s, p50 ${p50} ms, p99 ${p99} ms, failed ${fails}, non-2xx ${non2xx:-0}"
  done
done

echo
echo "== token issue with the credential cache off (argon2id on every request) =="
kill $BPID 2>/dev/null || true
wait $BPID 2>/dev/null || true
printf '[auth]\ncredential_cache_secs = 0\n' > "$WORK/nocache.toml"
BERTH_LOG=warn BERTH_ADMIN_PASSWORD=unused-admin-pw "$BERTH" serve --config "$WORK/nocache.toml" \
  --listen 127.0.0.1:$BPORT --data-dir "$WORK/berth" > "$WORK/berth/log2" 2>&1 &
BPID=$!
wait_v2 $BPORT
for c in 1 16; do
  out=$(ab -q -n "$TOKEN_N" -c $c -A "$USER:$PASS" "http://127.0.0.1:$BPORT/auth/token?service=berth&scope=repository:rb/x:pull,push" 2>&1)
  echo "berth (no cache) c=$c: $(awk '/Requests per second/{print $4}' <<<"$out") req/s, p50 $(awk '/ 50% /{print $2}' <<<"$out") ms, p99 $(awk '/ 99% /{print $2}' <<<"$out") ms, failed $(awk '/Failed requests/{print $3}' <<<"$out"), non-2xx $(awk '/Non-2xx/{print $3}' <<<"$out")"
done
