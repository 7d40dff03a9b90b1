"""Turn flags' guardrails into Prometheus recording and alerting rules.

Pure: flags in, a rules document (the dict `promtool check rules` reads) out; no
HTTP, no files. The recorded series come from `alerts.recording`, the burn-rate
windows from `alerts.windows`. `alerts.cli` (`rollguard alerts rules`) fetches the flags and
writes the YAML; docs/alerts.md explains the rules and the burn-rate windows.

Per wrapped function (`fn`, the flag payload's "fn") one recording group holds
the derived series of the metric contract; per flag one alerting group
holds an alert per guardrail. Error-rate guardrails (`error_rate < SLO`) become
multi-window, multi-burn-rate alerts; the others threshold alerts whose `for:`
is the guardrail's window. Every alert carries `flag`, `action="rollback"` and
`severity`, which the receiver and deploy/alertmanager.yml route on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from alerts.recording import (
    THRESHOLD_RATE_WINDOW_S,
    number,
    process_rules,
    quote,
    record_name,
    recording_rules,
)
from alerts.windows import ROLLOUT_WINDOWS, BurnWindow, duration
from flags.client import PATH_METRICS, Flag, Guardrail

_TITLES = {
    "error_rate": "ErrorRate",
    "p95_latency_s": "P95Latency",
    "cache_hit_rate": "CacheHitRate",
    "call_reduction": "CallReduction",
    "cache_bytes": "CacheBytes",
    "rss_bytes": "ResidentMemory",
}

# How each value is shown in an annotation (Prometheus template functions).
_HUMANIZE = {
    "error_rate": "humanizePercentage",
    "p95_latency_s": "humanizeDuration",
    "cache_hit_rate": "humanizePercentage",
    "call_reduction": "humanizePercentage",
    "cache_bytes": "humanize1024",
    "rss_bytes": "humanize1024",
}

# The op that fails a guardrail `value op threshold`, i.e. the op under which the alert fires.
_BREACH_OP = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}


@dataclass(frozen=True)
class RuleOptions:
    """Choices of the generator that do not come from the flags."""

    windows: tuple[BurnWindow, ...] = ROLLOUT_WINDOWS
    rss_selector: str = 'job="portal"'


@dataclass
class RuleSet:
    """The rules document plus the guardrails that could not become rules, with why."""

    document: dict[str, Any]
    skipped: list[str] = field(default_factory=list)

    @property
    def alert_count(self) -> int:
        return sum(1 for g in self.document["groups"] for r in g["rules"] if "alert" in r)


def build_rules(flags: Iterable[Flag], options: RuleOptions | None = None) -> RuleSet:
    """Build recording groups for every fn the flags wrap and an alerting group per flag."""
    options = options or RuleOptions()
    skipped: list[str] = []
    recording: dict[str, list[dict[str, Any]]] = {}
    alerting: list[dict[str, Any]] = []
    for flag in sorted(flags, key=lambda f: f.key):
        if not flag.guardrails:
            continue
        fn = flag.payload.get("fn")
        if not isinstance(fn, str) or not fn:
            skipped.append(f"{flag.key}: payload has no 'fn', so its metrics cannot be selected")
            continue
        if fn not in recording:
            recording[fn] = recording_rules(fn, options.windows)
        rules: list[dict[str, Any]] = []
        for guardrail in flag.guardrails:
            try:
                rules.extend(_alerts_for(flag, fn, guardrail, options))
            except ValueError as exc:
                skipped.append(f"{flag.key}: {guardrail.name}: {exc}")
        if rules:
            alerting.append({"name": f"rollguard-flag-{flag.key}", "rules": rules})
    groups = [{"name": f"rollguard-fn-{fn}", "rules": rules} for fn, rules in sorted(recording.items())]
    if recording:
        groups.append({"name": "rollguard-process", "rules": process_rules(options.rss_selector)})
    # The caller reports `skipped` (the CLI prints each once); logging it here too printed it twice.
    return RuleSet({"groups": groups + alerting}, skipped)


def to_yaml(ruleset: RuleSet, *, header: str | None = None) -> str:
    """Render a rule set as the YAML file Prometheus loads, after an optional comment header."""
    text: str = yaml.dump(
        ruleset.document, Dumper=_RulesDumper, sort_keys=False, default_flow_style=False, width=1000
    )
    if header:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + text
    return text


class _RulesDumper(yaml.SafeDumper):
    """Writes multi-line PromQL as literal blocks, the way people write rule files."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_RulesDumper.add_representer(str, _represent_str)


def _alerts_for(flag: Flag, fn: str, guardrail: Guardrail, options: RuleOptions) -> list[dict[str, Any]]:
    if guardrail.metric not in _TITLES:
        raise ValueError(f"unknown metric {guardrail.metric!r}")
    if guardrail.op not in _BREACH_OP:
        raise ValueError(f"unknown op {guardrail.op!r}")
    if guardrail.path is not None and guardrail.path not in ("optimized", "direct"):
        raise ValueError(f"unknown path {guardrail.path!r}")
    if guardrail.kind == "comparative":
        return [_comparative_alert(flag, fn, guardrail)]
    if guardrail.kind != "threshold":
        raise ValueError(f"unknown kind {guardrail.kind!r}")
    if guardrail.metric == "error_rate" and guardrail.op in ("<", "<="):
        return _burn_rate_alerts(flag, fn, guardrail, options.windows)
    return [_threshold_alert(flag, fn, guardrail)]


def _burn_rate_alerts(
    flag: Flag, fn: str, guardrail: Guardrail, windows: Sequence[BurnWindow]
) -> list[dict[str, Any]]:
    slo = guardrail.threshold
    if not 0 < slo < 1:
        raise ValueError(f"an error-ratio SLO must lie strictly between 0 and 1, got {slo:g}")
    per_path = guardrail.path is not None
    sel = _series_selector(fn, guardrail.path)
    on = "fn, path" if per_path else "fn"
    rules = []
    for tier in windows:
        limit = tier.factor * slo
        # With a large budget (slo > 1/factor) the ratio can never exceed factor*slo;
        # the tier then fires only when every call fails.
        op, limit = (">", limit) if limit < 1 else (">=", 1.0)
        long_w, short_w = duration(tier.long_s), duration(tier.short_s)
        long_series = record_name("error_rate", per_path=per_path, window_s=tier.long_s) + sel
        short_series = record_name("error_rate", per_path=per_path, window_s=tier.short_s) + sel
        expr = (
            f"{long_series} {op} {number(limit)}\n"
            f"and\n{short_series} {op} {number(limit)}\n"
            f"and on ({on})\n"
            f"sum by ({on}) (increase(optimizer_requests_total{sel}[{long_w}])) >= {guardrail.min_samples}"
        )
        where = f" on the {guardrail.path} path" if per_path else ""
        rules.append(
            {
                "alert": "RollguardErrorBudgetBurn",
                "expr": expr,
                "labels": {
                    **_labels(flag, fn, guardrail, tier.severity),
                    "burn_rate": number(tier.factor),
                    "long_window": long_w,
                    "short_window": short_w,
                },
                "annotations": {
                    "summary": (
                        f"Flag {flag.key}: {fn}{where} burns its error budget {number(tier.factor)}x "
                        f"too fast (error ratio {{{{ $value | humanizePercentage }}}} over {long_w})"
                    ),
                    "description": (
                        f"The error ratio of {fn}{where} is above {number(tier.factor)} x the SLO's "
                        f"allowed {number(slo)} over both {long_w} and {short_w}. Rolling the flag back."
                    ),
                    "guardrail": guardrail.name,
                    "threshold": number(slo),
                    "value": "{{ $value }}",
                },
            }
        )
    return rules


def _threshold_alert(flag: Flag, fn: str, guardrail: Guardrail) -> dict[str, Any]:
    metric = guardrail.metric
    per_path = guardrail.path is not None
    if per_path and metric not in PATH_METRICS:
        raise ValueError(f"{metric} has no per-path series")
    sel = _series_selector(fn, guardrail.path)
    breach = _BREACH_OP[guardrail.op]
    if metric == "rss_bytes":
        series = record_name(metric, per_path=False)
        expr = f"{series} {breach} {number(guardrail.threshold)}"
    elif metric == "cache_bytes":
        series = record_name(metric, per_path=False) + f"{{fn={quote(fn)}}}"
        expr = f"{series} {breach} {number(guardrail.threshold)}"
    else:
        series = record_name(metric, per_path=per_path, window_s=THRESHOLD_RATE_WINDOW_S) + sel
        on = "fn, path" if per_path else "fn"
        expr = (
            f"{series} {breach} {number(guardrail.threshold)}\n"
            f"and on ({on})\n"
            f"sum by ({on}) (increase(optimizer_requests_total{sel}[{duration(THRESHOLD_RATE_WINDOW_S)}]))"
            f" >= {guardrail.min_samples}"
        )
    where = f" on the {guardrail.path} path" if per_path else ""
    value = f"{{{{ $value | {_HUMANIZE[metric]} }}}}"
    direction = "High" if breach in (">", ">=") else "Low"
    return {
        "alert": f"Rollguard{_TITLES[metric]}{direction}",
        "expr": expr,
        "for": duration(guardrail.window_s),
        "labels": _labels(flag, fn, guardrail, "page"),
        "annotations": {
            "summary": f"Flag {flag.key}: {metric} of {fn}{where} is {value}, guardrail {guardrail.name}",
            "description": (
                f"{metric} of {fn}{where} has failed the guardrail {metric} {guardrail.op} "
                f"{number(guardrail.threshold)} for {duration(guardrail.window_s)}. Rolling the flag back."
            ),
            "guardrail": guardrail.name,
            "threshold": number(guardrail.threshold),
            "value": "{{ $value }}",
        },
    }


def _comparative_alert(flag: Flag, fn: str, guardrail: Guardrail) -> dict[str, Any]:
    metric = guardrail.metric
    if metric not in ("error_rate", "p95_latency_s", "call_reduction"):
        raise ValueError(f"{metric} has no per-path series to compare")
    w = duration(THRESHOLD_RATE_WINDOW_S)
    name = record_name(metric, per_path=True, window_s=THRESHOLD_RATE_WINDOW_S)
    fn_q = quote(fn)
    optimized = f'{name}{{fn={fn_q}, path="optimized"}}'
    direct = f'{name}{{fn={fn_q}, path="direct"}}'
    # "Worse" is higher for errors and latency, lower for call reduction.
    worse = f"({optimized} - ignoring (path) {direct})"
    if metric == "call_reduction":
        worse = f"({direct} - ignoring (path) {optimized})"
    expr = (
        f"{worse} > {number(guardrail.threshold)}\n"
        f"and on (fn)\n"
        f"min by (fn) (sum by (fn, path) (increase(optimizer_requests_total{{fn={fn_q}}}[{w}])))"
        f" >= {guardrail.min_samples}"
    )
    return {
        "alert": f"Rollguard{_TITLES[metric]}Regression",
        "expr": expr,
        "for": duration(guardrail.window_s),
        "labels": _labels(flag, fn, guardrail, "page"),
        "annotations": {
            "summary": (
                f"Flag {flag.key}: {metric} of {fn} is worse on the optimized path than on the "
                f"direct one by {{{{ $value }}}}"
            ),
            "description": (
                f"The optimized cohort's {metric} has been worse than the direct cohort's by more "
                f"than {number(guardrail.threshold)} for {duration(guardrail.window_s)}. Rolling the flag back."
            ),
            "guardrail": guardrail.name,
            "threshold": number(guardrail.threshold),
            "value": "{{ $value }}",
        },
    }


def _labels(flag: Flag, fn: str, guardrail: Guardrail, severity: str) -> dict[str, str]:
    return {
        "flag": flag.key,
        "action": "rollback",
        "severity": severity,
        "guardrail": guardrail.name,
        "fn": fn,
    }


def _series_selector(fn: str, path: str | None) -> str:
    if path is None:
        return f"{{fn={quote(fn)}}}"
    return f"{{fn={quote(fn)}, path={quote(path)}}}"
