#!/usr/bin/env bash
# Times a trusted `docker push` (DOCKER_CONTENT_TRUST=1, docker CLI 28) end to end, on Berth
# (its embedded default, the Notary API on its own listener, `docker login` as its
# administrator through its token service) and on the reference: CNCF
# Distribution (Debian docker-registry, filesystem storage) with Debian notary-server
# (memory storage, local signer), neither with authentication. All three over TLS with a
# certificate of one test CA. The image is one layer of one small file (`docker import`).
#   untrusted-tag  a new tag of the pushed image, DOCKER_CONTENT_TRUST=0 (the registry part)
#   tag            a new tag of the pushed image to a signed repository: manifest, targets
#                  signed by the client, snapshot and timestamp by the server
#   new-repo       the image to a repository never signed: the client makes that
#                  repository's targets key (the root key exists), init and first publish
# Every timed push names a tag or repository not pushed before. Each repetition times one
# push of each case on each side, the side that goes first alternating; only `docker push`
# is timed (the `docker tag` before it is not).
#
# Usage: scripts/bench-trust-push.sh
# Env: BERTH (binary, default the release build in CARGO_TARGET_DIR), WORK (default
#      /var/tmp/berth-bench-trust-push), REPEAT (default 21), CASES (default
#      "untrusted-tag tag new-repo"), DOCKER_HOST (the engine to push with; its
#      registries on 127.0.0.0/8 are insecure by default, so it needs no CA).
set -euo pipefail
source "$(dirname "$0")/bench-lib.sh"
WORK="${WORK:-/var/tmp/berth-bench-trust-push}"
REPEAT="${REPEAT:-21}"
CASES="${CASES:-untrusted-tag tag new-repo}"
NPORT=5211 # notary-server
DPORT=5212 # Distribution
BPORT=5213 # Berth

bench_prepare docker-registry notary-server:notary openssl
trust_servers
dist_config "$WORK/dist" $DPORT \
  "  tls: {certificate: $TLS/server.crt, key: $TLS/server.key}"
# dist_config ends with the one-line `http: {addr: ...}`: make it a block for the tls key.
sed -i "s|^http: {addr: 127.0.0.1:$DPORT}|http:\n  addr: 127.0.0.1:$DPORT|" "$WORK/dist/config.yml"

docker-registry serve "$WORK/dist/config.yml" > "$WORK/dist.log" 2>&1 &
DPID=$!
# At exit: the servers stopped, this run's images untagged from the engine.
cleanup() {
  kill $NPID $DPID $BPID 2>/dev/null || true
  docker images --format '{{.Repository}}:{{.Tag}}' | grep -E \
    "^(127\.0\.0\.1:($DPORT|$BPORT)/|bench-trust-push-src:$BPORT$)" | xargs -r docker rmi -f \
    > /dev/null 2>&1 || true
}
trap cleanup EXIT
wait_tls $NPORT $DPORT $BPORT

# One docker CLI configuration per side: its login, its trust keys, the CA for the trust
# client (docker CLI: <config>/tls/<host:port>/ca.crt).
export DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE=bench-root-passphrase
export DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE=bench-repo-passphrase
for side in ref berth; do
  mkdir -p "$WORK/cli-$side/tls/127.0.0.1:$NPORT" "$WORK/cli-$side/tls/127.0.0.1:$BPORT"
  cp "$TLS/ca.crt" "$WORK/cli-$side/tls/127.0.0.1:$NPORT/"
  cp "$TLS/ca.crt" "$WORK/cli-$side/tls/127.0.0.1:$BPORT/"
done
printf '%s' "$ADMIN_PW" | DOCKER_CONFIG="$WORK/cli-berth" docker login -u admin \
  --password-stdin 127.0.0.1:$BPORT > /dev/null

# side -> the registry host; dkr side ARGS: docker with that side's configuration.
host() { [[ $1 == ref ]] && echo 127.0.0.1:$DPORT || echo 127.0.0.1:$BPORT; }
dkr() {
  local side=$1
  shift
  if [[ $side == ref ]]; then
    DOCKER_CONFIG="$WORK/cli-ref" DOCKER_CONTENT_TRUST_SERVER=https://127.0.0.1:$NPORT docker "$@"
  else
    DOCKER_CONFIG="$WORK/cli-berth" docker "$@"
  fi
}

# The image: one layer holding one small file, tagged for both sides.
mkdir -p "$WORK/img"
printf 'berth trusted push bench %s\n' "$(date +%s%N)" > "$WORK/img/f"
tar cf "$WORK/img.tar" -C "$WORK/img" f
IMG=bench-trust-push-src:$BPORT
docker import "$WORK/img.tar" "$IMG" > /dev/null

# push side ref trust: tags the image as ref, times `docker push ref` alone, prints
# milliseconds; the push must succeed (and sign, with trust on).
push() {
  local side=$1 ref=$2 trust=$3 t0 t1 out="$WORK/push-$1.log"
  docker tag "$IMG" "$ref"
  echo "== $ref trust=$trust" >> "$out"
  t0=$(date +%s%N)
  if ! DOCKER_CONTENT_TRUST=$trust dkr "$side" push "$ref" >> "$out" 2>&1; then
    t1=$(date +%s%N)
    echo "push of $ref ($side) failed after $(((t1 - t0) / 1000000)) ms; see $out" >&2
    tail -5 "$out" >&2
    exit 1
  fi
  t1=$(date +%s%N)
  if [[ $trust == 1 ]] && ! tail -3 "$out" | grep -q 'Successfully signed'; then
    echo "push of $ref ($side) did not sign; see $out" >&2
    exit 1
  fi
  echo $(((t1 - t0) / 1000000))
}

# Warm-up on each side, not counted: the first trusted push makes the client's root key
# and signs the repository the tag cases push to; one more of each case.
for side in ref berth; do
  h=$(host "$side")
  push "$side" "$h/admin/app:0" 1 > /dev/null
  push "$side" "$h/admin/app:w1" 0 > /dev/null
  push "$side" "$h/admin/app:w2" 1 > /dev/null
  push "$side" "$h/admin/new-w:1" 1 > /dev/null
done
machine_line "docker CLI $(docker version -f '{{.Client.Version}}'), engine $(docker version -f '{{.Server.Version}}'), $REPEAT repetitions"

: > "$WORK/times"
for rep in $(seq "$REPEAT"); do
  order="ref berth"
  ((rep % 2)) || order="berth ref"
  for c in $CASES; do
    for side in $order; do
      h=$(host "$side")
      case $c in
        untrusted-tag) ms=$(push "$side" "$h/admin/app:u$rep" 0) ;;
        tag) ms=$(push "$side" "$h/admin/app:t$rep" 1) ;;
        new-repo) ms=$(push "$side" "$h/admin/new-$rep:1" 1) ;;
        *) echo "unknown case $c" >&2; exit 2 ;;
      esac
      echo "$c $side $rep $ms" >> "$WORK/times"
    done
  done
done

# min, median, max of a case on a side, in ms.
stats() { # case side
  awk -v c="$1" -v s="$2" '$1 == c && $2 == s {print $4}' "$WORK/times" | sort -n | awk '
    {v[NR] = $1} END {printf "%d %d %d\n", v[int((NR + 1) / 2)], v[1], v[NR]}'
}
echo "| case | reference median [min-max] ms | Berth median [min-max] ms | Berth / reference |"
echo "|---|---|---|---|"
for c in $CASES; do
  read -r rmed rmin rmax < <(stats "$c" ref)
  read -r bmed bmin bmax < <(stats "$c" berth)
  printf '| %s | %d [%d-%d] | %d [%d-%d] | %.2f |\n' "$c" "$rmed" "$rmin" "$rmax" \
    "$bmed" "$bmin" "$bmax" "$(awk -v b="$bmed" -v r="$rmed" 'BEGIN {print b / r}')"
done
echo "peak RSS: Distribution $(awk '/VmHWM/ {print $2}' /proc/$DPID/status) kB," \
  "notary-server $(awk '/VmHWM/ {print $2}' /proc/$NPID/status) kB," \
  "berth $(awk '/VmHWM/ {print $2}' /proc/$BPID/status) kB"
for f in notary dist berth; do
  [[ -s $WORK/$f.log ]] && echo "$f log: $(wc -l < "$WORK/$f.log") lines in $WORK/$f.log" >&2
done
true
