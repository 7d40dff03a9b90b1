"""One line, not a traceback, for each failure the Unleash SDK logs while the flag service is away.

The official SDK logs every failed fetch, registration and metrics post with
`logger.exception`: a flag service that is down for a minute fills the log with
full tracebacks of connection errors that say nothing a line would not. The
portal keeps deciding from its last known flags meanwhile, so a line is enough.
"""

from __future__ import annotations

import logging

SDK_LOGGER = "UnleashClient"


class TracebackToLine(logging.Filter):
    """Rewrite a record with an exception into one line naming the exception's type."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()} [{type(error).__name__}]"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_sdk_tracebacks() -> None:
    """Install the filter on the SDK's logger once."""
    logger = logging.getLogger(SDK_LOGGER)
    if not any(isinstance(existing, TracebackToLine) for existing in logger.filters):
        logger.addFilter(TracebackToLine())
