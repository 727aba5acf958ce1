#!/usr/bin/env bash
# Benchmarks the cost of signature policies on manifest GET by tag: one Berth (embedded
# default, TLS), N image manifests in bench/app all signed with Docker Content Trust (the
# notary CLI, one publish), GETs by tag spread over the N tags with wrk at each
# concurrency, as a user who may only pull (HTTP Basic), alternating the policy of the
# namespace `bench` between off (deleted) and enforce (signer user:admin, satisfied by
# every tag). registry-bench pushes its own fresh manifests right before it reads them,
# which leaves no moment to sign them, hence wrk here.
#
# Usage: scripts/bench-policy.sh
# Env: BERTH (binary, default the release build in CARGO_TARGET_DIR), WORK (default
#      /var/tmp/berth-bench-policy), CONCURRENCY (default "16 64"), SECONDS_PER_RUN
#      (default 10), REPEAT (default 3), N (tags, default 200).
set -euo pipefail
source "$(dirname "$0")/bench-lib.sh"
WORK="${WORK:-/var/tmp/berth-bench-policy}"
CONCURRENCY="${CONCURRENCY:-16 64}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
REPEAT="${REPEAT:-3}"
N="${N:-200}"
NPORT=5221
BPORT=5222

bench_prepare wrk notary-server:notary openssl
trust_servers
trap 'kill $NPID $BPID 2>/dev/null || true' EXIT
wait_tls $BPORT
machine_line "wrk -t2 -d${SECONDS_PER_RUN}s, $N signed tags"
B="https://127.0.0.1:$BPORT"
api() { # method path [body]
  curl -sf --cacert "$TLS/ca.crt" -u "admin:$ADMIN_PW" -X "$1" -H 'content-type: application/json' \
    ${3:+-d "$3"} "$B$2" > /dev/null
}
blob() { # file: uploads it to bench/app, prints its digest
  local d loc
  d="sha256:$(sha256sum "$1" | cut -d' ' -f1)"
  loc=$(curl -sf --cacert "$TLS/ca.crt" -u "admin:$ADMIN_PW" -X POST -D - -o /dev/null \
    "$B/v2/bench/app/blobs/uploads/" | awk 'tolower($1) == "location:" {print $2}' | tr -d '\r')
  case $loc in http*) ;; *) loc="$B$loc" ;; esac
  curl -sf --cacert "$TLS/ca.crt" -u "admin:$ADMIN_PW" -X PUT -H 'content-type: application/octet-stream' \
    --data-binary "@$1" "$loc$([[ $loc == *\?* ]] && echo '&' || echo '?')digest=$d" > /dev/null
  echo "$d"
}

# N manifests over one config and one layer, each its own tag.
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' > "$WORK/config"
head -c 1024 /dev/urandom > "$WORK/layer"
cfg=$(blob "$WORK/config")
layer=$(blob "$WORK/layer")
mkdir -p "$WORK/m"
for i in $(seq "$N"); do
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":1024}],"annotations":{"n":"%s"}}' \
    "$cfg" "$(stat -c %s "$WORK/config")" "$layer" "$i" > "$WORK/m/t$i"
  curl -sf --cacert "$TLS/ca.crt" -u "admin:$ADMIN_PW" -X PUT \
    -H 'content-type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$WORK/m/t$i" \
    "$B/v2/bench/app/manifests/t$i" > /dev/null
done
cp "$WORK/m/t1" "$WORK/m/unsigned"
sed -i 's/"n":"1"/"n":"unsigned"/' "$WORK/m/unsigned"
curl -sf --cacert "$TLS/ca.crt" -u "admin:$ADMIN_PW" -X PUT \
  -H 'content-type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$WORK/m/unsigned" \
  "$B/v2/bench/app/manifests/unsigned" > /dev/null
# Every tag t1..tN signed by admin (who creates the trust data), one publish.
export NOTARY_ROOT_PASSPHRASE=bench NOTARY_TARGETS_PASSPHRASE=bench NOTARY_SNAPSHOT_PASSPHRASE=bench
NOTARY_AUTH=$(printf 'admin:%s' "$ADMIN_PW" | base64 -w0)
export NOTARY_AUTH
n=(notary -s "$B" --tlscacert "$TLS/ca.crt" -d "$WORK/notary")
"${n[@]}" init "127.0.0.1:$BPORT/bench/app" > /dev/null
for i in $(seq "$N"); do "${n[@]}" add "127.0.0.1:$BPORT/bench/app" "t$i" "$WORK/m/t$i" > /dev/null; done
"${n[@]}" publish "127.0.0.1:$BPORT/bench/app" > /dev/null
# A reader who may only pull: the repository public.
api POST /api/v0/users '{"name":"reader","password":"bench-reader-password"}'
api PATCH /api/v0/repositories/bench/app '{"visibility":"public"}'
AUTH="Basic $(printf 'reader:bench-reader-password' | base64 -w0)"
cat > "$WORK/tags.lua" <<LUA
local n, i = $N, 0
request = function()
  i = i % n + 1
  return wrk.format("GET", "/v2/bench/app/manifests/t" .. i, {
    ["Authorization"] = "$AUTH",
    ["Accept"] = "application/vnd.oci.image.manifest.v1+json"})
end
LUA

run() { # concurrency -> "requests/s p50 p99 non-2xx"
  wrk -t2 -c"$1" -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/tags.lua" "$B" | awk '
    /Requests\/sec/ {rps=$2}
    /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
    /Non-2xx/ {bad=$NF}
    END {printf "%s %s %s %s\n", rps, p50, p99, (bad == "" ? 0 : bad)}'
}
policy() { # off|enforce
  if [[ $1 == off ]]; then
    curl -s --cacert "$TLS/ca.crt" -u "admin:$ADMIN_PW" -X DELETE "$B/api/v0/namespaces/bench/policy" > /dev/null
  else
    api PUT /api/v0/namespaces/bench/policy '{"mode":"enforce","signers":["user:admin"]}'
  fi
  # The reader gets every signed tag; under enforce, not the unsigned one.
  local code
  code() {
    curl -s --cacert "$TLS/ca.crt" -o /dev/null -w '%{http_code}' -H "Authorization: $AUTH" \
      -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$B/v2/bench/app/manifests/$1"
  }
  [[ $(code t1) == 200 ]]
  code=$(code unsigned)
  [[ ($1 == off && $code == 200) || ($1 == enforce && $code == 403) ]]
}
echo "| concurrency | policy | rep | requests/s | p50 | p99 | non-2xx | berth RSS after |"
echo "|---|---|---|---|---|---|---|---|"
for c in $CONCURRENCY; do
  for rep in $(seq "$REPEAT"); do
    for mode in off enforce; do
      policy "$mode"
      read -r rps p50 p99 bad < <(run "$c")
      rss=$(awk '/VmRSS/ {print $2}' /proc/$BPID/status)
      echo "| $c | $mode | $rep | $rps | $p50 | $p99 | $bad | $((rss / 1024)) MiB |"
    done
  done
done
echo "peak RSS: berth $(awk '/VmHWM/ {print $2}' /proc/$BPID/status) kB"
