"""The controller's history, read-only: what other parts may read of its store.

The dashboard reads the controller's last check of each flag, its verdict
timeline, its decisions, the lease and the scraped samples through
`ControlHistory`, never through the store's tables. It opens its own
connection, read-only (SQLite `mode=ro`, PostgreSQL read-only transactions), so
a reader can neither write the controller's tables nor create them: a store no
controller has written yet reads as empty, and is found once a controller has
created it. It also serves as the samples of the embedded metric source
(`control.metrics.open_source(settings, store=history)`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import URL, Engine, make_url

from control.decisions import max_gap_s
from control.last_check import LastCheck, last_check
from control.settings import ControlSettings
from control.store import (
    Clock,
    ControllerStatus,
    DecisionRecord,
    RawSample,
    StoreReader,
    VerdictRecord,
    lease_table,
)
from flags.client import Flag

T = TypeVar("T")


class ControlHistory:
    """Read-only access to one controller store; `interval_s` is the controller's evaluation interval."""

    def __init__(self, database_url: str, *, interval_s: float = 1.0, clock: Clock | None = None) -> None:
        self.url = make_url(database_url)
        #: A check older than this no longer counts as the controller judging (as in the loop).
        self.stale_after_s = max_gap_s(interval_s)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._reader: StoreReader | None = None

    @classmethod
    def from_settings(cls, settings: ControlSettings) -> ControlHistory:
        """The history of the store `settings` name, judged stale by their evaluation interval."""
        return cls(settings.database_url, interval_s=settings.interval_s)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # the controller's judgements

    def last_check(self, flag: Flag) -> LastCheck:
        """The controller's newest verdicts of `flag` while recent, else why it is not judged."""
        newest: list[VerdictRecord] = self._read(lambda r: r.last_check(flag.key), [])
        return last_check(
            flag, newest, self.controller_status(), now=self._clock(), stale_after_s=self.stale_after_s
        )

    def verdicts(
        self, flag: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[VerdictRecord]:
        """The verdicts recorded for `flag`, oldest first, optionally within [since, until]."""
        return self._read(lambda r: r.verdicts(flag, since=since, until=until), [])

    def decisions(
        self, flag: str | None = None, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[DecisionRecord]:
        """The controller's decisions, oldest first, for one flag or all, optionally within [since, until]."""
        return self._read(lambda r: r.decisions(flag, since=since, until=until), [])

    def controller_status(self) -> ControllerStatus | None:
        """Who holds the lease and when it last evaluated; None when no controller ever ran here."""
        return self._read(lambda r: r.controller_status(), None)

    # the scraped samples (the embedded metric source reads these)

    def raw_samples(
        self,
        names: Sequence[str],
        *,
        start: datetime,
        end: datetime,
        fn: str | None = None,
        path: str | None = None,
    ) -> list[RawSample]:
        """Samples of the named metrics with start <= time <= end, oldest first."""
        return self._read(lambda r: r.raw_samples(names, start=start, end=end, fn=fn, path=path), [])

    def rollup_samples(
        self,
        names: Sequence[str],
        *,
        resolution_s: int,
        start: datetime,
        end: datetime,
        fn: str | None = None,
        path: str | None = None,
        largest: Sequence[str] = (),
    ) -> list[RawSample]:
        """The last (for `largest`, the largest) sample of each `resolution_s` bucket in [start, end]."""
        return self._read(
            lambda r: r.rollup_samples(
                names, resolution_s=resolution_s, start=start, end=end, fn=fn, path=path, largest=largest
            ),
            [],
        )

    def newest_sample_time(self) -> datetime | None:
        """The time of the newest scrape, or None when there is none."""
        return self._read(lambda r: r.newest_sample_time(), None)

    def _read(self, read: Callable[[StoreReader], T], empty: T) -> T:
        reader = self._open()
        return empty if reader is None else read(reader)

    def _open(self) -> StoreReader | None:
        """The reader, once a controller has created the store; None until then."""
        if self._reader is not None:
            return self._reader
        if _missing_sqlite_file(self.url):
            return None
        engine = _read_only_engine(self.url)
        if not inspect(engine).has_table(lease_table.name):
            engine.dispose()
            return None
        self._reader = StoreReader(engine, clock=self._clock)
        return self._reader


def _missing_sqlite_file(url: URL) -> bool:
    if url.get_backend_name() != "sqlite":
        return False
    return not url.database or url.database == ":memory:" or not Path(url.database).expanduser().exists()


def _read_only_engine(url: URL) -> Engine:
    """An engine whose connections cannot write: SQLite opened `mode=ro`, PostgreSQL read-only sessions."""
    if url.get_backend_name() != "sqlite":
        return create_engine(
            url, pool_pre_ping=True, connect_args={"options": "-c default_transaction_read_only=on"}
        )
    path = Path(str(url.database)).expanduser().resolve()
    engine = create_engine(
        f"sqlite:///file:{path}?mode=ro&uri=true",
        connect_args={"timeout": 30, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _busy_timeout(dbapi_conn: Any, _record: Any) -> None:
        # The scraper writes while the dashboard reads: wait for its lock instead of failing.
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.close()

    return engine
