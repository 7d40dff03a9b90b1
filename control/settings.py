"""Settings of the controller, read once from the environment by `control.control_cli`.

`ControlSettings.from_env(os.environ)` is the only place that reads variables;
everything else receives a `ControlSettings` (other parts, such as the dashboard
or `rollguard up`, build one the same way or with `dataclasses.replace`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from control.errors import PermanentError
from control.impact_names import ImpactNames

DEFAULT_DATABASE_URL = "sqlite:///./var/control.db"
DEFAULT_FLAGS_URL = "http://127.0.0.1:4242"
TWO_DAYS_S = 2 * 24 * 3600

MetricsKind = Literal["embedded", "prometheus", "impact"]
METRICS_KINDS = ("embedded", "prometheus", "impact")


@dataclass(frozen=True)
class ControlSettings:
    """Configuration of one controller process (and of readers of its store)."""

    #: ROLLGUARD_FLAGS_URL: base URL of the flag service's admin API.
    flags_url: str = DEFAULT_FLAGS_URL
    #: ROLLGUARD_ADMIN_TOKEN: admin-scope token for the flag service.
    admin_token: str | None = field(default=None, repr=False)
    #: ROLLGUARD_CONTROL_DATABASE_URL: the controller's own store (samples, verdicts, decisions, lease).
    database_url: str = DEFAULT_DATABASE_URL
    #: ROLLGUARD_METRICS: "embedded" (scrape into the store), "prometheus", or "impact" (the impact
    #: metrics SDKs send to the flag service, read through its admin API).
    metrics: MetricsKind = "embedded"
    #: ROLLGUARD_PROMETHEUS_URL: Prometheus HTTP API base URL, needed when metrics is "prometheus".
    prometheus_url: str | None = None
    #: ROLLGUARD_IMPACT_METRIC_NAMES: `role=name,...`: the app's impact metric of each role
    #: (requests, errors, latency, ...; control.impact_names), for metrics "impact".
    impact_names: ImpactNames = field(default_factory=ImpactNames)
    #: ROLLGUARD_SCRAPE_TARGETS: comma-separated base URLs or /metrics URLs the embedded scraper reads.
    scrape_targets: tuple[str, ...] = ()
    #: ROLLGUARD_SCRAPE_INTERVAL_S: seconds between scrapes of each target.
    scrape_interval_s: float = 1.0
    #: ROLLGUARD_CONTROL_INTERVAL_S: seconds between evaluations of the flags (each judges the newest scrape).
    interval_s: float = 1.0
    #: ROLLGUARD_CONTROL_RETENTION_S: how long scraped samples are kept.
    retention_s: int = TWO_DAYS_S
    #: ROLLGUARD_CONTROL_LEASE_S: how long a leader's lease lasts without renewal.
    lease_s: float = 15.0
    #: ROLLGUARD_NOTIFY_WEBHOOK_URL: generic JSON webhook for rollbacks and promotions.
    notify_webhook_url: str | None = None
    #: ROLLGUARD_NOTIFY_SLACK_URL: Slack-compatible incoming webhook ({"text": ...}).
    notify_slack_url: str | None = None
    #: ROLLGUARD_CONTROL_DRY_RUN: log and record decisions without changing flags.
    dry_run: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ControlSettings:
        """Build settings from environment variables, defaults for the missing ones."""
        metrics = environ.get("ROLLGUARD_METRICS", "embedded").strip().lower()
        if metrics not in METRICS_KINDS:
            raise PermanentError(f"ROLLGUARD_METRICS must be embedded, prometheus or impact, not {metrics!r}")
        settings = cls(
            flags_url=environ.get("ROLLGUARD_FLAGS_URL", DEFAULT_FLAGS_URL),
            admin_token=environ.get("ROLLGUARD_ADMIN_TOKEN") or None,
            database_url=environ.get("ROLLGUARD_CONTROL_DATABASE_URL", DEFAULT_DATABASE_URL),
            metrics=metrics,  # type: ignore[arg-type]  # checked just above
            prometheus_url=environ.get("ROLLGUARD_PROMETHEUS_URL") or None,
            impact_names=ImpactNames.parse(environ.get("ROLLGUARD_IMPACT_METRIC_NAMES", "")),
            scrape_targets=parse_targets(environ.get("ROLLGUARD_SCRAPE_TARGETS", "")),
            scrape_interval_s=_positive(environ, "ROLLGUARD_SCRAPE_INTERVAL_S", 1.0),
            interval_s=_positive(environ, "ROLLGUARD_CONTROL_INTERVAL_S", 1.0),
            retention_s=int(_positive(environ, "ROLLGUARD_CONTROL_RETENTION_S", TWO_DAYS_S)),
            lease_s=_positive(environ, "ROLLGUARD_CONTROL_LEASE_S", 15.0),
            notify_webhook_url=environ.get("ROLLGUARD_NOTIFY_WEBHOOK_URL") or None,
            notify_slack_url=environ.get("ROLLGUARD_NOTIFY_SLACK_URL") or None,
            dry_run=environ.get("ROLLGUARD_CONTROL_DRY_RUN", "").lower() in ("1", "true", "yes"),
        )
        return settings


def parse_targets(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Split a comma-separated target list; each entry a base URL or a /metrics URL."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(metrics_url(item.strip()) for item in items if item.strip())


def metrics_url(target: str) -> str:
    """Return the /metrics URL of a target given as a base URL or a /metrics URL."""
    target = target.rstrip("/")
    return target if target.endswith("/metrics") else f"{target}/metrics"


def _positive(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise PermanentError(f"{name} must be a number, not {raw!r}") from exc
    if value <= 0:
        raise PermanentError(f"{name} must be positive, not {raw!r}")
    return value
