#!/usr/bin/env bash
# Soak test of `tessera serve` (release build) under mixed wrk load (not run in CI).
#
#   - GET /auth/verify          2 threads, 8 connections, as fast as it goes
#   - GET /token (registry)     1 thread, 4 connections, Basic subject + tessera token
#   - POST /auth/login          1 connection, about 2 per second (bcrypt cost 10)
#
# Every wrk counts responses by class in its Lua `response()` (2xx, 4xx, 5xx, other) and
# socket errors. RSS and open file descriptors of the server are sampled from /proc at the
# start, every minute and at the end, and printed as a table, followed by the totals.
#
# Usage: DURATION=600 bench/soak.sh   (seconds, default 600). Needs wrk, python3.
# Exits non-zero when any 5xx or socket error was seen, or when the server died.
set -euo pipefail

DUR="${DURATION:-600}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
for t in wrk python3; do command -v "$t" >/dev/null || { echo "$t is not installed" >&2; exit 1; }; done

cargo build --release --bin tessera --manifest-path "$ROOT/Cargo.toml" >&2
BIN="$ROOT/target/release/tessera"

WORK="$(mktemp -d)"
PIDS=()
SERVER_PID=""
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

. "$ROOT/bench/common.sh"
isolated_home soak
PORT="$(free_port)"
cat > "$XDG_CONFIG_HOME/tessera/tessera.toml" <<TOML
[auth]
username = "soak"
login_scopes = "pull"
token_expiry = "1h"
[server]
bind = "127.0.0.1:$PORT"
login_attempts_per_minute = 0
[registry]
service = "soak-registry"
TOML
printf 'soak-password\n' | "$BIN" auth password hash --stdin --cost 10 --store >/dev/null
"$BIN" registry init -q >/dev/null
TOKEN="$("$BIN" auth token generate --subject soak --scopes pull 2>/dev/null)"

RUST_LOG=warn "$BIN" serve 2>"$WORK/server.log" &
SERVER_PID=$!
wait_port "$PORT"
URL="http://127.0.0.1:$PORT"

# Each wrk thread has its own Lua state: response() counts per class in it, done() sums the
# threads' counters and prints one parsable line.
cat > "$WORK/count.lua" <<LUA
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args) c2, c4, c5, cx = 0, 0, 0, 0 end
response = function(status, headers, body)
  if status >= 200 and status < 300 then c2 = c2 + 1
  elseif status >= 400 and status < 500 then c4 = c4 + 1
  elseif status >= 500 then c5 = c5 + 1
  else cx = cx + 1 end
end
done = function(summary, latency, requests)
  local t2, t4, t5, tx = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    t2 = t2 + t:get("c2"); t4 = t4 + t:get("c4"); t5 = t5 + t:get("c5"); tx = tx + t:get("cx")
  end
  local e = summary.errors
  io.write(string.format("COUNTS requests=%d 2xx=%d 4xx=%d 5xx=%d other=%d sockerr=%d p99_ms=%.2f\n",
    summary.requests, t2, t4, t5, tx, e.connect + e.read + e.write + e.timeout,
    latency:percentile(99) / 1000))
end
LUA
{ cat "$WORK/count.lua"; printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$TOKEN"; } >"$WORK/verify.lua"
B_TOKEN="$(printf 'soak:%s' "$TOKEN" | base64 -w0)"
{ cat "$WORK/count.lua"; printf 'wrk.headers["Authorization"] = "Basic %s"\n' "$B_TOKEN"; } >"$WORK/token.lua"
{
    cat "$WORK/count.lua"
    cat <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"username":"soak","password":"soak-password"}'
-- About two logins per second on the one connection.
delay = function() return 500 end
LUA
} >"$WORK/login.lua"

curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" "$URL/auth/verify" || { echo "verify does not answer 200" >&2; exit 1; }
curl -fsS -o /dev/null -H "Authorization: Basic $B_TOKEN" "$URL/token?service=soak-registry&scope=repository:soak/app:pull" \
    || { echo "/token does not answer 200" >&2; exit 1; }

sample() { # label -> "label rss_kb fds"
    local rss fds
    rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo dead)"
    fds="$(ls "/proc/$SERVER_PID/fd" 2>/dev/null | wc -l)"
    printf '%-8s %10s %6s\n' "$1" "$rss" "$fds"
}

echo "soak: $DUR s against $URL (pid $SERVER_PID)" >&2
SAMPLES="$WORK/samples"
printf '%-8s %10s %6s\n' "time" "rss_kB" "fds" >"$SAMPLES"
sample "start" >>"$SAMPLES"

wrk -t2 -c8 -d"${DUR}s" --timeout 10s -s "$WORK/verify.lua" "$URL/auth/verify" >"$WORK/verify.out" 2>&1 &
PIDS+=($!)
wrk -t1 -c4 -d"${DUR}s" --timeout 10s -s "$WORK/token.lua" \
    "$URL/token?service=soak-registry&scope=repository:soak/app:pull" >"$WORK/token.out" 2>&1 &
PIDS+=($!)
wrk -t1 -c1 -d"${DUR}s" --timeout 10s -s "$WORK/login.lua" "$URL/auth/login" >"$WORK/login.out" 2>&1 &
PIDS+=($!)

START=$(date +%s)
NEXT=60
while :; do
    NOW=$(( $(date +%s) - START ))
    [ "$NOW" -ge "$DUR" ] && break
    if [ "$NOW" -ge "$NEXT" ]; then
        sample "${NEXT}s" >>"$SAMPLES"
        NEXT=$((NEXT + 60))
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "the server died" >&2; cat "$WORK/server.log" >&2; exit 1; }
    sleep 1
done
for p in "${PIDS[@]}"; do wait "$p" || true; done
PIDS=()
sleep 1
sample "end" >>"$SAMPLES"

echo
echo "RSS and open fds of the server:"
cat "$SAMPLES"
echo
printf '%-8s %10s %10s %8s %8s %8s %8s %9s\n' "load" "requests" "2xx" "4xx" "5xx" "other" "sockerr" "p99_ms"
FAIL=0
for n in verify token login; do
    line="$(grep '^COUNTS' "$WORK/$n.out" || echo "COUNTS requests=? 2xx=? 4xx=? 5xx=? other=? sockerr=? p99_ms=?")"
    get() { echo "$line" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'; }
    printf '%-8s %10s %10s %8s %8s %8s %8s %9s\n' "$n" "$(get requests)" "$(get 2xx)" "$(get 4xx)" "$(get 5xx)" "$(get other)" "$(get sockerr)" "$(get p99_ms)"
    [ "$(get 5xx)" = "0" ] && [ "$(get sockerr)" = "0" ] || FAIL=1
done
echo
ERRS="$(grep -c ' ERROR ' "$WORK/server.log" || true)"
echo "server log: $ERRS ERROR lines"
kill -0 "$SERVER_PID" 2>/dev/null && echo "server: still running" || { echo "server: DEAD"; FAIL=1; }
exit "$FAIL"
