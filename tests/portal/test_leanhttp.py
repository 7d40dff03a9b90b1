"""The load generator's HTTP client: one kept-alive connection, every request reported to locust as it went."""

from __future__ import annotations

import json

from tests.support import python_output

# In a process of its own: importing locust patches the standard library with gevent. A gevent
# WSGI server in the same process answers by path and notes each request's client port.
_SCRIPT = """
import json, locust, gevent
from gevent.pywsgi import WSGIServer
from locust.event import EventHook
from portal.leanhttp import LeanSession
from rollguard import free_port

ports = []
def app(environ, start_response):
    ports.append(environ["REMOTE_PORT"])
    if environ["PATH_INFO"] == "/missing":
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error":"missing"}']
    body = environ["wsgi.input"].read() if environ["REQUEST_METHOD"] == "POST" else b'{"ok":true}'
    start_response("201 Created" if environ["REQUEST_METHOD"] == "POST" else "200 OK",
                   [("Content-Type", "application/json")])
    return [body]

server = WSGIServer(("127.0.0.1", 0), app, log=None)
server.start()
reported = []
event = EventHook()
event.add_listener(lambda **meta: reported.append(
    [meta["request_type"], meta["name"], meta["response_length"], repr(meta["exception"]), meta["response_time"] > 0]))
session = LeanSession(f"http://127.0.0.1:{server.server_port}", event, connection_timeout=5, network_timeout=5)
got = session.get("/page?x=1", name="page")
posted = session.post_json("/submit", {"score": 7}, name="submit", expect=201)
missing = session.get("/missing", name="missing")
session.close()
refused = LeanSession(f"http://127.0.0.1:{free_port()}", event, connection_timeout=5, network_timeout=5).get("/", name="refused")
server.stop()
print(json.dumps({
    "replies": [[r.status, r.json() if r.body else None, r.elapsed_s > 0] for r in (got, posted, missing, refused)],
    "reported": reported,
    "connections": len(set(ports)),
}))
"""


def test_requests_share_one_connection_and_each_is_reported_with_its_failure():
    out = json.loads(python_output(_SCRIPT))

    assert out["replies"] == [
        [200, {"ok": True}, True],
        [201, {"score": 7}, True],
        [404, {"error": "missing"}, True],
        [0, None, True],  # nothing listens: no status, the error reported
    ]
    assert out["connections"] == 1  # three requests, one kept-alive connection
    page, submit, missing, refused = out["reported"]
    assert page == ["GET", "page", 11, "None", True]
    assert submit == ["POST", "submit", 11, "None", True]  # the body as sent: {"score":7}
    assert missing[:4] == ["GET", "missing", 19, "StatusError('HTTP 404')"]
    assert refused[0:3] == ["GET", "refused", 0] and "Refused" in refused[3]
