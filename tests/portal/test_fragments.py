"""The cached page fragments: the same JSON the attempts render to, spliced into valid page bodies."""

from __future__ import annotations

import json

from optimizer import Packing
from optimizer.packing import Codec
from portal import fragments
from portal.data import render_attempts

ROWS = ((101, 7, 88, 1_767_225_600_123), (140, 9, 93, 1_767_312_000_000))


def test_a_fragment_holds_the_rendered_attempts_and_the_widget_facts():
    fragment = fragments.encode(ROWS)
    assert json.loads(fragments.attempts_json(fragment)) == render_attempts(ROWS)
    widget = json.loads(b"{" + fragments.widget_fields(fragment) + b"}")
    assert widget == {"attempt_count": 2, "best_score": 93, "last_attempt_id": 140}


def test_no_attempts_make_an_empty_array_and_null_facts():
    fragment = fragments.encode(())
    assert json.loads(fragments.attempts_json(fragment)) == []
    assert json.loads(b"{" + fragments.widget_fields(fragment) + b"}") == {
        "attempt_count": 0,
        "best_score": None,
        "last_attempt_id": None,
    }


def test_objects_and_arrays_splice_encoded_members_after_plain_fields():
    attempts = fragments.attempts_json(fragments.encode(ROWS))
    body = fragments.json_object({"page": "x", "calls": ["1:2"]}, {"attempts": attempts, "more": b"[]"})
    assert json.loads(body) == {"page": "x", "calls": ["1:2"], "attempts": render_attempts(ROWS), "more": []}
    assert json.loads(fragments.json_object({}, {"a:1": b"1"})) == {"a:1": 1}
    assert json.loads(fragments.json_object({"only": True})) == {"only": True}
    assert json.loads(fragments.json_array([b"1", b'"two"'])) == [1, "two"]
    assert fragments.json_array([]) == b"[]"


def test_the_preset_dictionary_leaves_a_fragment_at_most_a_third_of_its_bytes():
    codec = Codec(Packing(zdict=fragments.preset_dictionary()))
    for rows in (ROWS, ROWS[:1], ((2_000_001, 55, 100, 1_790_000_000_000),)):
        fragment = fragments.encode(rows)
        packed = codec.pack(fragment)
        assert codec.unpack(packed) == fragment
        assert len(packed) * 3 <= len(fragment), (len(packed), len(fragment))
