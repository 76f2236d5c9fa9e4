# Sourced by the bench scripts that start servers: an isolated home, a free local port, and
# waiting for one.

# A TCP port on 127.0.0.1 that nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits (up to about 10 s) until something listens on port $1 of 127.0.0.1.
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; return 1; }

# Points HOME and the XDG folders into $WORK, with a random token signing secret named after
# $1. cargo and rustup find their homes through HOME: they are pinned first.
isolated_home() {
    export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
    export HOME="$WORK" XDG_CONFIG_HOME="$WORK/config" XDG_DATA_HOME="$WORK/data"
    export TESSERA_AUTH_TOKEN_SECRET="$1-secret-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
    mkdir -p "$XDG_CONFIG_HOME/tessera"
}

# Builds the release binary ($BIN), makes the scratch folder $WORK, and at exit stops the
# server whose pid is in $SERVER_PID (if any) and removes $WORK. Needs $ROOT.
bench_start() {
    cargo build --release --bin tessera --manifest-path "$ROOT/Cargo.toml" >&2
    BIN="$ROOT/target/release/tessera"
    WORK="$(mktemp -d)"
    SERVER_PID=""
    trap bench_cleanup EXIT
}

bench_cleanup() {
    if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
