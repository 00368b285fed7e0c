"""The Python package against the shared vectors and against snapshots and
deltas made by the keygate CLI during the test."""

import datetime as dt
import hashlib
import json
import os
import subprocess
import tempfile
import unittest
from pathlib import Path

from keygate_validator import Allow, Deny, InvalidArgument, SnapshotRefused, Validator

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
KEYGATE = os.environ.get("KEYGATE_BIN", str(REPO / "target" / "release" / "keygate"))
VECTORS = json.loads((REPO / "tests" / "vectors" / "policy-v2.json").read_text())
ISSUERS = [{"id": VECTORS["issuer"]["key_id"], "public_key": VECTORS["issuer"]["public_key"]}]
FULL = bytes.fromhex(VECTORS["snapshots"][0]["file"])
DELTA = bytes.fromhex(VECTORS["snapshots"][1]["file"])
KEY = VECTORS["keys"][0]["key"]


class Vectors(unittest.TestCase):
    def test_the_package_runs_the_exact_component_bytes_the_host_embeds(self):
        with tempfile.TemporaryDirectory() as d:
            out = subprocess.run(
                [KEYGATE, "module", "write", f"{d}/k.wasm"], capture_output=True, text=True, check=True
            ).stdout
        ours = hashlib.sha256((REPO / "packages" / "python" / "keygate_validator" / "keygate.wasm").read_bytes())
        self.assertEqual(ours.hexdigest(), out.split()[0])

    def test_the_vector_snapshot_decides_every_validator_case(self):
        v = Validator.from_snapshot(FULL, trusted_issuers=ISSUERS)
        self.assertEqual(v.sequence, 7)
        compared = 0
        for c in VECTORS["cases"]:
            if not c["validator"]:
                continue
            q = c["request"]
            got = v.authorize(q["presented_key"], q["project"], now=q["now"])
            if "allow" in c["expect"]:
                a = c["expect"]["allow"]
                self.assertEqual(got, Allow(a["key_id"], a["record_version"], a["expires_at"]), c["name"])
            else:
                self.assertEqual((got.allow, got.reason), (False, c["expect"]["deny"]), c["name"])
            compared += 1
        self.assertEqual(compared, 28)
        info = v.apply(DELTA)
        self.assertEqual((info.sequence, info.base, info.keys), (9, 7, 1))
        self.assertEqual(v.authorize(KEY, "prj_alpha", now=1800000001), Deny("disabled", "forbidden", "key disabled"))
        self.assertEqual(
            v.authorize("kg_nope", "prj_alpha", now=1800000001),
            Deny("malformed", "unauthenticated", "malformed key"),
        )

    def test_bad_snapshots_are_refused_and_the_validator_keeps_answering(self):
        fresh = Validator(trusted_issuers=ISSUERS)
        with self.assertRaises(SnapshotRefused) as e:
            fresh.apply(DELTA)
        self.assertEqual(e.exception.code, "base-mismatch")
        v = Validator.from_snapshot(FULL, trusted_issuers=ISSUERS)
        before = v.authorize(KEY, "prj_alpha", now=1800000001)
        self.assertTrue(before.allow)
        for pos in (0, 5, 40, len(FULL) - 70, len(FULL) - 1):
            bad = bytearray(FULL)
            bad[pos] ^= 0x10
            with self.assertRaises(SnapshotRefused, msg=f"flip at {pos}"):
                v.apply(bytes(bad))
        def code(data):
            try:
                v.apply(data)
            except SnapshotRefused as e:
                return e.code
            return "applied"

        self.assertEqual(
            [code(FULL[:100]), code(FULL[:-1]), code(FULL + b"\0"), code(b"")],
            ["not-canonical", "not-canonical", "not-canonical", "not-canonical"],
        )
        with self.assertRaises(SnapshotRefused) as e:
            v.apply(FULL)
        self.assertEqual(e.exception.code, "not-newer")
        self.assertIn("not newer than the held sequence 7", str(e.exception))
        self.assertEqual(v.authorize(KEY, "prj_alpha", now=1800000001), before)
        with self.assertRaises(InvalidArgument):
            Validator(trusted_issuers=[{"id": "ab" * 8, "public_key": "00" * 32}])

    def test_a_snapshot_in_pieces_loads_and_refuses_like_the_whole_file(self):
        whole = Validator.from_snapshot(FULL, trusted_issuers=ISSUERS, snapshot_piece_bytes=len(FULL))
        for piece in (1, 7, 1000):
            v = Validator.from_snapshot(FULL, trusted_issuers=ISSUERS, snapshot_piece_bytes=piece)
            self.assertEqual((v.sequence, v.snapshot_time), (whole.sequence, whole.snapshot_time))
            for c in [c for c in VECTORS["cases"] if c["validator"]]:
                q = c["request"]
                self.assertEqual(
                    v.authorize(q["presented_key"], q["project"], now=q["now"]),
                    whole.authorize(q["presented_key"], q["project"], now=q["now"]),
                    c["name"],
                )
            bad_signature = bytearray(DELTA)
            bad_signature[-1] ^= 1
            bad_count = bytearray(DELTA)
            bad_count[48] ^= 0x10
            for bad, refusal in ((bad_signature, "signature-invalid"), (bad_count, "not-canonical")):
                with self.assertRaises(SnapshotRefused) as e:
                    v.apply(bytes(bad))
                self.assertEqual(e.exception.code, refusal)
            self.assertEqual(v.apply(DELTA).sequence, 9)
            self.assertEqual(v.authorize(KEY, "prj_alpha", now=1800000001).reason, "disabled")
        for piece in (0, 1.5, "7", True):
            with self.assertRaises(InvalidArgument):
                Validator(trusted_issuers=ISSUERS, snapshot_piece_bytes=piece)

    def test_looks_like_key_asks_the_component(self):
        v = Validator.from_snapshot(FULL, trusted_issuers=ISSUERS)
        texts = [KEY, KEY[:14], KEY[3:50], "prj_alpha", "nightly-sync", "deadbeef" * 8]
        # A prefixed key id alone is not a secret (and no prefix is given here).
        self.assertEqual([v.looks_like_key(t) for t in texts], [True, False, True, False, False, False])
        with self.assertRaises(InvalidArgument):
            v.looks_like_key(42)

    def test_wrong_types_are_errors_never_a_silently_wrong_decision(self):
        v = Validator.from_snapshot(FULL, trusted_issuers=ISSUERS)
        for now in (-1, 1.5, "1800000001", True, dt.datetime(2027, 1, 1)):
            with self.assertRaises(InvalidArgument, msg=repr(now)):
                v.authorize(KEY, "prj_alpha", now=now)
        with self.assertRaises(InvalidArgument):
            v.apply(VECTORS["snapshots"][0]["file"])
        with self.assertRaises(InvalidArgument):
            v.authorize(KEY, "prj_alpha", action="delete-workflows")
        when = dt.datetime.fromtimestamp(1800000001, tz=dt.timezone.utc)
        self.assertTrue(v.authorize(KEY, "prj_alpha", now=when).allow)


class CliSnapshots(unittest.TestCase):
    def test_snapshots_and_deltas_made_by_the_cli_decide_like_verify(self):
        with tempfile.TemporaryDirectory() as d:
            def run(args, key=None):
                return subprocess.run([KEYGATE, "--data-dir", d, *args], input=key, capture_output=True, text=True)

            def ok(args):
                r = run(args)
                self.assertEqual(r.returncode, 0, r.stderr)
                return r.stdout.strip()

            ok(["org", "create", "acme"])
            ok(["org", "create", "globex"])
            p = ok(["project", "create", "--org", "acme", "P"])
            g = ok(["project", "create", "--org", "globex", "G"])
            all_key = ok(["key", "create", "--org", "acme", "--name", "all", "--all-projects", "--expires", "never"])
            proj_key = ok(["key", "create", "--project", p, "--name", "pk", "--expires", "30d"])
            issuer = json.loads(ok(["--json", "issuer", "show"]))
            trusted = [{"id": issuer["issuer_key_id"], "public_key": issuer["public_key"]}]
            ok(["snapshot", "write", f"{d}/full.kgs"])
            v = Validator.from_snapshot(Path(f"{d}/full.kgs").read_bytes(), trusted_issuers=trusted)
            # The vectors' snapshot, signed by another issuer, is foreign here.
            with self.assertRaises(SnapshotRefused) as e:
                Validator.from_snapshot(FULL, trusted_issuers=trusted)
            self.assertEqual(e.exception.code, "signature-invalid")

            def verify(key, project):
                j = json.loads(run(["--json", "verify", "--project", project], key).stdout)
                return True if j["decision"] == "allow" else (j["reason"], j["class"])

            for key, project in [(all_key, p), (all_key, g), (proj_key, p), (proj_key, g), ("kg_nope", p)]:
                got = v.authorize(key, project)
                self.assertEqual(True if got.allow else (got.reason, got.class_), verify(key, project))
            base = v.sequence
            ok(["key", "disable", all_key[3:14]])
            ok(["snapshot", "write", f"{d}/delta.kgs", "--since", str(base)])
            info = v.apply(Path(f"{d}/delta.kgs").read_bytes())
            self.assertEqual(info.base, base)
            self.assertEqual(v.authorize(all_key, p), Deny("disabled", "forbidden", "key disabled"))
            self.assertEqual(verify(all_key, p), ("disabled", "forbidden"))


if __name__ == "__main__":
    unittest.main()
