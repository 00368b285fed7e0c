#!/usr/bin/env bash
# Tests of the Python package: puts the component `keygate module write`
# emits into the package, then runs the tests with the interpreter given
# (default python3), which must have the pinned requirements installed.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
KEYGATE="${KEYGATE_BIN:-../../target/release/keygate}"
"$KEYGATE" module write keygate_validator/keygate.wasm > /dev/null 2>&1
"$PY" -m unittest discover -s tests -v
