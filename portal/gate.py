"""Build the gate that decides, per student, whether the optimized path serves them.

Called by `portal.runtime.build_portal`. With a flag service configured the
portal asks it through the official Unleash SDK (`<flags-url>/api`, client token
in `Authorization`) for the flag `exam-attempts-optimization`; without one a
static gate follows ROLLGUARD_PORTAL_OPTIMIZE.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count

from UnleashClient import UnleashClient
from UnleashClient.utils import InstanceAllowType

from optimizer import StaticGate, UnleashGate
from portal.sdklog import quiet_sdk_tracebacks
from portal.settings import PortalSettings

logger = logging.getLogger(__name__)

_instances = count(1)


@dataclass
class BuiltGate:
    """The gate, how it decides (`static` or `unleash`), and how to stop what it started."""

    gate: StaticGate | UnleashGate
    kind: str
    close: Callable[[], None]


def build_gate(settings: PortalSettings) -> BuiltGate:
    """Return an UnleashGate when a flags URL is set, else a StaticGate per `settings.optimize`."""
    if not settings.flags_url:
        return BuiltGate(StaticGate(optimized=settings.optimize), "static", lambda: None)
    headers = {"Authorization": settings.client_token} if settings.client_token else {}
    cache_dir = settings.var_dir / "unleash-cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    quiet_sdk_tracebacks()
    client = UnleashClient(
        url=f"{settings.flags_url.rstrip('/')}/api",
        app_name="portal",
        instance_id=f"portal-{socket.gethostname()}-{os.getpid()}-{next(_instances)}",
        refresh_interval=settings.flags_refresh_s,
        metrics_interval=settings.flags_metrics_s,
        custom_headers=headers,
        cache_directory=str(cache_dir),
        # Tests and the bench run several portals in one process, each with its own client.
        multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
        experimental_mode={"type": settings.flags_mode},
    )
    client.initialize_client()
    logger.info("gating %s through %s in %s mode", settings.flag_key, settings.flags_url, settings.flags_mode)
    return BuiltGate(UnleashGate(client, settings.flag_key), "unleash", client.destroy)
