"""Rendering of admin command results for `flags.cli`: readable tables or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any

import click

from flags.client import Flag


def jsonable(value: Any) -> Any:
    """Turn dataclasses and datetimes into plain JSON values."""
    if is_dataclass(value) and not isinstance(value, type):
        return {name: jsonable(item) for name, item in asdict(value).items()}
    if isinstance(value, dict):
        return {name: jsonable(item) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns under upper-case headers."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def when(value: datetime | None) -> str:
    """A timestamp to the second, or a dash."""
    return value.isoformat(timespec="seconds") if value else "-"


def show_flag(flag: Flag, as_json: bool) -> None:
    """Print one flag as a field/value table or as JSON."""
    if as_json:
        click.echo(json.dumps(jsonable(flag), indent=2))
        return
    rows = [
        ("key", flag.key),
        ("enabled", flag.enabled),
        ("rollout", f"{flag.rollout}%"),
        ("state", flag.state),
        ("stages", ", ".join(str(s) for s in flag.stages)),
        ("stage_hold_s", flag.stage_hold_s),
        ("auto_promote", flag.auto_promote),
        ("guardrails", "; ".join(g.name for g in flag.guardrails) or "-"),
        (
            "rollback",
            f"after {flag.rollback.consecutive_failures} failures, no data: {flag.rollback.on_no_data}",
        ),
        ("payload", json.dumps(flag.payload)),
        ("version", flag.version),
        ("updated_at", when(flag.updated_at)),
        ("stage_started_at", f"{when(flag.stage_started_at)} by {flag.stage_started_by or '-'}"),
        ("description", flag.description or "-"),
    ]
    click.echo(table(["field", "value"], rows))


def show_json(value: Any) -> None:
    """Print any result as indented JSON."""
    click.echo(json.dumps(jsonable(value), indent=2))
