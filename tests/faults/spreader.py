"""A TCP proxy that hands each new connection to one of several servers at random, as a load balancer does.

The traffic tests put two single-worker portals behind it to stand for two
workers whose invalidations do not reach each other: a page loaded on a new
connection may then come from the worker that did not take the submit.
"""

from __future__ import annotations

import random
import select
import socket
import socketserver
import threading
from collections import Counter

_CHUNK = 65536


class _Pipe(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        backend = self.server.choose()
        with socket.create_connection(backend, timeout=30) as upstream:
            _pump(self.request, upstream)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, backends: list[tuple[str, int]], seed: int) -> None:
        super().__init__(("127.0.0.1", 0), _Pipe)
        self._backends = backends
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.chosen: Counter[int] = Counter()

    def choose(self) -> tuple[str, int]:
        with self._lock:
            index = self._rng.randrange(len(self._backends))
            self.chosen[index] += 1
        return self._backends[index]


def _pump(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    peers = {client: upstream, upstream: client}
    while True:
        readable, _, _ = select.select(list(peers), [], [], 30)
        if not readable:
            return
        for sock in readable:
            try:
                data = sock.recv(_CHUNK)
            except OSError:
                return
            if not data:
                return
            peers[sock].sendall(data)


class ConnectionSpreader:
    """Listens on a free loopback port; each accepted connection goes to a randomly chosen backend."""

    def __init__(self, backends: list[str], *, seed: int = 0) -> None:
        addresses = []
        for url in backends:
            host, _, port = url.removeprefix("http://").rstrip("/").partition(":")
            addresses.append((host, int(port)))
        self._server = _Server(addresses, seed)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="spreader", daemon=True)
        self._thread.start()

    @property
    def connections(self) -> Counter[int]:
        """How many connections each backend (by index) was handed."""
        return self._server.chosen

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
