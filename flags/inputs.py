"""Input every request must pass before a view or a JSON parser sees it.

`guard_request` runs before each request of the flag service (registered by
`create_app`); the alert receiver and the portal call `body_too_deep` on their
JSON bodies too. Two kinds of input are refused here, at the edge, because
they fail far from where they enter:

- a NUL character in the path, the query or a JSON string: PostgreSQL stores
  neither it in text nor `\\u0000` in JSON, so it would surface as a database
  error (and a kill whose reason held one would not happen);
- JSON nested deeper than `MAX_JSON_DEPTH`: Python's parser recurses once per
  level and a few thousand levels end in RecursionError. The depth is counted
  on the raw bytes, without recursion, before anything parses them.
"""

from __future__ import annotations

import re

from flask import request

from flags.errors import BadRequest

MAX_JSON_DEPTH = 64

# An escaped NUL: `\u0000` after an even number of backslashes (an odd number escapes the backslash).
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def body_too_deep(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text `data` opens more than `limit` arrays/objects inside each other."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth = 0
    for bracket in _BRACKETS.findall(_STRING.sub(b'""', data)):
        depth += 1 if bracket in (b"[", b"{") else -1
        if depth > limit:
            return True
    return False


def has_nul(data: bytes) -> bool:
    """Whether the JSON text `data` holds a NUL character, raw or escaped."""
    return b"\x00" in data or (b"\\u0000" in data and _ESCAPED_NUL.search(data) is not None)


def guard_request() -> None:
    """Refuse a request with a NUL character or a body nested too deeply (400)."""
    if "\x00" in request.path or any(
        "\x00" in name or "\x00" in value for name, value in request.args.items(multi=True)
    ):
        raise BadRequest("the path or query holds a NUL character", code="nul_character")
    if not request.content_length and request.headers.get("Transfer-Encoding") is None:
        return
    data = request.get_data(cache=True)
    if has_nul(data):
        raise BadRequest("the body holds a NUL character", code="nul_character")
    if body_too_deep(data):
        raise BadRequest(f"the body is nested deeper than {MAX_JSON_DEPTH} levels", code="too_deeply_nested")
