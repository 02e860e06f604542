#!/usr/bin/env bash
# dermscreen build entry point. Every step a fresh Debian machine needs is here, so nothing is
# hidden in anyone's shell history.
#
#   ./build.sh serve [PORT]      build the web app and serve it on http://127.0.0.1:PORT/ (default 8000)
#   ./build.sh test              run every test (what CI runs): clippy, native, wasm in Chromium, end to end
#   ./build.sh lint              clippy on every target, native (with the trainer) and wasm; warnings fail
#   ./build.sh site              build the web app into target/site/ (static files, host anywhere)
#   ./build.sh bench             benchmarks (native and in the browser), one JSON object per line
#   ./build.sh train NAME [...]  train the shipped model's recipe into runs/NAME (3-6 h on 2 cores,
#                                about 1 h with DERMSCREEN_TRAIN_FEATURES=tch, 9.4 min on an
#                                H200; run again to resume); with args, one
#                                `dermscreen train` run into runs/NAME
#   ./build.sh evaluate          score the shipped model on its validation split into report/
set -euo pipefail
cd "$(dirname "$0")"

DATA="${DERMSCREEN_DATA:-../shared/data/ham10000}"

# Rust through rustup when cargo is not found (Debian's own rustc is older than Cargo.toml's
# rust-version, and rustup then adds the wasm target the same way). Rust links with the system's
# C compiler, which a fresh Debian may lack too.
need_rust() {
    local cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
    if ! command -v cargo >/dev/null 2>&1 && [ -x "$cargo_bin/cargo" ]; then
        export PATH="$cargo_bin:$PATH"
    fi
    if ! command -v cc >/dev/null 2>&1; then
        echo "build.sh: installing Debian's C compiler (gcc, libc6-dev), which Rust links with" >&2
        apt_install gcc libc6-dev
    fi
    command -v cargo >/dev/null 2>&1 && return
    command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
    local url init toolchain
    # The version Cargo.toml names, the one this project is built and tested with, rather than
    # whatever stable is today.
    toolchain="$(awk -F'"' '/^rust-version/ { print $2; exit }' Cargo.toml)"
    url="https://static.rust-lang.org/rustup/dist/$(uname -m)-unknown-linux-gnu/rustup-init"
    init="$(mktemp -d)/rustup-init"
    echo "build.sh: cargo not found; installing Rust $toolchain (minimal profile) with rustup into ${cargo_bin%/bin}; a few minutes, once" >&2
    curl --proto '=https' --tlsv1.2 -sSf "$url" -o "$init"
    # A truncated or altered download stops here rather than running.
    echo "$(curl --proto '=https' --tlsv1.2 -sSf "$url.sha256" | cut -c1-64)  $init" | sha256sum -c --quiet
    chmod +x "$init"
    "$init" -y --no-modify-path --profile minimal --default-toolchain "$toolchain"
    rm -r "$(dirname "$init")"
    export PATH="$cargo_bin:$PATH"
}

# Python's standard library serves the site and reads the bench's and trainer's JSON.
need_python() {
    command -v python3 >/dev/null 2>&1 || apt_install python3
}

need_data() {
    if [ ! -f "$DATA/metadata.csv" ]; then
        echo "build.sh: HAM10000 not found at $DATA (set DERMSCREEN_DATA to the folder with metadata.csv and images/)" >&2
        exit 1
    fi
}

# Runs as root or through sudo, whichever this machine has.
as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "build.sh: this step runs '$*' and needs root or sudo; run it as root, or install those packages and run build.sh again" >&2
        exit 1
    fi
}

apt_install() {
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# The wasm target, wasm-bindgen-cli at exactly the version Cargo.lock pins for the
# wasm-bindgen crate (their formats must match), and Node.js for the browser tests.
need_wasm_target() {
    need_rust
    if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
        rustup target add wasm32-unknown-unknown
    fi
}

need_web_tools() {
    need_wasm_target
    local want have
    want="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)"
    have="$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)"
    if [ "$have" != "$want" ]; then
        echo "build.sh: installing wasm-bindgen-cli $want (found '${have:-none}'); a few minutes, once" >&2
        # Not --locked: a dependency version in its lock file is no longer served by crates.io.
        cargo install wasm-bindgen-cli --version "=$want"
    fi
}

# Debian's Chromium and its WebDriver, for the wasm and end-to-end tests, and Node.js.
need_browser() {
    if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
        echo "build.sh: installing Debian's chromium and chromium-driver" >&2
        apt_install chromium chromium-driver
    fi
    if ! command -v npm >/dev/null 2>&1; then
        apt_install nodejs npm
    fi
    export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver)}"
}

# The web app: the library as wasm (release), its JS bindings, the static files of www/ and
# the shipped model, into target/site/. The service worker is stamped with a hash of all of
# it, so any change (a new model included) replaces what browsers cached.
cmd_site() {
    need_web_tools
    cargo rustc --lib --profile web --target wasm32-unknown-unknown --crate-type cdylib
    local site=target/site
    rm -rf "$site"
    mkdir -p "$site/model"
    cp -r www/. "$site/"
    wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section --out-dir "$site/pkg" \
        target/wasm32-unknown-unknown/web/dermscreen.wasm
    # The same engine without WebGPU, for pages that run on the CPU (www/engine.js picks it): in
    # its own target folder, as other rustflags would rebuild the first one's every crate. The
    # flags repeat .cargo/config.toml's, which RUSTFLAGS replaces; a warning in the code this cfg
    # compiles fails the build, as clippy (which builds the other) would (dependencies' lints are capped).
    CARGO_TARGET_DIR=target/wasm-cpu-only RUSTFLAGS="-C target-feature=+simd128 --cfg dermscreen_cpu_only -D warnings" \
        cargo rustc --lib --profile web --target wasm32-unknown-unknown --crate-type cdylib
    wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section --out-dir "$site/pkg-cpu" \
        target/wasm-cpu-only/wasm32-unknown-unknown/web/dermscreen.wasm
    cp model/model.json model/model.bpk "$site/model/"
    (
        cd "$site"
        local files build
        files="$(find . -type f ! -name sw.js | sed 's|^\./||' | LC_ALL=C sort)"
        build="$(echo "$files" | xargs cat | sha256sum | cut -c1-16)"
        # The app's own pages and code (not embed.html's host-page code). The engine's wasm and
        # the model carry their SHA-256, which the worker checks before it saves them: they are
        # the large files a cut connection shortens, and no host rewrites them. Pages, scripts
        # and styles get null: some hosts minify or add to them, and a digest would never match.
        local list
        list="$(echo "$files" | grep -v '^embed\.' | while read -r f; do
            case "$f" in
                *.wasm | model/*) printf '"%s": "%s",' "$f" "$(sha256sum "$f" | cut -c1-64)" ;;
                *) printf '"%s": null,' "$f" ;;
            esac
        done)"
        sed -i "s|^const BUILD = .*|const BUILD = '$build';|; s|^const FILES = .*|const FILES = { \"./\": null, ${list%,} };|" sw.js
    )
    echo "build.sh: web app in $site/ ($(du -sh "$site" | cut -f1)); wasm $(stat -c %s "$site/pkg/dermscreen_bg.wasm") bytes, CPU-only $(stat -c %s "$site/pkg-cpu/dermscreen_bg.wasm")"
}

need_e2e() {
    need_browser
    # onnxruntime-node ships its CPU library; skip its optional download of CUDA libraries.
    ONNXRUNTIME_NODE_INSTALL=skip npm ci --prefix tests/e2e --no-audit --no-fund --loglevel=error
}

# Clippy's warnings fail, so a lint a change brings in is seen where it is made. Native with
# the trainer's features (every binary, test and the trainer), and the wasm library with its
# browser tests, which only compile for wasm32.
cmd_lint() {
    need_wasm_target
    if ! cargo clippy --version >/dev/null 2>&1; then
        echo "build.sh: installing clippy (rustup component)" >&2
        rustup component add clippy
    fi
    cargo clippy --features train,onnx --all-targets -- -D warnings &&
        cargo clippy --target wasm32-unknown-unknown --lib --test web -- -D warnings
}

cmd_test() {
    need_rust
    need_data
    need_web_tools
    need_browser
    export DERMSCREEN_DATA="$DATA"
    local log status=0
    log="$(mktemp)"
    set +e
    # Lint first: it fails the run but stops nothing, so every test still reports.
    cmd_lint 2>&1 | tee -a "$log"
    if [ "${PIPESTATUS[0]}" = 0 ]; then
        echo "build.sh: lint passed" | tee -a "$log"
    else
        status=1
        echo "build.sh: lint failed (clippy, above)" | tee -a "$log"
    fi
    # Native: one feature set for all tests (the trainer's smoke test included, and the ONNX
    # export the e2e tests run in onnxruntime-web), so the dependencies are compiled once. The
    # library has no doc tests.
    cargo test --features train,onnx --no-fail-fast --lib --bins --tests 2>&1 | tee -a "$log"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
    # The browser engine in headless Chromium, on the CPU backend and WebGPU. This Chromium has
    # a WebGPU adapter with --enable-unsafe-webgpu (webdriver.json), so WebGPU may not skip.
    # The web profile: its dependencies are shared with the site build below.
    DERMSCREEN_REQUIRE_WEBGPU=1 cargo test --profile web --target wasm32-unknown-unknown --test web 2>&1 | tee -a "$log"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
    # End to end: the built site in headless Chromium, against the CLI built above. Its npm
    # script caps the run at 20 minutes (1-5 here, by machine): a test that waits for an event
    # the page never sends fails, rather than holding CI until its own limit.
    ( set -e; cmd_site; need_e2e ) 2>&1 | tee -a "$log"
    if [ "${PIPESTATUS[0]}" = 0 ]; then
        DERMSCREEN_CLI="$PWD/target/debug/dermscreen" npm test --prefix tests/e2e 2>&1 | tee -a "$log"
        [ "${PIPESTATUS[0]}" = 0 ] || status=1
        echo "build.sh: screenshots in target/e2e/"
    else
        status=1
    fi
    set -e
    awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
         /^build.sh: lint passed/ { p += 1 } /^build.sh: lint failed/ { f += 1 }
         /^# pass / { p += $3 } /^# fail / { tf += $3 } /^not ok / { tn += 1 }
         END { f += (tn > tf ? tn : tf); printf "total: %d passed, %d failed\n", p, f }' "$log"
    rm -f "$log"
    return "$status"
}

cmd_evaluate() {
    need_rust
    need_data
    cargo build --release
    # The split names each photo by its path under the data root, with its source and kind.
    ./target/release/dermscreen evaluate --images "$(dirname "$DATA")" --labels model/validation_split.csv --out report
}

cmd_serve() {
    local port="${1:-8000}"
    cmd_site
    need_python
    echo "Serving the web app at http://127.0.0.1:$port/ (Ctrl-C to stop). Phones need https:// for the camera."
    cd target/site
    # With Access-Control-Allow-Origin, a page on another origin can embed the element from here
    # as a telehealth site would: module scripts, the .wasm and the model are fetched with CORS.
    exec python3 -c '
import http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()
try:
    http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
except KeyboardInterrupt:
    pass
' "$port"
}

cmd_bench() {
    need_rust
    need_python
    need_data
    mkdir -p target/bench
    # The browser bench compares onnxruntime (native) with these lines. One feature set for the
    # example and the CLI, so the library is compiled once.
    cargo run --release --quiet --features train,onnx --example bench -- "$DATA" "${1:-10}" | tee target/bench/native.jsonl
    cargo build --release --quiet --features train,onnx
    bench_cli_phone_photos | tee -a target/bench/native.jsonl
    bench_training train_cpu ./target/release/dermscreen | tee -a target/bench/native.jsonl
    bench_training_tch | tee -a target/bench/native.jsonl
    ./target/release/dermscreen export-onnx --model model --out target/bench/model.onnx >&2
    cmd_site >&2
    need_e2e >&2
    DERMSCREEN_DATA="$DATA" DERMSCREEN_CLI="$PWD/target/release/dermscreen" DERMSCREEN_ONNX="$PWD/target/bench/model.onnx" \
        node tests/e2e/bench.mjs "${1:-10}"
}

# `dermscreen classify` over the bench's 32 phone-sized photos (12 MP JPEGs the example wrote):
# what a folder from a phone's camera roll costs per photo, decoding included. Median of 3 runs.
bench_cli_phone_photos() {
    python3 - target/bench/phone-photos <<'EOF'
import json, os, subprocess, sys, time
folder = sys.argv[1]
photos = len([f for f in os.listdir(folder) if f.endswith(".jpg")])
times = []
for _ in range(3):
    start = time.perf_counter()
    subprocess.run(["./target/release/dermscreen", "classify", "--format", "csv", folder], check=True, stdout=subprocess.DEVNULL)
    times.append(time.perf_counter() - start)
print(json.dumps({"bench": "classify_cli_12mp_jpeg", "unit": "ms/photo", "value": round(1e3 * sorted(times)[1] / photos, 1),
                  "photos": photos, "size": "4000x3000", "cores": os.cpu_count()}))
EOF
}

# The trainer's speed at the recipe's input side and batch (the trainer's defaults) on every
# training photo: two short epochs that stop at their checkpoint (no export), the second one
# warm. From it, the hours the recipe's epochs (the default of --epochs, read from the trainer's
# help) take on this machine (training only; validation and export add minutes).
bench_training() {
    local name="$1" dermscreen="$2" run=target/bench/train steps=20
    rm -rf "$run"
    "$dermscreen" train --data "$(dirname "$DATA")" --out "$run" \
        --epochs 2 --max-steps-per-epoch "$steps" --no-export >&2
    python3 - "$name" "$run" "$steps" "$("$dermscreen" train --help)" <<'EOF'
import json, re, sys
name, run, steps, help_text = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
recipe_epochs = int(re.search(r"--epochs <EPOCHS>[^\[]*\[default: (\d+)\]", help_text).group(1))
read = lambda name: json.load(open(f"{run}/{name}"))
warm = read("history.json")[-1]
batch = read("train_config.json")["batch_size"]
images = recipe_epochs * (read("split.json")["train_images"] // batch) * batch
print(json.dumps({"bench": name, "unit": "images/s", "value": round(warm["images_per_second"], 1),
                  "input_size": warm["input_size"], "batch_size": batch, "steps": steps,
                  "recipe_images": images, "recipe_training_hours": round(images / warm["images_per_second"] / 3600, 2)}))
EOF
}

# The same through libtorch (feature `tch`), where `DERMSCREEN_TRAIN_FEATURES=tch ./build.sh
# train` has installed it: not installed by the bench, as it is a 4 GB download.
bench_training_tch() {
    if ! [ -d target/torch-venv ]; then
        echo "train_cpu_tch: skipped, no target/torch-venv (DERMSCREEN_TRAIN_FEATURES=tch ./build.sh train NAME installs it)" >&2
        return
    fi
    (
        need_torch
        cargo build --release --quiet --features tch
        bench_training train_cpu_tch "$CARGO_TARGET_DIR/release/dermscreen"
    )
}

# The `tch` trainer links the libtorch inside PyTorch's wheel from PyPI (torch-sys 0.22 wants
# exactly 2.9.0; the wheel pulls about 4 GB of CUDA libraries it does not use here), kept in
# target/torch-venv. The binary finds libtorch through LD_LIBRARY_PATH. It builds into its own
# target folder, so switching trainers does not rebuild the other's crates.
need_torch() {
    need_python
    local venv="$PWD/target/torch-venv"
    if ! "$venv/bin/python" -c 'import torch' >/dev/null 2>&1; then
        python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$venv"; }
        "$venv/bin/pip" install --quiet torch==2.9.0
    fi
    local lib
    lib="$("$venv/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)"
    export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" LIBTORCH_USE_PYTORCH=1
    export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" CARGO_TARGET_DIR=target/tch
}

cmd_train() {
    need_rust
    need_python
    need_data
    local name="${1:?usage: ./build.sh train NAME [dermscreen train options]}"
    shift
    # The trainer reads every source under the data root, HAM10000's parent folder. On a GPU
    # machine, DERMSCREEN_TRAIN_FEATURES=vulkan trains through wgpu's Vulkan backend; on a CPU,
    # DERMSCREEN_TRAIN_FEATURES=tch through libtorch, about 2.1x the default's images/s.
    case ",${DERMSCREEN_TRAIN_FEATURES:-}," in *,tch,*) need_torch ;; esac
    local train=(cargo run --release --features "${DERMSCREEN_TRAIN_FEATURES:-train}" -- train
        --data "$(dirname "$DATA")" --out "runs/$name")
    if [ $# -gt 0 ]; then
        "${train[@]}" "$@"
        return
    fi
    # The shipped model's recipe is the trainer's defaults: 30 epochs at 144 px from scratch,
    # batches of 64 (see MODEL_CARD.md). 3-6 h on 2 cores, by machine (`./build.sh bench`,
    # train_cpu), so a run cut short by the end of a session is picked up again from its last
    # epoch by the same command.
    if [ -f "runs/$name/checkpoint/state.json" ]; then
        "${train[@]}" --resume
    else
        "${train[@]}"
    fi
}

# The header comment is the usage.
usage() {
    sed -n '2,/^[^#]/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'
}

case "${1:-}" in
    test) shift; cmd_test "$@" ;;
    lint) shift; cmd_lint "$@" ;;
    serve) shift; cmd_serve "$@" ;;
    site) shift; cmd_site "$@" ;;
    bench) shift; cmd_bench "$@" ;;
    train) shift; cmd_train "$@" ;;
    evaluate) shift; cmd_evaluate "$@" ;;
    help | -h | --help) usage ;;
    *)
        [ -n "${1:-}" ] && echo "build.sh: unknown command '$1'" >&2
        usage >&2
        exit 2
        ;;
esac
