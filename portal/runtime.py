"""The running portal: its engine, optimizer, metrics and catalog, shared by the blueprints.

`create_app` builds one `Portal` with `build_portal` and stores it in
`app.extensions["portal"]`; views reach it through `current_portal()`.
`get_all_exam_attempts` is wrapped here under string keys
`"<student_id>:<series_id>"`, without tags: a submit drops the one key it
changed (or, with write-through on, writes the student's keys through: `portal.api`),
and nothing drops a group of keys. Its rows are encoded as the page
fragment (`portal.fragments`) the cache holds and the pages splice in.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import cast

from flask import current_app
from sqlalchemy import Engine

from optimizer import Cache, InProcessCache, Optimizer, OptimizerConfig, Packing
from portal import data, fragments, pgfragments
from portal.db import PoolWatch, create_schema, make_engine
from portal.gate import BuiltGate, build_gate
from portal.invalidation import PgInvalidations
from portal.metrics import PortalMetrics
from portal.peercache import PeerCache
from portal.settings import PortalSettings
from portal.submits import AttemptWriter
from portal.throttle import BatchThrottle

logger = logging.getLogger(__name__)

FUNCTION_NAME = "get_all_exam_attempts"

# The byte budget (OptimizerConfig.max_bytes, 16 MB by default) is what bounds the portal's cache:
# 10,000 students x 12 series are 120,000 keys of about 96 bytes packed (540 as objects), more than
# the optimizer's default entry count, which would evict a mass submission's working set while it
# is still being read.
PORTAL_MAX_ENTRIES = 200_000

# A missing catalog (portal started before seeding) is re-read at most this often.
_CATALOG_RETRY_S = 2.0


@dataclass
class Portal:
    """What every request of one portal app shares."""

    settings: PortalSettings
    engine: Engine
    #: The optimizer's own connections (`PortalSettings.optimizer_pool_size`), apart from `engine`'s pool.
    optimizer_engine: Engine
    optimizer: Optimizer
    metrics: PortalMetrics
    gate: BuiltGate
    throttle: BatchThrottle
    #: Submissions, written in groups (one commit for the submits that arrive together).
    attempts: AttemptWriter
    #: Invalidations to and from the other worker processes (PostgreSQL without Redis), or None.
    invalidations: PgInvalidations | None = None
    #: The cache the invalidations keep consistent, checked at the start of each request, or None.
    peers: PeerCache | None = None
    #: Whether a submit reads back the student's keys with its INSERT (`settings.write_through`, PostgreSQL).
    reads_back: bool = False
    _catalog: data.Catalog | None = None
    _catalog_read_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False

    def catalog(self) -> data.Catalog:
        """The series and students, read once (and again while the database is still empty)."""
        with self._lock:
            now = time.monotonic()
            stale = self._catalog is None or (
                self._catalog.empty and now - self._catalog_read_at > _CATALOG_RETRY_S
            )
            if stale:
                self._catalog = data.load_catalog(self.engine)
                self._catalog_read_at = now
            assert self._catalog is not None
            return self._catalog

    def refresh_catalog(self) -> data.Catalog:
        """Re-read the catalog now (a student id above the known range may be newly seeded)."""
        with self._lock:
            self._catalog = data.load_catalog(self.engine)
            self._catalog_read_at = time.monotonic()
            return self._catalog

    def path_for(self, user_id: str) -> str:
        """The path (`optimized` or `direct`) that serves this user now: the gate's cohort, after the breaker.

        A breaker that trips in the middle of a page sends the rest of its calls
        direct; the page still reports the path it started on.
        """
        if not self.gate.gate.decide(user_id).optimized:
            return "direct"
        return "direct" if self.optimizer.breaker_state == "open" else "optimized"

    def close(self) -> None:
        """Stop the optimizer's threads and the Unleash client, close the pool; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self.invalidations is not None:
            self.invalidations.close()
        self.optimizer.close()
        self.gate.close()
        self.engine.dispose()
        self.optimizer_engine.dispose()


def build_portal(settings: PortalSettings, optimizer_config: OptimizerConfig | None = None) -> Portal:
    """Connect the database, build the gate and wrap `get_all_exam_attempts` in the optimizer."""
    metrics = PortalMetrics()
    engine = make_engine(
        settings.database_url,
        pool_size=settings.pool_size,
        pool_overflow=settings.pool_overflow,
        pool_timeout_s=settings.pool_timeout_s,
        on_query=metrics.db_queries.inc,
    )
    capacity = settings.pool_size + settings.pool_overflow
    watch = PoolWatch(engine)
    metrics.watch_pool(
        in_use=lambda: watch.in_use,
        peak=lambda: watch.peak,
        checkouts=lambda: watch.checkouts,
        capacity=capacity,
    )
    create_schema(engine)
    # A bulkhead: the optimized path (every load of which is a `batch_fn` call) reads through
    # connections of its own, never more at once than it has.
    optimizer_engine = make_engine(
        settings.database_url,
        pool_size=settings.optimizer_pool_size,
        pool_timeout_s=settings.pool_timeout_s,
        on_query=metrics.db_queries.inc,
    )
    optimizer_watch = PoolWatch(optimizer_engine)
    metrics.watch_optimizer_pool(lambda: optimizer_watch.in_use, settings.optimizer_pool_size)
    config = with_capacity(
        optimizer_config or OptimizerConfig(max_entries=PORTAL_MAX_ENTRIES), settings.optimizer_pool_size
    )
    cache: Cache = (
        _redis_cache(settings.redis_url, settings.redis_namespace)
        if settings.redis_url
        else in_process_cache(config, settings)
    )
    peers = PeerCache(cache) if not settings.redis_url and engine.dialect.name == "postgresql" else None
    gate = build_gate(settings)
    optimizer = Optimizer(
        partial(_fetch_one, engine),  # the direct path: the original app's reads, on the shared pool
        name=FUNCTION_NAME,
        batch_fn=partial(_fetch_many, optimizer_engine),
        config=config,
        cache=peers or cache,
        gate=gate.gate,
        registry=metrics.registry,
    )
    throttle = BatchThrottle(
        rate_limit=settings.batch_rate_limit,
        concurrency=settings.batch_concurrency,
        metrics=metrics,
        redis_url=settings.redis_url,
    )
    invalidations = None
    if peers is not None:
        invalidations = PgInvalidations(
            engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
            channel=settings.invalidation_channel,
            apply=optimizer.invalidate,
            listening=peers.listening,
            timeout_s=settings.invalidation_timeout_s,
        )
        peers.watch(invalidations.caught_up)
    attempts = AttemptWriter(engine, invalidations=invalidations)
    reads_back = settings.write_through and engine.dialect.name == "postgresql"
    return Portal(
        settings,
        engine,
        optimizer_engine,
        optimizer,
        metrics,
        gate,
        throttle,
        attempts,
        invalidations,
        peers,
        reads_back,
    )


def in_process_cache(config: OptimizerConfig, settings: PortalSettings) -> InProcessCache:
    """The portal's in-process cache in the layout its settings name (`cache_layout`, `cache_hot_share`, ...)."""
    if settings.cache_layout == "objects":
        return InProcessCache(config)
    packing = Packing(zdict=fragments.preset_dictionary())
    if settings.cache_layout == "packed":
        return InProcessCache(config, packing=packing)
    return InProcessCache(
        config, packing=packing, hot_share=settings.cache_hot_share, pack_above=settings.cache_pack_above
    )


def _redis_cache(url: str, namespace: str) -> Cache:
    # Imported only when configured: the Redis tier loads the redis client.
    import optimizer

    redis_cache = cast("Callable[..., Cache]", optimizer.RedisCache)
    return redis_cache(url, namespace=namespace)


def optimizer_config_from_env(environ: Mapping[str, str]) -> OptimizerConfig:
    """`ROLLGUARD_OPTIMIZER_*` settings over the portal's defaults; for entry points only.

    :raise ValueError: a value is invalid (the message names the variable and the value).
    """
    config = OptimizerConfig.from_env(environ)
    if not environ.get("ROLLGUARD_OPTIMIZER_MAX_ENTRIES"):
        config = dataclasses.replace(config, max_entries=PORTAL_MAX_ENTRIES)
    return config


def with_capacity(config: OptimizerConfig, capacity: int) -> OptimizerConfig:
    """Cap the optimizer's backend concurrency at the capacity of its pool."""
    return dataclasses.replace(config, max_concurrency=min(config.max_concurrency, capacity))


def _fetch_one(engine: Engine, key: str) -> fragments.AttemptsFragment:
    student_id, series_id = data.parse_key(key)
    return fragments.encode(data.get_all_exam_attempts(engine, student_id, series_id))


def _fetch_many(engine: Engine, keys: Sequence[str]) -> dict[str, fragments.AttemptsFragment]:
    if engine.dialect.name == "postgresql":
        return pgfragments.read_many(engine, keys)
    return {key: fragments.encode(rows) for key, rows in data.get_exam_attempts_many(engine, keys).items()}


def current_portal() -> Portal:
    """The Portal of the app handling the current request."""
    portal: Portal = current_app.extensions["portal"]
    return portal
