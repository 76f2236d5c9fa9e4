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
hyperfine -N --warmup 20 --runs "${RUNS:-300}" --export-json "$work/gen.json" \
  -n 'jwt encode' "$tools/bin/jwt encode --alg HS256 --secret $secret --iss tessera --sub ci --jti 0123456789abcdef0123456789abcdef --exp=+30d --nbf $now -P scope=repository:*:pull" \
  -n 'tessera auth token generate' "target/release/tessera auth token generate --subject ci --scopes pull --expiry 30d -q"
python3 - "$work/gen.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
t, j = r["tessera auth token generate"]["median"], r["jwt encode"]["median"]
print(f"\ntessera {t*1000:.2f} ms, jwt-cli {j*1000:.2f} ms median: ratio {t/j:.3f}x (goal <= 0.6x)")
PY
