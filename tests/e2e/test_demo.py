"""End to end: `rollguard up` plays its story, checked from what it records and the audit log."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rollguard import ROLLGUARD
from tests.conftest import start_flag_service
from tests.support import REPO

FLAG = "exam-attempts-optimization"
# The controller judges every scrape (each second) and rolls back after 2 failing
# checks of a 10 s window: a rollback later than this after the fault means the loop broke.
ROLLBACK_BOUND_S = 90


@pytest.mark.slow
def test_demo_promotes_then_rolls_back_on_fault(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    result = subprocess.run(
        [
            *ROLLGUARD,
            "up",
            "--duration",
            "300",
            "--no-browser",
            "--free-ports",
            "--var-dir",
            str(var_dir),
            "--students",
            "600",
            "--stage-hold",
            "20",
            "--stop-when-done",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=420,
    )
    story_path = var_dir / "story.json"
    assert story_path.exists(), result.stdout + result.stderr
    story = json.loads(story_path.read_text())
    assert result.returncode == 0, result.stdout + result.stderr
    assert story["completed"], story["events"]
    assert story["stopped"], story["events"]

    assert story["promoted_at_s"] is not None
    assert story["fault_at_s"] > story["promoted_at_s"]
    assert 0 < story["rolled_back_at_s"] - story["fault_at_s"] <= ROLLBACK_BOUND_S
    # The fault is on the optimized path only: the direct path's only errors are the incident's own,
    # a page that found no free database connection during the mass submission (counted apart).
    metrics = story["portal_metrics"]
    assert metrics.get("optimizer_errors_total{path=direct}", 0.0) <= metrics["portal_db_pool_timeouts_total"]
    assert story["portal_metrics"]["optimizer_requests_total{path=direct}"] > 0
    assert story["portal_metrics"]["optimizer_requests_total{path=optimized}"] > 0

    assert [line.split(":")[0] for line in story["headline"]] == [
        "backend calls saved against direct",
        "call reduction (optimized path)",
        "cache hit rate",
        "eta, live efficiency (optimized path)",
        "cache memory",
        "error rate",
    ]
    assert "the headline, from the portal's /metrics" in result.stdout

    # The flag service's audit log, read after a restart on the same database,
    # holds the promotion and the rollback with their reasons.
    service = start_flag_service(tmp_path, database_url=f"sqlite:///{var_dir / 'flags.db'}")
    try:
        with service.admin() as admin:
            events = admin.events(flag=FLAG, limit=200)
            flag = admin.get_flag(FLAG)
            notes = {a.kind for a in admin.annotations(flag=FLAG)}
    finally:
        service.process.terminate()
    assert not flag.enabled
    # The fault hit the 50% stage, where the demo holds the flag for the mass submission.
    assert flag.rollout == 50
    promotions = [e for e in events if e.actor == "controller" and e.after and e.after.get("rollout") == 50]
    kills = [e for e in events if e.action == "kill"]
    assert promotions and promotions[0].reason
    assert kills and kills[0].actor == "controller"
    # The story's marks for the dashboard; the fault is cleared once the story is told.
    assert {"mass-submission-start", "mass-submission-end", "fault-on", "fault-off"} <= notes
    assert any(name in (kills[0].reason or "") for name in ("error_rate", "p95", "breaker_bypass_rate"))
