"""keygate's validator for Python: the very component the keygate host runs,
loaded with wasmtime-py, behind a small API. Decisions come from the
component; this module only converts arguments and answers.

    from keygate_validator import Validator
    v = Validator.from_snapshot(open("snapshot.kgs", "rb").read(),
                                trusted_issuers=[{"id": "...", "public_key": "..."}])
    v.authorize(key, "prj_...")   # Allow(key_id=..., ...) or Deny(reason="expired", class_="forbidden", ...)
"""

from __future__ import annotations

import datetime as _dt
import time as _time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Union

import wasmtime
from wasmtime.component import Component, Linker, Record, Variant

__all__ = [
    "Allow",
    "Deny",
    "InvalidArgument",
    "KeygateError",
    "SnapshotInfo",
    "SnapshotRefused",
    "Validator",
]

_INTERFACE = "keygate:policy/policy@0.2.0"
_COMPONENT = Path(__file__).with_name("keygate.wasm")


class KeygateError(Exception):
    """Base class of every error this package raises."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


class SnapshotRefused(KeygateError):
    """A snapshot or delta was refused; the validator keeps what it held."""


class InvalidArgument(KeygateError, TypeError):
    """An argument of the wrong type or range."""


@dataclass(frozen=True)
class Allow:
    """The key may act."""

    key_id: str
    record_version: int
    expires_at: Optional[int]
    allow: bool = True


@dataclass(frozen=True)
class Deny:
    """The key may not act, for `reason` (as in the WIT: `expired`, ...).
    `class_` is `unauthenticated` (answer 401: no live, genuine key was
    presented) or `forbidden` (answer 403); `message` is one line for people."""

    reason: str
    class_: str
    message: str
    allow: bool = False


@dataclass(frozen=True)
class SnapshotInfo:
    """What a snapshot or delta held."""

    sequence: int
    base: Optional[int]
    made_at: int
    organizations: int
    keys: int
    projects: int
    tombstones: int


_REFUSALS = {
    "not-canonical": lambda held: "the bytes are not a canonical keygate snapshot",
    "signature-invalid": lambda held: "the snapshot signature does not verify against a trusted issuer key",
    "not-newer": lambda held: f"the snapshot is not newer than the held sequence {held} (a rollback or a replay)",
    "base-mismatch": lambda held: "a delta needs its base snapshot loaded first"
    if held is None
    else f"the delta does not apply on the held sequence {held}",
}


# A snapshot file ends with its 64-byte ed25519 signature.
_SIGNATURE_LENGTH = 64
# How much of a snapshot is copied into the component at a time.
_SNAPSHOT_PIECE = 1 << 20


class _Runtime:
    """The compiled component and its function handles, made once per process."""

    _shared: Optional["_Runtime"] = None

    def __init__(self, wasm: bytes):
        self.engine = wasmtime.Engine()
        self.component = Component(self.engine, wasm)

    @classmethod
    def get(cls) -> "_Runtime":
        if cls._shared is None:
            cls._shared = cls(_COMPONENT.read_bytes())
        return cls._shared


def _seconds(now) -> int:
    if now is None:
        return int(_time.time())
    if isinstance(now, _dt.datetime):
        if now.tzinfo is None:
            raise InvalidArgument("now must be an aware datetime (with a time zone)", "bad-time")
        ts = now.timestamp()
        if ts < 0:
            raise InvalidArgument("now must be after 1970", "bad-time")
        return int(ts)
    if isinstance(now, bool) or not isinstance(now, int) or now < 0 or now >= 2**64:
        raise InvalidArgument(
            "now must be a datetime or a whole, non-negative number of seconds since 1970",
            "bad-time",
        )
    return now


def _bytes(value, what: str) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise InvalidArgument(f"{what} must be bytes, not {type(value).__name__}", "bad-bytes")


def _info(r: Record) -> SnapshotInfo:
    return SnapshotInfo(
        sequence=getattr(r, "sequence"),
        base=getattr(r, "base"),
        made_at=getattr(r, "made-at"),
        organizations=getattr(r, "organizations"),
        keys=getattr(r, "keys"),
        projects=getattr(r, "projects"),
        tombstones=getattr(r, "tombstones"),
    )


class Validator:
    """A validator fed by signed snapshots: `Validator.from_snapshot(...)`."""

    def __init__(
        self,
        *,
        trusted_issuers: Iterable[Mapping[str, Union[str, bytes]]],
        snapshot_piece_bytes: int = _SNAPSHOT_PIECE,
    ):
        """`snapshot_piece_bytes`: how much of a snapshot is copied into the
        component at a time (default 1 MiB). The component's memory never
        shrinks, so it keeps only this much of a file, never all of it."""
        if (
            isinstance(snapshot_piece_bytes, bool)
            or not isinstance(snapshot_piece_bytes, int)
            or snapshot_piece_bytes < 1
        ):
            raise InvalidArgument("snapshot_piece_bytes must be a positive whole number", "bad-argument")
        self._piece = snapshot_piece_bytes
        rt = _Runtime.get()
        self._store = wasmtime.Store(rt.engine)
        instance = Linker(rt.engine).instantiate(self._store, rt.component)
        iface = instance.get_export_index(self._store, _INTERFACE)

        def func(name: str):
            return instance.get_func(self._store, instance.get_export_index(self._store, name, iface))

        # Function handles are looked up once: wasmtime-py re-reads types on
        # every lookup.
        self._check_issuer = func("check-issuer-key")
        self._authorize = func("[method]validator.authorize")
        # Snapshots go in as hex text: wasmtime-py lowers a string about a
        # thousand times faster per character than a list<u8> per byte.
        self._load = func("[method]validator.load-snapshot-hex")
        self._begin = func("[method]validator.begin-snapshot")
        self._feed = func("[method]snapshot-stream.feed-hex")
        self._finish = func("[method]validator.finish-snapshot")
        self._sequence = func("[method]validator.sequence")
        self._snapshot_time = func("[method]validator.snapshot-time")
        self._looks_like_key = func("looks-like-key")
        self._classify = func("classify-deny")
        self._reason_text = func("deny-reason-text")
        # Asked of the component once per reason: the rule lives there.
        self._denials: dict = {}
        keys = []
        for i, t in enumerate(list(trusted_issuers)):
            key = Record()
            setattr(key, "id", str(t.get("id", "")))
            pk = t.get("public_key", "")
            try:
                setattr(key, "public-key", bytes.fromhex(pk) if isinstance(pk, str) else _bytes(pk, "public_key"))
            except ValueError:
                raise InvalidArgument(f"trusted_issuers[{i}].public_key is not hex", "bad-issuer") from None
            if self._check_issuer(self._store, key) is not None:
                raise InvalidArgument(f"trusted_issuers[{i}] is not a valid issuer key", "bad-issuer")
            keys.append(key)
        if not keys:
            raise InvalidArgument("trusted_issuers must name at least one issuer key", "bad-issuer")
        self._validator = func("[constructor]validator")(self._store, keys)

    @classmethod
    def from_snapshot(
        cls, data: bytes, *, trusted_issuers, snapshot_piece_bytes: int = _SNAPSHOT_PIECE
    ) -> "Validator":
        """A validator holding the snapshot `data`."""
        v = cls(trusted_issuers=trusted_issuers, snapshot_piece_bytes=snapshot_piece_bytes)
        v.apply(data)
        return v

    def apply(self, data: bytes) -> SnapshotInfo:
        """Load a full snapshot (replacing everything held) or apply a delta
        (on exactly its base). Raises SnapshotRefused and keeps what it held
        when the file is refused."""
        out = self._load_in_pieces(_bytes(data, "the snapshot"))
        if isinstance(out, Record):
            return _info(out)
        tag, held = (out.tag, out.payload) if isinstance(out, Variant) else (out, None)
        explain = _REFUSALS.get(tag)
        if explain is None:
            raise KeygateError(f"unexpected answer from the component: {out!r}", "internal")
        raise SnapshotRefused(f"snapshot refused: {explain(held)}", tag)

    def _load_in_pieces(self, data: bytes):
        """The component's answer to `data` given in pieces of `_piece` bytes
        (as hex text: see `_load`)."""
        if len(data) < _SIGNATURE_LENGTH:
            return self._load(self._store, self._validator, data.hex())
        body, signature = data[:-_SIGNATURE_LENGTH], data[-_SIGNATURE_LENGTH:]
        stream = self._begin(self._store, self._validator, signature)
        finished = False
        try:
            for at in range(0, len(body), self._piece):
                refused = self._feed(self._store, stream, body[at : at + self._piece].hex())
                if refused is not None:
                    return refused
            finished = True
            return self._finish(self._store, self._validator, stream)
        finally:
            # A stream not handed to finish (refused, or an exception on
            # the way) is dropped here: the garbage collector would leave it
            # in the component for the validator's life.
            if not finished:
                stream.drop(self._store)

    def authorize(self, key: str, project: str, *, action: str = "trigger-workflows", now=None) -> Union[Allow, Deny]:
        """May `key` perform `action` on `project` at `now` (seconds, an aware
        datetime, or None for the current time)?"""
        if not isinstance(key, str) or not isinstance(project, str):
            raise InvalidArgument("key and project must be strings", "bad-argument")
        if action != "trigger-workflows":
            raise InvalidArgument(f"unknown action {action!r} (known: trigger-workflows)", "bad-argument")
        out = self._authorize(self._store, self._validator, key, project, action, _seconds(now))
        if isinstance(out, Record):
            return Allow(
                key_id=getattr(out, "key-id"),
                record_version=getattr(out, "record-version"),
                expires_at=getattr(out, "expires-at"),
            )
        reason = out.payload if isinstance(out, Variant) else out
        deny = self._denials.get(reason)
        if deny is None:
            if not isinstance(reason, str):
                raise KeygateError(f"unexpected answer from the component: {out!r}", "internal")
            text = self._reason_text(self._store, reason)
            deny = Deny(
                reason=reason,
                class_=self._classify(self._store, reason),
                message=getattr(text, "message"),
            )
            self._denials[reason] = deny
        return deny

    def looks_like_key(self, text: str) -> bool:
        """Whether `text` looks like an API key (a whole key, a prefixed key
        id, or a long mixed-case run of letters and digits): text that must
        never be logged or echoed. The component's own rule."""
        if not isinstance(text, str):
            raise InvalidArgument("text must be a string", "bad-argument")
        return bool(self._looks_like_key(self._store, text, None))

    @property
    def sequence(self) -> Optional[int]:
        """The sequence of the last snapshot or delta applied."""
        return self._sequence(self._store, self._validator)

    @property
    def snapshot_time(self) -> Optional[int]:
        """When the last snapshot or delta applied was made (seconds)."""
        return self._snapshot_time(self._store, self._validator)
