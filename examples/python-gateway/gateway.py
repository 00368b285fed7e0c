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
    KEYGATE_SNAPSHOT         the snapshot file (`keygate snapshot write FILE`,
                             or a delta written with --since over it)
    KEYGATE_TRUSTED_ISSUER   a JSON file from `keygate --json issuer show`
                             (one object, or a list of them)
    HOST, PORT               where to listen (127.0.0.1, 8080; 0 picks a port)
    KEYGATE_POLL_MS          how often the file is checked for a change (1000)
    KEYGATE_MAX_AGE          refuse to decide (503) from a snapshot older than
                             this many seconds (0: never)
    KEYGATE_MAX_SNAPSHOT_MB  largest snapshot file read (1024)

Standard library only, besides keygate_validator (and its wasmtime). The
standard library's HTTP server is a thread per connection: run it behind a
reverse proxy that buffers requests, as any Python service.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import stat
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from keygate_validator import InvalidArgument, KeygateError, SnapshotRefused, Validator

MAX_BODY = 1 << 20
BODY_DEADLINE = 10.0
ROUTE = re.compile(r"^/projects/([^/]+)/workflows/([^/]+)/trigger$")
# RFC 6750: the scheme is case-insensitive; the token is one run of
# characters other than space and tab (the validator refuses the rest).
BEARER = re.compile(r"^bearer +([^ \t]+)[ \t]*$", re.IGNORECASE)
CHALLENGE = 'Bearer realm="keygate"'


def log(line: str) -> None:
    """One line on stderr; dropped if stderr is gone (never fatal)."""
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    try:
        sys.stderr.write(f"{stamp} {line}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def fail(line: str) -> None:
    try:
        sys.stderr.write(f"error: {line}\n")
    finally:
        sys.exit(2)


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, "")
    if value == "":
        if default is None:
            fail(f"{name} is not set")
        return default
    return value


def whole(name: str, default: int, maximum: int) -> int:
    value = env(name, str(default))
    if not value.isascii() or not value.isdigit() or int(value) > maximum:
        fail(f"{name} must be a whole number from 0 to {maximum}, not {value!r}")
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


def read_snapshot(path: str, limit: int, known):
    """The file's identity and bytes (None when the identity is `known`:
    unchanged, not read again). A regular file only (a symlink to one is
    fine; a device, a FIFO or a directory is not), at most `limit` bytes,
    opened without blocking so a FIFO planted under the name cannot stall."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if stamp == known:
            return stamp, None
        if not stat.S_ISREG(st.st_mode):
            raise OSError(0, "not a regular file")
        if st.st_size > limit:
            raise OSError(0, f"larger than {limit} bytes")
        chunks, left = [], st.st_size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return stamp, b"".join(chunks)
    finally:
        os.close(fd)


class Gate:
    """The validator, the snapshot file that feeds it, and a lock: a
    wasmtime store is used by one thread at a time.

    A changed file (a new inode, size or time: `keygate snapshot write`
    replaces it by a rename) is applied; a refused file (cut, forged, older,
    a delta on another base) is logged and the validator keeps answering
    from what it held. The file's identity is remembered only once it was
    read, so a failed read is tried again at the next poll."""

    def __init__(self, path: str, validator: Validator, max_age: int, limit: int):
        self.path = path
        self.validator = validator
        self.max_age = max_age
        self.limit = limit
        self.lock = threading.Lock()
        self._polling = threading.Lock()
        self._stamp = None
        self._failing = None

    def poll(self, force: bool = False) -> bool:
        """Apply the file if it changed (always, with `force`); whether
        something was applied. Never raises: a reload that fails is logged
        and the next poll tries again."""
        with self._polling:
            try:
                return self._poll(force)
            except Exception as e:  # noqa: BLE001 - the watcher must survive anything
                log(f"refused {self.path}: unexpected error: {type(e).__name__}; still answering from sequence {self.sequence()}")
                return False

    def _poll(self, force: bool) -> bool:
        try:
            stamp, data = read_snapshot(self.path, self.limit, None if force else self._stamp)
        except OSError as e:
            why = e.strerror or str(e)
            if self._failing != why:
                log(f"cannot read {self.path} ({why}); still answering from sequence {self.sequence()}")
            self._failing = why
            return False
        self._failing = None
        if data is None:
            return False
        self._stamp = stamp
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

    def looks_like_key(self, text: str) -> bool:
        with self.lock:
            return self.validator.looks_like_key(text)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A client that went away mid-request: one line, not a traceback.
        log(f"connection error: {sys.exc_info()[0].__name__}")


class Handler(BaseHTTPRequestHandler):
    gate: Gate
    protocol_version = "HTTP/1.1"
    server_version = "keygate-example-gateway"
    timeout = 10
    error_content_type = "application/json"
    error_message_format = '{"error": {"code": "http-%(code)d", "message": "%(explain)s"}}'

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        # The default access log would print the request line; keep every
        # line ours: nothing from a request line or header is logged.
        pass

    def send(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("cache-control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def error(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        self.send(status, {"error": {"code": code, "message": message}}, headers)

    def raw_path(self) -> str:
        # The raw path: no URL parsing, no normalisation.
        return self.path.split("?", 1)[0]

    def do_GET(self):
        self.close_connection = True
        if self.raw_path() == "/healthz":
            self.close_connection = False
            stale, body = self.gate.health()
            return self.send(503 if stale else 200, body)
        self.refuse_method()

    def refuse_method(self):
        self.close_connection = True
        path = self.raw_path()
        if ROUTE.match(path):
            return self.error(405, "method-not-allowed", "use POST", {"allow": "POST"})
        if path == "/healthz":
            return self.error(405, "method-not-allowed", "use GET", {"allow": "GET"})
        return self.error(404, "not-found", "no such route")

    def do_HEAD(self):
        self.close_connection = True
        self.send_response(405)
        self.send_header("allow", "GET" if self.raw_path() == "/healthz" else "POST")
        self.send_header("content-length", "0")
        self.end_headers()

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = lambda self: self.refuse_method()  # noqa: E731

    def deny(self, answer, project: str):
        status = 401 if answer.class_ == "unauthenticated" else 403
        log(f"deny {status} {answer.reason} project={json.dumps(project)}")
        headers = {"www-authenticate": f'{CHALLENGE}, error="invalid_token"'} if status == 401 else None
        return self.error(status, answer.reason, answer.message, headers)

    def read_body(self) -> str:
        """Read the body within MAX_BODY bytes and BODY_DEADLINE seconds:
        'ok', 'too-large' or 'too-slow'."""
        length = int(self.headers.get("content-length", "0"))
        if length > MAX_BODY:
            return "too-large"
        deadline = time.monotonic() + BODY_DEADLINE
        left = length
        while left > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "too-slow"
            self.connection.settimeout(remaining)
            try:
                chunk = self.rfile.read1(min(left, 65536))
            except OSError:
                return "too-slow"
            if not chunk:
                return "too-slow"
            left -= len(chunk)
        self.connection.settimeout(self.timeout)
        return "ok"

    def do_POST(self):
        # The client's own wish for the connection (HTTP/1.0, Connection:
        # close) is kept for an accepted request; anything refused closes it
        # (its body is not read).
        keep_alive = not self.close_connection
        self.close_connection = True
        m = ROUTE.match(self.raw_path())
        if m is None:
            return self.refuse_method()
        # No chunked bodies and no ambiguous lengths: a request whose length
        # this server and a proxy in front might read differently is refused.
        if self.headers.get("transfer-encoding") is not None:
            return self.error(501, "transfer-encoding", "chunked or encoded bodies are not accepted; send Content-Length")
        lengths = self.headers.get_all("content-length") or ["0"]
        if len(lengths) != 1 or not lengths[0].isascii() or not lengths[0].isdigit():
            return self.error(400, "bad-length", "send exactly one Content-Length")
        try:
            project = unquote(m.group(1), errors="strict")
            workflow = unquote(m.group(2), errors="strict")
        except UnicodeDecodeError:
            return self.error(400, "bad-path", "the path is not valid percent-encoding")
        # A key never belongs in a URL: refused, and never logged or echoed.
        if self.gate.looks_like_key(project) or self.gate.looks_like_key(workflow):
            log("refused a request with a key in its path (not logged)")
            return self.error(400, "key-in-path", "the path holds an API key: send keys only in the Authorization header")
        auth = self.headers.get("authorization")
        found = BEARER.match(auth.strip(" \t")) if auth else None
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
        key = found.group(1)
        try:
            answer = self.gate.authorize(key, project)
        except InvalidArgument as e:
            return self.error(400, e.code, str(e))
        if not answer.allow:
            return self.deny(answer, project)
        body = self.read_body()  # a real gateway forwards it to the engine
        if body == "too-large":
            return self.error(413, "body-too-large", f"the body is over {MAX_BODY} bytes")
        if body == "too-slow":
            return self.error(408, "body-too-slow", "the body did not arrive in time")
        # Decide again now that the body is in: a key disabled while it was
        # arriving is refused.
        answer = self.gate.authorize(key, project)
        if not answer.allow:
            return self.deny(answer, project)
        self.close_connection = not keep_alive
        execution = str(uuid.uuid4())
        log(
            f"trigger accepted: workflow={json.dumps(workflow)} project={json.dumps(project)} "
            f"key={answer.key_id} execution={execution}"
        )
        self.send(202, {"execution_id": execution, "project": project, "workflow": workflow, "key_id": answer.key_id})


def main() -> None:
    path = env("KEYGATE_SNAPSHOT")
    trusted = trusted_issuers(env("KEYGATE_TRUSTED_ISSUER"))
    poll_ms = max(whole("KEYGATE_POLL_MS", 1000, 3_600_000), 10)
    max_age = whole("KEYGATE_MAX_AGE", 0, 10 * 365 * 86_400)
    limit = whole("KEYGATE_MAX_SNAPSHOT_MB", 1024, 65_536) * 1024 * 1024
    port = whole("PORT", 8080, 65_535)
    try:
        validator = Validator(trusted_issuers=trusted)
    except KeygateError as e:
        fail(f"the trusted issuer file: {e}")
    gate = Gate(path, validator, max_age, limit)
    if not gate.poll():
        fail(f"no usable snapshot in {path}")

    stop = threading.Event()

    def watch():
        while not stop.wait(poll_ms / 1000):
            gate.poll()

    threading.Thread(target=watch, name="snapshot-watch", daemon=True).start()
    Handler.gate = gate
    try:
        server = Server((env("HOST", "127.0.0.1"), port), Handler)
    except OSError as e:
        fail(f"cannot listen: {e.strerror or e}")

    def shutdown(signum, frame):
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGHUP, lambda signum, frame: threading.Thread(target=gate.poll, args=(True,), daemon=True).start())
    host, bound = server.server_address[:2]
    try:
        print(f"listening on http://{host}:{bound}", flush=True)
    except OSError:
        pass
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
