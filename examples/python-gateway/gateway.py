#!/usr/bin/env python3
"""An example API gateway in front of a workflow engine: every trigger
request carries an API key, and keygate's validator (the same WebAssembly
component as the keygate host) decides, in process, from a signed snapshot
file that this gateway reloads whenever it changes.

    POST /projects/{project}/workflows/{workflow}/trigger
    Authorization: Bearer kg_...

202: accepted. 401: no live, genuine key (missing, malformed, unknown, wrong
secret, forged record). 403: a genuine key that may not do this (another
organization, disabled, expired, not yet valid, not granted, unknown or
deleted project). 503: the held snapshot is older than KEYGATE_MAX_AGE.
GET /healthz tells the held sequence.

Configuration (environment), as in the Node.js example:
    KEYGATE_SNAPSHOT        the snapshot file (`keygate snapshot write FILE`,
                            or a delta written with --since over it)
    KEYGATE_TRUSTED_ISSUER  a JSON file from `keygate --json issuer show`
                            (one object, or a list of them)
    HOST, PORT              where to listen (127.0.0.1, 8080; 0 picks a port)
    KEYGATE_POLL_MS         how often the file is checked for a change (1000)
    KEYGATE_MAX_AGE         refuse to decide (503) from a snapshot older than
                            this many seconds (0: never)

Standard library only, besides keygate_validator (and its wasmtime).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from keygate_validator import InvalidArgument, KeygateError, SnapshotRefused, Validator

MAX_BODY = 1 << 20
ROUTE = re.compile(r"^/projects/([^/]+)/workflows/([^/]+)/trigger$")
BEARER = re.compile(r"^bearer +(\S+) *$", re.IGNORECASE)
CHALLENGE = 'Bearer realm="keygate"'


def log(line: str) -> None:
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    sys.stderr.write(f"{stamp} {line}\n")
    sys.stderr.flush()


def fail(line: str) -> None:
    sys.stderr.write(f"error: {line}\n")
    sys.exit(2)


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, "")
    if value == "":
        if default is None:
            fail(f"{name} is not set")
        return default
    return value


def whole(name: str, default: int) -> int:
    value = env(name, str(default))
    if not value.isdigit() or not value.isascii():
        fail(f"{name} must be a whole number, not {value!r}")
    return int(value)


def trusted_issuers(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            parsed = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read the trusted issuer file {path}: {e}")
    items = parsed if isinstance(parsed, list) else [parsed]
    return [
        {"id": i.get("issuer_key_id", ""), "public_key": i.get("public_key", "")} if isinstance(i, dict) else {}
        for i in items
    ]


class Gate:
    """The validator, the snapshot file that feeds it, and a lock: a
    wasmtime store is used by one thread at a time.

    A change of the file (a new inode, size or time: `keygate snapshot write`
    replaces it by a rename) is applied; a refused file (cut, forged, older,
    a delta on another base) is logged and the validator keeps answering
    from what it held."""

    def __init__(self, path: str, validator: Validator, max_age: int):
        self.path = path
        self.validator = validator
        self.max_age = max_age
        self.lock = threading.Lock()
        self._polling = threading.Lock()
        self._stamp: object = None

    def poll(self) -> bool:
        """Apply the file if it changed; whether something was applied."""
        with self._polling:
            return self._poll()

    def _poll(self) -> bool:
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError as e:
            if self._stamp != "missing":
                log(f"cannot read {self.path} ({e.strerror}); still answering from sequence {self.sequence()}")
            self._stamp = "missing"
            return False
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError as e:
            log(f"cannot read {self.path} ({e.strerror}); still answering from sequence {self.sequence()}")
            return False
        try:
            with self.lock:
                info = self.validator.apply(data)
        except SnapshotRefused as e:
            log(f"refused {self.path}: {e}; still answering from sequence {self.sequence()}")
            return False
        kind = "snapshot" if info.base is None else f"delta on {info.base}"
        log(
            f"loaded {kind}: sequence {info.sequence}, {info.keys} keys, "
            f"{info.projects} projects, {info.tombstones} tombstones"
        )
        return True

    def sequence(self):
        with self.lock:
            return self.validator.sequence

    def health(self) -> tuple[bool, dict]:
        with self.lock:
            seq, made = self.validator.sequence, self.validator.snapshot_time
        age = None if made is None else int(time.time()) - made
        stale = self.max_age > 0 and (age is None or age > self.max_age)
        return stale, {"sequence": seq, "snapshot_time": made, "age_seconds": age}

    def authorize(self, key: str, project: str):
        with self.lock:
            return self.validator.authorize(key, project)


class Handler(BaseHTTPRequestHandler):
    gate: Gate
    protocol_version = "HTTP/1.1"
    server_version = "keygate-example-gateway"
    timeout = 30

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        # The default access log would print the request line only, but keep
        # every line ours: nothing from a header is ever logged.
        pass

    def send(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("cache-control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def error(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        self.send(status, {"error": {"code": code, "message": message}}, headers)

    def route(self):
        path = urlsplit(self.path).path
        if path == "/healthz":
            return "health", None
        m = ROUTE.match(path)
        return ("trigger", m) if m else (None, None)

    def do_GET(self):
        kind, _ = self.route()
        if kind == "health":
            stale, body = self.gate.health()
            return self.send(503 if stale else 200, body)
        self.refuse_method(kind)

    def refuse_method(self, kind):
        if kind == "trigger":
            self.close_connection = True
            return self.error(405, "method-not-allowed", "use POST", {"allow": "POST"})
        self.close_connection = True
        return self.error(404, "not-found", "no such route")

    do_PUT = do_DELETE = do_PATCH = lambda self: self.refuse_method(self.route()[0])  # noqa: E731

    def do_POST(self):
        kind, m = self.route()
        if kind != "trigger":
            return self.refuse_method(kind)
        # Denied requests are answered without reading their body.
        self.close_connection = True
        try:
            project = unquote(m.group(1), errors="strict")
            workflow = unquote(m.group(2), errors="strict")
        except UnicodeDecodeError:
            return self.error(400, "bad-path", "the path is not valid percent-encoding")
        auth = self.headers.get("authorization")
        found = BEARER.match(auth) if auth else None
        if found is None:
            return self.error(
                401,
                "missing-credentials",
                "send the API key as Authorization: Bearer <key>",
                {"www-authenticate": CHALLENGE},
            )
        stale, _ = self.gate.health()
        if stale:
            return self.error(503, "snapshot-stale", "the key snapshot is too old to decide from", {"retry-after": "5"})
        try:
            answer = self.gate.authorize(found.group(1), project)
        except InvalidArgument as e:
            return self.error(400, e.code, str(e))
        if not answer.allow:
            status = 401 if answer.class_ == "unauthenticated" else 403
            log(f"deny {status} {answer.reason} project={json.dumps(project)}")
            headers = {"www-authenticate": f'{CHALLENGE}, error="invalid_token"'} if status == 401 else None
            return self.error(status, answer.reason, answer.message, headers)
        length = self.headers.get("content-length", "0")
        if not length.isdigit() or not length.isascii():
            return self.error(411, "length-required", "send a Content-Length")
        if int(length) > MAX_BODY:
            return self.error(413, "body-too-large", f"the body is over {MAX_BODY} bytes")
        self.rfile.read(int(length))  # a real gateway forwards it to the engine
        self.close_connection = False
        execution = str(uuid.uuid4())
        log(
            f"trigger accepted: workflow={json.dumps(workflow)} project={json.dumps(project)} "
            f"key={answer.key_id} execution={execution}"
        )
        self.send(202, {"execution_id": execution, "project": project, "workflow": workflow, "key_id": answer.key_id})


def main() -> None:
    path = env("KEYGATE_SNAPSHOT")
    trusted = trusted_issuers(env("KEYGATE_TRUSTED_ISSUER"))
    poll_ms = whole("KEYGATE_POLL_MS", 1000)
    max_age = whole("KEYGATE_MAX_AGE", 0)
    try:
        validator = Validator(trusted_issuers=trusted)
    except KeygateError as e:
        fail(f"the trusted issuer file: {e}")
    gate = Gate(path, validator, max_age)
    if not gate.poll():
        fail(f"no usable snapshot in {path}")

    stop = threading.Event()

    def watch():
        while not stop.wait(max(poll_ms, 10) / 1000):
            gate.poll()

    threading.Thread(target=watch, name="snapshot-watch", daemon=True).start()
    Handler.gate = gate
    server = ThreadingHTTPServer((env("HOST", "127.0.0.1"), whole("PORT", 8080)), Handler)
    server.daemon_threads = True

    def shutdown(signum, frame):
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGHUP, lambda signum, frame: threading.Thread(target=gate.poll, daemon=True).start())
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
