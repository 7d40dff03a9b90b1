"""Requests the controller sends the flag service per tick, by route, and how long a tick takes.

Each round starts `rollguard flags serve` on a throwaway SQLite database,
creates `--flags` flags rolling out with a guardrail, and runs `--ticks` ticks
of the controller (`control.loop.Controller`, the embedded source on an empty
store: every flag is judged and held, nothing changes) through a FlagsClient
whose transport counts what it sends. A round runs in a process of its own
against one checkout (`--code`, default this one), so an earlier commit is
measured by the same code:

    mkdir /tmp/rollguard-before && git archive <commit> | tar -x -C /tmp/rollguard-before
    .venv/bin/python bench/control_calls.py --code before=/tmp/rollguard-before --code after=. \
        [--flags 10] [--ticks 30] [--repeat 3]

Rounds alternate between the checkouts (A, B, A, B, ...); the request counts
are exact, tick times are summarised as min / median / max over the rounds'
medians. Writes bench/results/control_calls.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# The processes of a round are started by this checkout's helpers (nothing a round measures
# imports `bench` or `rollguard`); the code the round measures comes from its checkout.
from bench import servers  # noqa: E402
from rollguard import Child  # noqa: E402

sys.path.insert(0, os.environ.get("ROLLGUARD_BENCH_CODE", str(REPO)))

import httpx  # noqa: E402

FLAG_PATH = re.compile(r"^/api/admin/flags/[^/]+")


class CountingTransport(httpx.BaseTransport):
    """Sends through `inner` and counts each request as `METHOD route`."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.counts: Counter[str] = Counter()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.counts[f"{request.method} {FLAG_PATH.sub('/api/admin/flags/{key}', request.url.path)}"] += 1
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def _start_flag_service(workdir: Path, code: Path) -> tuple[Child, str, str]:
    admin = "admin-" + secrets.token_hex(8)
    env = {
        "PYTHONPATH": str(code),
        "ROLLGUARD_DATABASE_URL": f"sqlite:///{workdir / 'flags.db'}",
        "ROLLGUARD_ADMIN_TOKEN": admin,
        "ROLLGUARD_CLIENT_TOKEN": "client-" + secrets.token_hex(8),
        "ROLLGUARD_LOG_LEVEL": "WARNING",
    }
    proc, url = servers.serve_flags(workdir / "flags.log", env, cwd=code)
    return proc, url, admin


def run_round(code: Path, flags: int, ticks: int) -> dict[str, Any]:
    """One round against the checkout this process imports: counts by route and tick times."""
    from control.embedded import EmbeddedSource
    from control.loop import Controller
    from control.store import ControlStore
    from flags.client import FlagsClient, Guardrail

    workdir = Path(tempfile.mkdtemp(prefix="rg-calls-"))
    proc, url, admin = _start_flag_service(workdir, code)
    store = ControlStore(f"sqlite:///{workdir / 'control.db'}")
    counting = CountingTransport(httpx.HTTPTransport())
    client = FlagsClient(url, admin, actor="controller", transport=counting)
    try:
        with FlagsClient(url, admin, actor="bench") as seeder:
            for i in range(flags):
                seeder.create_flag(
                    f"bench-{i:03d}",
                    enabled=True,
                    rollout=10,
                    state="rolling_out",
                    guardrails=[Guardrail("error_rate", "<=", 0.02, path="optimized")],
                    payload={"fn": "get_all_exam_attempts"},
                )
        controller = Controller(
            flags=client, source=EmbeddedSource(store), store=store, holder="bench", interval_s=1
        )
        tick_s = []
        for _ in range(ticks):
            started = time.perf_counter()
            decisions = controller.tick()
            tick_s.append(time.perf_counter() - started)
            assert len(decisions) == flags, decisions
    finally:
        client.close()
        store.close()
        proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "requests_by_route": dict(sorted(counting.counts.items())),
        "requests_per_tick": sum(counting.counts.values()) / ticks,
        "tick_ms_median": round(statistics.median(tick_s) * 1000, 2),
    }


def _checkout(value: str) -> tuple[str, Path]:
    """A `--code` value as (label, path); without a label, the path names itself."""
    label, _, path = value.rpartition("=")
    return label or path, Path(path).resolve()


def _spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": round(statistics.median(values), 2), "max": max(values)}


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--code", action="append", help="[LABEL=]PATH of a checkout to measure (repeatable)")
    parser.add_argument("--flags", type=int, default=10)
    parser.add_argument("--ticks", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--round", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    codes = dict(_checkout(value) for value in (args.code or [str(REPO)]))
    if args.round:
        print(json.dumps(run_round(next(iter(codes.values())), args.flags, args.ticks)))
        return

    from bench.machine import write_result

    rounds: list[dict[str, Any]] = []
    for repetition in range(args.repeat):
        for label, code in codes.items():
            load = _load()
            out = subprocess.run(
                [sys.executable, __file__, "--round", "--code", str(code), "--flags", str(args.flags)]
                + ["--ticks", str(args.ticks)],
                env={**os.environ, "ROLLGUARD_BENCH_CODE": str(code)},
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            result = {"code": label, "repetition": repetition, "load_before": load, **json.loads(out)}
            rounds.append(result)
            print(
                f"{label}: {result['requests_per_tick']:g} requests per tick "
                f"({result['requests_by_route']}), tick median {result['tick_ms_median']} ms, load {load}"
            )
    summary = []
    for label in codes:
        mine = [r for r in rounds if r["code"] == label]
        per_tick = sorted({r["requests_per_tick"] for r in mine})
        summary.append(
            {
                "code": label,
                "requests_per_tick": per_tick[0] if len(per_tick) == 1 else per_tick,
                "requests_per_tick_per_flag": round(per_tick[-1] / args.flags, 3),
                "requests_by_route_per_tick": {
                    route: count / args.ticks for route, count in mine[0]["requests_by_route"].items()
                },
                "tick_ms": _spread([r["tick_ms_median"] for r in mine]),
            }
        )
    for line in summary:
        print(json.dumps(line))
    command = "bench/control_calls.py " + " ".join(sys.argv[1:])
    path = write_result(
        "control_calls",
        {
            "flags": args.flags,
            "ticks": args.ticks,
            "summary": summary,
            "rounds": rounds,
            "load_after": _load(),
        },
        command=command,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
