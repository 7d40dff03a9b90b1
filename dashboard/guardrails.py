"""Validation of the guardrail editor's rows before they go to the flag service.

The flag page's editor hands its widget values here as `GuardrailRow`s; what
passes becomes `Guardrail`s for `FlagsClient.update_flag`. The rules are the flag
model's (`flags.model`), which the flag service applies too; here they catch
mistakes while the operator is still typing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flags.model import Guardrail, guardrail_list_problems


@dataclass(frozen=True)
class GuardrailRow:
    """One row of the editor as the operator left it."""

    metric: str
    op: str
    threshold: float
    window_s: int
    min_samples: int
    path: str | None = None
    kind: str = "threshold"

    def to_guardrail(self) -> Guardrail:
        return Guardrail(
            metric=self.metric,
            op=self.op,
            threshold=float(self.threshold),
            window_s=int(self.window_s),
            min_samples=int(self.min_samples),
            path=self.path,
            kind=self.kind,
        )

    @classmethod
    def from_guardrail(cls, guardrail: Guardrail) -> GuardrailRow:
        return cls(
            metric=guardrail.metric,
            op=guardrail.op,
            threshold=guardrail.threshold,
            window_s=guardrail.window_s,
            min_samples=guardrail.min_samples,
            path=guardrail.path,
            kind=guardrail.kind,
        )


def problems(row: GuardrailRow) -> list[str]:
    """What is wrong with one row (the flag model's rules, which the API applies too); empty when valid."""
    return row.to_guardrail().problems()


def validate(rows: Iterable[GuardrailRow]) -> tuple[list[Guardrail], list[str]]:
    """Turn editor rows into guardrails, or list every problem with the row number."""
    guardrails = [row.to_guardrail() for row in rows]
    problems = guardrail_list_problems(guardrails)
    refused = {number for number, _problem in problems}
    kept = [g for number, g in enumerate(guardrails, start=1) if number not in refused]
    return kept, [f"guardrail {number}: {problem}" for number, problem in problems]
