"""Values and checks shared by the tests of the in-process stores."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import strategies as st

# Shaped like the portal's fragments, with a preset dictionary of the same shape.
FRAGMENT = b'"attempt_count":2,"best_score":%d\n[{"id":%d,"exam_id":%d,"score":%d}]'
ZDICT = FRAGMENT % (88, 12345, 21, 88) * 4


def fragment(n: int) -> bytes:
    return FRAGMENT % (n % 100, n, n % 60, n % 97)


class BytesBackend:
    """A backend of `bytes` values that counts its calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.version = 0

    def __call__(self, key: str) -> bytes:
        self.calls.append(key)
        return fragment(self.version) + key.encode()


def reads_beside_writers(store: Any, put: Callable[[str, bytes, str], object]) -> list[tuple[str, bytes]]:
    """Two threads store (with `put(key, value, tag)`) and drop tags while two read; return wrong reads.

    Every value is its key repeated, so a read that returns anything else under a key is wrong.
    """
    stop = threading.Event()
    wrong: list[tuple[str, bytes]] = []

    def write(offset: int) -> None:
        n = offset
        while not stop.is_set():
            key = f"v1:{n % 500}"
            put(key, key.encode() * (1 + n % 7), f"student:{n % 40}")
            if n % 13 == 0:
                store.delete_tag(f"student:{n % 40}")
            n += 2

    def read() -> None:
        for n in range(30_000):
            key = f"v1:{n % 500}"
            found = store.get(key)
            if found is not None and found.value.replace(key.encode(), b""):
                wrong.append((key, found.value))

    writers = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in writers + readers:
        thread.start()
    try:
        for thread in readers:
            thread.join()
    finally:
        stop.set()
        for thread in writers:
            thread.join()
    return wrong


def replay_against_a_model(
    store: Any, ops: list[tuple[str, int, int]], put: Callable[[str, bytes, str], bool]
) -> Iterator[None]:
    """Apply each (op, n, repeat) to `store` and check every key after it; yield after each op.

    A read returns the last value stored for its key, or nothing (evicted, deleted, its tag
    dropped, or refused: `put(key, value, tag)` returns whether the store took it), and
    returns something exactly when `contains` says the store holds the key.
    """
    held: dict[str, bytes] = {}
    for op, n, repeat in ops:
        key = f"k{n}"
        if op == "put":
            value = bytes(range(n, n + 10)) * repeat
            if put(key, value, f"t{n % 3}"):
                held[key] = value
        elif op == "get":
            store.get(key)
        elif op == "delete":
            store.delete(key)
            held.pop(key, None)
        else:
            store.delete_tag(f"t{n % 3}")
            for dropped in [name for name in held if int(name[1:]) % 3 == n % 3]:
                del held[dropped]
        for probe in range(13):
            name = f"k{probe}"
            found = store.get(name)
            assert (found is not None) is store.contains(name)
            assert found is None or found.value == held.get(name), name  # an entry dropped is never served
        yield


def operations(large: int) -> st.SearchStrategy[list[tuple[str, int, int]]]:
    """Lists of (op, key number, repeat) for `replay_against_a_model`; one value in four is `large` times longer."""
    return st.lists(
        st.tuples(
            st.sampled_from(["put", "get", "get", "delete", "delete_tag"]),
            st.integers(0, 12),
            st.sampled_from([1, 1, 1, large]),
        ),
        max_size=120,
    )
