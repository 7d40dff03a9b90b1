"""The hot path of /api/client/features, answered before Flask sees the request.

SDKs poll this route from every app instance, so it must cost almost nothing:
`FeaturesFastPath` wraps the WSGI app and, for a plain GET with a token seen
before in this revision, answers from the precomputed snapshot (200 with the
body, or 304 when If-None-Match names it). Anything else (unknown token, query
string, other methods) falls through to the full Flask view in `flags.sdk`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError

from flags.auth import TokenCache
from flags.served import ServedState

PATH = "/api/client/features"
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

FEATURE_REQUESTS = Counter(
    "rollguard_flags_client_features_requests",
    "Requests for the Unleash client features document answered by the fast path",
    ["status"],
)
_SERVED_200 = FEATURE_REQUESTS.labels("200")
_SERVED_304 = FEATURE_REQUESTS.labels("304")


class FeaturesFastPath:
    """WSGI middleware serving the features document from memory."""

    def __init__(self, app: WSGIApp, *, served: ServedState, tokens: TokenCache) -> None:
        self._app = app
        self._served = served
        self._tokens = tokens

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if (
            environ.get("PATH_INFO") != PATH
            or environ.get("REQUEST_METHOD") != "GET"
            or environ.get("QUERY_STRING")
        ):
            return self._app(environ, start_response)
        header = environ.get("HTTP_AUTHORIZATION")
        principal = self._tokens.cached(header) if header else None
        if principal is None:
            return self._app(environ, start_response)
        try:
            snapshot = self._served.snapshot()
        except SQLAlchemyError:
            # The full view answers in the project's format (503 when the database is gone).
            return self._app(environ, start_response)
        headers = [("ETag", snapshot.etag), ("Cache-Control", "no-cache")]
        if snapshot.etag_matches(environ.get("HTTP_IF_NONE_MATCH")):
            _SERVED_304.inc()
            start_response("304 NOT MODIFIED", headers)
            return [b""]
        _SERVED_200.inc()
        headers += [("Content-Type", "application/json"), ("Content-Length", str(len(snapshot.body)))]
        start_response("200 OK", headers)
        return [snapshot.body]
