"""Configuration of one optimized function, and the runtime overrides from its flag payload.

The app builds an `OptimizerConfig` at its entry point (in code, or from the
environment with `from_env`, which `optimizer.environment` reads) and passes it
to `Optimizer`. At runtime the gate hands over the flag's payload;
`OptimizerConfig.with_payload` applies the keys below on top of the static
config. A bad value is reported back (the optimizer logs it) and ignored, never
raised to the caller.

Payload keys (all optional; unknown keys are ignored so one payload can carry
other settings too):

==========================  ==========================================  ===============
key                         meaning                                     valid values
==========================  ==========================================  ===============
ttl_s                       seconds a cached value stays fresh          number >= 0
stale_s                     grace after expiry served stale while       number >= 0
                            one background refresh runs (0 = never)
batch_window_ms             how long a batch waits for more keys        0 <= n <= 1000
max_batch                   most keys in one `batch_fn` call            integer >= 1
max_concurrency             most backend calls in flight at once        integer >= 1
max_batches_in_flight       most `get_many` batch calls at once; more   integer >= 1
                            misses wait and share the next call
breaker_error_rate          trip when the optimized error share         0 < n <= 1
                            exceeds the direct path's by this
breaker_slow_share          trip when this share of optimized calls     0 < n <= 1
                            is slow
breaker_latency_ratio       slow: over this times the direct p90        number >= 1
breaker_latency_floor_s     ... and over this many seconds              number > 0
breaker_latency_s           slow, when the direct path has no calls     number > 0
breaker_latency_hold_s      how long latency without errors must last   number >= 0
breaker_min_calls           optimized calls in the window to judge      integer >= 1
breaker_window_s            the sliding window the breaker judges       number > 0
breaker_cooldown_s          how long calls go direct before probing     number >= 0
breaker_probe_share         share of calls that probe when half-open    0 < n <= 1
==========================  ==========================================  ===============
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BreakerConfig:
    """Thresholds of the local circuit breaker; `optimizer.breaker` explains the rule.

    Every `window_s / 10` seconds the breaker looks at the calls that finished
    in the last `window_s` seconds. With at least `min_calls` optimized calls
    there, it opens when the optimized error share exceeds the direct path's
    by `error_rate`, or when at least `slow_share` of the optimized calls are
    slow: slower than `latency_ratio` times the direct path's p90 and than
    `latency_floor_s`; with fewer than `min_calls` direct calls in the window,
    latency is not judged while direct calls were seen in the last 30 s, and
    slow means slower than `latency_s` when none were (no direct cohort).
    Slow calls trip it at once when the optimized error share also exceeds
    the direct one by half of `error_rate`, else only once every tick found
    them for `latency_hold_s`. Every rule also needs `ceil(min_calls / 2)` bad calls.
    Open, every call goes direct for `cooldown_s`; then `probe_share` of the
    calls probe the optimized path until `min_calls` probes finished, and it
    closes if they pass the same rule, or opens again.
    """

    error_rate: float = 0.2
    slow_share: float = 0.5
    latency_ratio: float = 2.0
    latency_floor_s: float = 0.25
    latency_s: float = 1.0
    latency_hold_s: float = 5.0
    min_calls: int = 5
    window_s: float = 1.0
    cooldown_s: float = 5.0
    probe_share: float = 0.1

    def __post_init__(self) -> None:
        for name, (check, rule) in _BREAKER_RULES.items():
            if not check(getattr(self, name)):
                raise ValueError(f"BreakerConfig.{name} must be {rule}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class OptimizerConfig:
    """Static settings of one optimized function; see the module docstring for payload overrides.

    :param ttl_s: seconds a value stays fresh.
    :param stale_s: stale-while-revalidate grace after expiry; 0 never serves stale.
    :param jitter: share of the TTL cut at random from each entry (0.1: 90-100% of ttl_s),
        so entries written together do not expire together. Only ever shortens the TTL.
    :param max_entries: most entries held in process.
    :param max_bytes: most bytes held in process, measured per entry by `sizing.measure`.
    :param batch_window_ms: how long the first key of a batch waits for others.
    :param max_batch: most keys in one `batch_fn` call.
    :param max_concurrency: most backend calls in flight at once (per optimizer).
    :param max_batches_in_flight: most `get_many` batch calls at once; the misses of other
        `get_many` calls wait for one to finish and share the next (`optimizer.grouping`).
    :param rate_limit: backend call rate in `limits` notation ("200/second"), None = off.
    :param schema_version: part of every cache key; bump it when the value's shape changes.
    :param breaker: thresholds of the local circuit breaker.
    :param queue_timeout_s: longest a call waits for a backend slot or the rate limit.
    :param refresh_workers: threads for background refreshes and prefetches.
    """

    ttl_s: float = 30.0
    stale_s: float = 0.0
    jitter: float = 0.1
    max_entries: int = 10_000
    max_bytes: int = 16 * 1024 * 1024
    batch_window_ms: float = 2.0
    max_batch: int = 100
    max_concurrency: int = 32
    max_batches_in_flight: int = 4
    rate_limit: str | None = None
    schema_version: int | str = 1
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    queue_timeout_s: float = 10.0
    refresh_workers: int = 2

    def __post_init__(self) -> None:
        for name, (check, rule) in STATIC_RULES.items():
            if not check(getattr(self, name)):
                raise ValueError(f"OptimizerConfig.{name} must be {rule}, got {getattr(self, name)!r}")

    def with_payload(self, payload: Mapping[str, Any] | None) -> tuple[OptimizerConfig, list[str]]:
        """Return this config with the payload's valid overrides applied, and the problems found."""
        if not payload:
            return self, []
        problems: list[str] = []
        top: dict[str, Any] = {}
        breaker: dict[str, Any] = {}
        for key, value in payload.items():
            if key in _CONFIG_RULES:
                target, name, rules = top, key, _CONFIG_RULES
            elif key.startswith("breaker_") and key[8:] in _BREAKER_RULES:
                target, name, rules = breaker, key[8:], _BREAKER_RULES
            else:
                continue
            check, rule = rules[name]
            if check(value):
                target[name] = int(value) if rule.startswith("integer") else float(value)
            else:
                problems.append(f"payload {key}={value!r} ignored: must be {rule}")
        if breaker:
            top["breaker"] = dataclasses.replace(self.breaker, **breaker)
        return (dataclasses.replace(self, **top) if top else self), problems

    @classmethod
    def from_env(cls, environ: Mapping[str, str], prefix: str = "ROLLGUARD_OPTIMIZER_") -> OptimizerConfig:
        """Build a config from `environ`'s `<prefix><FIELD>` variables (`ttl_s`: ROLLGUARD_OPTIMIZER_TTL_S).

        For entry points only: see `optimizer.environment`; the breaker keeps its defaults.

        :raise ValueError: a value is invalid (the message names the variable and the value).
        """
        # Imported here: an app that builds its config in code does not load pydantic.
        from optimizer.environment import config_from_env

        return config_from_env(environ, prefix=prefix)


def _number(low: float, high: float = math.inf, *, low_open: bool = False) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return False
        return (value > low if low_open else value >= low) and value <= high

    return check


def _integer(low: int) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return isinstance(value, int) and value >= low

    return check


_CONFIG_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "ttl_s": (_number(0), "a number >= 0"),
    "stale_s": (_number(0), "a number >= 0"),
    "batch_window_ms": (_number(0, 1000), "a number in [0, 1000]"),
    "max_batch": (_integer(1), "integer >= 1"),
    "max_concurrency": (_integer(1), "integer >= 1"),
    "max_batches_in_flight": (_integer(1), "integer >= 1"),
}

# A config written in code: the payload's rules, except that batch_window_ms may exceed 1 s,
# and the fields a payload cannot set.
STATIC_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **_CONFIG_RULES,
    "batch_window_ms": (_number(0), "a number >= 0"),
    "jitter": (_number(0, 0.999), "a number in [0, 1)"),
    "max_entries": (_integer(1), "integer >= 1"),
    "max_bytes": (_integer(1), "integer >= 1"),
    "queue_timeout_s": (_number(0, low_open=True), "a number > 0"),
    "refresh_workers": (_integer(1), "integer >= 1"),
}

_BREAKER_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "error_rate": (_number(0, 1, low_open=True), "a number in (0, 1]"),
    "slow_share": (_number(0, 1, low_open=True), "a number in (0, 1]"),
    "latency_ratio": (_number(1), "a number >= 1"),
    "latency_floor_s": (_number(0, low_open=True), "a number > 0"),
    "latency_s": (_number(0, low_open=True), "a number > 0"),
    "latency_hold_s": (_number(0), "a number >= 0"),
    "min_calls": (_integer(1), "integer >= 1"),
    "window_s": (_number(0, low_open=True), "a number > 0"),
    "cooldown_s": (_number(0), "a number >= 0"),
    "probe_share": (_number(0, 1, low_open=True), "a number in (0, 1]"),
}
