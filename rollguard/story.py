"""The demo's record: what happened and when, printed and saved to `var/story.json` as it happens.

`story.json` is rewritten atomically from the start and after every step: the
URLs, the pid of each child (also its process group), the events so far, and
`stopped` once every process is down, so that an operator or a test can follow
the demo while it runs.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click


class StopDemo(Exception):
    """Ctrl-C or SIGTERM: stop the story and every process."""


@dataclass
class Story:
    """What happened, with times relative to the start; saved to `path` (var/story.json) as it happens."""

    path: Path
    started_at: str
    urls: dict[str, str]
    processes: dict[str, int] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    promoted_at_s: float | None = None
    fault_at_s: float | None = None
    breaker_tripped_at_s: float | None = None
    rolled_back_at_s: float | None = None
    rollback_reason: str | None = None
    portal_metrics: dict[str, float] = field(default_factory=dict)
    headline: list[str] = field(default_factory=list)
    completed: bool = False
    stopped: bool = False

    def add(self, t0: float, what: str, **details: Any) -> None:
        """Record a step, print it, and save the story."""
        at = round(time.monotonic() - t0, 1)
        self.events.append({"t_s": at, "what": what, **details})
        click.echo(f"[{at:6.1f}s] {what}")
        self.save()

    def save(self) -> None:
        """Write the story as JSON through a temporary file, so a reader never sees half of it."""
        record = asdict(self)
        del record["path"]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, self.path)
