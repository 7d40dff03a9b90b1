"""`PeerCache`: a worker's in-process cache, served only while the worker hears the others' invalidations.

Used by `portal.runtime.build_portal` when the portal's workers keep their
caches consistent through PostgreSQL LISTEN/NOTIFY (`portal.invalidation`).
While a worker's listening connection is down (a restart, a terminated
backend), another worker's submit is acknowledged without waiting for it,
since it is not there to answer: if it kept serving its cache it could show
that student a page without the attempt. So while it is not listening, it
serves and keeps nothing cached; every call goes to the database. On losing
and on regaining the connection it forgets everything, in-flight loads too
(through the optimizer's remote-invalidation callback, as `RedisCache` does
on a resubscribe), since notifications sent meanwhile never reached it.

The listener thread learns of a lost connection only when it next reads it, and
other workers stop waiting for this one as soon as its backend is gone: so a
request also asks `caught_up` (the listener's connection is up with nothing
unread) once, at its first cache read (after `begin_request`), and its reads
miss when it was not; a request that reads no cache (a submit, /metrics) never
asks. Once per request is enough: a submit acknowledged without this worker was
acknowledged after its backend was gone, so a request that follows it, and its
first read, come after that too, and find the loss unread. (A check per read
cost a third more CPU in the mass submission's burst: each one releases the GIL
to 64 threads.)
A read outside a request checks on its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from optimizer import Cache, Entry, OptimizerConfig

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# The optimizer's callback for invalidations it did not make: (None, None) means "forget everything".
RemoteInvalidation = Callable[[str | None, str | None], None]


class RequestScope:
    """WSGI middleware that begins and ends every request of `app` on `peers`.

    A WSGI wrapper rather than Flask's `before_request` and `teardown_request`
    hooks: each hook costs a request more than a cache read.
    """

    def __init__(self, app: WSGIApplication, peers: PeerCache) -> None:
        self._app = app
        self._peers = peers

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self._peers.begin_request()
        try:
            return self._app(environ, start_response)
        finally:
            self._peers.end_request()


class PeerCache(Cache):
    """Wraps the worker's cache; `listening(False)` stops serving it, `listening(True)` starts again."""

    def __init__(self, inner: Cache) -> None:
        self._inner = inner
        self._serving = False
        self._callbacks: list[RemoteInvalidation] = []
        self._lock = threading.Lock()
        self._caught_up: Callable[[], bool] = lambda: True
        # .caught_up: the answer for this thread's request, once asked; .open: inside a request.
        self._request = threading.local()

    def watch(self, caught_up: Callable[[], bool]) -> None:
        """Serve only while `caught_up()`: the listener has read everything sent to it."""
        self._caught_up = caught_up

    def begin_request(self) -> None:
        """Start the calling thread's request: its first cache read asks `caught_up`, the others reuse it."""
        self._request.open = True
        self._request.caught_up = None

    def end_request(self) -> None:
        self._request.open = False
        self._request.caught_up = None

    def _may_serve(self) -> bool:
        if not self._serving:
            return False
        answer: bool | None = getattr(self._request, "caught_up", None)
        if answer is None:
            answer = self._caught_up()
            if getattr(self._request, "open", False):
                self._request.caught_up = answer
        return answer

    def listening(self, up: bool) -> None:
        """Called by the invalidation listener: whether it hears the other workers now."""
        with self._lock:
            if not up:
                self._serving = False
            self._inner.clear()
            for callback in self._callbacks:
                callback(None, None)
            if up:
                self._serving = True

    @property
    def serving(self) -> bool:
        return self._serving

    def attach(self, *, name: str, config: OptimizerConfig, clock: Callable[[], float]) -> None:
        self._inner.attach(name=name, config=config, clock=clock)

    def on_remote_invalidation(self, callback: RemoteInvalidation) -> None:
        self._callbacks.append(callback)

    def get(self, key: str) -> Entry | None:
        return self._inner.get(key) if self._may_serve() else None

    def reader(self) -> Callable[[str], Entry | None]:
        read = self._inner.reader()

        def read_while_serving(key: str) -> Entry | None:
            return read(key) if self._may_serve() else None

        return read_while_serving

    def put(self, key: str, entry: Entry) -> None:
        if self._serving:
            self._inner.put(key, entry)

    def put_many(self, entries: Sequence[tuple[str, Entry]]) -> None:
        if self._serving:
            self._inner.put_many(entries)

    def settle(self) -> None:
        self._inner.settle()

    def invalidate(self, key: str) -> None:
        self._inner.invalidate(key)

    def invalidate_tag(self, tag: str) -> None:
        self._inner.invalidate_tag(tag)

    def clear(self) -> None:
        self._inner.clear()

    def contains(self, key: str) -> bool:
        return self._inner.contains(key)

    @property
    def bytes(self) -> int:
        return self._inner.bytes

    @property
    def entries(self) -> int:
        return self._inner.entries

    @property
    def evictions(self) -> int:
        return self._inner.evictions

    def close(self) -> None:
        self._inner.close()
