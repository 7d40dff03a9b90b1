"""`query_value` reads a query parameter as `request.args.get` would, with or without building `request.args`."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from flask import Flask, request
from hypothesis import given
from hypothesis import strategies as st

from portal.schemas import query_value

NAMES = ("student_id", "series_id", "step")
_APP = Flask(__name__)

# Query strings as clients send them: plain pairs, escapes, '+', blanks, repeats, stray '&' and '='.
_piece = st.one_of(
    st.sampled_from([*NAMES, "", "=", "&", "+", "%31", "%zz", "%D9%A3", "1", "007", "-3", "x"]),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=4).map(quote),
    st.text(alphabet="ab0123456789=&;", max_size=6),
)


@given(st.lists(_piece, max_size=12).map("".join), st.sampled_from(NAMES))
def test_query_value_agrees_with_request_args(query: str, name: str) -> None:
    with _APP.test_request_context(f"/?{query}"):
        assert query_value(name) == request.args.get(name)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("student_id=12&series_id=3", "12"),
        ("series_id=3&student_id=12&student_id=13", "12"),
        ("student_id", ""),
        ("student_id=", ""),
        ("series_id=3", None),
        ("", None),
        ("student_id=%31%32", "12"),
        ("student_id=1+2", "1 2"),
    ],
)
def test_query_value_reads_the_first_value(query: str, expected: str | None) -> None:
    with _APP.test_request_context(f"/?{query}"):
        assert query_value("student_id") == expected
