"""Annotations: notes on the timeline, stored with the flag's events, through the API and FlagsClient."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.conftest import LiveFlagService, start_flag_service
from tests.flags.conftest import CLIENT, admin, create_flag


def test_an_annotation_is_listed_with_the_flags_events(client: FlaskClient) -> None:
    create_flag(client, "checkout")

    posted = client.post(
        "/api/admin/annotations",
        json={"flag": "checkout", "kind": "fault-on", "text": "30% errors on the optimized path"},
        headers=admin("demo"),
    )

    assert posted.status_code == 201
    assert (posted.json["flag"], posted.json["kind"], posted.json["actor"]) == (
        "checkout",
        "fault-on",
        "demo",
    )
    events = client.get("/api/admin/events?flag=checkout", headers=admin()).json["events"]
    assert [(e["action"], e["reason"]) for e in events] == [
        ("annotate", "30% errors on the optimized path"),
        ("create", None),
    ]


def test_a_flags_annotations_include_those_for_every_flag(client: FlaskClient) -> None:
    create_flag(client, "checkout")
    create_flag(client, "search")
    for body in (
        {"text": "mass submission starts", "kind": "mass-submission-start"},
        {"text": "search only", "flag": "search"},
        {"text": "checkout only", "flag": "checkout"},
    ):
        assert client.post("/api/admin/annotations", json=body, headers=admin()).status_code == 201

    listed = client.get("/api/admin/annotations?flag=checkout&order=asc", headers=admin()).json["annotations"]

    assert [(a["text"], a["flag"]) for a in listed] == [
        ("mass submission starts", None),
        ("checkout only", "checkout"),
    ]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param({"text": ""}, 422, id="empty-text"),
        pytest.param({}, 422, id="no-text"),
        pytest.param({"text": "x", "kind": "Not A Kind"}, 422, id="bad-kind"),
        pytest.param({"text": "x", "flag": "nope"}, 404, id="unknown-flag"),
        pytest.param({"text": "x" * 501}, 422, id="too-long"),
    ],
)
def test_bad_annotations_are_refused(client: FlaskClient, body: dict[str, str], status: int) -> None:
    assert client.post("/api/admin/annotations", json=body, headers=admin()).status_code == status


def test_annotations_need_the_admin_scope(client: FlaskClient) -> None:
    assert client.post("/api/admin/annotations", json={"text": "x"}).status_code == 401
    assert client.get("/api/admin/annotations", headers={"Authorization": CLIENT}).status_code == 403


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LiveFlagService]:
    live = start_flag_service(tmp_path)
    yield live
    live.process.terminate()


def test_the_client_posts_and_reads_annotations(service: LiveFlagService) -> None:
    with service.admin("traffic") as flags:
        note = flags.annotate("500 students submit", kind="mass-submission-start")
        [listed] = flags.annotations()

    assert listed == note
    assert (note.kind, note.text, note.flag, note.actor) == (
        "mass-submission-start",
        "500 students submit",
        None,
        "traffic",
    )
    assert note.time.tzinfo is not None
