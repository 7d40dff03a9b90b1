"""Unleash streaming: GET /api/client/streaming, server-sent events for SDKs in streaming mode.

A stream opens with `unleash-connected` carrying a `hydration` event (the whole
client document), then sends `unleash-updated` with delta events whenever the
document changes (`flags.broadcast`), and a comment line every
`flags_stream_heartbeat_s` so that SDK read timeouts (30 s in the Python SDK,
60 s in Node) never fire on an idle stream. Each heartbeat also re-checks the
stream's token, so a revoked token's stream ends within one interval. A stream
holds no thread of its own under gunicorn's gevent worker; see flags/README.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Response, request
from flask_smorest import Blueprint
from sqlalchemy.exc import SQLAlchemyError

from flags import deltas
from flags.auth import require
from flags.broadcast import Broadcaster, Publication
from flags.errors import TooManyRequests
from flags.schemas import ErrorSchema
from flags.state import services

bp = Blueprint("streaming", __name__, url_prefix="/api/client", description="Unleash streaming for SDKs.")


@bp.route("/streaming", methods=["GET"])
@bp.response(200, content_type="text/event-stream", description="unleash-connected, then unleash-updated")
@bp.alt_response(401, schema=ErrorSchema, description="no valid client token")
@bp.alt_response(429, schema=ErrorSchema, description="this process holds its maximum of streams")
def streaming() -> Response:
    """Stream the client document and its changes as server-sent events."""
    require("client")
    found = services()
    broadcaster = found.broadcaster
    if not broadcaster.admit():
        raise TooManyRequests(
            "this flag service holds its maximum of streams; poll instead", headers={"Retry-After": "30"}
        )
    try:
        first = broadcaster.current()
    except BaseException:
        broadcaster.leave()
        raise
    events = _events(
        broadcaster,
        first,
        header=request.headers.get("Authorization", ""),
        heartbeat_s=found.settings.flags_stream_heartbeat_s,
    )
    response = Response(events, mimetype="text/event-stream")
    # Runs when the server closes the response, whether or not the stream ever started.
    response.call_on_close(broadcaster.leave)
    response.headers["Cache-Control"] = "no-cache"
    # Proxies such as nginx would otherwise hold events back in their buffers.
    response.headers["X-Accel-Buffering"] = "no"
    return response


def _events(
    broadcaster: Broadcaster, first: Publication, *, header: str, heartbeat_s: float
) -> Iterator[bytes]:
    yield deltas.frame(
        deltas.CONNECTED, deltas.hydration(first.state, event_id=first.revision), event_id=first.revision
    )
    sent = first
    reauthorize_at = time.monotonic() + heartbeat_s
    while True:
        newer = broadcaster.next_after(sent.revision, timeout=heartbeat_s)
        if broadcaster.closed:
            return
        if newer is not None:
            frame = _update(sent, newer)
            sent = newer
            if frame:
                yield frame
        if time.monotonic() >= reauthorize_at:
            if not _still_authorized(broadcaster, header):
                return
            reauthorize_at = time.monotonic() + heartbeat_s
            yield deltas.HEARTBEAT


def _still_authorized(broadcaster: Broadcaster, header: str) -> bool:
    try:
        return broadcaster.still_authorized(header)
    except SQLAlchemyError:
        # The token was valid when the stream opened; a database outage must not cut working streams.
        return True


def _update(sent: Publication, newer: Publication) -> bytes:
    """The frame that brings a stream from `sent` to `newer` (empty if nothing served changed)."""
    if newer.etag == sent.etag:
        return b""
    if newer.previous_etag == sent.etag:
        return newer.update
    events = deltas.changes(sent.state, newer.state, event_id=newer.revision)
    return deltas.frame(deltas.UPDATED, events, event_id=newer.revision)
