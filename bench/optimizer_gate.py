"""What a gate decision and a cache hit cost: the SDK's `is_enabled` against `UnleashGate`, and an
optimizer hit against a plain cachetools TTLCache hit.

Bootstraps the official UnleashClient with a flag in the shape the flag service
serves (flexibleRollout on userId, payload variant) and times, per call, over
1000 distinct users: the SDK's `is_enabled`, `is_enabled` plus `get_variant`
(what a gate needing the payload would ask the SDK), `UnleashGate.decide` on
its own bucketing path and on its SDK fallback path, and a whole
`Optimizer` call served from the cache through each gate, beside a
`cachetools.TTLCache` hit; the optimizer hits both with the default cache layout
(objects), with the packed layout (`InProcessCache(packing=...)`, a portal
fragment decompressed on every hit; a third of the calls a round, so that its
rounds last about as long as the others') and with the tiered layout the portal
uses by default (`InProcessCache(packing=..., hot_share=...)`), a key stored
lately (served from its hot tier) and a key in its packed tier (a hot tier too
small for the fragment). Single thread; the three hit cases run
`--hit-rounds` short rounds of `--hit-calls` calls, interleaved round by
round, the gate cases `--repeats` rounds of `--calls`; each reports min /
median / max ns per call. The hit-path ratio is the optimizer hit over the
TTLCache hit of the same round (min / median / max over the rounds), and the
ratio of the two cases' fastest rounds. Prints a table and writes
bench/results/optimizer_gate.json.

    .venv/bin/python bench/optimizer_gate.py [--calls 50000] [--repeats 5] [--hit-calls 2000] [--hit-rounds 200]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cachetools import TTLCache  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from UnleashClient import UnleashClient  # noqa: E402
from UnleashClient.cache import FileCache  # noqa: E402
from UnleashClient.utils import InstanceAllowType  # noqa: E402

from bench.machine import write_result  # noqa: E402
from optimizer import Optimizer, OptimizerConfig, StaticGate, UnleashGate  # noqa: E402
from portal import fragments  # noqa: E402
from portal.runtime import in_process_cache  # noqa: E402
from portal.settings import PortalSettings  # noqa: E402

FLAG = "exam-attempts-optimization"
DEFAULT_HOT_SHARE: float = PortalSettings().cache_hot_share
DEFAULT_PACK_ABOVE: float = PortalSettings().cache_pack_above
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


def _per_call_ns(body: Callable[[str], object], calls: int) -> float:
    users = (USERS * (calls // len(USERS) + 1))[:calls]
    started = time.perf_counter_ns()
    for user in users:
        body(user)
    return (time.perf_counter_ns() - started) / calls


def _interleaved(
    cases: dict[str, Callable[[str], object]],
    calls: int,
    repeats: int,
    shorter: dict[str, int] | None = None,
) -> dict[str, list[float]]:
    """Run every case once per round, `repeats` rounds; the ns per call of each case in each round.

    A case named in `shorter` makes `calls // shorter[name]` calls a round: a slower case's rounds
    then last about as long as the others', and are as likely to be cut by the scheduler.
    """
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, body in cases.items():
            runs[name].append(_per_call_ns(body, max(1, calls // (shorter or {}).get(name, 1))))
    return runs


def _spread(values: list[float], digits: int = 1) -> dict[str, float]:
    return {
        "min": round(min(values), digits),
        "median": round(statistics.median(values), digits),
        "max": round(max(values), digits),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    # Short rounds: on a shared machine many of them run within one scheduler slice.
    parser.add_argument("--hit-calls", type=int, default=2000, help="Calls per round of the hit cases.")
    parser.add_argument("--hit-rounds", type=int, default=200)
    args = parser.parse_args()
    calls, repeats = args.calls, args.repeats
    hit_calls, hit_rounds = args.hit_calls, args.hit_rounds
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
        # A portal fragment of two attempts, as bench/optimizer_memory.py makes them.
        fragment = fragments.encode(((29601, 25, 87, 1_776_929_940_000), (29602, 21, 88, 1_776_930_000_000)))
        packed = {
            name: Optimizer(
                lambda k: fragment,
                name=f"bench_{name}_packed",
                config=config,
                cache=in_process_cache(config, PortalSettings(cache_layout="packed")),
                gate=chosen,
                registry=CollectorRegistry(),
            )
            for name, chosen in (("unleash", gate), ("static", StaticGate(True)))
        }
        # The portal's default layout: the fragment stored lately is served from the hot tier; with a hot
        # tier too small for it, from the packed one (what a key the hot tier pushed out costs).
        tiered = {
            name: Optimizer(
                lambda k: fragment,
                name=f"bench_unleash_{name}",
                config=config,
                cache=in_process_cache(
                    config,
                    PortalSettings(cache_layout="tiered", cache_hot_share=share, cache_pack_above=above),
                ),
                gate=gate,
                registry=CollectorRegistry(),
            )
            for name, share, above in (
                ("tiered", DEFAULT_HOT_SHARE, DEFAULT_PACK_ABOVE),
                ("tiered_packed", 1e-9, 1e-9),
            )
        }
        unleash_opt("exam-1", user_id="student-1")
        static_opt("exam-1")
        for opt in tiered.values():
            opt("exam-1", user_id="student-1")
        packed["unleash"]("exam-1", user_id="student-1")
        packed["static"]("exam-1")
        assert packed["static"]("exam-1") == fragment

        ttl_cache: TTLCache[str, object] = TTLCache(maxsize=10_000, ttl=3600)
        ttl_cache["exam-1"] = {"k": "exam-1"}
        load_before = os.getloadavg()[0]
        # The hit path in short rounds, so the three cases of one round see the same machine load.
        hits = _interleaved(
            {
                "ttlcache_hit": lambda u: ttl_cache["exam-1"],
                "cache_hit_unleash_gate": lambda u: unleash_opt("exam-1", user_id=u),
                "cache_hit_static_gate": lambda u: static_opt("exam-1"),
                "cache_hit_unleash_gate_packed": lambda u: packed["unleash"]("exam-1", user_id=u),
                "cache_hit_static_gate_packed": lambda u: packed["static"]("exam-1"),
                "cache_hit_unleash_gate_tiered": lambda u: tiered["tiered"]("exam-1", user_id=u),
                "cache_hit_unleash_gate_tiered_packed": lambda u: tiered["tiered_packed"](
                    "exam-1", user_id=u
                ),
            },
            hit_calls,
            hit_rounds,
            shorter={
                "cache_hit_unleash_gate_packed": 3,
                "cache_hit_static_gate_packed": 3,
                "cache_hit_unleash_gate_tiered_packed": 3,
            },
        )
        gates = _interleaved(
            {
                "sdk_is_enabled": lambda u: client.is_enabled(FLAG, {"userId": u}),
                "sdk_is_enabled_and_get_variant": sdk_with_variant,
                "gate_decide": gate.decide,
                "gate_decide_sdk_fallback": fallback.decide,
                "static_gate_decide": StaticGate(True).decide,
            },
            max(1000, calls // 20),
            repeats,
        )
        times = {name: _spread(values) for name, values in {**hits, **gates}.items()}
        figures: dict[str, object] = {
            "calls": calls,
            "repeats": repeats,
            "hit_calls_per_round": hit_calls,
            "hit_rounds": hit_rounds,
            "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "ns_per_call": times,
        }
        for gate_name in (
            "unleash_gate",
            "static_gate",
            "unleash_gate_packed",
            "static_gate_packed",
            "unleash_gate_tiered",
            "unleash_gate_tiered_packed",
        ):
            ratios = [
                hit / ttl
                for hit, ttl in zip(hits[f"cache_hit_{gate_name}"], hits["ttlcache_hit"], strict=True)
            ]
            figures[f"hit_{gate_name}_over_ttlcache"] = {
                **_spread(ratios, 2),
                "of_fastest_rounds": round(
                    min(hits[f"cache_hit_{gate_name}"]) / min(hits["ttlcache_hit"]), 2
                ),
            }
        for opt in (unleash_opt, static_opt, *tiered.values(), *packed.values()):
            opt.close()
        client.destroy()

    figures["gate_speedup_over_sdk"] = round(
        times["sdk_is_enabled"]["median"] / times["gate_decide"]["median"], 1
    )
    width = max(len(name) for name in times)
    print(f"{'ns per call':<{width}}  {'min':>9} {'median':>9} {'max':>9}")
    for name, spread in times.items():
        print(f"{name:<{width}}  {spread['min']:>9} {spread['median']:>9} {spread['max']:>9}")
    ratios = [name for name in figures if name.startswith("hit_")]
    for name in (*ratios, "gate_speedup_over_sdk"):
        print(f"{name}: {figures[name]}")
    print(f"load average (1 min) before / after: {figures['load_average_1m']}")
    path = write_result(
        "optimizer_gate", figures, command="python bench/optimizer_gate.py " + " ".join(sys.argv[1:])
    )
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
