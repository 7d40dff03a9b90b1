"""The optimizer's static settings from environment variables, for `OptimizerConfig.from_env`.

Only `from_env` imports this module, so an app that builds its `OptimizerConfig`
in code never loads pydantic, and the call path never touches it. Each field
names its variable (its validation alias); an empty variable counts as unset.
The defaults and the valid ranges are `OptimizerConfig`'s own, and the flag
payload's overrides (`OptimizerConfig.with_payload`) stay where they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from optimizer.settings import STATIC_RULES, OptimizerConfig

PREFIX = "ROLLGUARD_OPTIMIZER_"
_DEFAULT = OptimizerConfig()


class OptimizerSettings(BaseSettings):
    """`ROLLGUARD_OPTIMIZER_<FIELD>` for each static field of `OptimizerConfig` (not the breaker's)."""

    model_config = SettingsConfigDict(
        case_sensitive=True, env_ignore_empty=True, extra="ignore", frozen=True, populate_by_name=True
    )

    ttl_s: float = Field(
        _DEFAULT.ttl_s, validation_alias=PREFIX + "TTL_S", description="seconds a value stays fresh."
    )
    stale_s: float = Field(
        _DEFAULT.stale_s,
        validation_alias=PREFIX + "STALE_S",
        description="stale-while-revalidate grace after expiry; 0 never serves stale.",
    )
    jitter: float = Field(
        _DEFAULT.jitter,
        validation_alias=PREFIX + "JITTER",
        description="share of the TTL cut at random from each entry.",
    )
    max_entries: int = Field(
        _DEFAULT.max_entries,
        validation_alias=PREFIX + "MAX_ENTRIES",
        description="most entries held in process.",
    )
    max_bytes: int = Field(
        _DEFAULT.max_bytes, validation_alias=PREFIX + "MAX_BYTES", description="most bytes held in process."
    )
    batch_window_ms: float = Field(
        _DEFAULT.batch_window_ms,
        validation_alias=PREFIX + "BATCH_WINDOW_MS",
        description="how long the first key of a batch waits for others.",
    )
    max_batch: int = Field(
        _DEFAULT.max_batch, validation_alias=PREFIX + "MAX_BATCH", description="most keys in one batch call."
    )
    max_concurrency: int = Field(
        _DEFAULT.max_concurrency,
        validation_alias=PREFIX + "MAX_CONCURRENCY",
        description="most backend calls in flight at once.",
    )
    max_batches_in_flight: int = Field(
        _DEFAULT.max_batches_in_flight,
        validation_alias=PREFIX + "MAX_BATCHES_IN_FLIGHT",
        description="most get_many batch calls at once; other misses wait and share the next.",
    )
    rate_limit: str | None = Field(
        _DEFAULT.rate_limit,
        validation_alias=PREFIX + "RATE_LIMIT",
        description='backend call rate in `limits` notation ("200/second"); unset: no limit.',
    )
    schema_version: int | str = Field(
        _DEFAULT.schema_version,
        validation_alias=PREFIX + "SCHEMA_VERSION",
        description="part of every cache key (kept as text when read from the environment).",
    )
    queue_timeout_s: float = Field(
        _DEFAULT.queue_timeout_s,
        validation_alias=PREFIX + "QUEUE_TIMEOUT_S",
        description="longest a call waits for a backend slot or the rate limit.",
    )
    refresh_workers: int = Field(
        _DEFAULT.refresh_workers,
        validation_alias=PREFIX + "REFRESH_WORKERS",
        description="threads for background refreshes and prefetches.",
    )

    @field_validator("*")
    @classmethod
    def _in_range(cls, value: Any, info: ValidationInfo) -> Any:
        check, rule = STATIC_RULES.get(info.field_name or "", (None, ""))
        if check is not None and not check(value):
            raise PydanticCustomError("out_of_range", "Input should be {rule}", {"rule": rule})
        return value

    def config(self) -> OptimizerConfig:
        """The `OptimizerConfig` these settings describe."""
        return OptimizerConfig(**self.model_dump())


def config_from_env(environ: Mapping[str, str], *, prefix: str = PREFIX) -> OptimizerConfig:
    """Read `<prefix><FIELD>` variables from `environ` alone; defaults for the missing or empty ones.

    :raise ValueError: a value is invalid (the message names the variable and the value).
    """
    renamed = {
        PREFIX + name[len(prefix) :]: value for name, value in environ.items() if name.startswith(prefix)
    }
    given = {}
    for field in OptimizerSettings.model_fields.values():
        variable = field.validation_alias
        if isinstance(variable, str) and renamed.get(variable):
            given[variable] = renamed[variable]
    # Not cls(**given): BaseSettings.__init__ would take the fields missing here from os.environ,
    # and it scans os.environ, a .env file and a secrets directory on every call (milliseconds,
    # which the dashboard would pay on every rerun). BaseModel.__init__ only validates.
    settings = OptimizerSettings.__new__(OptimizerSettings)
    try:
        BaseModel.__init__(settings, **given)
    except ValidationError as exc:
        raise ValueError(_one_line(exc, prefix)) from exc
    return settings.config()


def _one_line(exc: ValidationError, prefix: str) -> str:
    def variable(loc: tuple[int | str, ...]) -> str:
        name = ".".join(str(part) for part in loc)
        return prefix + name[len(PREFIX) :] if name.startswith(PREFIX) else name

    return "; ".join(
        f"{variable(error['loc'])}={error['input']!r}: {error['msg']}"
        for error in exc.errors(include_url=False)
    )
