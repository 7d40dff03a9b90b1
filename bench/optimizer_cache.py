"""What the optimizer's cache operations cost: hits, misses, `get_many`, and invalidations.

Times, single-threaded, best of several repeats: an in-process hit through
`Optimizer.__call__`, a `get_many` of 12 cached keys (one MyTestSeries page), a
miss with a trivial backend (the layer's own overhead, including measuring the
value's size), and the wall time of `invalidate` in process and with the Redis
tier when two instances must acknowledge it (needs Redis; skipped without).
Prints a table and writes bench/results/optimizer_cache.json.

    .venv/bin/python bench/optimizer_cache.py [--calls 50000] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import redis  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from bench.machine import write_result  # noqa: E402
from optimizer import Optimizer, OptimizerConfig, RedisCache  # noqa: E402

ATTEMPTS = [
    {"id": i, "exam_id": 100 + i, "score": 71.5, "submitted_at": "2026-05-01T10:00:00+00:00"}
    for i in range(12)
]


def _best_ns(body: Any, calls: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter_ns()
        for _ in range(calls):
            body()
        best = min(best, (time.perf_counter_ns() - started) / calls)
    return round(best, 1)


def _invalidate_ms(opt: Optimizer, reader: Optimizer | None, rounds: int) -> dict[str, float]:
    delays = []
    for i in range(rounds):
        key = f"student-{i % 50}/series-1"
        opt(key)
        if reader is not None:
            reader(key)
        started = time.perf_counter()
        opt.invalidate(key)
        delays.append(time.perf_counter() - started)
    delays.sort()
    return {
        "median_ms": round(statistics.median(delays) * 1000, 3),
        "p95_ms": round(delays[int(0.95 * len(delays))] * 1000, 3),
        "max_ms": round(delays[-1] * 1000, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--redis", default=os.environ.get("ROLLGUARD_REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()

    config = OptimizerConfig(ttl_s=3600)
    opt = Optimizer(lambda key: ATTEMPTS, name="bench", config=config, registry=CollectorRegistry())
    keys = [f"student-1/series-{i}" for i in range(12)]
    opt.get_many(keys)
    counter = iter(range(10**9))
    figures: dict[str, Any] = {
        "calls": args.calls,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "hit_ns": _best_ns(lambda: opt("student-1/series-0"), args.calls, args.repeats),
        "get_many_12_hits_ns": _best_ns(lambda: opt.get_many(keys), args.calls // 10, args.repeats),
        "miss_trivial_backend_ns": _best_ns(
            lambda: opt(f"cold-{next(counter)}"), args.calls // 10, args.repeats
        ),
        "invalidate_in_process": _invalidate_ms(opt, None, args.rounds),
    }
    opt.close()

    try:
        redis.Redis.from_url(args.redis, socket_connect_timeout=1).ping()
    except redis.RedisError:
        figures["invalidate_redis_two_instances"] = f"skipped: Redis not reachable at {args.redis}"
    else:
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        caches = [RedisCache(args.redis, namespace=namespace) for _ in range(2)]
        a, b = (
            Optimizer(
                lambda key: ATTEMPTS, name="bench", config=config, cache=cache, registry=CollectorRegistry()
            )
            for cache in caches
        )
        assert all(cache.wait_subscribed() for cache in caches)
        a("warm")
        b("warm")
        figures["redis_local_hit_ns"] = _best_ns(lambda: b("warm"), args.calls, args.repeats)
        figures["invalidate_redis_two_instances"] = _invalidate_ms(a, b, args.rounds)
        a.close()
        b.close()
        client = redis.Redis.from_url(args.redis)
        stale = list(client.scan_iter(match=f"{namespace}:*"))
        if stale:
            client.delete(*stale)
        client.close()

    width = max(len(name) for name in figures)
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    path = write_result(
        "optimizer_cache", figures, command="python bench/optimizer_cache.py " + " ".join(sys.argv[1:])
    )
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
