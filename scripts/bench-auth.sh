#!/usr/bin/env bash
# Benchmarks Berth with token authentication against CNCF Distribution (Debian
# docker-registry) with the same Docker token flow served by the reference token issuer
# ../shared/peers/token_server.py: one registry-bench invocation drives both (it probes
# /v2/, follows the Bearer challenge, fetches a token per scope with Basic credentials and
# caches it). Then measures the token endpoints themselves with ab (Debian apache2-utils).
#
# Usage: scripts/bench-auth.sh [registry-bench args...]   e.g. scripts/bench-auth.sh -w manifest-get -c 16,64
# Env: BENCH, WORK (default /var/tmp/berth-bench-auth), BERTH, REPEAT (default 3), JSON,
#      TOKEN_N (requests per token measurement, default 2000).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH:-$ROOT/../shared/bench/registry-bench}"
PEERS="${BERTH_PEERS_DIR:-$ROOT/../shared/peers}"
WORK="${WORK:-/var/tmp/berth-bench-auth}"
TARGET="${CARGO_TARGET_DIR:-/var/tmp/berth-target}"
BERTH="${BERTH:-$TARGET/release/berth}"
REPEAT="${REPEAT:-3}"
JSON="${JSON:-$WORK/result.json}"
TOKEN_N="${TOKEN_N:-2000}"
DPORT=5111
BPORT=5112
TPORT=5113
USER=bench
PASS=bench-password-123

[[ -x $BERTH ]] || (cd "$ROOT" && cargo build --release -p berth)
need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v ab >/dev/null || need+=(apache2-utils)
python3 -c 'import cryptography' 2>/dev/null || need+=(python3-cryptography)
if ((${#need[@]})); then apt-get update -qq && apt-get install -y -qq "${need[@]}"; fi
rm -rf "$WORK"
mkdir -p "$WORK/dist/data" "$WORK/berth" "$WORK/token"

python3 "$PEERS/token_server.py" --port $TPORT --dir "$WORK/token" --users "$USER:$PASS" \
  --service registry --issuer peers-token-issuer --grant all > "$WORK/token/out" 2>&1 &
TPID=$!
for _ in $(seq 100); do [[ -s $WORK/token/cert.pem ]] && break; sleep 0.1; done
cat > "$WORK/dist/config.yml" <<YML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  cache: {blobdescriptor: inmemory}
  filesystem: {rootdirectory: $WORK/dist/data}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$DPORT}
auth:
  token:
    realm: http://127.0.0.1:$TPORT/token
    service: registry
    issuer: peers-token-issuer
    rootcertbundle: $WORK/token/cert.pem
YML
docker-registry serve "$WORK/dist/config.yml" > "$WORK/dist/log" 2>&1 &
DPID=$!
# Berth: the bench user is a system administrator (the harness pushes to fresh namespaces).
printf '%s\n' "$PASS" > "$WORK/pw"
BERTH_ADMIN_PASSWORD=unused-admin-pw "$BERTH" admin --data-dir "$WORK/berth" --init user create $USER --admin --password-file "$WORK/pw" >/dev/null
BERTH_LOG=warn BERTH_ADMIN_PASSWORD=unused-admin-pw "$BERTH" serve --listen 127.0.0.1:$BPORT --data-dir "$WORK/berth" > "$WORK/berth/log" 2>&1 &
BPID=$!
trap 'kill $DPID $BPID $TPID 2>/dev/null || true' EXIT
for p in $DPORT $BPORT; do
  for _ in $(seq 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/v2/" || true)
    [[ $code == 401 ]] && break
    sleep 0.1
  done
done
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); berth $("$BERTH" --version)" >&2
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
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$BPORT/v2/" && break; sleep 0.1; done
for c in 1 16; do
  out=$(ab -q -n "$TOKEN_N" -c $c -A "$USER:$PASS" "http://127.0.0.1:$BPORT/auth/token?service=berth&scope=repository:rb/x:pull,push" 2>&1)
  echo "berth (no cache) c=$c: $(awk '/Requests per second/{print $4}' <<<"$out") req/s, p50 $(awk '/ 50% /{print $2}' <<<"$out") ms, p99 $(awk '/ 99% /{print $2}' <<<"$out") ms, failed $(awk '/Failed requests/{print $3}' <<<"$out"), non-2xx $(awk '/Non-2xx/{print $3}' <<<"$out")"
done
