"""The incident's scenarios as plans: what one simulated student does, in order.

A plan is an endless iterator of actions (load a page, submit an attempt,
pause). The traffic generator (`portal.traffic`) plays one plan per virtual
user over HTTP; the tests replay the same plans in-process against an
optimized and a direct portal and compare every response. Pure: no I/O here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

EXAM_HOME_STEPS = 5


@dataclass(frozen=True)
class LoadPage:
    """GET /api/pages/<page> with these query parameters."""

    page: str
    params: Mapping[str, int]

    @property
    def url(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.params.items())
        return f"/api/pages/{self.page}?{query}"


@dataclass(frozen=True)
class Submit:
    """POST /api/exam/submit."""

    student_id: int
    exam_id: int
    score: int

    @property
    def body(self) -> dict[str, int]:
        return {"student_id": self.student_id, "exam_id": self.exam_id, "score": self.score}


@dataclass(frozen=True)
class Pause:
    """Think time between actions."""

    seconds: float


Action = LoadPage | Submit | Pause


@dataclass(frozen=True)
class Catalog:
    """What a plan needs to know about the portal: its series and their exams."""

    exams: Mapping[int, Sequence[int]]

    @property
    def series(self) -> list[int]:
        return sorted(self.exams)


Plan = Callable[[int, Catalog, random.Random], Iterator[Action]]


def my_test_series(student_id: int) -> LoadPage:
    return LoadPage("my-test-series", {"student_id": student_id})


def exam_home(student_id: int, series_id: int, step: int) -> LoadPage:
    return LoadPage("exam-home", {"student_id": student_id, "series_id": series_id, "step": step})


def _submit(student_id: int, series_id: int, catalog: Catalog, rng: random.Random) -> Submit:
    return Submit(student_id, rng.choice(list(catalog.exams[series_id])), rng.randint(0, 100))


def steady(student_id: int, catalog: Catalog, rng: random.Random) -> Iterator[Action]:
    """Browse MyTestSeries, walk through an exam session, sometimes submit; repeat."""
    while True:
        yield my_test_series(student_id)
        yield Pause(rng.uniform(0.5, 2.0))
        series_id = rng.choice(catalog.series)
        for step in range(EXAM_HOME_STEPS):
            yield exam_home(student_id, series_id, step)
            yield Pause(rng.uniform(0.3, 1.0))
        if rng.random() < 0.2:
            yield _submit(student_id, series_id, catalog, rng)
            yield my_test_series(student_id)
        yield Pause(rng.uniform(1.0, 3.0))


def exam_sessions(student_id: int, catalog: Catalog, rng: random.Random) -> Iterator[Action]:
    """Take exams back to back: the 5 ExamHome steps, submit, then ExamHome again."""
    while True:
        series_id = rng.choice(catalog.series)
        for step in range(EXAM_HOME_STEPS):
            yield exam_home(student_id, series_id, step)
            yield Pause(rng.uniform(0.2, 0.6))
        yield _submit(student_id, series_id, catalog, rng)
        yield exam_home(student_id, series_id, 0)
        yield Pause(rng.uniform(0.5, 1.5))


def mass_submission(student_id: int, catalog: Catalog, rng: random.Random) -> Iterator[Action]:
    """Submit as soon as the user starts (all users start within seconds), then keep reloading."""
    series_id = rng.choice(catalog.series)
    yield _submit(student_id, series_id, catalog, rng)
    yield my_test_series(student_id)
    yield exam_home(student_id, series_id, 0)
    while True:
        yield Pause(rng.uniform(1.0, 3.0))
        yield my_test_series(student_id)
        yield exam_home(student_id, series_id, rng.randrange(EXAM_HOME_STEPS))


SCENARIOS: dict[str, Plan] = {
    "steady": steady,
    "mass-submission": mass_submission,
    "exam-home": exam_sessions,
}

# How fast users start, as a share of all users per second: mass submission
# brings everyone in within about two seconds.
SPAWN_SHARE_PER_S: dict[str, float] = {"steady": 0.2, "mass-submission": 0.5, "exam-home": 0.25}
