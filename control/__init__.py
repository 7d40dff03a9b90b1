"""The rollout controller: scrapes the metric contract, judges each flag's guardrails, promotes or rolls back.

Other parts import only what this module declares. The decision rules are pure
(`decisions`, `latency`, `stages`); `loop.Controller` applies them to the flags
it reads and changes through the flag service's client and keeps scrapes,
verdicts and decisions in its own store, which other parts read only through
the read-only `ControlHistory` (the last check of a flag, the verdict
timeline, decisions, the lease, the scrapes); the metric sources
(`open_source`) read the embedded store, Prometheus, or the impact metrics SDKs
send (through the flag service); `command` is the `rollguard control` CLI.
Guardrails are judged by the controller alone: other parts show its verdicts.
"""

from control.control_cli import command
from control.decisions import PastVerdict
from control.defaults import default_guardrails, default_rollback
from control.errors import ControlError
from control.history import ControlHistory
from control.last_check import LastCheck
from control.metrics import MetricSource, Point, open_source, series_window_s
from control.notify import Notifier
from control.portal_metrics import gate_counts
from control.promql import PATH_AWARE
from control.settings import ControlSettings, from_variables, one_line
from control.store import ControllerStatus, DecisionRecord, RawSample, VerdictRecord

__all__ = [
    "from_variables",
    "one_line",
    "PATH_AWARE",
    "ControlError",
    "ControlHistory",
    "ControlSettings",
    "ControllerStatus",
    "DecisionRecord",
    "LastCheck",
    "MetricSource",
    "Notifier",
    "PastVerdict",
    "Point",
    "RawSample",
    "VerdictRecord",
    "command",
    "default_guardrails",
    "default_rollback",
    "gate_counts",
    "open_source",
    "series_window_s",
]
