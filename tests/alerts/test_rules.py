"""Rules from guardrails: their shape, promtool's verdict, and how they fire on synthetic series."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.rules import RuleOptions, build_rules, to_yaml
from alerts.windows import ROLLOUT_WINDOWS, WORKBOOK_WINDOWS, duration
from flags.client import Flag, Guardrail, RollbackPolicy
from rollguard import ROLLGUARD
from tests.alerts.conftest import FN, new_flag
from tests.conftest import LiveFlagService
from tests.support import require_binary

ERROR_SLO = Guardrail("error_rate", "<", 0.01, window_s=60, min_samples=100, path="optimized")
SLOW_P95 = Guardrail("p95_latency_s", "<", 0.2, window_s=120, min_samples=20, path="optimized")
HIT_RATE = Guardrail("cache_hit_rate", ">", 0.75, window_s=300, min_samples=50)
CACHE_BYTES = Guardrail("cache_bytes", "<", 15 * 1024 * 1024, window_s=60, min_samples=1)
RSS = Guardrail("rss_bytes", "<=", 512 * 1024 * 1024, window_s=60, min_samples=1)
REGRESSION = Guardrail("p95_latency_s", "<=", 0.05, window_s=120, kind="comparative")
REDUCTION = Guardrail("call_reduction", ">=", 0.5, window_s=300, min_samples=50, path="optimized")
ALL_KINDS = (ERROR_SLO, SLOW_P95, HIT_RATE, CACHE_BYTES, RSS, REGRESSION, REDUCTION)


def flag(key: str, *guardrails: Guardrail, fn: str | None = FN) -> Flag:
    return Flag(
        key=key,
        enabled=True,
        rollout=10,
        stages=(10, 50, 100),
        stage_hold_s=300,
        auto_promote=True,
        guardrails=guardrails,
        rollback=RollbackPolicy(),
        state="rolling_out",
        payload={"fn": fn} if fn else {},
        version=1,
    )


def alerts_of(document: dict[str, Any], key: str) -> list[dict[str, Any]]:
    (group,) = [g for g in document["groups"] if g["name"] == f"rollguard-flag-{key}"]
    return list(group["rules"])


# shape of the generated rules (pure)


def test_error_slo_becomes_one_burn_rate_alert_per_window_pair() -> None:
    rules = alerts_of(build_rules([flag("opt", ERROR_SLO)]).document, "opt")

    assert [
        (r["labels"]["severity"], r["labels"]["long_window"], r["labels"]["short_window"]) for r in rules
    ] == [
        ("page", "5m", "1m"),
        ("page", "30m", "3m"),
        ("ticket", "2h", "10m"),
        ("ticket", "6h", "30m"),
    ]
    fast = rules[0]
    assert fast["alert"] == "RollguardErrorBudgetBurn"
    assert (
        'fn_path:optimizer_error_ratio:rate5m{fn="get_all_exam_attempts", path="optimized"} > 0.144'
        in fast["expr"]
    )
    assert (
        'fn_path:optimizer_error_ratio:rate1m{fn="get_all_exam_attempts", path="optimized"} > 0.144'
        in fast["expr"]
    )
    assert ">= 100" in fast["expr"]
    assert "for" not in fast


def test_workbook_windows_are_the_sre_workbook_table() -> None:
    rules = alerts_of(
        build_rules([flag("opt", ERROR_SLO)], RuleOptions(windows=WORKBOOK_WINDOWS)).document, "opt"
    )

    assert [
        (r["labels"]["burn_rate"], r["labels"]["long_window"], r["labels"]["short_window"]) for r in rules
    ] == [
        ("14.4", "1h", "5m"),
        ("6", "6h", "30m"),
        ("3", "1d", "2h"),
        ("1", "3d", "6h"),
    ]


def test_rollout_windows_are_workbook_windows_scaled_down() -> None:
    for rollout, workbook in zip(ROLLOUT_WINDOWS, WORKBOOK_WINDOWS, strict=True):
        assert rollout.factor == workbook.factor
        assert rollout.severity == workbook.severity
        for scaled_s, original_s in ((rollout.long_s, workbook.long_s), (rollout.short_s, workbook.short_s)):
            assert scaled_s % 60 == 0
            assert original_s / 12 <= scaled_s < original_s / 12 + 60 or scaled_s == 60


def test_every_alert_carries_flag_action_severity_and_annotations() -> None:
    document = build_rules([flag("opt", *ALL_KINDS)]).document
    rules = alerts_of(document, "opt")

    assert len(rules) == 4 + len(ALL_KINDS) - 1
    for rule in rules:
        assert rule["labels"]["flag"] == "opt"
        assert rule["labels"]["action"] == "rollback"
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert set(rule["annotations"]) >= {"summary", "description", "guardrail", "threshold", "value"}


@pytest.mark.parametrize(
    ("guardrail", "alertname", "breach", "for_"),
    [
        pytest.param(SLOW_P95, "RollguardP95LatencyHigh", ">= 0.2", "2m", id="latency-below"),
        pytest.param(HIT_RATE, "RollguardCacheHitRateLow", "<= 0.75", "5m", id="hit-rate-above"),
        pytest.param(CACHE_BYTES, "RollguardCacheBytesHigh", ">= 15728640", "1m", id="cache-bytes"),
        pytest.param(RSS, "RollguardResidentMemoryHigh", "> 536870912", "1m", id="rss-at-most"),
        pytest.param(REDUCTION, "RollguardCallReductionLow", "< 0.5", "5m", id="reduction-at-least"),
        pytest.param(
            Guardrail("error_rate", ">", 0.0, window_s=90),
            "RollguardErrorRateLow",
            "<= 0",
            "90s",
            id="odd-op",
        ),
    ],
)
def test_other_guardrails_become_threshold_alerts_firing_on_the_failing_side(
    guardrail: Guardrail, alertname: str, breach: str, for_: str
) -> None:
    (rule,) = alerts_of(build_rules([flag("opt", guardrail)]).document, "opt")

    assert rule["alert"] == alertname
    assert f" {breach}\n" in rule["expr"] + "\n"
    assert rule["for"] == for_
    assert rule["annotations"]["guardrail"] == guardrail.name


def test_comparative_guardrail_compares_optimized_with_direct() -> None:
    (rule,) = alerts_of(build_rules([flag("opt", REGRESSION)]).document, "opt")

    assert rule["alert"] == "RollguardP95LatencyRegression"
    assert 'path="optimized"} - ignoring (path)' in rule["expr"]
    assert ") > 0.05" in rule["expr"]


def test_flags_sharing_a_function_share_one_recording_group() -> None:
    document = build_rules([flag("a", ERROR_SLO), flag("b", SLOW_P95)]).document

    names = [g["name"] for g in document["groups"]]
    assert names == [f"rollguard-fn-{FN}", "rollguard-process", "rollguard-flag-a", "rollguard-flag-b"]


def test_flag_without_function_or_guardrails_gets_no_rules() -> None:
    ruleset = build_rules([flag("nofn", ERROR_SLO, fn=None), flag("bare")])

    assert ruleset.document == {"groups": []}
    assert len(ruleset.skipped) == 1
    assert ruleset.skipped[0].startswith("nofn:")


def test_large_error_budget_caps_burn_threshold_at_total_failure() -> None:
    loose = Guardrail("error_rate", "<", 0.5, path="optimized")

    rules = alerts_of(build_rules([flag("opt", loose)]).document, "opt")

    # 14.4, 6 and 3 times a 50% budget exceed 100%; only the 1x tier keeps its ratio.
    assert [">= 1\n" in r["expr"] for r in rules] == [True, True, True, False]
    assert "> 0.5\n" in rules[-1]["expr"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45, "45s"), (90, "90s"), (120, "2m"), (3600, "1h"), (5400, "90m"), (86400, "1d")],
)
def test_durations_use_the_largest_exact_unit(seconds: int, text: str) -> None:
    assert duration(seconds) == text


# promtool on rules generated from a live flag service


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_binary("promtool")


@pytest.fixture(scope="module")
def live_rules(
    flags_live: LiveFlagService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Flag, Flag]]:
    """Rules written by `rollguard alerts rules` from flags created on a real flag service."""
    slo_flag = new_flag(flags_live, guardrails=(ERROR_SLO, SLOW_P95))
    every_kind = new_flag(flags_live, guardrails=ALL_KINDS)
    out = tmp_path_factory.mktemp("rules") / "rollguard.yml"
    result = subprocess.run(
        [*ROLLGUARD, "alerts", "rules", "--out", str(out), "--flags-url", flags_live.url],
        env={**os.environ, "ROLLGUARD_ADMIN_TOKEN": flags_live.admin_token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    yield out, slo_flag, every_kind


def test_promtool_accepts_rules_generated_from_live_flags(
    live_rules: tuple[Path, Flag, Flag], promtool: str
) -> None:
    path, slo_flag, every_kind = live_rules

    check = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )

    assert check.returncode == 0, check.stdout + check.stderr
    document = yaml.safe_load(path.read_text())
    assert len(alerts_of(document, slo_flag.key)) == 5
    assert len(alerts_of(document, every_kind.key)) == 4 + len(ALL_KINDS) - 1
    assert path.read_text().startswith("# Generated by `rollguard alerts rules")


def test_promtool_accepts_workbook_windows(tmp_path: Path, promtool: str) -> None:
    path = tmp_path / "workbook.yml"
    path.write_text(to_yaml(build_rules([flag("opt", *ALL_KINDS)], RuleOptions(windows=WORKBOOK_WINDOWS))))

    check = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )

    assert check.returncode == 0, check.stdout + check.stderr


def _series(path: str, name: str, values: str) -> dict[str, str]:
    return {
        "series": f'{name}{{fn="{FN}", path="{path}", instance="portal-1", job="portal"}}',
        "values": values,
    }


def _firing(key: str, **labels: str) -> str:
    matchers = "".join(f', {name}="{value}"' for name, value in labels.items())
    return f'count(ALERTS{{alertstate="firing", flag="{key}"{matchers}}})'


def _run_promtool_tests(promtool: str, rules: Path, tests: list[dict[str, Any]], tmp_path: Path) -> None:
    spec = tmp_path / "tests.yml"
    spec.write_text(
        yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "15s", "tests": tests})
    )
    result = subprocess.run(
        [promtool, "test", "rules", str(spec)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_burn_rate_alert_fires_for_high_error_ratio_within_minutes(
    live_rules: tuple[Path, Flag, Flag], promtool: str, tmp_path: Path
) -> None:
    path, slo_flag, _ = live_rules
    key = slo_flag.key
    tests: list[dict[str, Any]] = [
        {
            # Half of the optimized path's calls fail: 50x the 1% budget.
            "interval": "15s",
            "input_series": [
                _series("optimized", "optimizer_requests_total", "0+100x40"),
                _series("optimized", "optimizer_errors_total", "0+50x40"),
            ],
            "promql_expr_test": [
                {
                    "expr": _firing(key, long_window="5m"),
                    "eval_time": "2m",
                    "exp_samples": [{"labels": "{}", "value": 1}],
                },
                {
                    "expr": _firing(key, severity="page"),
                    "eval_time": "2m",
                    "exp_samples": [{"labels": "{}", "value": 2}],
                },
            ],
        },
        {
            # 10% errors burn 10x: the 6x page fires, the 14.4x page does not.
            "interval": "15s",
            "input_series": [
                _series("optimized", "optimizer_requests_total", "0+100x40"),
                _series("optimized", "optimizer_errors_total", "0+10x40"),
            ],
            "promql_expr_test": [
                {
                    "expr": _firing(key, long_window="30m"),
                    "eval_time": "5m",
                    "exp_samples": [{"labels": "{}", "value": 1}],
                },
                {"expr": _firing(key, long_window="5m"), "eval_time": "5m", "exp_samples": []},
            ],
        },
    ]
    _run_promtool_tests(promtool, path, tests, tmp_path)


def test_burn_rate_alert_stays_silent_for_healthy_or_idle_traffic(
    live_rules: tuple[Path, Flag, Flag], promtool: str, tmp_path: Path
) -> None:
    path, slo_flag, _ = live_rules
    key = slo_flag.key
    tests = [
        {
            # 0.5% errors: inside the 1% budget.
            "interval": "15s",
            "input_series": [
                _series("optimized", "optimizer_requests_total", "0+200x40"),
                _series("optimized", "optimizer_errors_total", "0+1x40"),
            ],
            "alert_rule_test": [
                {"alertname": "RollguardErrorBudgetBurn", "eval_time": "10m", "exp_alerts": []}
            ],
            "promql_expr_test": [{"expr": _firing(key), "eval_time": "10m", "exp_samples": []}],
        },
        {
            # Every call fails, but too few calls for the guardrail's min_samples of 100.
            "interval": "15s",
            "input_series": [
                _series("optimized", "optimizer_requests_total", "0+1x40"),
                _series("optimized", "optimizer_errors_total", "0+1x40"),
            ],
            "promql_expr_test": [
                {"expr": _firing(key, long_window="5m"), "eval_time": "5m", "exp_samples": []}
            ],
        },
        {
            # The direct path failing is not the optimized path's guardrail.
            "interval": "15s",
            "input_series": [
                _series("direct", "optimizer_requests_total", "0+100x40"),
                _series("direct", "optimizer_errors_total", "0+100x40"),
                _series("optimized", "optimizer_requests_total", "0+100x40"),
                _series("optimized", "optimizer_errors_total", "0+0x40"),
            ],
            "promql_expr_test": [{"expr": _firing(key), "eval_time": "10m", "exp_samples": []}],
        },
    ]
    _run_promtool_tests(promtool, path, tests, tmp_path)


def test_latency_alert_fires_after_its_window_only_when_p95_is_slow(
    live_rules: tuple[Path, Flag, Flag], promtool: str, tmp_path: Path
) -> None:
    path, slo_flag, _ = live_rules
    key = slo_flag.key
    requests = _series("optimized", "optimizer_requests_total", "0+100x40")

    def buckets(fast: str, slow: str) -> list[dict[str, str]]:
        name = "optimizer_call_seconds_bucket"
        return [
            {"series": f'{name}{{fn="{FN}", path="optimized", le="0.1"}}', "values": fast},
            {"series": f'{name}{{fn="{FN}", path="optimized", le="0.5"}}', "values": slow},
            {"series": f'{name}{{fn="{FN}", path="optimized", le="+Inf"}}', "values": slow},
        ]

    slow_p95 = _firing(key, alertname="RollguardP95LatencyHigh")
    tests: list[dict[str, Any]] = [
        {
            # Every call takes between 0.1 s and 0.5 s: p95 about 0.48 s against a 0.2 s guardrail.
            "interval": "15s",
            "input_series": [requests, *buckets("0+0x40", "0+100x40")],
            "promql_expr_test": [
                {"expr": slow_p95, "eval_time": "1m", "exp_samples": []},
                {"expr": slow_p95, "eval_time": "5m", "exp_samples": [{"labels": "{}", "value": 1}]},
            ],
        },
        {
            "interval": "15s",
            "input_series": [requests, *buckets("0+100x40", "0+100x40")],
            "promql_expr_test": [{"expr": slow_p95, "eval_time": "5m", "exp_samples": []}],
        },
    ]
    _run_promtool_tests(promtool, path, tests, tmp_path)
