"""Errors the optimizer raises to the app that embeds it.

Errors of the wrapped function itself are never wrapped: a caller sees the
backend's own exception, shared by every caller that joined the same call.

Error tree::

    OptimizerError          base of everything raised by the layer itself
    +-- Overloaded          no backend slot freed up within `queue_timeout_s` (concurrency cap)
    +-- RateLimited         the backend rate limit stayed exhausted for `queue_timeout_s`
    +-- MissingFromBatch    `batch_fn` returned no value for a key it was asked for (also a KeyError)
    +-- FaultInjected       raised by the chaos hook (`Optimizer.fault`), never by real backends
    +-- OptimizerClosed     the optimizer was closed
    +-- InvalidationUnconfirmed  a shared cache could not confirm an invalidation in time
"""

from __future__ import annotations


class OptimizerError(Exception):
    """Base class of the errors the optimization layer raises itself."""


class Overloaded(OptimizerError):
    """The concurrency cap stayed full for longer than the caller may wait."""


class RateLimited(OptimizerError):
    """The backend rate limit stayed exhausted for longer than the caller may wait."""


class MissingFromBatch(OptimizerError, KeyError):
    """`batch_fn` answered without a value for one of the keys it was given."""


class FaultInjected(OptimizerError):
    """An error injected by `Optimizer.fault` to exercise the circuit breaker."""


class OptimizerClosed(OptimizerError):
    """The optimizer was closed and takes no more calls."""


class InvalidationUnconfirmed(OptimizerError):
    """A shared cache could not confirm that every copy of a key or tag is gone.

    The write behind it is done; until the invalidation is confirmed in the
    background, this instance serves those keys from the backend only. Callers
    should not acknowledge the write as visible (the portal answers 503).
    """
