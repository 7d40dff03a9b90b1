"""Seeding is idempotent, grows to larger sizes, and resets on request."""

from __future__ import annotations

from portal.data import count_attempts, load_catalog
from portal.db import make_engine
from portal.seed import SeedPlan, seed


def test_seeding_twice_adds_nothing_and_growing_adds_only_new_students(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    plan = SeedPlan(students=30, series=4, exams_per_series=3, attempts_per_series=2)
    first = seed(engine, plan)
    assert (first.students_added, first.attempts_added) == (30, 30 * 4 * 2)
    assert seed(engine, plan).students_added == 0
    assert count_attempts(engine) == 240
    grown = seed(engine, SeedPlan(students=40, series=4, exams_per_series=3, attempts_per_series=2))
    assert grown.students_added == 10
    catalog = load_catalog(engine)
    assert catalog.max_student_id == 40
    assert catalog.exams == {1: (1, 2, 3), 2: (4, 5, 6), 3: (7, 8, 9), 4: (10, 11, 12)}
    engine.dispose()


def test_reset_recreates_the_tables(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    seed(engine, SeedPlan(students=20, series=2))
    progress: list[tuple[int, int]] = []
    result = seed(
        engine,
        SeedPlan(students=5, series=2, attempts_per_series=1),
        reset=True,
        progress=lambda *a: progress.append(a),
    )
    assert result.students_added == 5
    assert count_attempts(engine) == 10
    assert progress == [(5, 5)]
    engine.dispose()
