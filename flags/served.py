"""What this process serves to SDKs: the client document, its ETag and an evaluator.

`ServedState` caches the serialised /api/client/features body and its ETag,
rebuilt only when the global revision moves. The revision is re-read at most
every `check_s` seconds (or at once after a write made by this process), which
keeps several processes on one database within a second of each other while a
request costs a dictionary lookup. OFREP evaluation reuses the same document in
the Unleash engine the SDKs use, so both answer alike.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from yggdrasil_engine.engine import UnleashEngine

from flags.db import Database
from flags.models import FlagRow, UnleashFeatureRow, UnleashSegmentRow
from flags.unleash import client_state


@dataclass
class Snapshot:
    """The client document at one revision."""

    revision: int
    state: dict[str, Any]
    body: bytes
    etag: str
    _engine: UnleashEngine | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    evaluation_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def engine(self) -> UnleashEngine:
        """An Unleash engine loaded with this document, built on first use."""
        with self._lock:
            if self._engine is None:
                engine = UnleashEngine()
                engine.take_state(self.body.decode())
                self._engine = engine
            return self._engine

    def etag_matches(self, if_none_match: str | None) -> bool:
        """Whether an If-None-Match header names this document."""
        if not if_none_match:
            return False
        candidates = [part.strip() for part in if_none_match.split(",")]
        return "*" in candidates or self.etag in candidates or f"W/{self.etag}" in candidates


def build_snapshot(db: Database) -> Snapshot:
    """Read the revision, then everything served, and serialise it once."""
    revision = db.revision()
    with db.session() as session:
        flags = list(session.scalars(select(FlagRow)))
        imported = [row.definition for row in session.scalars(select(UnleashFeatureRow))]
        segments = [row.definition for row in session.scalars(select(UnleashSegmentRow))]
    state = client_state(flags, imported, segments)
    body = json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:24] + '"'
    return Snapshot(revision=revision, state=state, body=body, etag=etag)


class ServedState:
    """The current snapshot of one process, refreshed when the global revision moves."""

    def __init__(self, db: Database, *, check_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._db = db
        self._check_s = check_s
        self._clock = clock
        self._lock = threading.Lock()
        self._revision = -1
        self._next_check = 0.0
        self._snapshot: Snapshot | None = None
        self._listeners: list[Callable[[int], None]] = []

    def on_revision(self, listener: Callable[[int], None]) -> None:
        """Call `listener(revision)` whenever a new revision is noticed (token cache)."""
        self._listeners.append(listener)

    def invalidate(self) -> None:
        """Re-read the revision on the next request (this process just wrote)."""
        self._next_check = 0.0

    def revision(self) -> int:
        """The global revision, read from the database at most every `check_s` seconds."""
        now = self._clock()
        if now >= self._next_check:
            with self._lock:
                if now >= self._next_check:
                    revision = self._db.revision()
                    self._next_check = now + self._check_s
                    if revision != self._revision:
                        self._revision = revision
                        for listener in self._listeners:
                            listener(revision)
        return self._revision

    def snapshot(self) -> Snapshot:
        """The snapshot for the current revision, rebuilt if it moved."""
        revision = self.revision()
        snapshot = self._snapshot
        if snapshot is not None and snapshot.revision >= revision:
            return snapshot
        with self._lock:
            snapshot = self._snapshot
            if snapshot is None or snapshot.revision < revision:
                snapshot = build_snapshot(self._db)
                self._snapshot = snapshot
        return snapshot
