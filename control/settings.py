"""Settings of the controller, read once from the environment by `control.control_cli`.

Each field names its environment variable (its validation alias); an empty
variable counts as unset. `ControlSettings.from_env(os.environ)` is the only
place that reads variables; everything else receives a `ControlSettings`
(other parts, such as the dashboard, build one the same way, or with
`model_copy(update=...)`). A bad value raises `PermanentError` naming the
variable and the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from control.errors import PermanentError
from control.impact_names import ImpactNames
from flags.client import DEFAULT_FLAGS_URL

DEFAULT_DATABASE_URL = "sqlite:///./var/control.db"
TWO_DAYS_S = 2 * 24 * 3600

MetricsKind = Literal["embedded", "prometheus", "impact"]
_Settings = TypeVar("_Settings", bound=BaseSettings)


class ControlSettings(BaseSettings):
    """Configuration of one controller process (and of readers of its store)."""

    model_config = SettingsConfigDict(
        case_sensitive=True, env_ignore_empty=True, extra="ignore", frozen=True, populate_by_name=True
    )

    flags_url: str = Field(
        DEFAULT_FLAGS_URL,
        validation_alias="ROLLGUARD_FLAGS_URL",
        description="base URL of the flag service's admin API.",
    )
    admin_token: str | None = Field(
        None,
        repr=False,
        validation_alias="ROLLGUARD_ADMIN_TOKEN",
        description="admin-scope token for the flag service.",
    )
    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        validation_alias="ROLLGUARD_CONTROL_DATABASE_URL",
        description="the controller's own store (samples, verdicts, decisions, lease).",
    )
    metrics: MetricsKind = Field(
        "embedded",
        validation_alias="ROLLGUARD_METRICS",
        description='"embedded" (scrape into the store), "prometheus", or "impact" (the impact metrics '
        "SDKs send to the flag service, read through its admin API); any case.",
    )
    prometheus_url: str | None = Field(
        None,
        validation_alias="ROLLGUARD_PROMETHEUS_URL",
        description='Prometheus HTTP API base URL, needed when metrics is "prometheus".',
    )
    impact_names: Annotated[ImpactNames, NoDecode] = Field(
        default_factory=ImpactNames,
        validation_alias="ROLLGUARD_IMPACT_METRIC_NAMES",
        description="`role=name,...`: the app's impact metric of each role (requests, errors, latency, "
        '...; control.impact_names), for metrics "impact"; unnamed roles keep the contract\'s names.',
    )
    scrape_targets: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        validation_alias="ROLLGUARD_SCRAPE_TARGETS",
        description="comma-separated base URLs or /metrics URLs the embedded scraper reads.",
    )
    scrape_interval_s: float = Field(
        1.0,
        gt=0,
        validation_alias="ROLLGUARD_SCRAPE_INTERVAL_S",
        description="seconds between scrapes of each target.",
    )
    interval_s: float = Field(
        1.0,
        gt=0,
        validation_alias="ROLLGUARD_CONTROL_INTERVAL_S",
        description="seconds between evaluations of the flags (each judges the newest scrape).",
    )
    retention_s: int = Field(
        TWO_DAYS_S,
        gt=0,
        validation_alias="ROLLGUARD_CONTROL_RETENTION_S",
        description="seconds scraped samples are kept (two days).",
    )
    lease_s: float = Field(
        15.0,
        gt=0,
        validation_alias="ROLLGUARD_CONTROL_LEASE_S",
        description="how long a leader's lease lasts without renewal.",
    )
    notify_webhook_url: str | None = Field(
        None,
        validation_alias="ROLLGUARD_NOTIFY_WEBHOOK_URL",
        description="generic JSON webhook for rollbacks and promotions.",
    )
    notify_slack_url: str | None = Field(
        None,
        validation_alias="ROLLGUARD_NOTIFY_SLACK_URL",
        description='Slack-compatible incoming webhook ({"text": ...}).',
    )
    dry_run: bool = Field(
        False,
        validation_alias="ROLLGUARD_CONTROL_DRY_RUN",
        description="log and record decisions without changing flags (true/false, 1/0, yes/no, on/off).",
    )

    @field_validator("metrics", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("impact_names", mode="before")
    @classmethod
    def _parse_impact_names(cls, value: Any) -> Any:
        return ImpactNames.parse(value) if isinstance(value, str) else value

    @field_validator("scrape_targets", mode="before")
    @classmethod
    def _parse_targets(cls, value: Any) -> Any:
        return parse_targets(value) if isinstance(value, str | tuple | list) else value

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ControlSettings:
        """Build settings from `environ` alone, defaults for the variables missing or empty there.

        :raise PermanentError: a value is invalid (the message names the variable and the value).
        """
        try:
            return from_variables(cls, environ)
        except ValidationError as exc:
            raise PermanentError(one_line(exc)) from exc


def from_variables(cls: type[_Settings], environ: Mapping[str, str], **fields: Any) -> _Settings:
    """Validate the non-empty variables of `environ` that name a field of `cls`, and `fields`; defaults for the rest.

    The dashboard builds its own settings with it too.
    """
    given: dict[str, Any] = dict(fields)
    for field in cls.model_fields.values():
        variable = field.validation_alias
        if isinstance(variable, str) and environ.get(variable):
            given[variable] = environ[variable]
    # Not cls(**given): BaseSettings.__init__ would take the fields missing here from os.environ,
    # and it scans os.environ, a .env file and a secrets directory on every call (milliseconds,
    # which the dashboard would pay on every rerun). BaseModel.__init__ only validates.
    settings = cls.__new__(cls)
    BaseModel.__init__(settings, **given)
    return settings


def one_line(exc: ValidationError) -> str:
    """Say what was wrong with each value in one line: `VARIABLE='value': problem; ...`."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}={error['input']!r}: {error['msg']}"
        for error in exc.errors(include_url=False)
    )


def parse_targets(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Split a comma-separated target list; each entry a base URL or a /metrics URL."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(metrics_url(item.strip()) for item in items if item.strip())


def metrics_url(target: str) -> str:
    """Return the /metrics URL of a target given as a base URL or a /metrics URL."""
    target = target.rstrip("/")
    return target if target.endswith("/metrics") else f"{target}/metrics"
