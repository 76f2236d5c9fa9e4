#!/usr/bin/env bash
# Page weight and render time of every web UI screen in the real headless Chromium (not run in
# CI; a timed assertion in a test would be flaky, so the targets are checked here).
#
#   targets: every screen < 100 KB transferred (page, script, style, icon and its API calls)
#            and first render < 200 ms on this machine.
#
# For each screen, ROUNDS (default 10) fresh navigations of a signed-in browser; from the
# browser's own Performance API: the bytes transferred (navigation + every resource, API calls
# included), first contentful paint, and "ready" (the screen filled with its data: the
# `tessera-ready` mark of app.js). The peer, measured in the same run and the same browser: a
# minimal static page (one heading) served by python3's http.server, the floor of paint time
# here; the ratio is screen FCP / peer FCP.
#
# Usage: bench/ui.sh [ROUNDS]. Needs chromium, chromedriver, python3. Builds the release binary
# (or measures TESSERA_BIN).
set -euo pipefail

ROUNDS="${1:-10}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/bench/common.sh"
for tool in chromium chromedriver python3; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed (apt-get install chromium chromium-driver)" >&2; exit 1; }
done

# TESSERA_BIN: a tessera binary to measure instead of building the release one.
if [ -n "${TESSERA_BIN:-}" ]; then
    BIN="$TESSERA_BIN"
else
    cargo build --release --bin tessera --manifest-path "$ROOT/Cargo.toml" >&2
    BIN="$ROOT/target/release/tessera"
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

isolated_home bench-ui
# One admin user (the single-user keys of section 3), so that every screen has data.
cat > "$XDG_CONFIG_HOME/tessera/tessera.toml" <<TOML
[auth]
username = "bench"
login_scopes = "admin"
[server]
login_attempts_per_minute = 0
[registry]
service = "bench-registry"
certificate = "registry-token.crt"
TOML
printf 'bench-password\n' | "$BIN" auth password hash --stdin --store >/dev/null
"$BIN" registry init >/dev/null 2>&1

PORT=$(free_port)
"$BIN" serve --bind "127.0.0.1:$PORT" >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
PEER_PORT=$(free_port)
mkdir -p "$WORK/peer"
printf '<!doctype html><html lang="en"><meta charset="utf-8"><title>peer</title><h1>Sign in</h1></html>\n' >"$WORK/peer/index.html"
python3 -m http.server "$PEER_PORT" --bind 127.0.0.1 --directory "$WORK/peer" >/dev/null 2>&1 &
PIDS+=($!)
WD_PORT=$(free_port)
chromedriver --port="$WD_PORT" >"$WORK/chromedriver.log" 2>&1 &
PIDS+=($!)
wait_port "$PORT"; wait_port "$PEER_PORT"; wait_port "$WD_PORT"

# A few tokens to list.
for i in 1 2 3; do "$BIN" auth token generate --subject bench --scopes pull --expiry 7d >/dev/null 2>&1; done

python3 - "$WD_PORT" "$PORT" "$PEER_PORT" "$ROUNDS" "$WORK" <<'PY'
import json, statistics, sys, time, urllib.request

wd, port, peer_port, rounds, work = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
base = f"http://127.0.0.1:{port}"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

def call(method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{wd}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)["value"]

args = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={work}/profile", "--window-size=1280,900"]
sid = call("POST", "/session", {"capabilities": {"alwaysMatch": {
    "browserName": "chrome", "goog:chromeOptions": {"args": args, "binary": "/usr/bin/chromium"}}}})["sessionId"]
s = f"/session/{sid}"
js = lambda script: call("POST", f"{s}/execute/sync", {"script": script, "args": []})

def wait(cond, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        if js(f"return !!({cond});"):
            return
        time.sleep(0.01)
    raise SystemExit(f"timed out waiting for {cond} on {js('return location.href')}")

def find(css):
    return call("POST", f"{s}/element", {"using": "css selector", "value": css})[ELEMENT]

MEASURE = """
const nav = performance.getEntriesByType('navigation')[0];
const res = performance.getEntriesByType('resource');
const fcp = performance.getEntriesByName('first-contentful-paint')[0];
const ready = performance.getEntriesByName('tessera-ready')[0];
return {bytes: nav.transferSize + res.reduce((a, r) => a + r.transferSize, 0),
        requests: 1 + res.length,
        fcp: fcp ? fcp.startTime : null, ready: ready ? ready.startTime : null,
        html: nav.responseEnd, dcl: nav.domContentLoadedEventEnd,
        assets: Math.max(0, ...res.filter(r => /\/ui\/app\.(css|js)$/.test(r.name)).map(r => r.responseEnd))};
"""

def measure(url, ready_cond, before):
    """`before`: the page open before each navigation (about:blank: a first visit in a new
    tab; another screen: moving between screens, as a user does with the menu)."""
    out = []
    for _ in range(rounds):
        call("POST", f"{s}/url", {"url": before})
        call("POST", f"{s}/url", {"url": url})
        wait(ready_cond)
        wait("performance.getEntriesByName('first-contentful-paint').length > 0")
        out.append(js(MEASURE))
    return out

READY = "document.body.dataset.ready === 'true'"
peer = f"http://127.0.0.1:{peer_port}/"
first, moving = {}, {}
first["peer: static page"] = measure(peer, "document.readyState === 'complete'", "about:blank")
moving["peer: static page"] = measure(peer, "document.readyState === 'complete'", peer + "?other")
first["Sign in"] = measure(f"{base}/ui/", READY, "about:blank")
moving["Sign in"] = measure(f"{base}/ui/", READY, f"{base}/ui/no-such-page")
# Sign in through the page itself.
call("POST", f"{s}/url", {"url": f"{base}/ui/"})
wait("document.body.dataset.ready === 'true'")
call("POST", f"{s}/element/{find('#username')}/value", {"text": "bench"})
call("POST", f"{s}/element/{find('#password')}/value", {"text": "bench-password"})
call("POST", f"{s}/element/{find('#signin')}/click", {})
wait("location.pathname === '/ui/tokens' && document.body.dataset.ready === 'true'")
screens = [("Tokens", "/ui/tokens"), ("Users", "/ui/users"), ("Security", "/ui/security")]
for i, (name, path) in enumerate(screens):
    first[name] = measure(f"{base}{path}", READY, "about:blank")
    moving[name] = measure(f"{base}{path}", READY, f"{base}{screens[i - 1][1]}")
call("DELETE", s)

def table(title, results):
  peer_fcp = statistics.median(r["fcp"] for r in results["peer: static page"])
  load = open('/proc/loadavg').read().split()[0]
  print(f"\n{title}: {rounds} navigations per screen, headless Chromium ({time.strftime('%Y-%m-%d %H:%M')}, load average {load}); times from navigation start, medians")
  print(f"{'screen':<20}{'KB transferred':>15}{'requests':>10}{'HTML':>8}{'CSS+JS':>8}{'FCP median':>12}{'FCP max':>9}{'ready median':>14}{'vs peer':>9}  targets")
  for name, rs in results.items():
    kb = max(r["bytes"] for r in rs) / 1024
    fcp = [r["fcp"] for r in rs]
    ready = [r["ready"] for r in rs if r["ready"] is not None]
    med = statistics.median(fcp)
    ok = "" if name.startswith("peer") else ("ok" if kb < 100 and med < 200 else "MISSED")
    rd = f"{statistics.median(ready):.0f} ms" if ready else "-"
    html = statistics.median(r["html"] for r in rs)
    assets = statistics.median(r["assets"] for r in rs)
    print(f"{name:<20}{kb:>15.1f}{rs[0]['requests']:>10}{html:>5.0f} ms{assets:>5.0f} ms{med:>9.0f} ms{max(fcp):>6.0f} ms{rd:>14}{med / peer_fcp:>8.2f}x  {ok}")
table("first visit (from a blank tab; the UI's Cross-Origin-Opener-Policy starts a new renderer process)", first)
table("moving between screens (the menu; script and style sheet from the cache)", moving)
PY
