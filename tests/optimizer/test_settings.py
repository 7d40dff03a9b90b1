"""Config validation and the flag payload's runtime overrides."""

from __future__ import annotations

import pytest

from optimizer import BreakerConfig, OptimizerConfig
from optimizer.environment import OptimizerSettings
from tests.support import python_output


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


EVERY_VARIABLE = {
    "ROLLGUARD_OPTIMIZER_TTL_S": ("12", 12.0),
    "ROLLGUARD_OPTIMIZER_STALE_S": ("30", 30.0),
    "ROLLGUARD_OPTIMIZER_JITTER": ("0", 0.0),
    "ROLLGUARD_OPTIMIZER_MAX_ENTRIES": ("500", 500),
    "ROLLGUARD_OPTIMIZER_MAX_BYTES": ("1048576", 1_048_576),
    "ROLLGUARD_OPTIMIZER_BATCH_WINDOW_MS": ("5000", 5000.0),
    "ROLLGUARD_OPTIMIZER_MAX_BATCH": ("20", 20),
    "ROLLGUARD_OPTIMIZER_MAX_CONCURRENCY": ("8", 8),
    "ROLLGUARD_OPTIMIZER_MAX_BATCHES_IN_FLIGHT": ("2", 2),
    "ROLLGUARD_OPTIMIZER_RATE_LIMIT": ("100/second", "100/second"),
    "ROLLGUARD_OPTIMIZER_SCHEMA_VERSION": ("7", "7"),
    "ROLLGUARD_OPTIMIZER_QUEUE_TIMEOUT_S": ("2.5", 2.5),
    "ROLLGUARD_OPTIMIZER_REFRESH_WORKERS": ("3", 3),
}


def _field(variable: str) -> str:
    return variable.removeprefix("ROLLGUARD_OPTIMIZER_").lower()


def test_every_environment_variable_is_read():
    config = OptimizerConfig.from_env({name: raw for name, (raw, _) in EVERY_VARIABLE.items()})
    assert {_field(name): getattr(config, _field(name)) for name in EVERY_VARIABLE} == {
        _field(name): value for name, (_, value) in EVERY_VARIABLE.items()
    }
    assert config.breaker == BreakerConfig()


def test_unset_or_empty_variables_keep_the_configs_defaults(monkeypatch):
    monkeypatch.setenv("ROLLGUARD_OPTIMIZER_TTL_S", "99")  # from_env reads only the mapping it is given
    assert OptimizerConfig.from_env({}) == OptimizerConfig()
    assert OptimizerConfig.from_env(dict.fromkeys(EVERY_VARIABLE, "")) == OptimizerConfig()


def test_another_prefix_reads_other_variables():
    environ = {"CATALOG_TTL_S": "5", "ROLLGUARD_OPTIMIZER_TTL_S": "6"}
    assert OptimizerConfig.from_env(environ, prefix="CATALOG_").ttl_s == 5.0
    with pytest.raises(ValueError, match=r"^CATALOG_MAX_BATCH='0': Input should be integer >= 1$"):
        OptimizerConfig.from_env({"CATALOG_MAX_BATCH": "0"}, prefix="CATALOG_")


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        pytest.param("ROLLGUARD_OPTIMIZER_TTL_S", "abc", "valid number", id="ttl-text"),
        pytest.param("ROLLGUARD_OPTIMIZER_TTL_S", "-1", "a number >= 0", id="ttl-negative"),
        pytest.param("ROLLGUARD_OPTIMIZER_JITTER", "1", "a number in [0, 1)", id="jitter"),
        pytest.param("ROLLGUARD_OPTIMIZER_STALE_S", "nan", "a number >= 0", id="nan"),
        pytest.param("ROLLGUARD_OPTIMIZER_MAX_BATCH", "2.5", "valid integer", id="fractional-batch"),
        pytest.param("ROLLGUARD_OPTIMIZER_MAX_CONCURRENCY", "0", "integer >= 1", id="zero-concurrency"),
        pytest.param("ROLLGUARD_OPTIMIZER_QUEUE_TIMEOUT_S", "0", "a number > 0", id="queue-timeout"),
    ],
)
def test_a_bad_environment_value_names_the_variable_and_the_value(variable, value, problem):
    with pytest.raises(ValueError) as raised:
        OptimizerConfig.from_env({variable: value})
    message = str(raised.value)
    assert message.startswith(f"{variable}={value!r}: ") and problem in message and "\n" not in message


def test_embedding_the_optimizer_does_not_load_pydantic():
    # Only OptimizerConfig.from_env reads the environment through pydantic-settings.
    code = "import sys, optimizer; print('pydantic' in sys.modules)"
    assert python_output(code).strip() == "False"


def test_the_settings_class_reads_the_process_environment_like_from_env(monkeypatch):
    environ = {name: raw for name, (raw, _) in EVERY_VARIABLE.items()}
    for name, raw in environ.items():
        monkeypatch.setenv(name, raw)
    assert OptimizerSettings().config() == OptimizerConfig.from_env(environ)
