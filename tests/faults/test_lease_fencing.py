"""A controller acts only under the lease its tick started with: a slow tick or a lost lease writes nothing.

A slow metric source (a Prometheus that takes longer to answer than the lease
lasts) is modelled by moving the injected clock while the guardrails are read.
Such a tick changes no flag and records nothing in the controller's store
either: its verdicts would otherwise count in the next leader's decisions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from control.embedded import EmbeddedSource
from control.loop import Controller
from tests.control.conftest import FakeClock, metrics_target, store  # noqa: F401  (fixtures)
from tests.control.test_loop import (  # noqa: F401  (fixtures)
    KEY,
    Harness,
    admin,
    clock,
    controller_events,
    create_flag,
    harness,
    webhook,
)

pytestmark = pytest.mark.integration


class SlowSource:
    """The real embedded source, with time passing while it answers (and something happening meanwhile)."""

    def __init__(
        self, inner: EmbeddedSource, time: FakeClock, *, seconds: float, meanwhile: Callable[[], Any]
    ):
        self._inner, self._clock, self._seconds, self._meanwhile = inner, time, seconds, meanwhile
        self.slow = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def window(self, *args: Any, **kwargs: Any) -> Any:
        if self.slow:
            self._clock.advance(self._seconds)
            self._meanwhile()
        return self._inner.window(*args, **kwargs)


def _records(control_store: Any) -> tuple[int, int]:
    """How many verdicts and decisions the store holds for the flag."""
    return len(control_store.verdicts(KEY)), len(control_store.decisions(KEY))


def _slow(h: Harness, controller: Controller, *, seconds: float, meanwhile: Callable[[], Any]) -> SlowSource:
    assert isinstance(controller.source, EmbeddedSource)
    source = SlowSource(controller.source, h.clock, seconds=seconds, meanwhile=meanwhile)
    controller.source = source
    return source


def test_a_tick_that_outlasts_its_lease_does_not_act(harness: Harness, admin, store) -> None:  # noqa: F811
    create_flag(admin)
    controller = harness.controller()
    source = _slow(harness, controller, seconds=20, meanwhile=lambda: None)
    harness.step(controller, error_pct=30)  # no data
    harness.step(controller, error_pct=30)  # fail
    source.slow = True
    before = _records(store)
    (decision,) = harness.step(controller, error_pct=30)
    assert decision.action.reason == "lease lost during the check" and not decision.applied
    assert admin.get_flag(KEY).enabled and controller_events(admin) == []
    assert _records(store) == before
    source.slow = False
    (decision,) = harness.step(controller, error_pct=30)
    assert decision.action.kind.value == "rollback" and decision.applied
    assert not admin.get_flag(KEY).enabled
    assert [e.action for e in controller_events(admin)] == ["kill"]


def test_a_controller_whose_lease_was_taken_over_mid_tick_does_not_act(
    harness: Harness,  # noqa: F811
    admin,  # noqa: F811
    store,  # noqa: F811
) -> None:
    create_flag(admin)
    first = harness.controller("controller-a")
    second = harness.controller("controller-b")
    taken: list[bool] = []
    source = _slow(
        harness,
        first,
        seconds=16,
        meanwhile=lambda: taken.append(store.acquire_lease("controller-b", lease_s=15)),
    )
    harness.step(first, error_pct=30)
    harness.step(first, error_pct=30)
    source.slow = True
    before = _records(store)
    (decision,) = harness.step(first, error_pct=30)
    assert taken == [True]
    assert decision.action.reason == "lease lost during the check" and not decision.applied
    assert admin.get_flag(KEY).enabled and controller_events(admin) == []
    assert _records(store) == before
    # The new leader acts on its own reading.
    (decision,) = harness.step(second, error_pct=30)
    assert decision.applied and not admin.get_flag(KEY).enabled
    assert {d.holder for d in store.decisions(KEY) if d.action == "rollback"} == {"controller-b"}
