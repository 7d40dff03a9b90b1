"""`rollguard portal seed` and the checks `rollguard portal serve` makes before starting."""

from __future__ import annotations

from click.testing import CliRunner

from portal.cli import command
from portal.data import count_attempts, load_catalog
from portal.db import make_engine


def test_seed_command_reports_progress_and_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path / 'seed.db'}"
    args = ["seed", "--students", "50", "--series", "3", "--exams", "2", "--database-url", url]
    first = CliRunner().invoke(command, args)
    assert first.exit_code == 0, first.output
    assert "seeding students 50/50" in first.output
    assert "seeded 50 students and 300 attempts" in first.output
    again = CliRunner().invoke(command, args)
    assert "seeded 0 students and 0 attempts" in again.output
    engine = make_engine(url)
    assert count_attempts(engine) == 300
    assert load_catalog(engine).exams == {1: (1, 2), 2: (3, 4), 3: (5, 6)}
    engine.dispose()


def test_seed_reset_starts_over(tmp_path):
    url = f"sqlite:///{tmp_path / 'seed.db'}"
    CliRunner().invoke(command, ["seed", "--students", "20", "--series", "2", "--database-url", url])
    result = CliRunner().invoke(
        command,
        ["seed", "--students", "5", "--series", "2", "--attempts", "1", "--reset", "--database-url", url],
    )
    assert result.exit_code == 0, result.output
    engine = make_engine(url)
    assert count_attempts(engine) == 10
    engine.dispose()


def test_serve_refuses_several_workers_without_a_shared_cache(tmp_path):
    result = CliRunner().invoke(
        command,
        ["serve", "--workers", "2", "--database-url", f"sqlite:///{tmp_path / 'x.db'}"],
        env={"ROLLGUARD_REDIS_URL": None},
    )
    assert result.exit_code == 2
    assert "--workers > 1 needs --redis-url or a PostgreSQL database" in result.output
