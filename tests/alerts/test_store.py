"""The receiver's delivery store on SQLite and on PostgreSQL: records and rollback claims."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.store import CLAIM_LEASE, Action, Delivery, DeliveryStore

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
CLAIM = {"fingerprint": "f1", "starts_at": "2026-11-26T03:00:00Z"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DeliveryStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'nested' / 'alerts.db'}"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    store = DeliveryStore(url)
    store.create_tables()
    yield store
    store.dispose()


def _delivery(fingerprint: str, *, flag: str = "opt", status: str = "firing", action: Action) -> Delivery:
    return Delivery(
        received_at=T0,
        group_key="{}:{}",
        fingerprint=fingerprint,
        status=status,
        alertname="RollguardErrorBudgetBurn",
        flag=flag,
        labels={"flag": flag, "action": "rollback"},
        annotations={"summary": "burning"},
        starts_at="2026-11-26T03:00:00Z",
        ends_at=None,
        action=action,
    )


def test_records_deliveries_newest_first_with_filters(store: DeliveryStore) -> None:
    store.record(_delivery("a", action=Action.KILLED))
    store.record(_delivery("a", action=Action.DUPLICATE))
    store.record(_delivery("b", flag="other", status="resolved", action=Action.RESOLVED))

    assert [d.action for d in store.deliveries()] == [Action.RESOLVED, Action.DUPLICATE, Action.KILLED]
    assert [d.fingerprint for d in store.deliveries(flag="opt")] == ["a", "a"]
    assert [d.flag for d in store.deliveries(status="resolved")] == ["other"]
    assert len(store.deliveries(limit=1)) == 1
    (first,) = store.deliveries(fingerprint="b")
    assert first.received_at == T0
    assert first.labels == {"flag": "other", "action": "rollback"}
    assert first.to_json()["action"] == "resolved"


def test_claim_is_granted_once_until_released(store: DeliveryStore) -> None:
    assert store.claim_rollback(**CLAIM, flag="opt", alertname="A", now=T0) is True
    assert store.claim_rollback(**CLAIM, flag="opt", alertname="A", now=T0) is False

    store.release_rollback(**CLAIM)

    assert store.claim_rollback(**CLAIM, flag="opt", alertname="A", now=T0) is True


def test_finished_claim_is_never_granted_again(store: DeliveryStore) -> None:
    store.claim_rollback(**CLAIM, flag="opt", alertname="A", now=T0)
    store.finish_rollback(**CLAIM)
    store.release_rollback(**CLAIM)

    later = T0 + CLAIM_LEASE * 10
    assert store.claim_rollback(**CLAIM, flag="opt", alertname="A", now=later) is False


def test_pending_claim_of_a_dead_worker_is_taken_over_after_the_lease(store: DeliveryStore) -> None:
    store.claim_rollback(**CLAIM, flag="opt", alertname="A", now=T0)

    within = T0 + CLAIM_LEASE - timedelta(seconds=1)
    after = T0 + CLAIM_LEASE + timedelta(seconds=1)

    assert store.claim_rollback(**CLAIM, flag="opt", alertname="A", now=within) is False
    assert store.claim_rollback(**CLAIM, flag="opt", alertname="A", now=after) is True
    assert store.claim_rollback(**CLAIM, flag="opt", alertname="A", now=after) is False


def test_claims_are_per_firing_episode(store: DeliveryStore) -> None:
    assert store.claim_rollback(**CLAIM, flag="opt", alertname="A", now=T0) is True
    next_episode = {**CLAIM, "starts_at": "2026-11-26T04:00:00Z"}

    assert store.claim_rollback(**next_episode, flag="opt", alertname="A", now=T0) is True
