"""The official Unleash client specification, evaluated by the official SDK against our server.

Each specification file is imported into one running flag service (replacing
the previous file's features), an `UnleashClient` is pointed at `<url>/api`
with a client token, and every `tests` and `variantTests` case is checked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from UnleashClient import UnleashClient

from tests.conftest import LiveFlagService, start_flag_service
from tests.support import missing, wait_until

# Unleash's client specification (Apache-2.0), vendored with its licence next to this file.
SPEC_DIR = Path(
    os.environ.get(
        "ROLLGUARD_UNLEASH_SPEC_DIR",
        Path(__file__).resolve().parent / "unleash-client-specification" / "specifications",
    )
)
DELTA_API = ("19-delta-api-hydration.json", "20-delta-api-events.json")


def _cases() -> list[Any]:
    if not SPEC_DIR.is_dir():
        return [pytest.param(None, None, None, id="specification-missing")]
    params: list[Any] = []
    for path in sorted(SPEC_DIR.glob("[0-9]*.json")):
        spec = json.loads(path.read_text())
        marks = [pytest.mark.skip(reason="delta API is not served")] if path.name in DELTA_API else []
        for kind in ("tests", "variantTests"):
            for case in spec.get(kind, []):
                case_id = f"{path.stem}/{kind}/{case['description']}"
                params.append(pytest.param(path.name, kind, case, id=case_id, marks=marks))
    return params


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveFlagService]:
    service = start_flag_service(tmp_path_factory.mktemp("spec-flags"))
    yield service
    service.process.stop()


@pytest.fixture(scope="module")
def sdk_for(
    service: LiveFlagService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], UnleashClient]]:
    """Return the SDK loaded with a specification file, importing the file on first use."""
    current: dict[str, Any] = {}

    def load(name: str) -> UnleashClient:
        if current.get("name") == name:
            return current["client"]
        if "client" in current:
            current.pop("client").destroy()
        state = json.loads((SPEC_DIR / name).read_text())["state"]
        with service.admin() as admin:
            admin.import_unleash(
                {
                    "version": state.get("version", 1),
                    "features": state["features"],
                    "segments": state.get("segments", []),
                },
                replace=True,
            )
        cache_dir = tmp_path_factory.mktemp("sdk-cache")
        client = service.sdk(f"spec-{name[:2]}", cache_dir, disable_registration=True)
        client.initialize_client()
        expected = {feature["name"] for feature in state["features"]}
        wait_until(lambda: expected <= set(client.feature_definitions()), what=f"{name} loaded by the SDK")
        current.update(name=name, client=client)
        return client

    yield load
    if "client" in current:
        current["client"].destroy()


@pytest.mark.parametrize(("spec_file", "kind", "case"), _cases())
def test_specification_case(
    sdk_for: Callable[[str], UnleashClient], spec_file: str | None, kind: str | None, case: dict | None
) -> None:
    if spec_file is None or case is None:
        missing(f"Unleash client specification not found at {SPEC_DIR}")
        return
    client = sdk_for(spec_file)
    context = case.get("context", {})
    if kind == "tests":
        assert client.is_enabled(case["toggleName"], context) is case["expectedResult"]
    else:
        assert client.get_variant(case["toggleName"], context) == case["expectedResult"]
