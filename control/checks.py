"""One check of a flag: every guardrail judged on its window of the metric source.

Called by the decision loop (`control.loop`) at each tick and by the backtest
(`control.backtest`) at each simulated tick. The flag's payload["fn"] selects
the wrapped function's series (None: all functions). A source that fails gives
a no_data verdict naming the failure, so the flag's `on_no_data` policy
decides what an outage of the metrics means.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from datetime import datetime

from control.decisions import DEFAULT_ALPHA, Outcome, Verdict, evaluate, evaluate_comparative
from control.errors import ControlError
from control.latency import evaluate_latency
from control.metrics import MetricSource
from flags.client import Flag, Guardrail

logger = logging.getLogger(__name__)


def check_flag(
    flag: Flag,
    source: MetricSource,
    *,
    now: datetime,
    since: datetime | None = None,
    alpha: float = DEFAULT_ALPHA,
) -> list[Verdict]:
    """Judge each of the flag's guardrails over the window ending at `now`.

    With `since` (the current stage's start) windows are cut at it, so a stage
    is judged on its own traffic only: right after a promotion or a resume the
    short window has few samples and gives no_data until enough arrive.
    """
    fn = flag.payload.get("fn") if isinstance(flag.payload.get("fn"), str) else None
    verdicts = []
    for guardrail in flag.guardrails:
        if since is not None:
            elapsed = math.ceil((now - since).total_seconds())
            guardrail = replace(guardrail, window_s=max(1, min(guardrail.window_s, elapsed)))
        verdicts.append(_check(guardrail, source, fn=fn, flag=flag.key, now=now, alpha=alpha))
    return verdicts


def _check(
    guardrail: Guardrail, source: MetricSource, *, fn: str | None, flag: str, now: datetime, alpha: float
) -> Verdict:
    try:
        if guardrail.kind == "comparative" and guardrail.metric == "p95_latency_s":
            optimized_h, direct_h = (
                source.latency_histogram(fn=fn, path=path, flag=flag, window_s=guardrail.window_s, end=now)
                for path in ("optimized", "direct")
            )
            return evaluate_latency(guardrail, optimized_h, direct_h, alpha=alpha)
        if guardrail.kind == "comparative":
            optimized, direct = (
                source.window(
                    guardrail.metric, fn=fn, path=path, flag=flag, window_s=guardrail.window_s, end=now
                )
                for path in ("optimized", "direct")
            )
            return evaluate_comparative(guardrail, optimized, direct, alpha=alpha)
        window = source.window(
            guardrail.metric, fn=fn, path=guardrail.path, flag=flag, window_s=guardrail.window_s, end=now
        )
        return evaluate(guardrail, window)
    except ControlError as exc:
        logger.warning("guardrail %s: no data: %s", guardrail.name, exc)
        return Verdict(guardrail.name, Outcome.NO_DATA, None, guardrail.threshold, 0, f"metric source: {exc}")
