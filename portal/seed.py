"""Seed the portal's database with realistic sizes, fast and idempotently.

Called by `rollguard portal seed`, the tests and the bench. Students get ids
1..N; every student takes every series and has `attempts_per_series` past
attempts in each. Seeding again with the same or larger sizes only adds what is
missing; `reset=True` drops and recreates the tables first.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, insert, select

from portal.db import create_schema, drop_schema
from portal.models import Attempt, Exam, Student, TestSeries

Progress = Callable[[int, int], None]

_CHUNK = 1_000


@dataclass(frozen=True)
class SeedPlan:
    """How big the seeded portal is."""

    students: int = 10_000
    series: int = 12
    exams_per_series: int = 5
    attempts_per_series: int = 2
    random_seed: int = 7


@dataclass(frozen=True)
class SeedResult:
    students_added: int
    attempts_added: int


def exam_id(series_id: int, index: int, exams_per_series: int) -> int:
    """The id of the `index`-th (0-based) exam of a series."""
    return (series_id - 1) * exams_per_series + index + 1


def seed(
    engine: Engine, plan: SeedPlan, *, reset: bool = False, progress: Progress | None = None
) -> SeedResult:
    """Create the schema and fill in whatever part of `plan` is missing."""
    if reset:
        drop_schema(engine)
    create_schema(engine)
    with engine.begin() as conn:
        have_series = set(conn.scalars(select(TestSeries.id)))
        new_series = [
            {"id": s, "name": f"Test series {s}"} for s in range(1, plan.series + 1) if s not in have_series
        ]
        if new_series:
            conn.execute(insert(TestSeries), new_series)
        have_exams = set(conn.scalars(select(Exam.id)))
        new_exams = [
            {"id": exam_id(s, j, plan.exams_per_series), "series_id": s, "title": f"Exam {s}.{j + 1}"}
            for s in range(1, plan.series + 1)
            for j in range(plan.exams_per_series)
            if exam_id(s, j, plan.exams_per_series) not in have_exams
        ]
        if new_exams:
            conn.execute(insert(Exam), new_exams)
        first = int(conn.execute(select(func.coalesce(func.max(Student.id), 0))).scalar_one()) + 1

    rng = random.Random(plan.random_seed + first)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    total = max(plan.students - first + 1, 0)
    attempts_added = 0
    for chunk_start in range(first, plan.students + 1, _CHUNK):
        ids = range(chunk_start, min(chunk_start + _CHUNK, plan.students + 1))
        students = [{"id": i, "name": f"Student {i}"} for i in ids]
        attempts = [
            {
                "student_id": i,
                "series_id": s,
                "exam_id": exam_id(s, rng.randrange(plan.exams_per_series), plan.exams_per_series),
                "score": rng.randint(20, 100),
                "submitted_at": start + timedelta(minutes=rng.randrange(60 * 24 * 300)),
            }
            for i in ids
            for s in range(1, plan.series + 1)
            for _ in range(plan.attempts_per_series)
        ]
        with engine.begin() as conn:
            conn.execute(insert(Student), students)
            if attempts:
                conn.execute(insert(Attempt), attempts)
        attempts_added += len(attempts)
        if progress is not None:
            progress(ids.stop - first, total)
    return SeedResult(students_added=total, attempts_added=attempts_added)
