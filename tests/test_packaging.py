"""The wheel: it passes `twine check`, and its base install is only the optimizer and the flag client.

An app that embeds the optimizer runs `pip install rollguard`; the flag service,
the dashboard and the traffic generator come with extras. This builds the wheel
from the checkout, installs it without extras into a fresh virtual environment
and runs the optimizer there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# What a base install must not bring: the services', the dashboard's and the load generator's stacks.
SERVER_ONLY = ("flask", "sqlalchemy", "alembic", "gunicorn", "streamlit", "plotly", "locust", "gevent")

_BASE_APP = f"""
import importlib.util, json
SERVER_ONLY = {SERVER_ONLY!r}
from optimizer import Optimizer, StaticGate
from flags.client import FlagsClient

calls = []
def attempts(key):
    calls.append(key)
    return {{"key": key}}

opt = Optimizer(attempts, name="get_all_exam_attempts", gate=StaticGate(True))
values = [opt("42/series-1", user_id="42") for _ in range(5)]
present = [name for name in SERVER_ONLY if importlib.util.find_spec(name) is not None]
print(json.dumps({{"values": values, "backend_calls": len(calls), "present": present,
                  "client": FlagsClient.__name__}}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=240,
    )
    (built,) = out.glob("rollguard-*.whl")
    return built


@pytest.mark.slow
def test_wheel_passes_twine_check(wheel: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(wheel)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED" in result.stdout


@pytest.mark.slow
def test_base_install_runs_the_optimizer_without_the_server_stack(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    # This run's pip installs into the new environment (`--python`): bootstrapping a pip of its own
    # there (ensurepip) took seconds and is not what the test is about.
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )

    # Run outside the checkout so that the installed packages, not the source tree, are imported.
    ran = subprocess.run(
        [str(python), "-c", _BASE_APP], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    assert report["values"] == [{"key": "42/series-1"}] * 5
    assert report["backend_calls"] == 1
    assert report["present"] == []
    assert report["client"] == "FlagsClient"

    # The admin commands work from the base install (they only need the flag client) ...
    admin = _rollguard(env_dir, tmp_path, "flags", "--url", "http://127.0.0.1:9", "list")
    assert "flag service unavailable" in admin.stderr
    # ... and a command that needs an extra says which one.
    serve = _rollguard(env_dir, tmp_path, "flags", "serve", "--port", "9")
    assert serve.returncode == 1
    assert "pip install 'rollguard[server]'" in serve.stderr
    dashboard = _rollguard(env_dir, tmp_path, "up", "--help")
    assert "pip install 'rollguard[" in dashboard.stderr


def _rollguard(env_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(env_dir / "bin" / "rollguard"), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )
