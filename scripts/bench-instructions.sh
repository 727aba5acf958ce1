#!/usr/bin/env bash
# Instructions per request on the read path, counted by valgrind's callgrind: repeatable for
# the same binary and inputs whatever else the machine does, unlike the ops/s of bench.sh.
# Each BINARY serves the embedded default under callgrind; registry-bench pushes manifests
# (setup, not counted); then one keep-alive connection sends N requests of each kind with a
# bearer token, the counters zeroed before and dumped after each kind.
#
# Usage: scripts/bench-instructions.sh BINARY [BINARY...]   (N=1000 by default)
# Env: BENCH (as in bench.sh), WORK (default /var/tmp/berth-instructions), N.
# Needs valgrind (Debian package valgrind) and python3.
set -euo pipefail
source "$(dirname "$0")/bench-lib.sh"
WORK="${WORK:-/var/tmp/berth-instructions}"
N="${N:-1000}"
PORT=5190
command -v callgrind_control >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }

# One keep-alive client: a token for the first repository, then N requests per kind.
client() { # port pid n password
  python3 - "$@" <<'PY'
import base64, http.client, json, re, subprocess, sys
port, pid, n, password = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = http.client.HTTPConnection("127.0.0.1", port)
def req(method, path, headers={}):
    c.request(method, path, headers=headers)
    r = c.getresponse()
    return r, r.read()
basic = {"Authorization": "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()}
r, _ = req("GET", "/v2/")
challenge = r.getheader("WWW-Authenticate")
realm = re.sub(r"^https?://[^/]+", "", re.search(r'realm="([^"]+)"', challenge).group(1))
service = re.search(r'service="([^"]+)"', challenge).group(1)
repo = json.loads(req("GET", "/v2/_catalog?n=1", basic)[1])["repositories"][0]
token = json.loads(req("GET", f"{realm}?service={service}&scope=repository:{repo}:pull", basic)[1])["token"]
auth = {"Authorization": "Bearer " + token, "Accept": "application/vnd.oci.image.manifest.v1+json"}
tag = json.loads(req("GET", f"/v2/{repo}/tags/list?n=1", auth)[1])["tags"][0]
r, body = req("GET", f"/v2/{repo}/manifests/{tag}", auth)
digest, config = r.getheader("Docker-Content-Digest"), json.loads(body)["config"]["digest"]
for name, method, path in [
    ("manifest-head-tag", "HEAD", f"/v2/{repo}/manifests/{tag}"),
    ("manifest-head-digest", "HEAD", f"/v2/{repo}/manifests/{digest}"),
    ("manifest-get-tag", "GET", f"/v2/{repo}/manifests/{tag}"),
    ("blob-get", "GET", f"/v2/{repo}/blobs/{config}"),
]:
    subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
    for _ in range(n):
        r, _ = req(method, path, auth)
        assert r.status == 200, (name, r.status)
    subprocess.run(["callgrind_control", "-d", name, pid], check=True, capture_output=True)
PY
}

printf '%-24s' "instructions/request"
for kind in manifest-head-tag manifest-head-digest manifest-get-tag blob-get; do printf ' %20s' "$kind"; done
echo
for bin in "$@"; do
  dir="$WORK/$(basename "$bin")"
  rm -rf "$dir" && mkdir -p "$dir"
  BERTH_LOG=warn BERTH_ADMIN_PASSWORD=$ADMIN_PW valgrind --tool=callgrind \
    --callgrind-out-file="$dir/callgrind.out" "$bin" serve --listen 127.0.0.1:$PORT \
    --data-dir "$dir/data" > "$dir/log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do curl -s -o /dev/null http://127.0.0.1:$PORT/v2/ && break; sleep 0.5; done
  "$BENCH" "http://127.0.0.1:$PORT" --user admin --password "$ADMIN_PW" -w manifest-head -c 4 \
    --manifest-count 200 --repeat 1 > "$dir/setup.txt" 2>&1
  client $PORT $pid "$N" "$ADMIN_PW"
  kill -TERM $pid && wait $pid || true
  printf '%-24s' "$(basename "$bin")"
  for f in "$dir"/callgrind.out.*; do
    total=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
    printf ' %20.0f' "$((total / N))"
  done
  echo
done
