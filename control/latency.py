"""The comparative latency guardrail: is the optimized path's p95 worse than the direct path's?

Called by `control.checks` for a guardrail `{metric: p95_latency_s, kind:
comparative}` with both cohorts' latency histograms over the same window.
Pure: no I/O. The threshold is a margin in seconds on p95(optimized) -
p95(direct), the quantity Prometheus's alert rule compares too.

Test. Let b be the upper bound of the direct cohort's bucket holding its
p95, and L the lowest bucket bound at or above b + margin. If the optimized
p95 were at most direct's p95 + margin, at most 5% of optimized calls would
be slower than L. H0: P(optimized call > L) <= 0.05 against H1: > 0.05, by
the exact one-sided binomial test on the k of n optimized calls above L. The
verdict fails when p < alpha and the interpolated p95 difference (the
verdict's value) exceeds the margin. A saturated machine slows both cohorts,
which moves b and L with it, so a healthy spike does not fail the test.
"""

from __future__ import annotations

import math

from control.decisions import DEFAULT_ALPHA, Outcome, Verdict
from control.derive import histogram_quantile
from control.metrics import Histogram
from flags.client import Guardrail

#: The quantile the guardrail compares and so the tail share allowed under H0.
QUANTILE = 0.95
TAIL = 1 - QUANTILE


def evaluate_latency(
    guardrail: Guardrail, optimized: Histogram, direct: Histogram, *, alpha: float = DEFAULT_ALPHA
) -> Verdict:
    """Judge the optimized cohort's latency against the direct one's (see the module docstring)."""
    name, margin = guardrail.name, guardrail.threshold
    n_opt, n_dir = round(optimized.count), round(direct.count)
    if min(n_opt, n_dir) < guardrail.min_samples:
        detail = f"samples optimized {n_opt}, direct {n_dir} < {guardrail.min_samples} needed"
        return Verdict(name, Outcome.NO_DATA, None, margin, min(n_opt, n_dir), detail)
    direct_bound = direct.bound_of_rank(QUANTILE * direct.count)
    limit = optimized.bound_at_or_above(direct_bound + margin)
    if math.isinf(limit):
        detail = f"direct p95 in the bucket up to {direct_bound:g}s: no finite bound above it + margin"
        return Verdict(name, Outcome.NO_DATA, None, margin, min(n_opt, n_dir), detail)
    slower = round(optimized.count - optimized.cumulative(limit))
    p_value = binomial_upper_tail(slower, n_opt, TAIL)
    p95_opt = histogram_quantile(QUANTILE, optimized.buckets) or 0.0
    p95_dir = histogram_quantile(QUANTILE, direct.buckets) or 0.0
    difference = p95_opt - p95_dir
    worse = difference > margin and p_value < alpha
    detail = (
        f"p95 optimized {p95_opt:.3f}s (n={n_opt}) vs direct {p95_dir:.3f}s (n={n_dir}): "
        f"{slower} optimized calls over {limit:g}s, p={p_value:.2g} alpha={alpha:g}"
    )
    return Verdict(
        name, Outcome.FAIL if worse else Outcome.PASS, difference, margin, min(n_opt, n_dir), detail
    )


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """Return P(K >= k) for K ~ Binomial(n, p), summed in log space from k up."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    total = 0.0
    for j in range(k, n + 1):
        term = math.exp(
            math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * log_p + (n - j) * log_q
        )
        total += term
        # Past the mode the terms shrink geometrically; the rest cannot matter.
        if j > n * p and term < total * 1e-12:
            break
    return min(1.0, total)
