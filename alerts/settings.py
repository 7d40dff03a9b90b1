"""Settings of `rollguard alerts ...`, read once from the environment by `alerts.cli`.

Every field has an environment variable (prefix `ROLLGUARD_`). `receiver.create_app`
and the rules command receive an `AlertsSettings`; nothing else reads `os.environ`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from alerts.errors import ConfigError
from flags.client import DEFAULT_FLAGS_URL

DEFAULT_DATABASE_URL = "sqlite:///./var/alerts.db"


class AlertsSettings(BaseSettings):
    """Configuration of the rules generator and of one receiver process."""

    model_config = SettingsConfigDict(env_prefix="ROLLGUARD_", extra="ignore")

    flags_url: str = Field(
        DEFAULT_FLAGS_URL, description="ROLLGUARD_FLAGS_URL: base URL of the flag service."
    )
    admin_token: SecretStr | None = Field(
        None, description="ROLLGUARD_ADMIN_TOKEN: admin token for reading and killing flags."
    )
    alerts_token: SecretStr | None = Field(
        None,
        description="ROLLGUARD_ALERTS_TOKEN: bearer token Alertmanager must send to the receiver.",
    )
    alerts_token_file: Path | None = Field(
        None,
        description="ROLLGUARD_ALERTS_TOKEN_FILE: file holding that token (the file Alertmanager's "
        "credentials_file points at); used when ROLLGUARD_ALERTS_TOKEN is unset.",
    )
    alerts_database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="ROLLGUARD_ALERTS_DATABASE_URL: the receiver's own record of deliveries.",
    )
    alerts_flags_retries: int = Field(
        2, ge=0, description="ROLLGUARD_ALERTS_FLAGS_RETRIES: connection retries before answering 503."
    )
    notify_webhook_url: str | None = Field(
        None, description="ROLLGUARD_NOTIFY_WEBHOOK_URL: JSON webhook told about every rollback."
    )
    notify_slack_url: str | None = Field(
        None, description="ROLLGUARD_NOTIFY_SLACK_URL: Slack-compatible webhook told about every rollback."
    )
    alerts_auth_failures_per_minute: int = Field(
        60,
        ge=0,
        description="ROLLGUARD_ALERTS_AUTH_FAILURES_PER_MINUTE: failed authentications one address may "
        "make with one token per minute (per process) before its failures get 429; 0 disables the limit.",
    )
    alerts_auth_failures_per_address_per_minute: int = Field(
        600,
        ge=0,
        description="ROLLGUARD_ALERTS_AUTH_FAILURES_PER_ADDRESS_PER_MINUTE: failed authentications one "
        "address may make with any tokens per minute (per process) before its failures get 429.",
    )
    alerts_trusted_proxies: int = Field(
        0,
        ge=0,
        le=10,
        description="ROLLGUARD_ALERTS_TRUSTED_PROXIES: proxies in front of the receiver that append to "
        "X-Forwarded-For; the client address is read that many hops back (0: the peer address).",
    )
    alerts_workers: int = Field(1, ge=1, description="ROLLGUARD_ALERTS_WORKERS: gunicorn workers.")
    alerts_threads: int = Field(4, ge=1, description="ROLLGUARD_ALERTS_THREADS: threads per worker.")

    @property
    def admin_secret(self) -> str | None:
        return self.admin_token.get_secret_value() if self.admin_token else None

    def receiver_token(self) -> str | None:
        """Return the bearer token the receiver requires, from the variable or the file."""
        if self.alerts_token is not None:
            token = self.alerts_token.get_secret_value().strip()
        elif self.alerts_token_file is not None:
            try:
                token = self.alerts_token_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read ROLLGUARD_ALERTS_TOKEN_FILE: {exc}") from exc
        else:
            return None
        if not token:
            raise ConfigError("the receiver's bearer token is empty")
        return token
