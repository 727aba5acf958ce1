#!/usr/bin/env bash
# Runs the fuzz targets (request-path parser, reference parser, manifest parser) with
# libFuzzer through cargo fuzz, each for SECONDS (default 600), all at once.
# The stable toolchain is enough with RUSTC_BOOTSTRAP=1 (cargo fuzz passes -Z flags).
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-600}"; shift || true
TARGETS=("$@"); [[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=(path_parser reference_parser manifest_parser)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for t in "${TARGETS[@]}"; do cargo fuzz build -O "$t"; done
pids=()
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  cp -n fuzz/seeds/"$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
  cargo fuzz run -O "$t" "fuzz/corpus/$t" -- -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
    > "fuzz/artifacts/$t.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then echo "${TARGETS[$i]}: no finding"; else echo "${TARGETS[$i]}: FINDING (see fuzz/artifacts/${TARGETS[$i]}.log)"; status=1; fi
  grep -E "^stat::(number_of_executed_units|peak_rss_mb)|Done [0-9]+ runs" "fuzz/artifacts/${TARGETS[$i]}.log" | sed "s/^/  ${TARGETS[$i]}: /" || true
done
exit $status
