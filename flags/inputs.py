"""Input every request must pass before a view or a JSON parser sees it.

`guard_request` runs before each request of the flag service (registered by
`create_app`), with the checks of `flags.jsontext` that the alert receiver and
the portal run on their JSON bodies too. Two kinds of input are refused here, at the edge, because
they fail far from where they enter:

- a NUL character in the path, the query or a JSON string: PostgreSQL stores
  neither it in text nor `\\u0000` in JSON, so it would surface as a database
  error (and a kill whose reason held one would not happen);
- JSON nested deeper than `MAX_JSON_DEPTH`: Python's parser recurses once per
  level and a few thousand levels end in RecursionError. The depth is counted
  on the raw bytes, without recursion, before anything parses them.
"""

from __future__ import annotations

from flask import request

from flags.errors import BadRequest
from flags.jsontext import MAX_JSON_DEPTH, body_too_deep, has_nul


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
