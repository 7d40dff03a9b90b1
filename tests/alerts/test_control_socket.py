"""The portal's and the alert receiver's gunicorn servers never share a control socket."""

from __future__ import annotations

from alerts.cli import gunicorn_options as receiver_options
from alerts.settings import AlertsSettings
from portal.server import gunicorn_options as portal_options


def test_each_server_has_its_own_control_socket() -> None:
    receiver = receiver_options(AlertsSettings(), host="127.0.0.1", port=9099)["control_socket"]
    portal = portal_options(host="127.0.0.1", port=9099, workers=1, threads=4)["control_socket"]
    other_portal = portal_options(host="127.0.0.1", port=8001, workers=1, threads=4)["control_socket"]

    assert len({receiver, portal, other_portal}) == 3
    assert ".gunicorn" not in receiver + portal
