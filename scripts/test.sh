#!/usr/bin/env bash
# Runs every keygate test: native unit, property and vector tests; the
# component and end-to-end tests through wasmtime; then the policy tests
# compiled to wasm32-wasip2 and run inside wasmtime by keygate-wasm-runner;
# then the Node.js package (the same component through jco) and the Python
# package (through wasmtime-py) against the vectors and against snapshots
# made by the CLI; then the example gateways (Node.js and Python) over HTTP.
# Release profile throughout: wasmtime is built once and shared by all steps.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "== installing the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
fi

if [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/chromium ]; then
    echo "error: the page's browser tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run installs them)" >&2
    exit 1
fi

echo "== native: policy, host, component and end-to-end (CLI, service, browser) tests"
# One build of everything the tests run: the keygate binary the CLI tests
# drive, the wasm test runner, and every test target. One cargo invocation
# over the same packages as `cargo test` below, so that features unify the
# same way and wasmtime is compiled once (a `-p keygate` build here, and
# another for the runner, each compiled it again: three times per clean run).
# (The Cedar comparison, keygate-compare, is a benchmark: never built here.)
cargo build --release --locked --workspace --exclude keygate-guest --exclude keygate-compare --bins --tests
cargo test --release --locked

echo "== in-guest: keygate-policy tests on wasm32-wasip2 inside wasmtime"
# (the runner, target/release/keygate-wasm-runner, was built above)
cargo test --release --locked -p keygate-policy --lib --target wasm32-wasip2

echo "== Node.js package: the component through jco, vectors and CLI-made snapshots"
(
    cd packages/js
    if [ ! -d node_modules ]; then
        npm ci --no-audit --no-fund
    fi
    npm test
)

echo "== Python package: the component through wasmtime-py, vectors and CLI-made snapshots"
PYENV=target/python-venv
if [ ! -x "$PYENV/bin/python" ]; then
    python3 -m venv "$PYENV"
    "$PYENV/bin/pip" install --quiet -r packages/python/requirements.txt
fi
PYTHON="$PWD/$PYENV/bin/python" KEYGATE_BIN="$PWD/target/release/keygate" packages/python/run_tests.sh

echo "== example gateways: HTTP triggers authorized from a snapshot file the CLI rewrites"
(
    cd examples/node-gateway
    if [ ! -d node_modules ]; then
        npm ci --no-audit --no-fund
    fi
    KEYGATE_BIN="$ROOT/target/release/keygate" npm test
)
(
    cd examples/python-gateway
    KEYGATE_BIN="$ROOT/target/release/keygate" "$ROOT/$PYENV/bin/python" -m unittest discover -s tests -v
)
