"""Default guardrails and rollback policy for a flag gating the optimizer.

Used by `rollguard up`, the benchmarks and anyone creating the portal's flag,
so that a new flag is watched sensibly from its first stage. The controller
checks every second over 10 s windows (docs/controller.md says why):

- errors and latency are judged **comparatively**, optimized against direct
  over the same window: a saturated machine slows and fails both cohorts, so
  only a difference the optimization makes counts (an absolute p95 cap on the
  optimized cohort alone rolled back healthy mass submissions);
- a trip of the optimizer's local circuit breaker is a fault it already saw
  in process: the controller turns the flag off for every instance;
- the cache memory budget (15 MiB, the incident's target) is absolute, as
  only the optimized path holds a cache.
"""

from __future__ import annotations

from flags.client import Guardrail, RollbackPolicy

FN = "get_all_exam_attempts"
CACHE_BUDGET_BYTES = 15 * 1024 * 1024
#: Seconds each default guardrail looks back at each check.
WINDOW_S = 10
#: Calls each cohort needs in a window before the comparative tests judge it.
MIN_CALLS = 20


def default_guardrails(*, window_s: int = WINDOW_S) -> list[Guardrail]:
    """Return the default guardrails for an optimizer flag, each judged over `window_s` seconds."""
    return [
        Guardrail("error_rate", "<=", 0.01, window_s=window_s, min_samples=MIN_CALLS, kind="comparative"),
        Guardrail("p95_latency_s", "<=", 0.1, window_s=window_s, min_samples=MIN_CALLS, kind="comparative"),
        Guardrail("breaker_bypass_rate", "<=", 0.05, window_s=window_s, min_samples=MIN_CALLS),
        Guardrail("cache_bytes", "<=", CACHE_BUDGET_BYTES, window_s=window_s, min_samples=2),
    ]


def default_rollback() -> RollbackPolicy:
    """Roll back after two failing checks in a row; hold while there is no data."""
    return RollbackPolicy(consecutive_failures=2, on_no_data="hold")
