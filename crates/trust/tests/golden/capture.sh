#!/usr/bin/env bash
# Captures the golden files of tests/it/golden.rs: TUF metadata written by the real notary
# client (Debian notary 0.7) against the reference notary-server that `cargo xtask peers`
# starts (BERTH_TEST_NOTARY_URL and BERTH_TEST_NOTARY_CA from its environment).
#
# The repository gets an ecdsa-x509 root (the client's), an ecdsa targets key (the
# client's), the server's snapshot and timestamp (first the client holds the snapshot key,
# then `key rotate snapshot -r` hands it to the server), and two delegations whose keys are
# certificates: targets/releases (ECDSA P-256) and targets/ops (RSA 2048), each signing a
# target. Usage: crates/trust/tests/golden/capture.sh (writes beside itself).
set -euo pipefail
: "${BERTH_TEST_NOTARY_URL:?start the peers first: cargo xtask peers}"
OUT="$(cd "$(dirname "$0")" && pwd)"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
GUN=localhost:5000/golden/app
export NOTARY_ROOT_PASSPHRASE=golden NOTARY_TARGETS_PASSPHRASE=golden \
  NOTARY_SNAPSHOT_PASSPHRASE=golden NOTARY_DELEGATION_PASSPHRASE=golden
n() { notary -s "$BERTH_TEST_NOTARY_URL" --tlscacert "$BERTH_TEST_NOTARY_CA" -d "$WORK/trust" "$@"; }
cd "$WORK"
printf 'manifest one' > one; printf 'manifest two' > two; printf 'manifest three' > three
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout releases.key \
  -out releases.crt -days 3650 -subj /CN=releases 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -keyout ops.key -out ops.crt -days 3650 \
  -subj /CN=ops 2>/dev/null

n init "$GUN"
n add "$GUN" v1 one
n publish "$GUN"
n key rotate "$GUN" snapshot -r
n delegation add "$GUN" targets/releases releases.crt --all-paths
n delegation add "$GUN" targets/ops ops.crt --paths ops/
n publish "$GUN"
n key import releases.key --role targets/releases
n key import ops.key --role targets/ops
n add "$GUN" v2 two --roles targets/releases
n add "$GUN" ops/v3 three --roles targets/ops
n publish "$GUN"
n list "$GUN"

META="$WORK/trust/tuf/$GUN/metadata"
rm -rf "$OUT/localhost-5000-golden-app"
mkdir -p "$OUT/localhost-5000-golden-app"
cp "$META"/root.json "$META"/targets.json "$META"/snapshot.json "$META"/timestamp.json \
  "$OUT/localhost-5000-golden-app/"
cp "$META"/targets/releases.json "$OUT/localhost-5000-golden-app/targets-releases.json"
cp "$META"/targets/ops.json "$OUT/localhost-5000-golden-app/targets-ops.json"
echo "captured into $OUT/localhost-5000-golden-app"
