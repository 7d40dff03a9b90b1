"""Rollguard's composition root: the `rollguard` command line, `rollguard up` and process supervision.

The parts (`flags`, `optimizer`, `portal`, `control`, `alerts`, `dashboard`)
live beside this package and never import it; it wires them together. Its
public surface, for the test suite and the benchmarks too, is process
supervision (`rollguard.processes`): start a command in a process group of its
own, wait until it is ready, stop its whole group.
"""

from rollguard.processes import (
    ROLLGUARD,
    Child,
    ChildFailed,
    Supervisor,
    free_port,
    http_ok,
    pick_port,
    port_open,
    start_child,
    stop_children,
)

__all__ = [
    "ROLLGUARD",
    "Child",
    "ChildFailed",
    "Supervisor",
    "free_port",
    "http_ok",
    "pick_port",
    "port_open",
    "start_child",
    "stop_children",
]
