"""Time Validator.authorize and a snapshot load on the vector snapshot.
Run: python bench_authorize.py (after run_tests.sh has put the component in place).
With KEYGATE_SNAPSHOT=FILE KEYGATE_ISSUER=ID:PUBLIC_KEY_HEX (as printed by
`KEYGATE_SCALE_WRITE=FILE cargo bench -p keygate --bench snapshot_scale`), it
also times loading that big snapshot."""

import os

import json
import time
from pathlib import Path

from keygate_validator import Validator

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "tests" / "vectors" / "policy-v2.json").read_text())
ISSUERS = [{"id": VECTORS["issuer"]["key_id"], "public_key": VECTORS["issuer"]["public_key"]}]
FULL = bytes.fromhex(VECTORS["snapshots"][0]["file"])
KEY = VECTORS["keys"][0]["key"]

t = time.perf_counter()
v = Validator.from_snapshot(FULL, trusted_issuers=ISSUERS)
print(f"first validator (compile + instantiate + load {len(FULL)} bytes): {(time.perf_counter() - t) * 1e3:.1f} ms")
for label, project in (("allowed", "prj_alpha"), ("denied (unknown project)", "prj_nowhere")):
    n = 5000
    for _ in range(500):
        v.authorize(KEY, project, now=1800000001)
    t = time.perf_counter()
    for _ in range(n):
        v.authorize(KEY, project, now=1800000001)
    print(f"authorize, {label}: {(time.perf_counter() - t) / n * 1e6:.1f} µs per call")

big = os.environ.get("KEYGATE_SNAPSHOT")
if big:
    issuer_id, pk = os.environ["KEYGATE_ISSUER"].split(":")
    data = Path(big).read_bytes()
    t = time.perf_counter()
    w = Validator.from_snapshot(data, trusted_issuers=[{"id": issuer_id, "public_key": pk}])
    print(f"load of {len(data)} bytes ({w.sequence} keys' snapshot): {time.perf_counter() - t:.2f} s")
