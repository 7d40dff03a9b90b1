"""The receiver's limit on failed authentications (the flag service keeps the same rule in its own part).

Only failed requests are counted and refused, so Alertmanager's deliveries with
the right token are never throttled by whoever fails next to them. Failures are
counted per client address and token (one misconfigured sender does not use up
another's budget behind the same proxy) and per address overall, with a higher
ceiling that stops a guesser sending a new token each time. In memory, per process.
"""

from __future__ import annotations

import hashlib

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

RETRY_AFTER_S = 60


class FailureLimit:
    """Failed authentications per minute, per (address, token) and per address; 0 disables it."""

    def __init__(self, per_token: int, per_address: int) -> None:
        self._items = (
            (RateLimitItemPerMinute(per_token), RateLimitItemPerMinute(max(per_address, per_token)))
            if per_token > 0
            else None
        )
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def exhausted(self, address: str, token: str) -> bool:
        """Whether a failed request from `address` with `token` is over a limit."""
        if self._items is None:
            return False
        per_token, per_address = self._items
        return not (
            self._limiter.test(per_token, address, _fingerprint(token))
            and self._limiter.test(per_address, address)
        )

    def fail(self, address: str, token: str) -> None:
        """Count one failure."""
        if self._items is not None:
            per_token, per_address = self._items
            self._limiter.hit(per_token, address, _fingerprint(token))
            self._limiter.hit(per_address, address)


def _fingerprint(token: str) -> str:
    # A presented secret is never kept as is, even a wrong one.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:16]
