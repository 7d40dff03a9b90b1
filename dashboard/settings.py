"""Configuration of the dashboard, read once per run by `dashboard/app.py`.

`rollguard dashboard` passes everything through the environment; Streamlit
secrets (`.streamlit/secrets.toml`, or `AppTest.secrets` in tests) may override
single values with lower-case keys (`flags_url`, `admin_token`, ...). Each field
names its environment variable (its validation alias); an empty variable or
secret counts as unset. The metric source's own configuration
(`ROLLGUARD_CONTROL_DATABASE_URL`, `ROLLGUARD_METRICS`,
`ROLLGUARD_PROMETHEUS_URL`, `ROLLGUARD_IMPACT_METRIC_NAMES`) is left to
`control.ControlSettings`; the impact source reads the flag service the
dashboard uses, with the dashboard's token.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from control import from_variables, one_line
from flags.client import DEFAULT_FLAGS_URL

DEFAULT_REFRESH_S = 10.0

# Secrets that go to the metric source's settings, as ROLLGUARD_<NAME.upper()>.
_CONTROL_SECRETS = ("control_database_url", "metrics", "prometheus_url", "impact_metric_names")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # No passwd entry (some containers): still name the dashboard in the audit log.
        return "operator"


class DashboardSettings(BaseSettings):
    """What one dashboard process needs to know; built by `from_env`.

    `control_env` holds the environment handed to `control.ControlSettings` so
    the dashboard reads metrics from the same source as the controller.
    """

    model_config = SettingsConfigDict(
        case_sensitive=True, env_ignore_empty=True, extra="ignore", frozen=True, populate_by_name=True
    )

    flags_url: str = Field(
        DEFAULT_FLAGS_URL,
        validation_alias="ROLLGUARD_FLAGS_URL",
        description="the flag service (a trailing slash is dropped).",
    )
    admin_token: str | None = Field(
        None,
        repr=False,
        validation_alias="ROLLGUARD_ADMIN_TOKEN",
        description="admin-scope token; without it the dashboard only reads.",
    )
    operator: str = Field(
        default_factory=_os_user,
        validation_alias="ROLLGUARD_DASHBOARD_OPERATOR",
        description="name in the audit log (`dashboard:<operator>`); the OS user by default.",
    )
    password: str | None = Field(
        None,
        repr=False,
        validation_alias="ROLLGUARD_DASHBOARD_PASSWORD",
        description="when set, a password prompt guards every page.",
    )
    refresh_s: float = Field(
        DEFAULT_REFRESH_S,
        gt=0,
        validation_alias="ROLLGUARD_DASHBOARD_REFRESH_S",
        description="seconds between data refreshes.",
    )
    read_only: bool = Field(
        False,
        validation_alias="ROLLGUARD_DASHBOARD_READ_ONLY",
        description="hide every write control (a wall screen); true/false, 1/0, yes/no, on/off.",
    )
    control_env: tuple[tuple[str, str], ...] = Field(
        (),
        repr=False,  # it holds the admin token too
        description="the ROLLGUARD_ variables the metric source is built from (`from_env` fills it).",
    )

    @field_validator("flags_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def actor(self) -> str:
        """The name the flag service writes in the audit log for this dashboard's actions."""
        return f"dashboard:{self.operator}"

    @property
    def can_write(self) -> bool:
        """Writes need the admin token; read-only mode (a wall screen) hides them even with it."""
        return bool(self.admin_token) and not self.read_only

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], secrets: Mapping[str, object] | None = None
    ) -> DashboardSettings:
        """Build settings from `environ` alone, letting `secrets` override single values.

        :raise ValueError: a value is invalid (the message names the variable and the value).
        """
        secrets = secrets or {}
        merged = dict(environ)
        for name, field in cls.model_fields.items():
            if name in secrets and isinstance(field.validation_alias, str):
                merged[field.validation_alias] = str(secrets[name])
        control_env = _control_env(environ, secrets, merged)
        try:
            return from_variables(cls, merged, control_env=control_env)
        except ValidationError as exc:
            raise ValueError(one_line(exc)) from exc


def _control_env(
    environ: Mapping[str, str], secrets: Mapping[str, object], merged: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    env = {k: v for k, v in environ.items() if k.startswith("ROLLGUARD_")}
    env.update(
        {f"ROLLGUARD_{name.upper()}": str(secrets[name]) for name in _CONTROL_SECRETS if name in secrets}
    )
    # The impact source reads the same flag service as the dashboard.
    env.update(
        {var: merged[var] for var in ("ROLLGUARD_FLAGS_URL", "ROLLGUARD_ADMIN_TOKEN") if merged.get(var)}
    )
    return tuple(sorted(env.items()))
