# Sourced by the scripts/bench*.sh scripts: the defaults and steps they share.
# Env read here: BENCH (registry-bench wrapper, default ../shared/bench/registry-bench beside
# the checkout), CARGO_TARGET_DIR, BERTH (binary, default the release build there).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="${BENCH:-$ROOT/../shared/bench/registry-bench}"
TARGET="${CARGO_TARGET_DIR:-/var/tmp/berth-target}"
BERTH="${BERTH:-$TARGET/release/berth}"
ADMIN_PW=bench-admin-password

# Builds the release binary when BERTH is missing and installs the Debian packages named
# (by the command each provides: "cmd:package", or just "package").
bench_prepare() {
  [[ -x $BERTH ]] || (cd "$ROOT" && cargo build --release -p berth)
  local need=() spec
  for spec in "$@"; do
    command -v "${spec%%:*}" >/dev/null || need+=("${spec#*:}")
  done
  if ((${#need[@]})); then apt-get update -qq && apt-get install -y -qq "${need[@]}"; fi
}

# Writes Distribution's config to DIR/config.yml (storage in DIR/data) for PORT, with
# EXTRA (more YAML) appended.
dist_config() { # dir port [extra]
  mkdir -p "$1/data"
  { cat <<YML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  cache: {blobdescriptor: inmemory}
  filesystem: {rootdirectory: $1/data}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$2}
YML
    [[ -z ${3:-} ]] || printf '%s\n' "$3"; } > "$1/config.yml"
}

# Waits until /v2/ on PORT answers (with CODE when given).
wait_v2() { # port [code]
  local code
  for _ in $(seq 200); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/v2/" || true)
    [[ -n ${2:-} && $code == "$2" ]] && return 0
    [[ -z ${2:-} && $code != 000 ]] && return 0
    sleep 0.1
  done
  echo "port $1 not up" >&2
  return 1
}

# The trust benchmarks' servers over TLS from one test CA (WORK/tls, set as TLS): the
# reference notary-server on NPORT (memory storage, local signer; pid NPID) and Berth on its
# embedded default on BPORT (pid BPID). WORK is made anew.
trust_servers() {
  rm -rf "$WORK" && mkdir -p "$WORK/tls"
  (
    cd "$WORK/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
      -out ca.crt -days 2 -subj "/CN=bench CA" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
      -out server.csr -subj "/CN=127.0.0.1" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > ext.cnf
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
      -days 2 -extfile ext.cnf 2>/dev/null
  )
  TLS="$WORK/tls"
  cat > "$WORK/notary.json" <<JSON
{"server": {"http_addr": "127.0.0.1:$NPORT", "tls_key_file": "$TLS/server.key", "tls_cert_file": "$TLS/server.crt"},
 "trust_service": {"type": "local"}, "storage": {"backend": "memory"}, "logging": {"level": "error"}}
JSON
  notary-server -config "$WORK/notary.json" > "$WORK/notary.log" 2>&1 &
  NPID=$!
  BERTH_LOG=warn BERTH_ADMIN_PASSWORD=$ADMIN_PW BERTH_TLS_CERT="$TLS/server.crt" \
    BERTH_TLS_KEY="$TLS/server.key" "$BERTH" serve --listen 127.0.0.1:$BPORT \
    --data-dir "$WORK/berth" > "$WORK/berth.log" 2>&1 &
  BPID=$!
}

# Waits until https://127.0.0.1:PORT/v2/ answers for each PORT (any status), over TLS.
wait_tls() { # port...
  local port up
  for port in "$@"; do
    up=
    for _ in $(seq 100); do
      curl -s -o /dev/null --cacert "$TLS/ca.crt" "https://127.0.0.1:$port/v2/" && up=1 && break
      sleep 0.1
    done
    [[ -n $up ]] || { echo "port $port not up" >&2; return 1; }
  done
}

machine_line() {
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); berth $("$BERTH" --version)${1:+; $1}" >&2
}
