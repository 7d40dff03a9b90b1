"""Settings of the flag service, read once from the environment by `flags.cli`.

Every field has an environment variable (prefix `ROLLGUARD_`) and a default that
works with nothing installed. `create_app` and the `serve` command receive a
`Settings` instance; nothing else reads `os.environ`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./var/flags.db"


class Settings(BaseSettings):
    """Configuration of one flag service process."""

    model_config = SettingsConfigDict(env_prefix="ROLLGUARD_", extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="ROLLGUARD_DATABASE_URL: SQLAlchemy URL; SQLite file (default) or PostgreSQL.",
    )
    admin_token: SecretStr | None = Field(
        default=None, description="ROLLGUARD_ADMIN_TOKEN: bootstrap admin token ensured at start."
    )
    client_token: SecretStr | None = Field(
        default=None, description="ROLLGUARD_CLIENT_TOKEN: bootstrap client token ensured at start."
    )
    flags_max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="ROLLGUARD_FLAGS_MAX_BODY_BYTES: larger request bodies get 413.",
    )
    flags_max_payload_bytes: int = Field(
        default=16_384, ge=2, description="ROLLGUARD_FLAGS_MAX_PAYLOAD_BYTES: limit of a flag's JSON payload."
    )
    flags_revision_check_s: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="ROLLGUARD_FLAGS_REVISION_CHECK_S: how often a process re-reads the global "
        "revision to notice changes made by other processes.",
    )
    flags_auth_failures_per_minute: int = Field(
        default=60,
        ge=0,
        description="ROLLGUARD_FLAGS_AUTH_FAILURES_PER_MINUTE: failed authentications one address may "
        "make with one credential per minute (per process) before its failures get 429; valid tokens "
        "are never limited; 0 disables the limit.",
    )
    flags_auth_failures_per_address_per_minute: int = Field(
        default=600,
        ge=0,
        description="ROLLGUARD_FLAGS_AUTH_FAILURES_PER_ADDRESS_PER_MINUTE: failed authentications one "
        "address may make with any credentials per minute (per process) before its failures get 429.",
    )
    flags_trusted_proxies: int = Field(
        default=0,
        ge=0,
        le=10,
        description="ROLLGUARD_FLAGS_TRUSTED_PROXIES: how many proxies in front of the service append "
        "to X-Forwarded-For; the client address is read that many hops back (0: the peer address).",
    )
    flags_workers: int = Field(
        default=2, ge=1, description="ROLLGUARD_FLAGS_WORKERS: gunicorn worker processes."
    )
    flags_worker_class: Literal["gevent", "gthread", "sync"] = Field(
        default="gevent",
        description="ROLLGUARD_FLAGS_WORKER_CLASS: gunicorn worker class. gevent (default) holds each "
        "SDK stream as a greenlet, not a thread; gthread and sync serve streams with a thread each, so "
        "they admit at most half of ROLLGUARD_FLAGS_THREADS streams per process.",
    )
    flags_threads: int = Field(
        default=4, ge=1, description="ROLLGUARD_FLAGS_THREADS: threads per gthread worker."
    )
    flags_worker_connections: int = Field(
        default=4000,
        ge=10,
        description="ROLLGUARD_FLAGS_WORKER_CONNECTIONS: open connections (streams included) one gevent "
        "worker accepts.",
    )
    flags_max_streams: int = Field(
        default=4000,
        ge=0,
        description="ROLLGUARD_FLAGS_MAX_STREAMS: streams one process holds before it answers 429 "
        "(SDKs then retry later or poll).",
    )
    flags_stream_heartbeat_s: float = Field(
        default=15.0,
        gt=0.0,
        le=25.0,
        description="ROLLGUARD_FLAGS_STREAM_HEARTBEAT_S: seconds between keep-alive comments on an idle "
        "stream (below the SDKs' 30 s read timeout); each also re-checks the stream's token.",
    )
    flags_impact_retention_s: int = Field(
        default=2 * 24 * 3600,
        ge=60,
        description="ROLLGUARD_FLAGS_IMPACT_RETENTION_S: how long the impact metrics SDKs send are kept "
        "(older samples are deleted as new ones arrive).",
    )

    @property
    def admin_secret(self) -> str | None:
        return self.admin_token.get_secret_value() if self.admin_token else None

    @property
    def client_secret(self) -> str | None:
        return self.client_token.get_secret_value() if self.client_token else None
