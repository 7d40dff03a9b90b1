"""What the optimizer caches for one key: the JSON a page sends for those attempts, encoded once.

`portal.runtime` wraps `get_all_exam_attempts` so that its value is an
`AttemptsFragment`: the attempts rendered and encoded with orjson at load time,
plus the few facts the ExamHome widgets show, also pre-encoded. The pages
(`portal.pages`) splice these bytes into their bodies: a cache hit renders and
encodes nothing. Both paths build their pages from the same fragments, so an
optimized page is byte for byte the direct one (but for its `path`).

A fragment is one `bytes` object, the compact form the cache holds:
`<widget fields>\\n<attempts array>`; orjson never writes a raw newline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import orjson

from portal.data import AttemptRow, render_attempts

AttemptsFragment = bytes

_SEPARATOR = b"\n"

_SAMPLE_START_MS = 1_767_225_600_000  # 2026-01-01


def encode(attempts: Sequence[AttemptRow]) -> AttemptsFragment:
    """Encode attempts (oldest first) as the fragment pages splice in."""
    widget = {
        "attempt_count": len(attempts),
        "best_score": max((a[2] for a in attempts), default=None),
        "last_attempt_id": attempts[-1][0] if attempts else None,
    }
    # The widget fields go inside an object the page opens: drop the braces.
    return orjson.dumps(widget)[1:-1] + _SEPARATOR + orjson.dumps(render_attempts(attempts))


def preset_dictionary() -> bytes:
    """Bytes shaped like fragments, to prime the cache's compression of them (`optimizer.Packing`).

    Made from made-up attempts that cover the shapes: the field names, the date
    format and the widget line, so that a compressed fragment keeps mostly its numbers.
    """
    samples = []
    for n in range(40):
        first = (1_000 + 3_7 * n, 10 + n, 50 + n % 50, _SAMPLE_START_MS + n * 7 * 3_600_000)
        second = (first[0] + 1, first[1] + 2, 60 + n % 40, first[3] + 60_000)
        samples.append(encode((first, second)[: 1 + n % 2]))
    return b"".join(samples)


def attempts_json(fragment: AttemptsFragment) -> bytes:
    """The JSON array of the attempts."""
    return fragment.partition(_SEPARATOR)[2]


def widget_fields(fragment: AttemptsFragment) -> bytes:
    """`"attempt_count":..,"best_score":..,"last_attempt_id":..`, to close a widget object with."""
    return fragment.partition(_SEPARATOR)[0]


def json_object(fields: Mapping[str, object], encoded: Mapping[str, bytes] | None = None) -> bytes:
    """A JSON object of `fields` (encoded here), then the members of `encoded`, whose values are JSON already."""
    head = orjson.dumps(fields)
    if not encoded:
        return head
    tail = b",".join(orjson.dumps(name) + b":" + value for name, value in encoded.items())
    return head[:-1] + (b"," if fields else b"") + tail + b"}"


def json_array(items: Iterable[bytes]) -> bytes:
    """A JSON array of items that are JSON already."""
    return b"[" + b",".join(items) + b"]"
