"""What the traffic generator observes during a run, and the checks it makes on each page.

`portal.traffic` feeds every response in: page loads (the keys of their logical
calls, the path that served them, the attempts shown), submissions and
failures. The recorder keeps latencies per page and per path, the call log and
invalidations for the ideal, and counts stale reads: a page loaded after its
student's own submission returned that does not show that attempt.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from portal.ideal import Call, Invalidation
from portal.keys import attempts_key

_MAX_EXAMPLES = 10
# Past this many logical calls (about 80 MB) the log stops growing, as in long background runs;
# the ideal is then not reported.
MAX_LOGGED_CALLS = 1_000_000


@dataclass(frozen=True)
class StaleRead:
    """A page that missed one of its student's own earlier submissions."""

    student_id: int
    series_id: int
    page: str
    missing_attempt_ids: tuple[int, ...]


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of already sorted values."""
    if not sorted_values:
        return None
    rank = max(math.ceil(q * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def latency_summary(values_s: Sequence[float]) -> dict[str, float | int | None]:
    """Count and p50/p95/p99 in milliseconds."""
    ordered = sorted(values_s)

    def ms(q: float) -> float | None:
        value = percentile(ordered, q)
        return None if value is None else round(value * 1000.0, 2)

    return {"requests": len(ordered), "p50_ms": ms(0.50), "p95_ms": ms(0.95), "p99_ms": ms(0.99)}


@dataclass
class RunRecorder:
    """Accumulates one run's observations; times are seconds since the run began."""

    calls: list[Call] = field(default_factory=list)
    invalidations: list[tuple[float, str]] = field(default_factory=list)
    latencies_by_path: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    latencies_by_page: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    stale_reads: int = 0
    stale_examples: list[StaleRead] = field(default_factory=list)
    submissions: int = 0
    calls_dropped: int = 0
    fresh_connection_checks: int = 0
    fresh_connection_stale_reads: int = 0
    _own: dict[int, dict[int, set[int]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(set))
    )

    def status(self, code: int | str) -> None:
        self.statuses[str(code)] += 1

    def page(
        self,
        *,
        page: str,
        started: float,
        elapsed_s: float,
        body: Mapping[str, Any],
        fresh_connection: bool = False,
    ) -> None:
        """Record a successful page load and check it shows the student's own submissions.

        `fresh_connection`: loaded on a new connection right after the student's submit.
        """
        path = str(body.get("path", "unknown"))
        self.latencies_by_path[path].append(elapsed_s)
        self.latencies_by_page[page].append(elapsed_s)
        for key in body.get("calls", ()):
            if len(self.calls) < MAX_LOGGED_CALLS:
                self.calls.append(Call(started, sys.intern(key)))
            else:
                self.calls_dropped += 1
        self.fresh_connection_checks += fresh_connection
        for stale in check_page(page, body, self._own.get(int(body.get("student_id", 0)), {})):
            self.stale_reads += 1
            self.fresh_connection_stale_reads += fresh_connection
            if len(self.stale_examples) < _MAX_EXAMPLES:
                self.stale_examples.append(stale)

    def submitted(self, *, elapsed_s: float, returned_at: float, body: Mapping[str, Any]) -> None:
        """Record a submission that returned: later pages of this student must show it."""
        student_id = int(body["student_id"])
        self._own[student_id][int(body["series_id"])].add(int(body["attempt"]["id"]))
        # The one key whose data changed: what any cache must reload.
        self.invalidations.append((returned_at, attempts_key(student_id, int(body["series_id"]))))
        self.latencies_by_page["submit"].append(elapsed_s)
        self.submissions += 1

    def invalidation_log(self) -> list[Invalidation]:
        """Each submission invalidated the key of its student and series, when it returned."""
        return [Invalidation(t, key) for t, key in self.invalidations]


def check_page(page: str, body: Mapping[str, Any], own: Mapping[int, set[int]]) -> list[StaleRead]:
    """Return the stale reads in one page body, given the student's own submitted attempt ids by series."""
    student_id = int(body.get("student_id", 0))
    found: list[StaleRead] = []
    if page == "my-test-series":
        for series in body.get("series", ()):
            expected = own.get(int(series["series_id"]), set())
            missing = expected - {int(a["id"]) for a in series.get("attempts", ())}
            if missing:
                found.append(StaleRead(student_id, int(series["series_id"]), page, tuple(sorted(missing))))
    elif page == "exam-home":
        series_id = int(body["series_id"])
        expected = own.get(series_id, set())
        if expected:
            shown = {int(a["id"]) for a in body.get("attempts", ())}
            newest = max(expected)
            missing = expected - shown
            # Every widget read the attempts on its own; each must have seen the newest submission.
            if any((w.get("last_attempt_id") or 0) < newest for w in body.get("widgets", ())):
                missing |= {newest}
            if missing:
                found.append(StaleRead(student_id, series_id, page, tuple(sorted(missing))))
    return found
