"""A limit on failed authentications, shared by the flag service and the alert receiver.

Only failures are counted, and only requests that failed are ever refused by
it: a valid token is never throttled, whoever else fails from the same address.
Failures are counted per client address and credential (so one misconfigured
client does not use up the budget of another behind the same proxy) and per
address overall, with a higher ceiling, which stops a guesser that sends a new
credential each time. Counted in memory, per process.
"""

from __future__ import annotations

import hashlib

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

RETRY_AFTER_S = 60


class FailureLimit:
    """Failed authentications per minute, per (address, credential) and per address.

    :param per_credential: failures one address may make with one credential per minute; 0 disables both.
    :param per_address: failures one address may make with any credentials per minute.
    """

    def __init__(self, per_credential: int, per_address: int) -> None:
        enabled = per_credential > 0
        self._credential = RateLimitItemPerMinute(per_credential) if enabled else None
        self._address = RateLimitItemPerMinute(max(per_address, per_credential)) if enabled else None
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def exhausted(self, address: str, credential: str | None) -> bool:
        """Whether a failed request from `address` with `credential` is over a limit."""
        if self._credential is None or self._address is None:
            return False
        return not (
            self._limiter.test(self._credential, address, _fingerprint(credential))
            and self._limiter.test(self._address, address)
        )

    def fail(self, address: str, credential: str | None) -> None:
        """Count one failure."""
        if self._credential is None or self._address is None:
            return
        self._limiter.hit(self._credential, address, _fingerprint(credential))
        self._limiter.hit(self._address, address)


def _fingerprint(credential: str | None) -> str:
    # Never keep a presented secret in memory as is, even a wrong one.
    return hashlib.sha256((credential or "").encode("utf-8", "surrogatepass")).hexdigest()[:16]
