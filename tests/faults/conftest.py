"""Fixtures of the fault suite: private servers it may restart, pause and kill."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.components import PrivatePostgres, PrivateRedis


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    yield cluster
    cluster.close()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    yield server
    server.close()
