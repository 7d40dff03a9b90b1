"""The per-process objects the views share, kept in `app.extensions["rollguard"]`."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from flags.auth import TokenCache
from flags.broadcast import Broadcaster
from flags.db import Database
from flags.failures import FailureLimit
from flags.impact import Pruner
from flags.served import ServedState
from flags.settings import Settings


@dataclass
class Services:
    """Settings, database, served snapshot, tokens, failure limit, stream fan-out and impact pruner of one app."""

    settings: Settings
    db: Database
    served: ServedState
    tokens: TokenCache
    auth_failures: FailureLimit
    broadcaster: Broadcaster
    impact_pruner: Pruner


def services() -> Services:
    """The services of the app handling the current request."""
    found: Services = current_app.extensions["rollguard"]
    return found
