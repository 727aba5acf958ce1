#!/usr/bin/env bash
# Push throughput through HTTP while an online GC runs (issue 4, must-show 4: "within 20%
# of push throughput without it").
#
# One `berth serve` (release build, embedded SQLite + filesystem, token auth as the
# administrator, every GC setting at its default except the grace, GRACE). Each of ROUNDS
# rounds:
#   1. garbage: registry-bench `populate --repos REPOS --tags 1 --orphans ORPHANS
#      --unique-layers`, i.e. REPOS x ORPHANS untagged manifests, each with its own layer:
#      garbage once older than the grace; then wait out the grace;
#   2. "alone": registry-bench `-w push-small,manifest-put -c C` with no GC running;
#   3. "during": `berth gc --data-dir DIR` (online, the default pace, the configured grace,
#      so the pushes' own fresh blobs are kept) started in the background, and the same
#      registry-bench run at once; the script checks the GC run was still going when the
#      pushes ended (otherwise part of "during" ran without GC, and it says so).
# "alone" and "during" see the same registry (same size, same garbage), one after the other.
#
# Usage: scripts/bench-gc-push.sh
# Env: ROUNDS (3), REPOS (1000), ORPHANS (8), C (concurrency, 16), COUNT (blobs and
#      manifests per push run, 6000), GRACE (10s), WORK (/var/tmp/berth-bench-gc-push),
#      BENCH, BERTH as in scripts/bench.sh; GC_VIA (cli: a separate `berth gc` process;
#      api: `POST /api/v0/gc/runs`, the run inside the server, its record polled; none: no
#      GC, the control for the method itself), PACE
#      (the GC's pace for the run, `--pace` or `"pace"`; empty: the configured default).
set -euo pipefail
source "$(dirname "$0")/bench-lib.sh"
WORK="${WORK:-/var/tmp/berth-bench-gc-push}"
ROUNDS="${ROUNDS:-3}"
REPOS="${REPOS:-1000}"
ORPHANS="${ORPHANS:-8}"
C="${C:-16}"
COUNT="${COUNT:-6000}"
GRACE="${GRACE:-10s}"
GC_VIA="${GC_VIA:-cli}"
PACE="${PACE:-}"
PORT=5113

bench_prepare jq
rm -rf "$WORK"
mkdir -p "$WORK/berth"
export BERTH_GC_GRACE="$GRACE"
BERTH_LOG=warn BERTH_ADMIN_PASSWORD=$ADMIN_PW "$BERTH" serve --listen 127.0.0.1:$PORT --data-dir "$WORK/berth" > "$WORK/berth.log" 2>&1 &
BPID=$!
GPID=
trap 'kill $BPID $GPID 2>/dev/null || true' EXIT
wait_v2 $PORT
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }
bench() { # json-file [registry-bench args...]
  local out=$1; shift
  "$BENCH" "http://127.0.0.1:$PORT" --label berth --pid $BPID --user admin --password "$ADMIN_PW" \
    --repeat 1 --json "$out" "$@" > "${out%.json}.out" 2>&1
  local errs; errs=$(jq '[.rows[].errors] | add' "$out")
  [[ $errs == 0 ]] || { echo "$out: $errs errors, see ${out%.json}.out" >&2; exit 1; }
}
ops() { # json-file workload -> ops/s
  jq -r --arg w "$2" '[.rows[] | select(.workload==$w) | .ops_s] | first | round' "$1"
}
pushes() { # json-file label
  bench "$1" -w push-small,manifest-put -c "$C" --small-count "$COUNT" --manifest-count "$COUNT" --prefix "$2"
}

machine_line
LINES=()
for r in $(seq "$ROUNDS"); do
  t0=$(now)
  bench "$WORK/garbage-$r.json" -w populate --repos "$REPOS" --tags 1 --orphans "$ORPHANS" --unique-layers --prefix "g$r"
  echo "round $r: garbage pushed in $(secs "$t0" "$(now)")s; waiting out the ${GRACE} grace" >&2
  sleep "${GRACE%s}"; sleep 1

  pushes "$WORK/alone-$r.json" "a$r"
  if [[ $GC_VIA == api ]]; then
    api() { curl -sf -u "admin:$ADMIN_PW" "$@"; }
    api -X POST -H 'Content-Type: application/json' -d "$([[ -n $PACE ]] && echo "{\"pace\": $PACE}" || echo '{}')" "http://127.0.0.1:$PORT/api/v0/gc/runs" > /dev/null
    # A background poller stands for the process: it ends with the run, leaving its record.
    ( while api "http://127.0.0.1:$PORT/api/v0/gc/runs?n=1" | jq -e .running > /dev/null; do sleep 0.2; done
      api "http://127.0.0.1:$PORT/api/v0/gc/runs?n=1" | jq '{run: .runs[0]}' > "$WORK/gc-$r.json" ) &
  elif [[ $GC_VIA == none ]]; then
    # The control: "during" is a second push run with no GC at all, so any change from
    # "alone" is the method's own (a registry bigger by one push run, a warmer cache).
    ( sleep 3600 ) &
  else
    "$BERTH" gc --data-dir "$WORK/berth" ${PACE:+--pace "$PACE"} --json > "$WORK/gc-$r.json" 2> "$WORK/gc-$r.err" &
  fi
  GPID=$!
  t0=$(now)
  pushes "$WORK/during-$r.json" "d$r"
  t1=$(now)
  still="yes"
  kill -0 "$GPID" 2>/dev/null || still="no"
  if [[ $GC_VIA == none ]]; then kill "$GPID"; wait "$GPID" 2>/dev/null || true; echo '{"run":{"blobs_deleted":0,"manifests_deleted":0}}' > "$WORK/gc-$r.json"; else wait "$GPID"; fi; GPID=
  t2=$(now)
  gcb=$(jq -r .run.blobs_deleted "$WORK/gc-$r.json"); gcm=$(jq -r .run.manifests_deleted "$WORK/gc-$r.json")
  a_b=$(ops "$WORK/alone-$r.json" push-small); d_b=$(ops "$WORK/during-$r.json" push-small)
  a_m=$(ops "$WORK/alone-$r.json" manifest-put); d_m=$(ops "$WORK/during-$r.json" manifest-put)
  pct() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%+.0f%%", (b/a-1)*100}'; }
  echo "round $r: push-small $a_b -> $d_b ops/s, manifest-put $a_m -> $d_m ops/s; GC deleted $gcb blobs + $gcm manifests in $(secs "$t0" "$t2")s, still running when the pushes ended ($(secs "$t0" "$t1")s): $still" >&2
  LINES+=("| $r | $a_b | $d_b | $(pct "$a_b" "$d_b") | $a_m | $d_m | $(pct "$a_m" "$d_m") | $gcb + $gcm in $(secs "$t0" "$t2") s | $still |")
done
echo "| round | push-small c=$C alone | during GC | change | manifest-put c=$C alone | during GC | change | GC run: blobs + manifests deleted, duration | GC still running at the end of the pushes |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${LINES[@]}"
