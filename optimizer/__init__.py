"""Rollguard optimizer: a library an app embeds to cut calls to an expensive function safely.

Public API (what the portal and other apps import)::

    from optimizer import Optimizer, OptimizerConfig, Fault, StaticGate, UnleashGate, InProcessCache, Packing, RedisCache, BreakerConfig, WriteThrough
    from optimizer import HandOff  # group commit: what arrives while every slot is busy runs together next

See `optimizer.core` for the call path, `optimizer.settings` for the flag
payload keys, and `optimizer/README.md` for an overview.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optimizer.aio import AsyncOptimizer
from optimizer.cache import Cache, Entry, InProcessCache
from optimizer.core import Fault, Optimizer
from optimizer.errors import (
    FaultInjected,
    InvalidationUnconfirmed,
    MissingFromBatch,
    OptimizerClosed,
    OptimizerError,
    Overloaded,
    RateLimited,
)
from optimizer.gate import Decision, Gate, StaticGate, UnleashGate
from optimizer.handoff import HandOff
from optimizer.packing import Packing
from optimizer.settings import BreakerConfig, OptimizerConfig
from optimizer.writing import WriteThrough

if TYPE_CHECKING:
    from optimizer.redis_backend import RedisCache

__all__ = [
    "AsyncOptimizer",
    "BreakerConfig",
    "Cache",
    "Decision",
    "Entry",
    "Fault",
    "FaultInjected",
    "Gate",
    "HandOff",
    "InProcessCache",
    "InvalidationUnconfirmed",
    "MissingFromBatch",
    "Optimizer",
    "OptimizerClosed",
    "OptimizerConfig",
    "OptimizerError",
    "Overloaded",
    "Packing",
    "RateLimited",
    "RedisCache",
    "StaticGate",
    "UnleashGate",
    "WriteThrough",
]


def __getattr__(name: str) -> object:
    # The Redis tier imports redis only when an app asks for it.
    if name == "RedisCache":
        from optimizer.redis_backend import RedisCache

        return RedisCache
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
