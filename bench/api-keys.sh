#!/usr/bin/env bash
# Benchmarks of API keys (contract section 9) on `tessera serve`, with wrk, on loopback:
#
#   1. GET /auth/verify with a store-held API key against GET /health   (goal: >= 0.8x)
#   2. GET /auth/verify with a config-held argon2id key (after its first request) against the
#      same with a store-held key                                         (goal: <= 1.1x time)
#
# The machine may be shared: the runs alternate in ROUNDS (default 4) rounds of DUR/ROUNDS
# seconds, so that load from other processes falls on all of them; totals are compared.
# wrk is installed with apt-get when it is missing (Debian).
#
# Usage: bench/api-keys.sh [DURATION_SECONDS]   (default 16). Builds the release binary.
set -euo pipefail

DUR="${1:-16}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if ! command -v wrk >/dev/null; then
    echo "installing wrk..." >&2
    apt-get install -y wrk >/dev/null 2>&1 || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
fi

# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"
bench_start
isolated_home bench-keys

# A config-held key: its argon2id hash goes into the config.
"$BIN" auth key hash --name cfg --scopes pull >"$WORK/cfg.txt" 2>/dev/null
CFG_KEY="$(sed -n 1p "$WORK/cfg.txt")"
CFG_HASH="$(sed -n 2p "$WORK/cfg.txt")"
cat > "$XDG_CONFIG_HOME/tessera/tessera.toml" <<TOML
[[auth.api_keys]]
name = "cfg"
hash = "$CFG_HASH"
scopes = "pull"
TOML
# A store-held key.
STORE_KEY="$("$BIN" auth key create --name store --subject bench --scopes pull 2>/dev/null)"

PORT="$(free_port)"
RUST_LOG=warn "$BIN" serve --bind "127.0.0.1:$PORT" 2>"$WORK/server.log" &
SERVER_PID=$!
wait_port "$PORT" || { cat "$WORK/server.log" >&2; exit 1; }
URL="http://127.0.0.1:$PORT"

for who in store cfg; do
    key="$STORE_KEY"; [ "$who" = cfg ] && key="$CFG_KEY"
    printf 'wrk.method = "GET"\nwrk.headers["Authorization"] = "Bearer %s"\n' "$key" >"$WORK/$who.lua"
    # The first request of the config-held key pays its one argon2id.
    code="$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" "$URL/auth/verify")"
    [ "$code" = 200 ] || { echo "the $who key was refused ($code)" >&2; exit 1; }
done

bounded_wrk() { timeout "$((DUR + 30))" wrk --timeout 5s "$@" 2>&1 || true; }
total() { awk '/requests in/ {n = $1} END {print n + 0}'; }
non2xx() { awk '/Non-2xx/ {n = $NF} END {print n + 0}'; }

echo "warming up..." >&2
bounded_wrk -t1 -c4 -d2s "$URL/health" >/dev/null
bounded_wrk -t1 -c4 -d2s -s "$WORK/store.lua" "$URL/auth/verify" >/dev/null

ROUNDS=${ROUNDS:-8}
SLICE=$(( DUR / ROUNDS / 3 )); [ "$SLICE" -ge 2 ] || SLICE=2
HN=0; SN=0; CN=0; BAD=0; R1=""; R2=""
one() {
    case "$1" in
        h) bounded_wrk -t2 -c16 -d"${SLICE}s" "$URL/health" ;;
        s) bounded_wrk -t2 -c16 -d"${SLICE}s" -s "$WORK/store.lua" "$URL/auth/verify" ;;
        c) bounded_wrk -t2 -c16 -d"${SLICE}s" -s "$WORK/cfg.lua" "$URL/auth/verify" ;;
    esac
}
for r in $(seq "$ROUNDS"); do
    # The order turns every round, so that no run always follows another.
    case $(( r % 3 )) in 0) order="h s c" ;; 1) order="s c h" ;; 2) order="c h s" ;; esac
    for x in $order; do eval "out_$x=\"\$(one $x)\""; done
    h=$(echo "$out_h" | total); s=$(echo "$out_s" | total); c=$(echo "$out_c" | total)
    HN=$(( HN + h )); SN=$(( SN + s )); CN=$(( CN + c ))
    BAD=$(( BAD + $(echo "$out_s" | non2xx) + $(echo "$out_c" | non2xx) ))
    R1="$R1 $(awk -v a="$s" -v b="$h" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}')"
    R2="$R2 $(awk -v a="$s" -v b="$c" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}')"
    printf 'round %d: health %s, store key %s, config key %s requests\n' "$r" "$h" "$s" "$c" >&2
done
median() { echo "$1" | tr ' ' '\n' | awk 'NF' | sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
[ "$BAD" -eq 0 ] || { echo "$BAD key requests were refused: the figures are not comparable" >&2; exit 1; }

D=$(( SLICE * ROUNDS ))
printf '\n%-52s %12s\n' "measurement (16 connections, $ROUNDS rounds)" "requests/s"
printf '%-52s %12.0f\n' "GET /health" "$(awk -v n="$HN" -v d="$D" 'BEGIN {print n / d}')"
printf '%-52s %12.0f\n' "GET /auth/verify, store-held API key" "$(awk -v n="$SN" -v d="$D" 'BEGIN {print n / d}')"
printf '%-52s %12.0f\n' "GET /auth/verify, config-held argon2id API key" "$(awk -v n="$CN" -v d="$D" 'BEGIN {print n / d}')"
printf '\nstore-held key verify / health throughput: %s in total, %s median of the rounds (goal >= 0.8)\n' \
    "$(awk -v a="$SN" -v b="$HN" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')" "$(median "$R1")"
printf 'config-held key time / store-held key time: %s in total, %s median of the rounds (goal <= 1.1)\n' \
    "$(awk -v a="$SN" -v b="$CN" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')" "$(median "$R2")"
