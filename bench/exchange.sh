#!/usr/bin/env bash
# Benchmarks of workload identity (docs/workload-identity.md) on loopback (not run in CI):
#
#   1. POST /auth/exchange with a warm JWKS: exchanges per second of GitHub-shaped RS256 ID
#      tokens (each a fresh token: an ID token is exchanged once), against the peer measured
#      in the same run: the real OpenID Provider of the tests (oidc-provider from npm, node)
#      minting JWT access tokens at its client_credentials token endpoint.
#   2. GET /token (registry) with an ID token as the Basic password, warm (no one-use rule).
#   3. The cost of a cold JWKS: the first exchange after a server start fetches the issuer's
#      discovery document and JWKS (what an unknown `kid` costs), against the warm exchanges
#      that follow; ROUNDS server starts, medians.
#
# Usage: bench/exchange.sh [DURATION_SECONDS]   (default 5). Needs wrk, curl, python3 with the
# `cryptography` package (Debian python3-cryptography), node 20+ and `npm ci` in tests/it/oidc
# (scripts/test does it). Builds the release binary.
set -euo pipefail

DUR="${1:-5}"
ROUNDS="${ROUNDS:-5}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/bench/common.sh"
for t in wrk curl python3 node; do command -v "$t" >/dev/null || { echo "$t is not installed" >&2; exit 1; }; done
python3 -c 'import cryptography' 2>/dev/null || { echo "python3 cryptography is missing (apt-get install python3-cryptography)" >&2; exit 1; }
[ -d "$ROOT/tests/it/oidc/node_modules/oidc-provider" ] || { echo "run npm ci in tests/it/oidc first" >&2; exit 1; }

cargo build --release --bin tessera --manifest-path "$ROOT/Cargo.toml" >&2
BIN="$ROOT/target/release/tessera"

WORK="$(mktemp -d)"
PIDS=()
SERVER_PID=""
cleanup() {
    for p in "${PIDS[@]}" $SERVER_PID; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
isolated_home bench

# The GitHub-shaped issuer: discovery and JWKS on a free port; tokens minted into files.
ISSUER_PORT="$(free_port)"
ISSUER="http://127.0.0.1:$ISSUER_PORT"
cat > "$WORK/issuer.py" <<'PY'
import base64, http.server, json, os, sys, time, uuid
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

work, issuer, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def num(i): return b64(i.to_bytes((i.bit_length() + 7) // 8, "big"))
pub = key.public_key().public_numbers()
jwks = {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "bench", "n": num(pub.n), "e": num(pub.e)}]}

def token():
    now = int(time.time())
    claims = {"jti": str(uuid.uuid4()), "sub": "repo:acme/app:environment:production", "aud": "tessera",
              "environment": "production", "ref": "refs/heads/main", "repository": "acme/app",
              "repository_owner": "acme", "repository_owner_id": "123456", "repository_id": "654321",
              "run_id": "1", "workflow": "release", "event_name": "push", "ref_type": "branch",
              "iss": issuer, "nbf": now - 60, "iat": now, "exp": now + 900}
    h = b64(json.dumps({"typ": "JWT", "alg": "RS256", "kid": "bench"}).encode())
    p = b64(json.dumps(claims).encode())
    sig = key.sign(f"{h}.{p}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{h}.{p}.{b64(sig)}"

if os.environ.get("MINT"):
    with open(os.path.join(work, "tokens.txt"), "w") as f:
        for _ in range(int(os.environ["MINT"])):
            f.write(token() + "\n")
    with open(os.path.join(work, "key.pem"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with open(os.path.join(work, "jwks.json"), "w") as f:
        json.dump(jwks, f)
    sys.exit(0)

jwks = json.load(open(os.path.join(work, "jwks.json")))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/.well-known/openid-configuration":
            body = {"issuer": issuer, "jwks_uri": issuer + "/jwks", "id_token_signing_alg_values_supported": ["RS256"]}
        elif self.path == "/jwks":
            body = jwks
        else:
            self.send_response(404); self.end_headers(); return
        data = json.dumps(body).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
TOKENS="${TOKENS:-30000}"
echo "minting $TOKENS RS256 ID tokens..." >&2
MINT="$TOKENS" python3 "$WORK/issuer.py" "$WORK" "$ISSUER" "$ISSUER_PORT"
python3 "$WORK/issuer.py" "$WORK" "$ISSUER" "$ISSUER_PORT" & PIDS+=($!)
wait_port "$ISSUER_PORT"

cat > "$XDG_CONFIG_HOME/tessera/tessera.toml" <<TOML
[auth]
token_expiry = "1h"
[registry]
service = "bench-registry"
[[auth.trust]]
name = "bench"
issuer = "$ISSUER"
audience = "tessera"
subject = "ci-bench"
scopes = ["push", "pull"]
repo = "acme/*"
expiry = "15m"
[auth.trust.claims]
repository_owner_id = "123456"
repository_id = "654321"
ref = "refs/heads/main"
environment = "production"
TOML
"$BIN" registry init >/dev/null 2>&1

start_server() {
    PORT="$(free_port)"
    RUST_LOG=error "$BIN" serve --bind "127.0.0.1:$PORT" 2>"$WORK/server.log" &
    SERVER_PID=$!
    wait_port "$PORT"
    URL="http://127.0.0.1:$PORT"
}
stop_server() { kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; }

# One exchange of token $1: prints the HTTP status and the time in seconds.
exchange_once() {
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "$URL/auth/exchange" \
        -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
        -d subject_token_type=urn:ietf:params:oauth:token-type:id_token \
        --data-urlencode "subject_token=$1"
}

# 3. Cold against warm: the first exchange after each start fetches discovery + JWKS.
COLD=(); WARM=(); n=1
for r in $(seq "$ROUNDS"); do
    start_server
    read -r s t < <(exchange_once "$(sed -n "${n}p" "$WORK/tokens.txt")"); n=$((n + 1))
    [ "$s" = 200 ] || { echo "cold exchange answered $s" >&2; cat "$WORK/server.log" >&2; exit 1; }
    COLD+=("$t")
    for _ in $(seq 20); do
        read -r s t < <(exchange_once "$(sed -n "${n}p" "$WORK/tokens.txt")"); n=$((n + 1))
        [ "$s" = 200 ] || { echo "warm exchange answered $s" >&2; exit 1; }
        WARM+=("$t")
    done
    stop_server
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {printf "%.2f", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) * 1000}'; }
COLD_MS="$(median "${COLD[@]}")"; WARM_MS="$(median "${WARM[@]}")"

# 1. Throughput, warm: every request a fresh token (each wrk thread its own slice).
start_server
exchange_once "$(sed -n "${n}p" "$WORK/tokens.txt")" >/dev/null; n=$((n + 1))
tail -n +"$n" "$WORK/tokens.txt" > "$WORK/fresh.txt"
cat > "$WORK/exchange.lua" <<'LUA'
-- Each thread takes every other token (its own slice): a token is exchanged once.
local threads, counter = 2, 0
function setup(thread) thread:set("slice", counter); counter = counter + 1 end
function init(args)
  tokens = {}
  local i = 0
  for line in io.lines(os.getenv("TOKENS_FILE")) do
    if i % threads == slice then tokens[#tokens + 1] = line end
    i = i + 1
  end
  next_token = 1
end
function request()
  local t = tokens[next_token] or "exhausted"
  next_token = next_token + 1
  return wrk.format("POST", "/auth/exchange", {["Content-Type"] = "application/x-www-form-urlencoded"},
    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token&subject_token=" .. t)
end
LUA
bounded_wrk() { timeout "$((DUR + 30))" wrk --timeout 5s "$@" 2>&1 || true; }
rps() { awk '/Requests\/sec/ {print $2}'; }
non2xx() { awk '/Non-2xx/ {n = $NF} END {print n + 0}'; }
p99() { awk '$1 == "99%" {print $2}'; }
E="$(TOKENS_FILE="$WORK/fresh.txt" bounded_wrk --latency -t2 -c8 -d"${DUR}s" -s "$WORK/exchange.lua" "$URL/auth/exchange")"

# 2. The registry with the ID token as the Basic password (reused: no one-use rule there).
ID="$(tail -1 "$WORK/tokens.txt")"
BASIC="$(printf 'oidc:%s' "$ID" | base64 -w0)"
cat > "$WORK/registry.lua" <<LUA
wrk.headers["Authorization"] = "Basic $BASIC"
LUA
R="$(bounded_wrk --latency -t2 -c8 -d"${DUR}s" -s "$WORK/registry.lua" "$URL/token?service=bench-registry&scope=repository:acme/app:pull,push")"
stop_server

# The peer: oidc-provider's token endpoint (client_credentials, ES256 JWT access tokens).
PPORT="$(free_port)"
(cd "$ROOT/tests/it/oidc" && PORT="$PPORT" exec node provider.mjs >/dev/null 2>&1) & PIDS+=($!)
wait_port "$PPORT"
cat > "$WORK/peer.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic YWNtZS1hcHAtbWFpbjpwcm92aWRlci10ZXN0LWNsaWVudC1zZWNyZXQtMDEyMzQ1Njc4OQ=="
wrk.body = "grant_type=client_credentials&scope=push&resource=https%3A%2F%2Ftessera.test"
LUA
P="$(bounded_wrk --latency -t2 -c8 -d"${DUR}s" -s "$WORK/peer.lua" "http://127.0.0.1:$PPORT/token")"

ER="$(echo "$E" | rps)"; PR="$(echo "$P" | rps)"
printf '\n%-60s %12s %10s %8s\n' "measurement (8 connections, ${DUR}s)" "requests/s" "p99" "non-2xx"
printf '%-60s %12s %10s %8s\n' "POST /auth/exchange, warm JWKS, fresh RS256 ID tokens" "$ER" "$(echo "$E" | p99)" "$(echo "$E" | non2xx)"
printf '%-60s %12s %10s %8s\n' "GET /token with an ID token as Basic password" "$(echo "$R" | rps)" "$(echo "$R" | p99)" "$(echo "$R" | non2xx)"
printf '%-60s %12s %10s %8s\n' "peer: oidc-provider POST /token (client_credentials, JWT)" "$PR" "$(echo "$P" | p99)" "$(echo "$P" | non2xx)"
printf '\nexchange/peer throughput ratio: %s\n' "$(awk -v a="$ER" -v b="$PR" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')"
printf 'cold JWKS (discovery + JWKS fetch, first exchange after start): median %s ms over %s starts\n' "$COLD_MS" "$ROUNDS"
printf 'warm exchange (one curl at a time): median %s ms; a cold kid costs about %s ms more\n' "$WARM_MS" \
    "$(awk -v c="$COLD_MS" -v w="$WARM_MS" 'BEGIN {printf "%.2f", c - w}')"
