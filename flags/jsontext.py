"""Checks on raw JSON text that every HTTP edge of Rollguard runs before parsing.

Pure functions on bytes, with no Flask: the flag service (`flags.inputs`), the
alert receiver and the portal refuse a body before a parser sees it when it
holds a NUL character (PostgreSQL stores neither it in text nor `\\u0000` in
JSON) or is nested deeper than `MAX_JSON_DEPTH` (Python's parser recurses once
per level, and a few thousand levels end in RecursionError). The depth is
counted on the raw bytes, without recursion. Outside `flags/`, this module and
`flags.client` are the only ones other parts may import.
"""

from __future__ import annotations

import re

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
