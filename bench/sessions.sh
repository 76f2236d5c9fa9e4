#!/usr/bin/env bash
# Benchmark of browser sessions (contract section 9) on loopback with wrk (not run in CI):
# the same endpoint, GET /auth/sessions (the caller's sessions: one store read), called with
# a session cookie and with a bearer token of the same user, alternated in ROUNDS rounds so
# that a change in the load of a shared machine falls on both. The cookie costs a store read
# of the session and the user's scopes; the bearer token a signature check (cached) and the
# revocation check. Goal: session/bearer throughput >= 0.8.
#
# Usage: bench/sessions.sh [DURATION_SECONDS]   (default 12). Needs wrk and curl. Builds the
# release binary.
set -euo pipefail

DUR="${1:-12}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
command -v wrk >/dev/null || { echo "wrk is not installed" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is not installed" >&2; exit 1; }
. "$ROOT/bench/common.sh"

bench_start
isolated_home bench-sessions
PORT="$(free_port)"
cat > "$XDG_CONFIG_HOME/tessera/tessera.toml" <<TOML
[[auth.users]]
name = "alice"
roles = ["developer"]
[server]
bind = "127.0.0.1:$PORT"
TOML
printf 'bench-password\n' | "$BIN" users passwd alice --stdin >/dev/null 2>&1
TOKEN="$("$BIN" auth token generate --subject alice --scopes pull 2>/dev/null)"
RUST_LOG=warn "$BIN" serve 2>"$WORK/server.log" &
SERVER_PID=$!
wait_port "$PORT"
URL="http://127.0.0.1:$PORT"
COOKIE="$(curl -s -D - -o /dev/null -H 'Content-Type: application/json' \
    -d '{"username":"alice","password":"bench-password"}' "$URL/auth/session" \
    | awk -F'[=;]' 'tolower($1) ~ /^set-cookie: tessera_session$/ {print $2}' | tr -d '\r')"
[ -n "$COOKIE" ] || { echo "sign-in failed:" >&2; cat "$WORK/server.log" >&2; exit 1; }

cat > "$WORK/cookie.lua" <<LUA
wrk.headers["Cookie"] = "tessera_session=$COOKIE"
LUA
cat > "$WORK/bearer.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA
bounded_wrk() { timeout "$((DUR + 30))" wrk --timeout 5s "$@" 2>&1 || true; }
total() { awk '/requests in/ {n = $1} END {print n + 0}'; }
p99() { awk '$1 == "99%" {print $2}'; }

echo "warming up..." >&2
bounded_wrk -t1 -c4 -d2s -s "$WORK/cookie.lua" "$URL/auth/sessions" >/dev/null
ROUNDS=${ROUNDS:-6}
SLICE=$(( DUR / ROUNDS )); [ "$SLICE" -ge 2 ] || SLICE=2
SN=0; BN=0
for r in $(seq "$ROUNDS"); do
    b="$(bounded_wrk --latency -t2 -c16 -d"${SLICE}s" -s "$WORK/bearer.lua" "$URL/auth/sessions")"
    s="$(bounded_wrk --latency -t2 -c16 -d"${SLICE}s" -s "$WORK/cookie.lua" "$URL/auth/sessions")"
    BN=$(( BN + $(echo "$b" | total) )); SN=$(( SN + $(echo "$s" | total) ))
    printf 'round %d: bearer %s req (p99 %s), session %s req (p99 %s)\n' "$r" \
        "$(echo "$b" | total)" "$(echo "$b" | p99)" "$(echo "$s" | total)" "$(echo "$s" | p99)" >&2
done
T=$(( SLICE * ROUNDS ))
printf '\n%-48s %12s\n' "measurement ($ROUNDS rounds, 16 conn)" "requests/s"
printf '%-48s %12s\n' "GET /auth/sessions with a bearer token" "$(( BN / T ))"
printf '%-48s %12s\n' "GET /auth/sessions with a session cookie" "$(( SN / T ))"
printf '\nsession/bearer throughput ratio: %s (goal >= 0.8)\n' \
    "$(awk -v s="$SN" -v b="$BN" 'BEGIN {printf "%.2f", (b > 0 ? s / b : 0)}')"
