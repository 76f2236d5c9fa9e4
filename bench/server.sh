#!/usr/bin/env bash
# Benchmarks of `tessera serve` on loopback with wrk (not run in CI).
#
#   1. GET /auth/verify throughput and p99 against GET /health (goal: >= 0.8x, p99 < 5 ms)
#   2. GET /auth/verify p99 while 8 connections hammer POST /auth/login (goal: < 10 ms)
#   3. server RSS after 100,000+ requests (goal: < 30 MB)
#
# The machine may be shared: (1) alternates health and verify in ROUNDS (default 6) rounds
# of DUR/ROUNDS seconds each, so that a change in the load from other processes falls on
# both, and compares the totals. The p99 shown is the worst round's.
#
# Usage: bench/server.sh [DURATION_SECONDS]   (default 10). Needs wrk. Builds the release binary.
set -euo pipefail

DUR="${1:-10}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
command -v wrk >/dev/null || { echo "wrk is not installed" >&2; exit 1; }

# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"
bench_start

export HOME="$WORK" XDG_CONFIG_HOME="$WORK/config" XDG_DATA_HOME="$WORK/data"
export TESSERA_AUTH_TOKEN_SECRET="bench-secret-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
mkdir -p "$XDG_CONFIG_HOME/tessera"
# Password login with the default cost (12), no rate limit (the bench hammers it on purpose).
cat > "$XDG_CONFIG_HOME/tessera/tessera.toml" <<TOML
[auth]
username = "bench"
[server]
login_attempts_per_minute = 0
TOML
printf 'bench-password\n' | "$BIN" auth password hash --stdin --store >/dev/null
TOKEN="$("$BIN" auth token generate --subject bench --scopes pull 2>/dev/null)"

RUST_LOG=warn "$BIN" serve --bind 127.0.0.1:0 2>"$WORK/server.log" &
SERVER_PID=$!
# The port is in the first info line; with RUST_LOG=warn we ask the OS instead.
for _ in $(seq 100); do
    PORT="$(ss -ltnp 2>/dev/null | awk -v pid="pid=$SERVER_PID," '$0 ~ pid {split($4,a,":"); print a[length(a)]; exit}')"
    [ -n "${PORT:-}" ] && break
    sleep 0.1
done
[ -n "${PORT:-}" ] || { echo "server did not start:" >&2; cat "$WORK/server.log" >&2; exit 1; }
URL="http://127.0.0.1:$PORT"

cat > "$WORK/verify.lua" <<LUA
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA
cat > "$WORK/login.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"username":"bench","password":"bench-password"}'
LUA

# wrk prints "Requests/sec:" and, with --latency, the 99% line. wrk stops itself after -d;
# `timeout` bounds a run on a server that stopped answering.
bounded_wrk() { timeout "$((DUR + 30))" wrk --timeout 5s "$@" 2>&1 || true; }
run() { bounded_wrk --latency "$@"; }
rps() { awk '/Requests\/sec/ {print $2}'; }
p99() { awk '$1 == "99%" {print $2}'; }
total() { awk '/requests in/ {n = $1} END {print n + 0}'; }

echo "warming up..." >&2
bounded_wrk -t1 -c4 -d2s "$URL/health" >/dev/null

ROUNDS=${ROUNDS:-6}
SLICE=$(( DUR / ROUNDS )); [ "$SLICE" -ge 2 ] || SLICE=2
HN=0; VN=0; HP=""; VP=""
for r in $(seq "$ROUNDS"); do
    h="$(run -t2 -c16 -d"${SLICE}s" "$URL/health")"
    v="$(run -t2 -c16 -d"${SLICE}s" -s "$WORK/verify.lua" "$URL/auth/verify")"
    HN=$(( HN + $(echo "$h" | total) )); VN=$(( VN + $(echo "$v" | total) ))
    HP="$HP $(echo "$h" | p99)"; VP="$VP $(echo "$v" | p99)"
    printf 'round %d: health %s req/s (p99 %s), verify %s req/s (p99 %s)\n' "$r" \
        "$(echo "$h" | rps)" "$(echo "$h" | p99)" "$(echo "$v" | rps)" "$(echo "$v" | p99)" >&2
done
# The largest of wrk's latencies (e.g. 812.00us 5.30ms 1.02s), in ms.
worst_ms() { echo "$1" | tr ' ' '\n' | awk 'NF {
    v = $1; u = v; sub(/^[0-9.]+/, "", u); v += 0
    if (u == "us") v /= 1000; else if (u == "s") v *= 1000; else if (u == "m") v *= 60000
    if (v > m) m = v } END {printf "%.2fms", m}'; }

bounded_wrk --latency --timeout 30s -t1 -c8 -d"$((DUR + 2))s" -s "$WORK/login.lua" "$URL/auth/login" >"$WORK/login.out" &
LOGIN_PID=$!
sleep 1
VL="$(run -t1 -c8 -d"${DUR}s" -s "$WORK/verify.lua" "$URL/auth/verify")"
wait "$LOGIN_PID" || true
L="$(cat "$WORK/login.out")"

# Top up to at least 100,000 requests in all before reading the RSS.
SOFAR=$(( HN + VN + $(echo "$VL" | total) + $(echo "$L" | total) ))
if [ "$SOFAR" -lt 100000 ]; then
    bounded_wrk -t2 -c16 -d"${DUR}s" -s "$WORK/verify.lua" "$URL/auth/verify" >/dev/null
fi
RSS_KB="$(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status")"
HWM_KB="$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status")"

HR="$(awk -v n="$HN" -v d="$(( SLICE * ROUNDS ))" 'BEGIN {printf "%.0f", n / d}')"
VR="$(awk -v n="$VN" -v d="$(( SLICE * ROUNDS ))" 'BEGIN {printf "%.0f", n / d}')"
RATIO="$(awk -v v="$VN" -v h="$HN" 'BEGIN {printf "%.2f", (h > 0 ? v / h : 0)}')"
printf '\n%-44s %14s %10s\n' "measurement" "requests/s" "p99"
printf '%-44s %14s %10s\n' "GET /health (16 conn, $ROUNDS rounds)" "$HR" "$(worst_ms "$HP")"
printf '%-44s %14s %10s\n' "GET /auth/verify (16 conn, $ROUNDS rounds)" "$VR" "$(worst_ms "$VP")"
printf '%-44s %14s %10s\n' "GET /auth/verify (8 conn) during logins" "$(echo "$VL" | rps)" "$(echo "$VL" | p99)"
printf '%-44s %14s %10s\n' "POST /auth/login (8 conn, bcrypt cost 12)" "$(echo "$L" | rps)" "$(echo "$L" | p99)"
printf '\nverify/health throughput ratio: %s (goal >= 0.8)\n' "$RATIO"
printf 'server RSS after the runs: %s MB (peak %s MB; goal < 30 MB)\n' \
    "$(awk -v k="$RSS_KB" 'BEGIN {printf "%.1f", k / 1024}')" \
    "$(awk -v k="$HWM_KB" 'BEGIN {printf "%.1f", k / 1024}')"
