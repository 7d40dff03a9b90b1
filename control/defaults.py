"""Default guardrails and rollback policy for a flag gating the optimizer.

Used by `rollguard up` (and anyone creating the portal's flag) so that a new
flag is watched sensibly from its first stage. The figures come from the
incident report's targets: errors under 1-2%, P95 of cached calls under
200 ms, cache memory under 15 MB; the comparative guardrail catches an
optimized path that is worse than the direct one even below those caps.
"""

from __future__ import annotations

from flags.client import Guardrail, RollbackPolicy

FN = "get_all_exam_attempts"
CACHE_BUDGET_BYTES = 15 * 1024 * 1024


def default_guardrails(*, window_s: int = 60) -> list[Guardrail]:
    """Return the default guardrails for an optimizer flag, each judged over `window_s` seconds."""
    return [
        Guardrail("error_rate", "<=", 0.02, window_s=window_s, min_samples=50, path="optimized"),
        Guardrail("error_rate", "<=", 0.01, window_s=window_s, min_samples=50, kind="comparative"),
        Guardrail("p95_latency_s", "<=", 0.2, window_s=window_s, min_samples=50, path="optimized"),
        Guardrail("cache_bytes", "<=", CACHE_BUDGET_BYTES, window_s=window_s, min_samples=2),
    ]


def default_rollback() -> RollbackPolicy:
    """Roll back after two failing checks in a row; hold while there is no data."""
    return RollbackPolicy(consecutive_failures=2, on_no_data="hold")
