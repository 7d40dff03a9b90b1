"""`rollguard portal seed` and the checks `rollguard portal serve` makes before starting."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from portal.cli import command
from portal.data import count_attempts, load_catalog
from portal.db import make_engine
from portal.runtime import PORTAL_MAX_ENTRIES, optimizer_config_from_env


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


@pytest.mark.parametrize(
    ("env", "error"),
    [
        (
            {"ROLLGUARD_OPTIMIZER_TTL_S": "abc"},
            "ROLLGUARD_OPTIMIZER_TTL_S='abc': Input should be a valid number, unable to parse string as a number",
        ),
        (
            {"ROLLGUARD_PORTAL_CACHE_LAYOUT": "flat"},
            "ROLLGUARD_PORTAL_CACHE_LAYOUT='flat': Input should be 'tiered', 'packed' or 'objects'",
        ),
        (
            {"ROLLGUARD_PORTAL_CACHE_HOT_SHARE": "0.5", "ROLLGUARD_PORTAL_CACHE_PACK_ABOVE": "0.3"},
            "cache_pack_above (0.3) must be at least cache_hot_share (0.5)",
        ),
    ],
    ids=["optimizer-variable", "portal-variable", "portal-settings-together"],
)
def test_serve_names_a_bad_setting_in_one_line(tmp_path, env, error):
    result = CliRunner().invoke(
        command, ["serve", "--database-url", f"sqlite:///{tmp_path / 'x.db'}"], env=env
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: {error}"]


def test_the_portal_caps_the_cache_entries_unless_the_variable_says_otherwise():
    assert optimizer_config_from_env({}).max_entries == PORTAL_MAX_ENTRIES
    assert (
        optimizer_config_from_env({"ROLLGUARD_OPTIMIZER_MAX_ENTRIES": ""}).max_entries == PORTAL_MAX_ENTRIES
    )
    assert optimizer_config_from_env({"ROLLGUARD_OPTIMIZER_MAX_ENTRIES": "500"}).max_entries == 500
