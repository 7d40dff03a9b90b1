"""Start-up and per-process caching: migrations, bootstrap tokens, revision checks."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from flags.db import Database
from flags.models import TokenRow
from flags.served import ServedState
from flags.startup import prepare
from tests.flags.conftest import make_settings


def _token_names(database_url: str) -> list[str]:
    db = Database(database_url)
    with db.session() as session:
        names = [row.name for row in session.scalars(select(TokenRow).order_by(TokenRow.name))]
    db.dispose()
    return names


def test_bootstrap_tokens_are_idempotent_across_restarts(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    prepare(settings)
    prepare(settings)
    assert _token_names(settings.database_url) == ["bootstrap-admin", "bootstrap-client"]


def test_missing_sqlite_directory_is_created(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'var' / 'deep' / 'flags.db'}")
    prepare(settings)
    assert (tmp_path / "var" / "deep" / "flags.db").exists()


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_revision_is_reread_only_after_the_check_interval(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    prepare(settings)
    writer, reader = Database(settings.database_url), Database(settings.database_url)
    clock = _Clock()
    served = ServedState(reader, check_s=0.1, clock=clock)
    before = served.snapshot()
    with writer.write():
        pass
    assert served.snapshot() is before
    clock.now = 0.2
    after = served.snapshot()
    assert after.revision == before.revision + 1
    served.invalidate()
    assert served.revision() == after.revision
    writer.dispose()
    reader.dispose()
