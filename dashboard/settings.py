"""Configuration of the dashboard, read once per run by `dashboard/app.py`.

`rollguard dashboard` passes everything through the environment; Streamlit
secrets (`.streamlit/secrets.toml`, or `AppTest.secrets` in tests) may override
single values with lower-case keys (`flags_url`, `admin_token`, ...). The metric
source's own configuration (`ROLLGUARD_CONTROL_DATABASE_URL`,
`ROLLGUARD_METRICS`, `ROLLGUARD_PROMETHEUS_URL`, `ROLLGUARD_IMPACT_METRIC_NAMES`)
is left to `control.settings`; the impact source reads the flag service the
dashboard uses, with the dashboard's token.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_FLAGS_URL = "http://127.0.0.1:4242"
DEFAULT_REFRESH_S = 10.0

_ENV = {
    "flags_url": "ROLLGUARD_FLAGS_URL",
    "admin_token": "ROLLGUARD_ADMIN_TOKEN",
    "operator": "ROLLGUARD_DASHBOARD_OPERATOR",
    "password": "ROLLGUARD_DASHBOARD_PASSWORD",
    "refresh_s": "ROLLGUARD_DASHBOARD_REFRESH_S",
    "read_only": "ROLLGUARD_DASHBOARD_READ_ONLY",
}


@dataclass(frozen=True)
class DashboardSettings:
    """What one dashboard process needs to know.

    `control_env` holds the environment handed to `control.settings` so the
    dashboard reads metrics from the same source as the controller.
    """

    flags_url: str = DEFAULT_FLAGS_URL
    admin_token: str | None = field(default=None, repr=False)
    operator: str = "operator"
    password: str | None = field(default=None, repr=False)
    refresh_s: float = DEFAULT_REFRESH_S
    read_only: bool = False
    control_env: tuple[tuple[str, str], ...] = ()

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
        """Build settings from `environ`, letting `secrets` override single values."""
        values: dict[str, str] = {}
        for name, var in _ENV.items():
            raw = (secrets or {}).get(name, environ.get(var))
            if raw is not None and str(raw) != "":
                values[name] = str(raw)
        control_env = tuple(sorted((k, v) for k, v in environ.items() if k.startswith("ROLLGUARD_")))
        overrides = {
            name: str(secrets[name])
            for name in ("control_database_url", "metrics", "prometheus_url", "impact_metric_names")
            if secrets and name in secrets
        }
        # The impact source reads the same flag service as the dashboard.
        overrides.update({name: values[name] for name in ("flags_url", "admin_token") if name in values})
        for name, value in overrides.items():
            control_env = (
                *(kv for kv in control_env if kv[0] != f"ROLLGUARD_{name.upper()}"),
                (f"ROLLGUARD_{name.upper()}", value),
            )
        refresh = float(values.get("refresh_s", DEFAULT_REFRESH_S))
        if refresh <= 0:
            raise ValueError("ROLLGUARD_DASHBOARD_REFRESH_S must be positive")
        return cls(
            flags_url=values.get("flags_url", DEFAULT_FLAGS_URL).rstrip("/"),
            admin_token=values.get("admin_token"),
            operator=values.get("operator") or _os_user(),
            password=values.get("password"),
            refresh_s=refresh,
            read_only=values.get("read_only", "").lower() in ("1", "true", "yes"),
            control_env=control_env,
        )


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # No passwd entry (some containers): still name the dashboard in the audit log.
        return "operator"
