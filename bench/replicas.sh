#!/usr/bin/env bash
# Benchmarks of tessera on PostgreSQL with several replicas (not run in CI; issue 14).
#
#   1. GET /auth/verify on one replica using the PostgreSQL engine against GET /health of the
#      same replica, alternating rounds (goal: >= 0.8x, p99 < 5 ms)
#   2. revocation propagation: a token revoked through replica A, time until replica B
#      refuses it (median and max over 100 revocations; bound: 1 s)
#   3. GET /auth/verify throughput through haproxy (deploy/haproxy/tessera.cfg) with 1, 2 and
#      3 replicas
#
# Everything runs on this machine (wrk, haproxy, PostgreSQL, the replicas), so the replicas
# share its cores with the load generator and the database: read (3) as "what more
# processes cost or bring on this box", not as scaling across hosts.
#
# Usage: bench/replicas.sh [DURATION_SECONDS]   (default 10). Installs wrk and haproxy with
# apt-get when missing; uses TESSERA_TEST_PG_URL or starts a scratch cluster (scripts/pg-scratch).
set -euo pipefail

DUR="${1:-10}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/bench/common.sh"
for t in wrk haproxy psql; do
    if ! command -v "$t" >/dev/null; then
        pkg=$t; [ "$t" = psql ] && pkg=postgresql-client
        sudo_cmd=(); [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
        "${sudo_cmd[@]}" apt-get install -y -qq "$pkg" >/dev/null
    fi
done

cargo build --release --bin tessera --manifest-path "$ROOT/Cargo.toml" >&2
BIN="$ROOT/target/release/tessera"

WORK="$(mktemp -d)"
PIDS=()
PG_DIR=""
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -n "$PG_DIR" ] && "$ROOT/scripts/pg-scratch" stop "$PG_DIR"
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${TESSERA_TEST_PG_URL:-}" ]; then
    eval "$("$ROOT/scripts/pg-scratch" start)"
    PG_DIR="$TESSERA_PG_DIR"
fi
DB="bench_$$"
psql "$TESSERA_TEST_PG_URL" -XAtq -c "CREATE DATABASE $DB"
STORE_URL="$(python3 -c 'import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$TESSERA_TEST_PG_URL" "$DB")"

isolated_home bench
cat > "$XDG_CONFIG_HOME/tessera/tessera.toml" <<TOML
[server]
login_attempts_per_minute = 0
[store]
engine = "postgres"
url = "$STORE_URL"
TOML
# Replicas listen on this host's non-loopback address, as behind a load balancer.
IP="$(hostname -I | tr ' ' '\n' | grep -E '^[0-9.]+$' | grep -v '^127\.' | head -1)"
[ -n "$IP" ] || { echo "needs a non-loopback IPv4 address" >&2; exit 1; }

start_replica() { # $1 = name; sets ADDR to host:port
    local port; port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0",0)); print(s.getsockname()[1])')"
    RUST_LOG=warn "$BIN" serve --bind "$IP:$port" >/dev/null 2>"$WORK/$1.log" &
    PIDS+=($!)
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/$IP/$port") 2>/dev/null && break; sleep 0.1; done
    ADDR="$IP:$port"
}
start_replica a; A="$ADDR"; start_replica b; B="$ADDR"; start_replica c; C="$ADDR"
TOKEN="$("$BIN" auth token generate --subject bench --scopes pull 2>/dev/null)"
cat > "$WORK/verify.lua" <<LUA
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA

bounded_wrk() { timeout "$((DUR + 30))" wrk --timeout 5s "$@" 2>&1 || true; }
run() { bounded_wrk --latency "$@"; }
rps() { awk '/Requests\/sec/ {print $2}'; }
p99() { awk '$1 == "99%" {print $2}'; }
total() { awk '/requests in/ {n = $1} END {print n + 0}'; }
errors() { awk '/Non-2xx/ {n += $4} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}'; }
worst_ms() { echo "$1" | tr ' ' '\n' | awk 'NF {
    v = $1; u = v; sub(/^[0-9.]+/, "", u); v += 0
    if (u == "us") v /= 1000; else if (u == "s") v *= 1000; else if (u == "m") v *= 60000
    if (v > m) m = v } END {printf "%.2fms", m}'; }

# 1. verify (PostgreSQL engine) vs health, one replica, alternating rounds.
echo "1. /auth/verify vs /health on one replica (PostgreSQL engine)..." >&2
bounded_wrk -t1 -c4 -d2s -s "$WORK/verify.lua" "http://$A/auth/verify" >/dev/null
ROUNDS=${ROUNDS:-6}
SLICE=$(( DUR / ROUNDS )); [ "$SLICE" -ge 2 ] || SLICE=2
HN=0; VN=0; HP=""; VP=""
for r in $(seq "$ROUNDS"); do
    h="$(run -t2 -c16 -d"${SLICE}s" "http://$A/health")"
    v="$(run -t2 -c16 -d"${SLICE}s" -s "$WORK/verify.lua" "http://$A/auth/verify")"
    HN=$(( HN + $(echo "$h" | total) )); VN=$(( VN + $(echo "$v" | total) ))
    HP="$HP $(echo "$h" | p99)"; VP="$VP $(echo "$v" | p99)"
    printf '  round %d: health %s req/s (p99 %s), verify %s req/s (p99 %s)\n' "$r" \
        "$(echo "$h" | rps)" "$(echo "$h" | p99)" "$(echo "$v" | rps)" "$(echo "$v" | p99)" >&2
done
HR="$(awk -v n="$HN" -v d="$(( SLICE * ROUNDS ))" 'BEGIN {printf "%.0f", n / d}')"
VR="$(awk -v n="$VN" -v d="$(( SLICE * ROUNDS ))" 'BEGIN {printf "%.0f", n / d}')"
RATIO="$(awk -v v="$VN" -v h="$HN" 'BEGIN {printf "%.2f", (h > 0 ? v / h : 0)}')"

# 2. Revocation propagation, 100 times: revoke through A (DELETE /auth/token), then ask B
# until it refuses; B has the token's "valid" answer cached before each revocation.
echo "2. revocation propagation (100 revocations)..." >&2
for i in $(seq 100); do "$BIN" auth token generate --subject "prop$i" --scopes pull 2>/dev/null; done >"$WORK/tokens"
PROP="$(python3 - "$A" "$B" "$WORK/tokens" <<'PY'
import http.client, sys, time, statistics
a, b, path = sys.argv[1], sys.argv[2], sys.argv[3]
ca, cb = http.client.HTTPConnection(a), http.client.HTTPConnection(b)
def req(c, m, p, tok):
    c.request(m, p, headers={"Authorization": "Bearer " + tok})
    r = c.getresponse(); r.read(); return r.status
times = []
for tok in open(path).read().split():
    for _ in range(3):
        assert req(cb, "GET", "/auth/verify", tok) == 200
    assert req(ca, "DELETE", "/auth/token", tok) == 200
    t0 = time.monotonic()
    while req(cb, "GET", "/auth/verify", tok) != 401:
        if time.monotonic() - t0 > 5: raise SystemExit("not propagated in 5 s")
    times.append((time.monotonic() - t0) * 1000)
print("%.1f %.1f %.1f" % (statistics.median(times), max(times), sorted(times)[int(len(times) * 0.9) - 1]))
PY
)"
read -r PMED PMAX P90 <<<"$PROP"

# 3. Throughput through haproxy with 1, 2 and 3 replicas (an unused server line points at a
# closed port: haproxy's health check takes it out).
CLOSED="$IP:$(python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0",0)); print(s.getsockname()[1])')"
LB_PORT="$(free_port)"
lb_run() { # $1 $2 $3 = servers a, b, c
    TESSERA_LB_BIND="127.0.0.1:$LB_PORT" TESSERA_REPLICA_A="$1" TESSERA_REPLICA_B="$2" TESSERA_REPLICA_C="$3" \
        haproxy -db -f "$ROOT/deploy/haproxy/tessera.cfg" >/dev/null 2>>"$WORK/haproxy.log" &
    local hp=$!
    wait_port "$LB_PORT"; sleep 1.5
    bounded_wrk -t1 -c4 -d2s -s "$WORK/verify.lua" "http://127.0.0.1:$LB_PORT/auth/verify" >/dev/null
    run -t2 -c64 -d"${DUR}s" -s "$WORK/verify.lua" "http://127.0.0.1:$LB_PORT/auth/verify"
    kill "$hp"; wait "$hp" 2>/dev/null || true
}
echo "3. throughput through haproxy with 1, 2, 3 replicas..." >&2
L1="$(lb_run "$A" "$CLOSED" "$CLOSED")"
L2="$(lb_run "$A" "$B" "$CLOSED")"
L3="$(lb_run "$A" "$B" "$C")"
DIRECT="$(run -t2 -c64 -d"${DUR}s" -s "$WORK/verify.lua" "http://$A/auth/verify")"

printf '\n%-52s %12s %10s %8s\n' "measurement" "requests/s" "p99" "errors"
printf '%-52s %12s %10s\n' "GET /health, one replica (16 conn, $ROUNDS rounds)" "$HR" "$(worst_ms "$HP")"
printf '%-52s %12s %10s\n' "GET /auth/verify, PostgreSQL engine (16 conn)" "$VR" "$(worst_ms "$VP")"
printf '%-52s %12s %10s %8s\n' "GET /auth/verify, one replica direct (64 conn)" "$(echo "$DIRECT" | rps)" "$(echo "$DIRECT" | p99)" "$(echo "$DIRECT" | errors)"
for n in 1 2 3; do
    eval "o=\$L$n"
    printf '%-52s %12s %10s %8s\n' "GET /auth/verify via haproxy, $n replica(s) (64 conn)" "$(echo "$o" | rps)" "$(echo "$o" | p99)" "$(echo "$o" | errors)"
done
printf '\nverify/health throughput ratio (PostgreSQL engine): %s (goal >= 0.8; p99 goal < 5 ms)\n' "$RATIO"
printf 'revocation propagation A -> B over 100 revocations: median %s ms, 90th %s ms, max %s ms (bound 1000 ms)\n' "$PMED" "$P90" "$PMAX"
printf 'cores on this machine: %s (wrk, haproxy, PostgreSQL and the replicas share them)\n' "$(nproc)"
