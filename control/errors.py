"""Errors of the controller, raised by its sources, store and loop.

Error tree::

    ControlError            base of everything the controller raises on purpose
    +-- TemporaryError      worth retrying after `delay` seconds (a target or Prometheus did not answer)
    +-- PermanentError      retrying will not help (bad configuration, unknown metric)
        +-- UnknownMetric   a guardrail or chart asked for a metric no source knows

The loop retries `TemporaryError` on its next tick and logs `PermanentError`
for the flag concerned; anything else is a bug and escapes to the process
boundary.
"""

from __future__ import annotations


class ControlError(Exception):
    """Base of the controller's own errors."""


class TemporaryError(ControlError):
    """A failure worth retrying after `delay` seconds."""

    def __init__(self, message: str, *, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(ControlError):
    """A failure retrying will not fix."""


class UnknownMetric(PermanentError):
    """No metric source knows this derived metric name."""
