"""Config validation and the flag payload's runtime overrides."""

from __future__ import annotations

import pytest

from optimizer import BreakerConfig, OptimizerConfig


@pytest.mark.parametrize(
    ("payload", "expected", "problems"),
    [
        pytest.param({"ttl_s": 5, "stale_s": 2.5}, {"ttl_s": 5.0, "stale_s": 2.5}, [], id="numbers"),
        pytest.param({"max_batch": 50.0}, {"max_batch": 50}, [], id="integral-float"),
        pytest.param({"max_batch": 2.5}, {}, ["max_batch"], id="fractional-batch"),
        pytest.param({"ttl_s": True}, {}, ["ttl_s"], id="bool-is-not-a-number"),
        pytest.param({"ttl_s": -1}, {}, ["ttl_s"], id="negative"),
        pytest.param({"ttl_s": "30"}, {}, ["ttl_s"], id="string"),
        pytest.param({"batch_window_ms": 5000}, {}, ["batch_window_ms"], id="window-over-a-second"),
        pytest.param({"max_concurrency": 0}, {}, ["max_concurrency"], id="zero-concurrency"),
        pytest.param({"ttl_s": float("nan")}, {}, ["ttl_s"], id="nan"),
        pytest.param({"unrelated": 1, "ttl_s": 7}, {"ttl_s": 7.0}, [], id="unknown-keys-ignored"),
    ],
)
def test_payload_overrides_are_validated(payload, expected, problems):
    base = OptimizerConfig()
    config, found = base.with_payload(payload)
    for name, value in expected.items():
        assert getattr(config, name) == value
    for name in {"ttl_s", "stale_s", "max_batch", "max_concurrency", "batch_window_ms"} - set(expected):
        assert getattr(config, name) == getattr(base, name)
    assert [p.split("=")[0].removeprefix("payload ") for p in found] == problems


@pytest.mark.parametrize(
    ("payload", "field", "value"),
    [
        pytest.param({"breaker_error_rate": 0.2}, "error_rate", 0.2, id="error-rate"),
        pytest.param({"breaker_slow_share": 0.3}, "slow_share", 0.3, id="slow-share"),
        pytest.param({"breaker_latency_ratio": 3}, "latency_ratio", 3.0, id="latency-ratio"),
        pytest.param({"breaker_latency_floor_s": 0.05}, "latency_floor_s", 0.05, id="latency-floor"),
        pytest.param({"breaker_latency_s": 2}, "latency_s", 2.0, id="latency"),
        pytest.param({"breaker_latency_hold_s": 3}, "latency_hold_s", 3.0, id="latency-hold"),
        pytest.param({"breaker_probe_share": 0.5}, "probe_share", 0.5, id="probe-share"),
        pytest.param({"breaker_min_calls": 50}, "min_calls", 50, id="min-calls"),
        pytest.param({"breaker_window_s": 120}, "window_s", 120.0, id="window"),
        pytest.param({"breaker_cooldown_s": 0}, "cooldown_s", 0.0, id="cooldown"),
    ],
)
def test_breaker_thresholds_come_from_the_payload(payload, field, value):
    config, problems = OptimizerConfig().with_payload(payload)
    assert getattr(config.breaker, field) == value and problems == []


def test_breaker_payload_values_out_of_range_are_reported():
    config, problems = OptimizerConfig().with_payload({"breaker_error_rate": 0, "breaker_min_calls": -3})
    assert config.breaker == BreakerConfig()
    assert len(problems) == 2


def test_invalid_static_config_raises():
    with pytest.raises(ValueError, match="ttl_s"):
        OptimizerConfig(ttl_s=-1)
    with pytest.raises(ValueError, match="error_rate"):
        BreakerConfig(error_rate=2)


def test_config_from_environment_variables():
    config = OptimizerConfig.from_env(
        {
            "ROLLGUARD_OPTIMIZER_TTL_S": "12",
            "ROLLGUARD_OPTIMIZER_MAX_BATCH": "20",
            "ROLLGUARD_OPTIMIZER_RATE_LIMIT": "100/second",
        }
    )
    assert (config.ttl_s, config.max_batch, config.rate_limit) == (12.0, 20, "100/second")
