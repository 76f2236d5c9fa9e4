#!/usr/bin/env bash
# Whole-process `tessera auth token generate` (secret from the environment) side by side with
# `jwt encode` from the jwt-cli crate (same claims, HS256) in one hyperfine run.
# Goal: tessera at most 0.6x jwt-cli.
#
#   bench/token-generate.sh     (needs hyperfine; installs jwt-cli into target/tools with cargo)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q
tools="$PWD/target/tools"
if [ ! -x "$tools/bin/jwt" ]; then
  cargo install --quiet --root "$tools" jwt-cli
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HOME="$work" XDG_CONFIG_HOME="$work/.config" XDG_DATA_HOME="$work/.local/share"
secret=$(head -c 32 /dev/urandom | base64 | tr -d '=+/' | cut -c1-43)
export TESSERA_AUTH_TOKEN_SECRET="$secret"
now=$(date +%s)
# ROUNDS rounds of RUNS/ROUNDS runs each, so that a change in the machine's load (it may be
# shared) falls on both commands alike; the medians are over all rounds' runs.
runs=${RUNS:-300}
rounds=${ROUNDS:-4}
for r in $(seq "$rounds"); do
  hyperfine -N --warmup 20 --runs "$(( (runs + rounds - 1) / rounds ))" --export-json "$work/gen.$r.json" \
    -n 'jwt encode' "$tools/bin/jwt encode --alg HS256 --secret $secret --iss tessera --sub ci --jti 0123456789abcdef0123456789abcdef --exp=+30d --nbf $now -P scope=repository:*:pull" \
    -n 'tessera auth token generate' "target/release/tessera auth token generate --subject ci --scopes pull --expiry 30d -q"
done
python3 - "$work" <<'PY'
import glob, json, os, statistics, sys
times = {}
for f in glob.glob(os.path.join(sys.argv[1], "gen.*.json")):
    for r in json.load(open(f))["results"]:
        times.setdefault(r["command"], []).extend(r["times"])
t = statistics.median(times["tessera auth token generate"])
j = statistics.median(times["jwt encode"])
print(f"\ntessera {t*1000:.2f} ms, jwt-cli {j*1000:.2f} ms median: ratio {t/j:.3f}x (goal <= 0.6x)")
PY
