"""Read-your-writes across portal workers, checked from outside on fresh connections.

Each check submits an attempt for a student, and if the portal acknowledged it
(201), loads that student's page a number of times, each on a new connection so
that any worker may answer; a page without an acknowledged attempt is a stale
read. The fault suite asserts none; `bench/faults.py` reports the counts.

One client without keep-alive sends every request: each still opens a new
connection, without the 0.2 s that building a client (its TLS context) costs.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx


@dataclass
class Tally:
    """What the clients saw during one scenario."""

    requests: int = 0
    errors: int = 0
    #: Errors that were 500s: a bug, never an honest "retry" (503).
    internal_errors: int = 0
    stale_reads: int = 0
    acknowledged: int = 0
    unacknowledged: int = 0
    #: 503s without Retry-After: the client could not tell when to try again.
    no_retry_after: int = 0
    #: Every answer's status (0: no answer).
    statuses: Counter[int] = field(default_factory=Counter)
    #: (student, attempt id) of every acknowledged submission.
    submitted: list[tuple[int, int]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def answered(self, response: httpx.Response | None) -> None:
        """Note one answer's status (None: the request got no answer)."""
        status = 0 if response is None else response.status_code
        with self._lock:
            self.statuses[status] += 1
            self.internal_errors += status == 500
            self.no_retry_after += (
                status == 503 and response is not None and "Retry-After" not in response.headers
            )


@functools.cache
def _fresh() -> httpx.Client:
    """A client that keeps no connection open: every request is accepted anew, by whichever worker takes it."""
    return httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=15)


def _page_attempt_ids(url: str, student_id: int, tally: Tally | None = None) -> set[int] | None:
    """The attempt ids on a student's page, loaded on a new connection; None if it failed."""
    try:
        response = _fresh().get(
            f"{url}/api/pages/my-test-series", params={"student_id": student_id}, timeout=10
        )
    except httpx.HTTPError:
        response = None
    if tally is not None:
        tally.answered(response)
    if response is None or response.status_code != 200:
        return None
    return {attempt["id"] for series in response.json()["series"] for attempt in series["attempts"]}


def load_pages(url: str, student_id: int, *, count: int, tally: Tally) -> None:
    """Warm the student's page on every worker (several fresh connections)."""
    for _ in range(count):
        failed = _page_attempt_ids(url, student_id, tally) is None
        tally.add(requests=1, errors=int(failed))


def submit_and_check(url: str, student_id: int, *, exam_id: int, samples: int, tally: Tally) -> None:
    """Submit one attempt; if acknowledged, check `samples` page loads on fresh connections."""
    try:
        response = _fresh().post(
            f"{url}/api/exam/submit",
            json={"student_id": student_id, "exam_id": exam_id, "score": 77},
            timeout=15,
        )
    except httpx.HTTPError:
        tally.answered(None)
        tally.add(requests=1, errors=1, unacknowledged=1)
        return
    tally.answered(response)
    if response.status_code != 201:
        tally.add(requests=1, errors=1, unacknowledged=1)
        return
    tally.add(requests=1, acknowledged=1)
    attempt_id = response.json()["attempt"]["id"]
    with tally._lock:
        tally.submitted.append((student_id, attempt_id))
    for _ in range(samples):
        seen = _page_attempt_ids(url, student_id, tally)
        if seen is None:
            tally.add(requests=1, errors=1)
        elif attempt_id not in seen:
            tally.add(requests=1, stale_reads=1)
        else:
            tally.add(requests=1)


def run_during(
    fault: Callable[[], None], work: Callable[[int], None], *, students: list[int], threads: int = 4
) -> float:
    """Run `work(student)` for every student from `threads` threads while `fault()` runs; seconds taken."""
    started = time.monotonic()
    breaker = threading.Thread(target=fault)
    breaker.start()
    chunks = [students[i::threads] for i in range(threads)]

    def run(chunk: list[int]) -> None:
        for student in chunk:
            work(student)

    workers = [threading.Thread(target=run, args=(chunk,)) for chunk in chunks]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    breaker.join()
    return time.monotonic() - started


def recovery_seconds(url: str, student_id: int, *, exam_id: int, deadline_s: float = 30.0) -> float:
    """Seconds until a submit is acknowledged again and shows on a fresh connection."""
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        tally = Tally()
        submit_and_check(url, student_id, exam_id=exam_id, samples=2, tally=tally)
        if tally.acknowledged and not tally.stale_reads and not tally.errors:
            return time.monotonic() - started
        time.sleep(0.05)
    return float("inf")


def lost_submissions(url: str, tally: Tally) -> int:
    """Acknowledged submissions missing from their student's page now (a fresh connection each)."""
    by_student: dict[int, set[int]] = {}
    for student, attempt_id in tally.submitted:
        by_student.setdefault(student, set()).add(attempt_id)
    lost = 0
    for student, attempts in by_student.items():
        seen = _page_attempt_ids(url, student)
        lost += len(attempts) if seen is None else len(attempts - seen)
    return lost
