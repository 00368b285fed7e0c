#!/usr/bin/env bash
# The hot path in the three runtimes, one after the other in one run, so the
# figures can be set side by side: `validator.authorize` through wasmtime
# (criterion, with the native decision as baseline), through jco in Node.js,
# and through wasmtime-py in Python, all on the same component bytes.
# Needs what the test command builds (target/release/keygate, the Node.js
# package's gen/, the Python venv and the component in the Python package).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== machine: $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== Rust host (wasmtime), criterion medians"
cargo bench --locked -p keygate --bench validate -- "validator.authorize" 2>/dev/null |
    awk '/^validator\.authorize/ { name = $0 } /time:/ { print "  " name ": " $4 " " $5 }'
echo "== Node.js $(node --version) (jco 1.10.2)"
(cd packages/js && node bench/authorize.js | sed 's/^/  /')
echo "== Python $(target/python-venv/bin/python -c 'import sys; print(sys.version.split()[0])') (wasmtime-py)"
(cd packages/python && ../../target/python-venv/bin/python bench_authorize.py | sed 's/^/  /')
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
