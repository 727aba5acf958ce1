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

machine_line() {
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); berth $("$BERTH" --version)${1:+; $1}" >&2
}
