"""What a gate decision and a cache hit cost: the SDK's `is_enabled` against `UnleashGate`.

Bootstraps the official UnleashClient with a flag in the shape the flag service
serves (flexibleRollout on userId, payload variant) and times, per call, over
1000 distinct users: the SDK's `is_enabled`, `is_enabled` plus `get_variant`
(what a gate needing the payload would ask the SDK), `UnleashGate.decide` on
its own bucketing path and on its SDK fallback path, and a whole
`Optimizer` call served from the cache through each gate. Single thread, best
of several repeats. Prints a table and writes bench/results/optimizer_gate.json.

    .venv/bin/python bench/optimizer_gate.py [--calls 50000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from prometheus_client import CollectorRegistry  # noqa: E402
from UnleashClient import UnleashClient  # noqa: E402
from UnleashClient.cache import FileCache  # noqa: E402
from UnleashClient.utils import InstanceAllowType  # noqa: E402

from bench.machine import write_result  # noqa: E402
from optimizer import Optimizer, OptimizerConfig, StaticGate, UnleashGate  # noqa: E402

FLAG = "exam-attempts-optimization"
USERS = [f"student-{i}" for i in range(1000)]


def _feature(name: str, rollout: int, *, constrained: bool = False) -> dict:
    strategy = {
        "name": "flexibleRollout",
        "constraints": [],
        "parameters": {"rollout": str(rollout), "stickiness": "userId", "groupId": name},
        "variants": [
            {
                "name": "config",
                "weight": 1000,
                "stickiness": "userId",
                "payload": {"type": "json", "value": json.dumps({"ttl_s": 30, "max_batch": 50})},
            }
        ],
    }
    if constrained:
        strategy["constraints"] = [{"contextName": "userId", "operator": "NOT_IN", "values": ["x"]}]
    return {"name": name, "enabled": True, "strategies": [strategy], "variants": []}


def _per_call_ns(body: Callable[[str], object], calls: int, repeats: int) -> float:
    users = (USERS * (calls // len(USERS) + 1))[:calls]
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter_ns()
        for user in users:
            body(user)
        best = min(best, (time.perf_counter_ns() - started) / calls)
    return round(best, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    calls, repeats = args.calls, args.repeats
    # The SDK warns that it cannot reach a server: this benchmark runs it bootstrapped on purpose.
    logging.getLogger("UnleashClient").setLevel(logging.CRITICAL)

    with tempfile.TemporaryDirectory() as directory:
        cache = FileCache("optimizer-gate-bench", directory=directory)
        cache.bootstrap_from_dict(
            {"version": 2, "features": [_feature(FLAG, 100), _feature("constrained", 100, constrained=True)]}
        )
        client = UnleashClient(
            url="http://127.0.0.1:9/api",
            app_name="optimizer-gate-bench",
            disable_metrics=True,
            disable_registration=True,
            cache=cache,
            multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
        )
        gate = UnleashGate(client, FLAG)
        fallback = UnleashGate(client, "constrained")
        assert gate.decide("student-1").optimized and gate.fast
        assert fallback.decide("student-1").optimized and not fallback.fast

        def sdk_with_variant(user: str) -> object:
            context = {"userId": user}
            return client.is_enabled(FLAG, context) and client.get_variant(FLAG, context)

        config = OptimizerConfig(ttl_s=3600)
        unleash_opt = Optimizer(
            lambda k: {"k": k}, name="bench_unleash", config=config, gate=gate, registry=CollectorRegistry()
        )
        static_opt = Optimizer(
            lambda k: {"k": k},
            name="bench_static",
            config=config,
            gate=StaticGate(True),
            registry=CollectorRegistry(),
        )
        unleash_opt("exam-1", user_id="student-1")
        static_opt("exam-1")

        figures = {
            "calls": calls,
            "repeats": repeats,
            "load_average_1m": round(os.getloadavg()[0], 2),
            "sdk_is_enabled_ns": _per_call_ns(
                lambda u: client.is_enabled(FLAG, {"userId": u}), calls, repeats
            ),
            "sdk_is_enabled_and_get_variant_ns": _per_call_ns(sdk_with_variant, calls, repeats),
            "gate_decide_ns": _per_call_ns(gate.decide, calls, repeats),
            "gate_decide_sdk_fallback_ns": _per_call_ns(fallback.decide, calls, repeats),
            "static_gate_decide_ns": _per_call_ns(StaticGate(True).decide, calls, repeats),
            "cache_hit_unleash_gate_ns": _per_call_ns(
                lambda u: unleash_opt("exam-1", user_id=u), calls, repeats
            ),
            "cache_hit_static_gate_ns": _per_call_ns(lambda u: static_opt("exam-1"), calls, repeats),
        }
        unleash_opt.close()
        static_opt.close()
        client.destroy()

    figures["gate_speedup_over_sdk"] = round(figures["sdk_is_enabled_ns"] / figures["gate_decide_ns"], 1)
    width = max(len(name) for name in figures)
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    path = write_result(
        "optimizer_gate", figures, command="python bench/optimizer_gate.py " + " ".join(sys.argv[1:])
    )
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
