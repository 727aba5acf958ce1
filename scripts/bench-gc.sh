#!/usr/bin/env bash
# GC benchmark (issue 4): Berth's `berth gc` against CNCF Distribution's
# `docker-registry garbage-collect --delete-untagged` on the same content.
#
# For each size N (default 1000 10000): both registries are filled in one registry-bench
# `populate --compare` invocation (identical content: N/10 repositories x 10 tags, every
# manifest with its own 1KiB layer, so about N layer blobs + the shared config). Then:
#   GC 1 "after import": both collect once (only the never-referenced base layer is garbage;
#        Berth's first run examines everything created since its previous run).
#   delete: the manifest behind tag t0 in every repository is deleted by digest through the
#        API on both (10% of the manifests; their layers become garbage).
#   GC 2 "10% garbage": both collect again. This is the measured comparison.
# Distribution is stopped for each of its runs (its GC must run offline); Berth keeps serving
# and runs online with --grace 0s --pace 1 (the work itself, without the online rests). Reported per run: wall seconds, blobs and manifests deleted,
# bytes of the data directory (du -sb) before and after.
#
# Usage: scripts/bench-gc.sh [N...]        e.g. scripts/bench-gc.sh 1000 10000 100000
# Env: BENCH (harness wrapper, default ../shared/bench/registry-bench beside the checkout),
#      WORK (default /var/tmp/berth-bench-gc), BERTH (default the release build),
#      TAGS (tags per repository, default 10; 1 in TAGS is deleted), P (delete parallelism, 8).
set -euo pipefail
source "$(dirname "$0")/bench-lib.sh"
WORK="${WORK:-/var/tmp/berth-bench-gc}"
TAGS="${TAGS:-10}"
P="${P:-8}"
DPORT=5111
BPORT=5112
SIZES=("$@")
[[ ${#SIZES[@]} -gt 0 ]] || SIZES=(1000 10000)

bench_prepare docker-registry jq

DPID= BPID=
cleanup() { for p in $DPID $BPID; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_dist() {
  docker-registry serve "$WORK/dist/config.yml" >> "$WORK/dist/log" 2>&1 &
  DPID=$!; wait_v2 $DPORT
}
stop_dist() { kill "$DPID"; wait "$DPID" 2>/dev/null || true; DPID=; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
bytes() { du -sb "$1" | cut -f1; }
mib() { awk -v b="$1" 'BEGIN{printf "%.1f", b/1048576}'; }

# Distribution GC (offline): prints "N blobs marked, B blobs and M manifests eligible for deletion"
dist_gc() { # label -> sets D_SECS D_BLOBS D_MANIFESTS D_BEFORE D_AFTER
  stop_dist
  D_BEFORE=$(bytes "$WORK/dist/data")
  local t0 t1; t0=$(now)
  docker-registry garbage-collect --delete-untagged "$WORK/dist/config.yml" > "$WORK/dist-gc-$1.out" 2>&1
  t1=$(now)
  D_SECS=$(secs "$t0" "$t1")
  D_AFTER=$(bytes "$WORK/dist/data")
  local summary; summary=$(grep -Eo '[0-9]+ blobs and [0-9]+ manifests eligible for deletion' "$WORK/dist-gc-$1.out" | tail -1)
  D_BLOBS=$(awk '{print $1}' <<<"$summary"); D_MANIFESTS=$(awk '{print $4}' <<<"$summary")
  # cross-check: the lines it prints for what it deletes
  D_LINES=$(grep -c 'eligible for deletion: ' "$WORK/dist-gc-$1.out" || true)
  start_dist
}
# Berth GC (online, the server keeps running)
berth_gc() { # label -> sets B_SECS B_BLOBS B_MANIFESTS B_BEFORE B_AFTER
  B_BEFORE=$(bytes "$WORK/berth")
  local t0 t1; t0=$(now)
  "$BERTH" gc --data-dir "$WORK/berth" --grace 0s --pace 1 --json > "$WORK/berth-gc-$1.json" 2> "$WORK/berth-gc-$1.err"
  t1=$(now)
  B_SECS=$(secs "$t0" "$t1")
  B_AFTER=$(bytes "$WORK/berth")
  B_BLOBS=$(jq -r .run.blobs_deleted "$WORK/berth-gc-$1.json")
  B_MANIFESTS=$(jq -r .run.manifests_deleted "$WORK/berth-gc-$1.json")
}

machine_line "$(docker-registry --version)"
LINES=()
for N in "${SIZES[@]}"; do
  REPOS=$(( (N + TAGS - 1) / TAGS ))
  rm -rf "$WORK/dist" "$WORK/berth"
  mkdir -p "$WORK/berth"
  dist_config "$WORK/dist" $DPORT
  start_dist
  BERTH_LOG=warn BERTH_ADMIN_PASSWORD=$ADMIN_PW "$BERTH" serve --listen 127.0.0.1:$BPORT --data-dir "$WORK/berth" > "$WORK/berth.log" 2>&1 &
  BPID=$!; wait_v2 $BPORT

  PREFIX="gc$N"
  echo "== N=$N: populate $REPOS repos x $TAGS tags, unique layers" >&2
  t0=$(now)
  "$BENCH" "http://127.0.0.1:$DPORT" --label distribution --compare "http://127.0.0.1:$BPORT" --label2 berth \
    --user admin --password "$ADMIN_PW" -w populate --repeat 1 --repos "$REPOS" --tags "$TAGS" --unique-layers \
    --prefix "$PREFIX" --json "$WORK/populate-$N.json" > "$WORK/populate-$N.out" 2>&1
  POP=$(secs "$t0" "$(now)")
  PERR=$(jq '[.rows[] | select(.workload=="populate") | .errors] | add' "$WORK/populate-$N.json")
  PSECS=$(jq -r '[.rows[] | select(.workload=="populate") | "\(.target) \(.secs|.*100|round/100)s"] | join(", ")' "$WORK/populate-$N.json")
  [[ $PERR == 0 ]] || { echo "populate had $PERR errors, see $WORK/populate-$N.out" >&2; exit 1; }
  DBLOBS=$(find "$WORK/dist/data/docker/registry/v2/blobs" -name data | wc -l)
  echo "populate (both, one invocation): ${POP}s ($PSECS); Distribution holds $DBLOBS blobs (layers, config, manifests)" >&2

  dist_gc "$N-1"; berth_gc "$N-1"
  G1="${D_SECS} s / ${B_SECS} s"
  echo "GC 1 deleted: dist ${D_BLOBS} blobs + ${D_MANIFESTS} manifests, berth ${B_BLOBS} blobs + ${B_MANIFESTS} manifests" >&2
  echo "GC 1 (after import): $G1" >&2

  # delete the manifest behind t0 in every repository, by digest, on both
  t0=$(now)
  seq 0 $((REPOS - 1)) | xargs -P "$P" -I{} bash -c '
    repo=$(printf "%s/p%05d" "$1" "$2")
    dg=$(curl -sfI -H "Accept: application/vnd.oci.image.manifest.v1+json" "http://127.0.0.1:$3/v2/$repo/manifests/t0" | tr -d "\r" | awk -F": " "tolower(\$1)==\"docker-content-digest\"{print \$2}")
    [[ -n $dg ]] || { echo "no digest for $repo" >&2; exit 1; }
    curl -sf -o /dev/null -X DELETE "http://127.0.0.1:$3/v2/$repo/manifests/$dg" || { echo "dist delete $repo failed" >&2; exit 1; }
    tok=$(curl -sf -u "admin:$5" "http://127.0.0.1:$4/auth/token?service=berth&scope=repository:$repo:pull,delete" | sed -n "s/.*\"token\" *: *\"\([^\"]*\)\".*/\1/p")
    curl -sf -o /dev/null -X DELETE -H "Authorization: Bearer $tok" "http://127.0.0.1:$4/v2/$repo/manifests/$dg" || { echo "berth delete $repo failed" >&2; exit 1; }
  ' _ "$PREFIX" {} $DPORT $BPORT "$ADMIN_PW"
  echo "deleted $REPOS manifests on both in $(secs "$t0" "$(now)")s" >&2

  dist_gc "$N-2"; berth_gc "$N-2"
  echo "GC 2 (10% garbage): dist ${D_SECS}s, ${D_BLOBS} blobs + ${D_MANIFESTS} manifests (${D_LINES} lines), ${D_BEFORE} -> ${D_AFTER} B; berth ${B_SECS}s, ${B_BLOBS} blobs + ${B_MANIFESTS} manifests, ${B_BEFORE} -> ${B_AFTER} B" >&2
  LINES+=("| $N | $REPOS x $TAGS | $DBLOBS | ${POP} s | $G1 | ${D_SECS} s | ${D_BLOBS} + ${D_MANIFESTS} | $(mib "$D_BEFORE") -> $(mib "$D_AFTER") | ${B_SECS} s | ${B_BLOBS} + ${B_MANIFESTS} | $(mib "$B_BEFORE") -> $(mib "$B_AFTER") |")
  kill "$BPID"; wait "$BPID" 2>/dev/null || true; BPID=
  stop_dist
done

echo "| blobs (N) | repos x tags | Distribution blob files | populate both | GC 1 after import: Distribution / Berth | Distribution GC, 10% garbage | deleted blobs + manifests | du -sb MiB before -> after | Berth GC, 10% garbage | deleted blobs + manifests | du -sb MiB before -> after |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${LINES[@]}"
