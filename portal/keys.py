"""The optimizer's key for one student's attempts in one series: `"<student_id>:<series_id>"`.

Pure, so that the traffic generator (`portal.recording`) names keys as the
portal does without loading the database layer; `portal.data` re-exports both.
"""

from __future__ import annotations

#: One key as a regular expression (`portal.pgfragments` checks a batch of keys with it).
PATTERN = r"\d+:\d+"


def attempts_key(student_id: int, series_id: int) -> str:
    """The optimizer key for one student's attempts in one series."""
    return f"{student_id}:{series_id}"


def parse_key(key: str) -> tuple[int, int]:
    """Split `"<student_id>:<series_id>"`; raise ValueError on anything else."""
    student, sep, series = key.partition(":")
    if not sep or not student.isdigit() or not series.isdigit():
        raise ValueError(f"not an attempts key: {key!r}")
    return int(student), int(series)
