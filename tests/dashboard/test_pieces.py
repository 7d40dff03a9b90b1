"""The dashboard's pure parts: guardrail validation, health, markers, thinning, settings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from control import ControllerStatus, LastCheck, VerdictRecord
from dashboard.charts import Row, classify, downsample, markers_from_events, metric_figure
from dashboard.guardrails import GuardrailRow, validate
from dashboard.health import Health, badge, describe, labels
from dashboard.live_checks import age, lines
from dashboard.plots import default_range, step_for, story_start
from dashboard.settings import DashboardSettings
from dashboard.verdicts import condense, flag_history, join, silence_s, silences, timeline, verdict_runs
from flags.client import Event, Flag, Guardrail, RollbackPolicy
from tests.dashboard.figures import panels

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


@dataclass(frozen=True)
class P:
    time: datetime
    value: float


@dataclass(frozen=True)
class V:
    time: datetime
    guardrail: str
    verdict: str
    value: float | None = None
    threshold: float = 0.01
    samples: int = 0


def _flag(enabled: bool = True) -> Flag:
    return Flag(
        key="f",
        enabled=enabled,
        rollout=10,
        stages=(10, 50, 100),
        stage_hold_s=60,
        auto_promote=False,
        guardrails=(),
        rollback=RollbackPolicy(),
        state="rolling_out",
        payload={},
        version=1,
    )


def _row(**changes: object) -> GuardrailRow:
    base = {
        "metric": "error_rate",
        "op": "<=",
        "threshold": 0.01,
        "window_s": 60,
        "min_samples": 20,
        "path": "optimized",
        "kind": "threshold",
    }
    return GuardrailRow(**{**base, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        pytest.param(_row(threshold=1.5), "is a fraction", id="rate-above-one"),
        pytest.param(_row(threshold=float("nan")), "finite", id="nan"),
        pytest.param(
            _row(metric="cache_bytes", path="optimized", threshold=1e6), "has no cohorts", id="cohort"
        ),
        pytest.param(_row(window_s=0), "at least 1s", id="short-window"),
        pytest.param(_row(min_samples=0), "min samples", id="no-samples"),
        pytest.param(_row(op="=="), "unknown operator", id="operator"),
        pytest.param(
            _row(metric="cache_hit_rate", path=None, kind="comparative"), "needs one of", id="comparative"
        ),
        pytest.param(_row(metric="p95_latency_s", threshold=-1.0), "cannot be negative", id="negative"),
    ],
)
def test_validation_names_the_problem(row: GuardrailRow, problem: str) -> None:
    guardrails, errors = validate([row])
    assert guardrails == []
    assert len(errors) == 1 and problem in errors[0] and errors[0].startswith("guardrail 1:")


def test_validation_accepts_good_rows_and_refuses_duplicates() -> None:
    guardrails, errors = validate([_row(), _row(metric="cache_bytes", path=None, threshold=15e6), _row()])
    assert [g.name for g in guardrails] == ["error_rate[optimized]<=0.01", "cache_bytes<=1.5e+07"]
    assert errors == ["guardrail 3: duplicates error_rate[optimized]<=0.01"]


def test_badge() -> None:
    assert badge(_flag(enabled=False), ["fail"]) is Health.OFF
    assert badge(_flag(), []) is Health.UNKNOWN
    assert badge(_flag(), ["pass", "fail"]) is Health.BREACHED
    assert badge(_flag(), ["no_data", "no_data"]) is Health.NO_DATA
    assert badge(_flag(), ["pass", "no_data"]) is Health.HEALTHY


def test_describe() -> None:
    # Which verdict is the latest of each guardrail is the controller's: tests/control/test_history.py.
    assert describe(V(T0 + timedelta(seconds=5), "a", "fail", 0.25, 0.01, 1200)) == "a: 0.25 (1200 samples)"
    assert describe(V(T0, "b", "no_data")) == "b: no value (0 samples)"


def _check(flag: Flag, *verdicts: VerdictRecord, not_judged: str | None = None, notes=()) -> LastCheck:
    judged_at = verdicts[0].time if verdicts else None
    return LastCheck(flag.key, () if not_judged else verdicts, judged_at, not_judged, tuple(notes))


def test_live_checks_word_the_controllers_last_check() -> None:
    memory = Guardrail("cache_bytes", "<=", 15_000_000, window_s=60)
    errors = Guardrail("error_rate", "<=", 0.01, window_s=60, path="optimized")
    added = Guardrail("cache_hit_rate", ">=", 0.5, window_s=60)
    flag = dataclasses.replace(_flag(), guardrails=(errors, memory, added))
    judged_at = T0 - timedelta(seconds=3)
    check = _check(
        flag,
        VerdictRecord(judged_at, "f", errors.name, "fail", 0.25, 0.01, 1200, "error_rate"),
        VerdictRecord(judged_at, "f", memory.name, "no_data", None, 15e6, 1, "cache_bytes", None, "1 < 3"),
        VerdictRecord(judged_at, "f", "rss_bytes<=1e+08", "pass", 8e7, 1e8, 12, "rss_bytes"),
        notes=["auto-promote off: promotion is manual"],
    )

    assert lines(flag, Health.BREACHED, check, None, now=T0) == [
        "Health: ▲ BREACHED · judged 3 s ago by the controller",
        "error_rate[optimized]<=0.01: 25% (1200 samples) → fail",
        "cache_bytes<=15 MB: no value (1 samples) → no_data (1 < 3)",
        "cache_hit_rate>=0.5 → not judged yet (added after this check)",
        "rss_bytes<=1e+08: 8e+07 (12 samples) → pass (guardrail since removed)",
        "auto-promote off: promotion is manual",
    ]


def test_live_checks_say_why_nothing_is_judged() -> None:
    flag = _flag()
    stopped = ControllerStatus("c", T0 - timedelta(hours=1), T0, T0 - timedelta(minutes=4), is_live=False)
    old = VerdictRecord(T0 - timedelta(minutes=5), "f", "a", "pass", 0.0, 0.01, 100)
    check = _check(flag, old, not_judged="no controller running")
    assert lines(flag, Health.NOT_JUDGED, check, stopped, now=T0) == [
        "Health: ◌ not judged: no controller running (last evaluation 4 min ago) · last check 5 min ago"
    ]
    killed = dataclasses.replace(flag, enabled=False, state="rolled_back")
    check = _check(killed, not_judged="killed: the controller does not judge a killed flag")
    assert lines(killed, Health.OFF, check, stopped, now=T0) == [
        "Health: ■ off · not judged: killed: the controller does not judge a killed flag"
    ]


def test_ages() -> None:
    assert [
        age(T0 - timedelta(seconds=s), T0) for s in (-2, 0, 3, 119, 120, 7199, 7200, 2 * 86_400 + 60)
    ] == [
        "0 s ago",
        "0 s ago",
        "3 s ago",
        "119 s ago",
        "2 min ago",
        "119 min ago",
        "2 h ago",
        "at 2025-12-30 11:59 UTC",
    ]
    assert age(None, T0) == "never"


def test_guardrail_values_are_shown_in_their_units() -> None:
    memory = Guardrail("cache_bytes", "<=", 15_000_000, window_s=60)
    errors = Guardrail("error_rate", "<=", 0.01, window_s=60, path="optimized")
    latency = Guardrail("p95_latency_s", "<=", 0.2, window_s=60, path="optimized")
    judged = [
        V(T0, memory.name, "fail", 14_237_000.0, samples=12),
        V(T0, errors.name, "fail", 0.25, samples=1200),
        V(T0, latency.name, "pass", 0.1834, samples=1200),
    ]
    shown = [describe(v, (memory, errors, latency)) for v in judged]
    assert shown == [
        "cache_bytes<=15 MB: 14.24 MB (12 samples)",
        "error_rate[optimized]<=0.01: 25% (1200 samples)",
        "p95_latency_s[optimized]<=0.2: 183.4 ms (1200 samples)",
    ]
    assert labels((memory, errors))[memory.name] == "cache_bytes<=15 MB"
    assert "e+" not in " ".join(shown)


def _event(
    action: str, before: dict[str, object] | None, after: dict[str, object] | None, actor: str = "a"
) -> Event:
    return Event(
        id=1, time=T0, flag="f", actor=actor, action=action, reason="why", before=before, after=after
    )


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        pytest.param(_event("set_rollout", {"rollout": 10}, {"rollout": 50}), "rollout", id="operator-up"),
        pytest.param(
            _event("set_rollout", {"rollout": 10}, {"rollout": 50}, "controller"), "promotion", id="promote"
        ),
        pytest.param(_event("set_rollout", {"rollout": 50}, {"rollout": 10}), "rollback", id="down"),
        pytest.param(_event("kill", {"enabled": True}, {"enabled": False}), "rollback", id="kill"),
        pytest.param(_event("resume", {"enabled": False}, {"enabled": True}), "resume", id="resume"),
        pytest.param(_event("update", {"auto_promote": False}, {"auto_promote": True}), None, id="unrelated"),
        pytest.param(_event("create", None, {"rollout": 10}), None, id="create"),
    ],
)
def test_classify(event: Event, kind: str | None) -> None:
    assert classify(event) == kind


def test_markers_say_who_and_why() -> None:
    [marker] = markers_from_events([_event("set_rollout", {"rollout": 10}, {"rollout": 50}, "dashboard:ann")])
    assert marker.label == "rollout -> 50% by dashboard:ann: why"


def test_downsample_keeps_spikes_and_bounds_points() -> None:
    points = [P(T0 + timedelta(seconds=5 * i), 0.0) for i in range(17_280)]
    points[12_345] = P(points[12_345].time, 1.0)
    times, values = downsample(points, 2000)
    assert len(values) <= 2000
    assert max(values) == 1.0
    assert times == sorted(times)


def test_verdict_runs_collapse_equal_verdicts() -> None:
    verdicts = [V(T0 + timedelta(seconds=5 * i), "g", "fail" if 3 <= i < 5 else "pass") for i in range(8)]
    runs = verdict_runs(verdicts)
    assert [(r.verdict, r.count) for r in runs] == [("pass", 3), ("fail", 2), ("pass", 3)]
    assert runs[0].end == runs[1].start


def _varied_verdicts(interval_s: float) -> list[V]:
    """Three guardrails judged every `interval_s` with jitter for 3 hours: flips, and silences of 20 s to 10 min."""
    found: list[V] = []
    moment = T0
    step = 0
    while moment < T0 + timedelta(hours=3):
        for index, name in enumerate(("a", "b", "c")):
            verdict = ("pass", "fail", "no_data")[(step // (7 + 5 * index)) % (2 + index % 2)]
            found.append(V(moment, name, verdict, value=step / 10))
        step += 1
        silence = {150: 20, 200: 28, 400: 45, 600: 600, 700: 31}.get(step, 0)
        moment += timedelta(seconds=interval_s + silence, microseconds=(step * 7919) % 400_000)
    return found


@pytest.mark.parametrize("interval_s", [5, 15])  # 15 s: silences of 31 s and 45 s are not "not judged"
@pytest.mark.parametrize(
    "edges_s", [(), (3600, 7200), (1234.5, 1800, 4444, 9000), tuple(range(300, 10_800, 300))]
)
def test_stretches_join_into_the_runs_of_all_verdicts(interval_s: float, edges_s: tuple[float, ...]) -> None:
    verdicts = _varied_verdicts(interval_s)
    cuts = [T0 - timedelta(seconds=1), *(T0 + timedelta(seconds=e) for e in edges_s), T0 + timedelta(hours=4)]
    stretches = [
        condense(v for v in verdicts if a <= v.time < b) for a, b in zip(cuts, cuts[1:], strict=False)
    ]

    runs, gap_s = join(stretches)

    assert gap_s == silence_s(verdicts)
    assert runs == verdict_runs(verdicts)
    assert any(r.verdict == "fail" for r in runs) and len(runs) > 20


def test_step_for() -> None:
    assert step_for(3600, None) == 5
    assert step_for(21_600, None) == 25
    assert step_for(86_400, None) == 120  # whole minutes: read from the per-minute rollup
    assert step_for(604_800, None) == 900  # whole 5 minutes
    assert step_for(86_400, 5) == 5


def test_settings_from_env_and_secrets() -> None:
    settings = DashboardSettings.from_env(
        {
            "ROLLGUARD_FLAGS_URL": "http://f:1/",
            "ROLLGUARD_ADMIN_TOKEN": "t",
            "ROLLGUARD_DASHBOARD_OPERATOR": "ann",
            "ROLLGUARD_METRICS": "prometheus",
        },
        {"refresh_s": 2, "control_database_url": "sqlite:///x.db"},
    )
    assert (settings.flags_url, settings.actor, settings.refresh_s, settings.can_write) == (
        "http://f:1",
        "dashboard:ann",
        2.0,
        True,
    )
    assert dict(settings.control_env)["ROLLGUARD_CONTROL_DATABASE_URL"] == "sqlite:///x.db"
    assert dict(settings.control_env)["ROLLGUARD_METRICS"] == "prometheus"
    assert not DashboardSettings.from_env(
        {"ROLLGUARD_ADMIN_TOKEN": "t", "ROLLGUARD_DASHBOARD_READ_ONLY": "true"}
    ).can_write
    with pytest.raises(ValueError):
        DashboardSettings.from_env({"ROLLGUARD_DASHBOARD_REFRESH_S": "0"})


def test_a_line_breaks_where_no_samples_came() -> None:
    points = [P(T0 + timedelta(seconds=5 * i), 0.1) for i in range(10)]
    points += [P(T0 + timedelta(seconds=600 + 5 * i), 0.2) for i in range(10)]
    figure = metric_figure([Row("error rate", {"optimized": points})], start=T0, end=T0 + timedelta(hours=1))
    ys = panels(figure)["error rate"]["optimized"]["y"]
    assert ys.count(None) == 1
    assert ys.index(None) == 10
    steady = metric_figure([Row("x", {"optimized": points[:10]})], start=T0, end=T0 + timedelta(hours=1))
    assert None not in panels(steady)["x"]["optimized"]["y"]


def test_a_silence_after_a_kill_is_not_judged_and_says_why() -> None:
    verdicts = [V(T0 + timedelta(seconds=5 * i), "g", "fail" if i >= 8 else "pass") for i in range(10)]
    # The controller killed the flag after the last verdict at +45 s, then judged nothing for 10 minutes.
    kill = _event(
        "kill", {"enabled": True, "state": "rolling_out"}, {"enabled": False, "state": "rolled_back"}
    )
    kill = dataclasses.replace(kill, time=T0 + timedelta(seconds=46))
    verdicts += [V(T0 + timedelta(seconds=660 + 5 * i), "g", "pass") for i in range(3)]
    runs = verdict_runs(verdicts)
    assert [(r.verdict, r.count) for r in runs] == [("pass", 8), ("fail", 2), ("pass", 3)]
    assert runs[1].end == T0 + timedelta(seconds=45)  # the red run stops at its last verdict

    history = flag_history(_flag(enabled=False), [kill])
    quiet = silences(
        runs, ["g"], history, start=T0, end=T0 + timedelta(seconds=700), max_gap_s=silence_s(verdicts)
    )
    assert [(s.start, s.end, s.reason) for s in quiet] == [
        (T0 + timedelta(seconds=45), T0 + timedelta(seconds=46), "no controller"),
        (T0 + timedelta(seconds=46), T0 + timedelta(seconds=660), "killed"),
    ]


def test_a_guardrail_never_judged_in_the_range_gets_a_row() -> None:
    history = flag_history(_flag(), [])
    quiet = silences(
        [], ["error_rate[optimized]<=0.01"], history, start=T0, end=T0 + timedelta(hours=1), max_gap_s=30
    )
    assert [(s.guardrail, s.reason) for s in quiet] == [("error_rate[optimized]<=0.01", "no controller")]
    figure = timeline([], start=T0, end=T0 + timedelta(hours=1), quiet=quiet)
    assert [trace.name for trace in figure.data] == ["not judged: no controller"]


def test_the_default_range_fits_the_current_story() -> None:
    now = T0 + timedelta(days=3)
    # An old story two days ago, then a demo that began 2 minutes ago.
    old = [T0 + timedelta(minutes=m) for m in range(5)]
    demo = [now - timedelta(seconds=s) for s in (120, 90, 30)]
    assert story_start([*old, *demo]) == now - timedelta(seconds=120)
    assert default_range(story_start([*old, *demo]), now) == "5 minutes"
    assert default_range(now - timedelta(minutes=10), now) == "15 minutes"
    assert default_range(now - timedelta(hours=20), now) == "24 hours"
    assert default_range(now - timedelta(hours=23), now) == "7 days"
    assert default_range(None, now) == "1 hour"
