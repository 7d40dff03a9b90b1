"""Portal settings, read once from the environment by the entry points (`rollguard portal serve`).

Tests and the bench build `PortalSettings(...)` directly and hand it to `create_app`.
The optimizer's own knobs (TTL, batch size, ...) are `ROLLGUARD_OPTIMIZER_*`, read by
`OptimizerConfig.from_env` at the same entry points.

| variable | default | meaning |
| --- | --- | --- |
| ROLLGUARD_PORTAL_DATABASE_URL | sqlite:///./var/portal.db | the portal's database |
| ROLLGUARD_FLAGS_URL | unset | flag service; unset means a static gate (ROLLGUARD_PORTAL_OPTIMIZE) |
| ROLLGUARD_CLIENT_TOKEN | unset | client token the Unleash SDK sends |
| ROLLGUARD_PORTAL_FLAGS_MODE | streaming | how the SDK gets flag changes: `streaming` (server-sent events) or `polling` |
| ROLLGUARD_PORTAL_FLAGS_REFRESH_S | 5 | polling interval in polling mode |
| ROLLGUARD_REDIS_URL | unset | shared cache and cross-instance invalidation; unset means in-process |
| ROLLGUARD_PORTAL_REDIS_NAMESPACE | rollguard | prefix of the portal's Redis keys |
| ROLLGUARD_PORTAL_INVALIDATION_CHANNEL | rollguard_portal | PostgreSQL NOTIFY channel between workers (PostgreSQL without Redis) |
| ROLLGUARD_PORTAL_INVALIDATION_TIMEOUT_S | 5 | longest a submit waits for every worker to confirm its invalidation (then 503) |
| ROLLGUARD_PORTAL_ADMIN_TOKEN | unset | protects the fault endpoint; unset refuses it |
| ROLLGUARD_PORTAL_OPTIMIZE | off | on/off, the static gate used without a flag service |
| ROLLGUARD_PORTAL_CACHE_LAYOUT | tiered | how the in-process cache holds fragments: `tiered`, `objects` or `packed` |
| ROLLGUARD_PORTAL_CACHE_HOT_SHARE / _CACHE_PACK_ABOVE | 0.125 / 0.8 | `tiered`: the least share of the byte budget held as objects / the share filled with objects before anything is packed |
| ROLLGUARD_PORTAL_POOL_SIZE / _POOL_OVERFLOW / _POOL_TIMEOUT_S | 20 / 0 / 5 | the bounded pool |
| ROLLGUARD_PORTAL_OPTIMIZER_POOL_SIZE | 8 | connections reserved for the optimizer's backend calls, apart from the pool; also their cap in flight |
| ROLLGUARD_VAR_DIR | ./var | where the Unleash SDK keeps its cache |
| ROLLGUARD_PORTAL_BATCH_MAX_KEYS | 200 | largest batch request (more -> 413) |
| ROLLGUARD_PORTAL_BATCH_RATE_LIMIT | 20/second | per client, `limits` notation (more -> 429) |
| ROLLGUARD_PORTAL_BATCH_CONCURRENCY | 4 | batch requests served at once (more -> 429) |
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

FLAG_KEY = "exam-attempts-optimization"


class PortalSettings(BaseSettings):
    """Everything the portal app needs; fields double as keyword arguments in tests."""

    model_config = SettingsConfigDict(env_prefix="ROLLGUARD_PORTAL_", populate_by_name=True, extra="ignore")

    database_url: str = "sqlite:///./var/portal.db"
    flags_url: str | None = Field(
        default=None, validation_alias=AliasChoices("flags_url", "ROLLGUARD_FLAGS_URL")
    )
    client_token: str | None = Field(
        default=None, validation_alias=AliasChoices("client_token", "ROLLGUARD_CLIENT_TOKEN")
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("redis_url", "ROLLGUARD_REDIS_URL")
    )
    redis_namespace: str = "rollguard"
    # Without Redis on PostgreSQL, workers tell each other about submissions on this NOTIFY channel.
    invalidation_channel: str = Field(default="rollguard_portal", pattern=r"^[a-z_][a-z0-9_]{0,50}$")
    invalidation_timeout_s: float = Field(default=5.0, gt=0)
    admin_token: str | None = None
    optimize: bool = False
    # How the in-process cache holds fragments: "tiered" (the keys stored lately as objects, up to
    # cache_pack_above of the budget and never less than cache_hot_share of it, the older ones packed),
    # "objects" (about 540 bytes a key, the fastest hit) or "packed" (about 96 bytes a key, about 1.7 us
    # more a hit). See portal/README.md.
    cache_layout: Literal["tiered", "packed", "objects"] = "tiered"
    cache_hot_share: float = Field(default=0.125, gt=0, lt=1)
    cache_pack_above: float = Field(default=0.8, gt=0, le=1)
    flag_key: str = FLAG_KEY
    # On PostgreSQL, a submit's INSERT also reads back the student's MyTestSeries keys (the page a
    # submit leads to) for an optimized student's cache, instead of only dropping the key it changed.
    # Off by default: on the 2-core bench it made no page faster end to end and submits slower
    # (portal/README.md, write-through).
    write_through: bool = False

    # The bounded pool stands in for the original system's database connection limit.
    pool_size: int = Field(default=20, ge=1)
    pool_overflow: int = Field(default=0, ge=0)
    pool_timeout_s: float = Field(default=5.0, gt=0)
    # Connections of the optimizer's own (a bulkhead), which also cap its backend calls in flight: the
    # direct path's flood of queries cannot make the optimized path's few batch reads wait for the pool.
    optimizer_pool_size: int = Field(default=8, ge=1)

    flags_mode: Literal["streaming", "polling"] = "streaming"
    flags_refresh_s: int = Field(default=5, ge=1)
    flags_metrics_s: int = Field(default=30, ge=1)
    var_dir: Path = Field(
        default=Path("./var"), validation_alias=AliasChoices("var_dir", "ROLLGUARD_VAR_DIR")
    )

    batch_max_keys: int = Field(default=200, ge=1)
    batch_rate_limit: str = "20/second"
    batch_concurrency: int = Field(default=4, ge=1)

    @model_validator(mode="after")
    def _hot_tier_fits(self) -> PortalSettings:
        if self.cache_pack_above < self.cache_hot_share:
            raise ValueError(
                f"cache_pack_above ({self.cache_pack_above}) must be at least cache_hot_share ({self.cache_hot_share})"
            )
        return self
