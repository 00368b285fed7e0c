"""Starts the example gateway against a store made by the keygate CLI, sends
allowed and denied triggers, then replaces its snapshot file: a delta that
disables a key, a rollback, garbage, and a newer full snapshot."""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
GATEWAY = HERE.parent / "gateway.py"
REPO = HERE.parent.parent.parent
KEYGATE = os.environ.get("KEYGATE_BIN", str(REPO / "target" / "release" / "keygate"))
ENV = {**os.environ, "PYTHONPATH": str(REPO / "packages" / "python")}


def until(what, check, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if check():
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Gateway(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.d = Path(self.dir.name)
        self.child = None

    def tearDown(self):
        if self.child is not None:
            if self.child.poll() is None:
                self.child.kill()
            self.child.wait()
            self.child.stdout.close()
            self.child.stderr.close()
        self.dir.cleanup()

    def kg(self, *args, input=None):
        r = subprocess.run(
            [KEYGATE, "--data-dir", str(self.d / "store"), *args], input=input, capture_output=True, text=True
        )
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def start(self, snapshot, issuer_file):
        self.child = subprocess.Popen(
            [sys.executable, str(GATEWAY)],
            env={
                **ENV,
                "KEYGATE_SNAPSHOT": str(snapshot),
                "KEYGATE_TRUSTED_ISSUER": str(issuer_file),
                "PORT": "0",
                "KEYGATE_POLL_MS": "50",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr = []
        threading.Thread(target=lambda: self.stderr.extend(self.child.stderr), daemon=True).start()
        line = self.child.stdout.readline()
        m = re.match(r"listening on (\S+)\n$", line)
        self.assertIsNotNone(m, f"{line!r} {''.join(self.stderr)}")
        self.base = m.group(1)

    def log(self):
        return "".join(self.stderr)

    def call(self, path, method="POST", headers=None, body=b'{"input": 1}'):
        req = urllib.request.Request(
            self.base + path, method=method, headers=headers or {}, data=body if method == "POST" else None
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read()), r.headers
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read()), e.headers

    def trigger(self, key, project, **kw):
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        headers.update(kw.pop("headers", {}))
        return self.call(f"/projects/{project}/workflows/nightly-sync/trigger", headers=headers, **kw)

    def outcome(self, key, project, **kw):
        status, body, _ = self.trigger(key, project, **kw)
        return status, body["error"]["code"] if "error" in body else body["key_id"]

    def health(self):
        return self.call("/healthz", method="GET")[1]

    def replace(self, path, data: bytes):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def test_answers_and_follows_its_snapshot_file(self):
        self.kg("org", "create", "acme")
        self.kg("org", "create", "globex")
        p = self.kg("project", "create", "--org", "acme", "billing")
        p2 = self.kg("project", "create", "--org", "acme", "web")
        g = self.kg("project", "create", "--org", "globex", "crm")
        all_key = self.kg("key", "create", "--org", "acme", "--name", "crm-sync", "--all-projects", "--expires", "30d")
        pk = self.kg("key", "create", "--project", p, "--name", "billing-only", "--expires", "30d")
        gone = self.kg("key", "create", "--org", "acme", "--name", "gone", "--all-projects", "--expires", "never")
        self.kg("key", "delete", gone[3:14], "--yes")
        (self.d / "issuer.json").write_text(self.kg("--json", "issuer", "show"))
        snap = self.d / "current.kgs"
        first = json.loads(self.kg("--json", "snapshot", "write", str(snap)))
        original = snap.read_bytes()
        self.start(snap, self.d / "issuer.json")
        all_id, pk_id = all_key[3:14], pk[3:14]

        status, body, _ = self.trigger(all_key, p)
        self.assertEqual(status, 202)
        self.assertEqual((body["key_id"], body["project"], body["workflow"]), (all_id, p, "nightly-sync"))
        self.assertRegex(body["execution_id"], r"^[0-9a-f-]{36}$")
        self.assertEqual(self.outcome(all_key, p2), (202, all_id))
        self.assertEqual(self.outcome(pk, p), (202, pk_id))

        status, body, headers = self.trigger(None, p)
        self.assertEqual((status, body["error"]["code"]), (401, "missing-credentials"))
        self.assertEqual(headers["www-authenticate"], 'Bearer realm="keygate"')
        self.assertEqual(
            self.outcome(None, p, headers={"Authorization": f"Basic {all_key}"}), (401, "missing-credentials")
        )
        status, body, headers = self.trigger("kg_nope", p)
        self.assertEqual((status, body), (401, {"error": {"code": "malformed", "message": "malformed key"}}))
        self.assertEqual(headers["www-authenticate"], 'Bearer realm="keygate", error="invalid_token"')
        self.assertEqual(self.outcome(gone, p), (401, "unknown-key"))
        self.assertEqual(self.outcome(all_key, g), (403, "wrong-organization"))
        self.assertEqual(self.outcome(pk, p2), (403, "project-not-granted"))
        self.assertEqual(self.outcome(all_key, "prj_nosuchproject"), (403, "unknown-project"))
        self.assertEqual(self.outcome(all_key, p, method="GET"), (405, "method-not-allowed"))
        self.assertEqual(self.health()["sequence"], first["sequence"])

        # A delta that disables the org key, written over the file.
        self.kg("key", "disable", all_id)
        delta = json.loads(self.kg("--json", "snapshot", "write", str(snap), "--since", str(first["sequence"])))
        until("the delta", lambda: self.health()["sequence"] == delta["sequence"])
        self.assertEqual(self.outcome(all_key, p), (403, "disabled"))
        self.assertEqual(self.outcome(pk, p), (202, pk_id))

        # A rollback to the first snapshot is refused; the disable holds.
        self.replace(snap, original)
        until("the rollback refusal", lambda: re.search(r"refused .*not newer than the held sequence", self.log()))
        self.assertEqual(self.health()["sequence"], delta["sequence"])
        self.assertEqual(self.outcome(all_key, p), (403, "disabled"))

        # Garbage is refused too.
        self.replace(snap, b"not a snapshot")
        until("the garbage refusal", lambda: "refused" in self.log() and "not a canonical keygate snapshot" in self.log())
        self.assertEqual(self.outcome(all_key, p), (403, "disabled"))

        # A newer full snapshot replaces everything: the key is enabled again.
        self.kg("key", "enable", all_id)
        full = json.loads(self.kg("--json", "snapshot", "write", str(snap)))
        until("the newer snapshot", lambda: self.health()["sequence"] == full["sequence"])
        self.assertEqual(self.outcome(all_key, p), (202, all_id))

        # Hostile input: an unparseable target, a key in the path, chunked
        # or ambiguous bodies, a FIFO or a device under the snapshot's name.
        port = int(self.base.rsplit(":", 1)[1])

        def raw(data: bytes, wait: float = 5.0) -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
                sock.sendall(data)
                got = b""
                while True:
                    try:
                        chunk = sock.recv(65536)
                    except socket.timeout:
                        break
                    if not chunk:
                        break
                    got += chunk
                return got

        self.assertTrue(raw(b"GET //x:99999/ HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 404 "))
        self.assertEqual(self.outcome(all_key, all_key), (400, "key-in-path"))
        auth = f"Authorization: Bearer {all_key}\r\n".encode()
        head = f"POST /projects/{p}/workflows/w/trigger HTTP/1.1\r\nHost: x\r\n".encode() + auth
        chunked = raw(head + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        self.assertTrue(chunked.startswith(b"HTTP/1.1 501 "), chunked)
        twice = raw(head + b"Content-Length: 0\r\nContent-Length: 5\r\n\r\nhello")
        self.assertTrue(twice.startswith(b"HTTP/1.1 400 "), twice)
        started = time.monotonic()
        old = raw(f"POST /projects/{p}/workflows/w/trigger HTTP/1.0\r\n".encode() + auth + b"Content-Length: 2\r\n\r\n{}")
        self.assertTrue(old.startswith(b"HTTP/1.1 202 ") and b"connection: close" in old, old)
        self.assertLess(time.monotonic() - started, 2.0, "an HTTP/1.0 request's connection was kept open")
        fifo = self.d / "fifo"
        os.mkfifo(fifo)
        os.replace(fifo, snap)
        until("the FIFO refusal", lambda: "(not a regular file)" in self.log())
        os.symlink("/dev/zero", self.d / "zero")
        os.replace(self.d / "zero", snap)
        time.sleep(0.2)
        self.assertEqual(self.outcome(all_key, p), (202, all_id))
        self.assertEqual(self.health()["sequence"], full["sequence"])

        # A key disabled while its request's body is arriving is refused.
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(head + b"Content-Type: application/json\r\nContent-Length: 10\r\n\r\n{\"a\":")
        self.kg("key", "disable", all_id)
        last = json.loads(self.kg("--json", "snapshot", "write", str(snap)))
        until("the disable", lambda: self.health()["sequence"] == last["sequence"])
        sock.sendall(b"1}   ")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        sock.close()
        self.assertTrue(answer.startswith(b"HTTP/1.1 403 "), answer)
        self.assertIn(b'"code": "disabled"', answer)

        self.child.send_signal(15)
        self.assertEqual(self.child.wait(timeout=10), 0)
        log = self.log()
        for k in (all_key, pk, gone):
            self.assertNotIn(k[14:], log, "a secret reached the log")
        self.assertIn(f'trigger accepted: workflow="nightly-sync" project="{p}" key={all_id}', log)

    def test_refuses_to_start_without_a_usable_snapshot_or_a_valid_issuer(self):
        self.kg("init")
        issuer = self.kg("--json", "issuer", "show")
        (self.d / "issuer.json").write_text(issuer)
        bad = self.d / "bad.kgs"
        bad.write_bytes(b"garbage")

        def start(issuer_file):
            return subprocess.run(
                [sys.executable, str(GATEWAY)],
                env={**ENV, "KEYGATE_SNAPSHOT": str(bad), "KEYGATE_TRUSTED_ISSUER": str(issuer_file), "PORT": "0"},
                capture_output=True,
                text=True,
                timeout=20,
            )

        r = start(self.d / "issuer.json")
        self.assertEqual((r.returncode, r.stdout), (2, ""))
        self.assertTrue(r.stderr.endswith(f"error: no usable snapshot in {bad}\n"), r.stderr)
        self.assertRegex(r.stderr, r"refused .*bad\.kgs: snapshot refused: the bytes are not a canonical keygate snapshot")
        wrong = json.loads(issuer)
        wrong["issuer_key_id"] = "ab" * 8
        (self.d / "wrong.json").write_text(json.dumps(wrong))
        r = start(self.d / "wrong.json")
        self.assertEqual(r.returncode, 2)
        self.assertRegex(r.stderr, r"^error: the trusted issuer file: trusted_issuers\[0\] is not a valid issuer key")


if __name__ == "__main__":
    unittest.main()
