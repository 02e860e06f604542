#!/usr/bin/env bash
# dermscreen build entry point. Every step a fresh Debian machine needs is here, so nothing is
# hidden in anyone's shell history.
#
#   ./build.sh test              run every test (what CI runs)
#   ./build.sh serve [PORT]      build the CLI and serve the validation report of the shipped model
#   ./build.sh bench             benchmarks, one JSON object per line
#   ./build.sh train NAME [...]  train a model into runs/NAME (extra args go to `dermscreen train`)
#   ./build.sh evaluate          score the shipped model on its validation split into report/
set -euo pipefail
cd "$(dirname "$0")"

DATA="${DERMSCREEN_DATA:-../shared/data/ham10000}"

need_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        if [ -x "$HOME/.cargo/bin/cargo" ]; then
            export PATH="$HOME/.cargo/bin:$PATH"
        else
            echo "build.sh: cargo not found; install Rust with rustup (https://rustup.rs) first" >&2
            exit 1
        fi
    fi
}

need_data() {
    if [ ! -f "$DATA/metadata.csv" ]; then
        echo "build.sh: HAM10000 not found at $DATA (set DERMSCREEN_DATA to the folder with metadata.csv and images/)" >&2
        exit 1
    fi
}

cmd_test() {
    need_rust
    need_data
    export DERMSCREEN_DATA="$DATA"
    # One feature set for all tests (the trainer's smoke test included), so the dependencies
    # are compiled once. The library has no doc tests; leaving them out keeps the last
    # summary line a real one.
    local log status
    log="$(mktemp)"
    set +e
    cargo test --features train --no-fail-fast --lib --bins --tests 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    set -e
    awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
         END { printf "total: %d passed, %d failed\n", p, f }' "$log"
    rm -f "$log"
    return "$status"
}

cmd_evaluate() {
    need_rust
    need_data
    cargo build --release
    ./target/release/dermscreen evaluate --images "$DATA/images" --labels model/validation_split.csv --out report
}

cmd_serve() {
    local port="${1:-8000}"
    cmd_evaluate
    echo "Serving the shipped model's validation report at http://127.0.0.1:$port/ (Ctrl-C to stop)"
    cd report
    exec python3 -m http.server "$port" --bind 127.0.0.1
}

cmd_bench() {
    need_rust
    need_data
    cargo run --release --quiet --example bench -- "$DATA" "${1:-10}"
}

cmd_train() {
    need_rust
    need_data
    local name="${1:?usage: ./build.sh train NAME [dermscreen train options]}"
    shift
    cargo run --release --features train -- train --data "$DATA" --out "runs/$name" "$@"
}

case "${1:-}" in
    test) shift; cmd_test "$@" ;;
    serve) shift; cmd_serve "$@" ;;
    bench) shift; cmd_bench "$@" ;;
    train) shift; cmd_train "$@" ;;
    evaluate) shift; cmd_evaluate "$@" ;;
    *)
        sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
