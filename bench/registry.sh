#!/usr/bin/env bash
# Registry authentication cost, side by side, with wrk (not run in CI):
#
#   1. tessera GET /token with Basic (subject + tessera token), pull scope on one repository
#   2. the same docker-registry in htpasswd mode, GET /v2/ with Basic (bcrypt cost 10)
#   goal: (1) >= 100x (2) in requests/s
#   3. ES256 registry tokens signed per second on one core (criterion, benches/registry.rs)
#
# Usage: bench/registry.sh [DURATION_SECONDS]   (default 10). Needs wrk, docker-registry,
# python3 (for a free port) and htpasswd-free bcrypt (tessera makes the hash).
#
# Everything is built first (the release binary and the criterion bench: several minutes on a
# cold target), then measured; every wrk run is bounded, so the measuring part takes about
# 3 x DURATION + 30 seconds.
set -euo pipefail

DUR="${1:-10}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
for t in wrk docker-registry python3; do
    command -v "$t" >/dev/null || { echo "$t is not installed" >&2; exit 1; }
done

echo "building (release binary and the registry bench)..." >&2
cargo build --release --bin tessera --manifest-path "$ROOT/Cargo.toml" >&2
cargo bench --no-run --bench registry --manifest-path "$ROOT/Cargo.toml" >&2
BIN="$ROOT/target/release/tessera"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

. "$ROOT/bench/common.sh"
isolated_home bench
TPORT="$(free_port)"
cat > "$XDG_CONFIG_HOME/tessera/tessera.toml" <<TOML
[registry]
service = "bench-registry"
[server]
bind = "127.0.0.1:$TPORT"
TOML
"$BIN" registry init -q >/dev/null
TOKEN="$("$BIN" auth token generate --subject bench --scopes pull 2>/dev/null)"
RUST_LOG=warn "$BIN" serve 2>"$WORK/tessera.log" &
PIDS+=($!)
wait_port "$TPORT"

# The registry in htpasswd mode with a bcrypt cost-10 user.
RPORT="$(free_port)"
HASH="$(printf 'bench-password\n' | "$BIN" auth password hash --stdin --cost 10)"
printf 'bench:%s\n' "$HASH" > "$WORK/htpasswd"
cat > "$WORK/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $WORK/storage}}
http: {addr: 127.0.0.1:$RPORT, secret: bench}
auth: {htpasswd: {realm: bench, path: $WORK/htpasswd}}
YML
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
PIDS+=($!)
wait_port "$RPORT"

B_TOKEN="$(printf 'bench:%s' "$TOKEN" | base64 -w0)"
B_PASS="$(printf 'bench:bench-password' | base64 -w0)"
cat > "$WORK/tessera.lua" <<LUA
wrk.headers["Authorization"] = "Basic $B_TOKEN"
LUA
cat > "$WORK/htpasswd.lua" <<LUA
wrk.headers["Authorization"] = "Basic $B_PASS"
LUA
curl -fsS -o /dev/null -H "Authorization: Basic $B_TOKEN" "http://127.0.0.1:$TPORT/token?service=bench-registry&scope=repository:team/app:pull" \
    || { echo "tessera /token does not answer 200" >&2; exit 1; }
curl -fsS -o /dev/null -H "Authorization: Basic $B_PASS" "http://127.0.0.1:$RPORT/v2/" \
    || { echo "htpasswd registry does not answer 200" >&2; exit 1; }

# wrk stops itself after -d; `timeout` bounds a wrk stuck on a server that stopped answering.
bounded_wrk() { timeout "$((DUR + 30))" wrk --timeout 5s "$@" 2>&1 || true; }
rps() { awk '/Requests\/sec/ {print $2}'; }
p99() { awk '$1 == "99%" {print $2}'; }
echo "warming up..." >&2
DUR=2 bounded_wrk -t1 -c4 -d2s -s "$WORK/tessera.lua" "http://127.0.0.1:$TPORT/token?service=bench-registry&scope=repository:team/app:pull" >/dev/null
TOUT="$(bounded_wrk --latency -t2 -c16 -d"${DUR}s" -s "$WORK/tessera.lua" "http://127.0.0.1:$TPORT/token?service=bench-registry&scope=repository:team/app:pull")"
ROUT="$(bounded_wrk --latency -t2 -c16 -d"${DUR}s" -s "$WORK/htpasswd.lua" "http://127.0.0.1:$RPORT/v2/")"
T="$(echo "$TOUT" | rps)"; R="$(echo "$ROUT" | rps)"
[ -n "$T" ] && [ -n "$R" ] || { echo "a wrk run failed:" >&2; echo "$TOUT$ROUT" >&2; exit 1; }
RATIO="$(python3 -c "print(f'{$T/$R:.0f}')")"
printf '\n%-48s %12s %10s\n' "measurement" "requests/s" "p99"
printf '%-48s %12s %10s\n' "tessera GET /token (Basic + tessera token)" "$T" "$(echo "$TOUT" | p99)"
printf '%-48s %12s %10s\n' "docker-registry htpasswd GET /v2/ (bcrypt 10)" "$R" "$(echo "$ROUT" | p99)"
echo "ratio: ${RATIO}x (goal >= 100x)"

echo
echo "ES256 registry tokens (criterion wall clock; per core = per second of this thread's CPU time):"
timeout 300 cargo bench --manifest-path "$ROOT/Cargo.toml" --bench registry -- --quick >"$WORK/bench.out" 2>&1 \
    || { echo "the registry bench failed:" >&2; tail -20 "$WORK/bench.out" >&2; exit 1; }
grep -E "per core|^registry_token_sign|time:" "$WORK/bench.out"
