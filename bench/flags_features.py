"""Throughput of GET /api/client/features under the production server, measured with wrk.

Starts `rollguard flags serve` (gunicorn) on a throwaway SQLite database for
each worker configuration, creates 20 flags, then runs wrk for full answers
(200) and conditional ones (If-None-Match -> 304) at 16 and 64 connections.
Prints a table and writes bench/results/flags_features.json.

    .venv/bin/python bench/flags_features.py [--duration 8] [--configs gevent:2 gthread:2:4] [--repeat 3]

With --repeat N the configurations run interleaved (A, B, A, B, ...) and each
(configuration, status, connections) is summarised as min / median / max.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import servers  # noqa: E402
from bench.machine import write_result  # noqa: E402
from flags.client import FlagsClient, Guardrail  # noqa: E402
from rollguard import Child  # noqa: E402

FLAGS = 20


def _start(config: str, workdir: Path, run: int) -> tuple[Child, str, str, str]:
    kind, workers, *rest = config.split(":")
    stem = f"{config.replace(':', '_')}_{run}"
    admin, client = "admin-" + secrets.token_hex(8), "client-" + secrets.token_hex(8)
    env = {
        "ROLLGUARD_DATABASE_URL": f"sqlite:///{workdir / (stem + '.db')}",
        "ROLLGUARD_ADMIN_TOKEN": admin,
        "ROLLGUARD_CLIENT_TOKEN": client,
        "ROLLGUARD_FLAGS_WORKER_CLASS": kind,
        "ROLLGUARD_FLAGS_WORKERS": workers,
        "ROLLGUARD_FLAGS_THREADS": rest[0] if rest else "1",
        "ROLLGUARD_LOG_LEVEL": "WARNING",
    }
    process, url = servers.serve_flags(workdir / f"{stem}.log", env, timeout_s=30)
    return process, url, admin, client


def _seed(url: str, admin: str) -> None:
    with FlagsClient(url, admin, actor="bench") as client:
        for i in range(FLAGS):
            client.create_flag(
                f"bench-flag-{i:02d}",
                enabled=True,
                rollout=(i * 5) % 101,
                payload={"ttl_s": 30, "batch": 8, "breaker": {"error_rate": 0.2}},
                guardrails=[Guardrail(metric="error_rate", op="<=", threshold=0.01)],
                reason="benchmark seed",
            )


def _server_cpu_s(proc: Child) -> float:
    """CPU seconds used so far by the server: gunicorn's master and its workers."""
    root = psutil.Process(proc.pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def _wrk(proc: Child, url: str, headers: dict[str, str], connections: int, duration: int) -> dict[str, Any]:
    cpu_before = _server_cpu_s(proc)
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run(
        [*argv, f"{url}/api/client/features"], capture_output=True, text=True, check=True
    ).stdout
    cpu_s = _server_cpu_s(proc) - cpu_before
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    p99 = re.search(r"99%\s+(\S+)", out)
    return {
        "requests_per_s": round(rps),
        # Throughput per CPU second the server used: what a shared machine's load does not skew.
        "requests_per_cpu_s": round(requests / cpu_s) if cpu_s > 0 else None,
        "non_2xx_3xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
        "latency_p99": p99.group(1) if p99 else None,
    }


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Min / median / max of req/s and req per CPU second of each (config, status, connections)."""
    groups: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["config"], run["status"], run["connections"]), []).append(run)
    summary = []
    for (config, status, connections), group in groups.items():
        line: dict[str, Any] = {
            "config": config,
            "status": status,
            "connections": connections,
            "rounds": len(group),
        }
        for key in ("requests_per_s", "requests_per_cpu_s"):
            values = [run[key] for run in group if run[key] is not None]
            line[key] = {"min": min(values), "median": round(statistics.median(values)), "max": max(values)}
        summary.append(line)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["gevent:2", "gthread:2:4"],
        help="worker_class:workers[:threads]",
    )
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds over the configs")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed", file=sys.stderr)
        return 1
    runs: list[dict[str, Any]] = []
    rounds = [(index, config) for index in range(args.repeat) for config in args.configs]
    with tempfile.TemporaryDirectory() as tmp:
        for index, config in rounds:
            proc, url, admin, client = _start(config, Path(tmp), index)
            try:
                _seed(url, admin)
                first = httpx.get(f"{url}/api/client/features", headers={"Authorization": client})
                etag = first.headers["ETag"]
                body_bytes = len(first.content)
                for connections in args.connections:
                    for status, headers in (
                        (200, {"Authorization": client}),
                        (304, {"Authorization": client, "If-None-Match": etag}),
                    ):
                        result = _wrk(proc, url, headers, connections, args.duration)
                        run = {
                            "config": config,
                            "round": index,
                            "status": status,
                            "connections": connections,
                            "load": _load(),
                            **result,
                        }
                        runs.append(run)
                        print(
                            f"{config:12} {status}  c={connections:<3} {result['requests_per_s']:>7} req/s"
                            f" {result['requests_per_cpu_s']:>7} req/cpu-s"
                            f"  p99 {result['latency_p99']}  errors {result['non_2xx_3xx']}"
                            f" {result['socket_errors']}  load {run['load']}",
                            flush=True,
                        )
            finally:
                proc.stop()
    best = {
        str(status): max((r for r in runs if r["status"] == status), key=lambda r: r["requests_per_s"])
        for status in (200, 304)
    }
    summary = _summarise(runs)
    for line in summary:
        rps, per_cpu = line["requests_per_s"], line["requests_per_cpu_s"]
        print(
            f"{line['config']:12} {line['status']}  c={line['connections']:<3} "
            f"req/s {rps['min']} / {rps['median']} / {rps['max']}  "
            f"req/cpu-s {per_cpu['min']} / {per_cpu['median']} / {per_cpu['max']} (min / median / max)"
        )
    figures = {
        "flags": FLAGS,
        "body_bytes": body_bytes,
        "duration_s": args.duration,
        "runs": runs,
        "summary": summary,
        "best": best,
    }
    path = write_result(
        "flags_features", figures, command="python bench/flags_features.py " + " ".join(sys.argv[1:])
    )
    print(
        f"best 200: {best['200']['requests_per_s']} req/s ({best['200']['config']}, c={best['200']['connections']})"
    )
    print(
        f"best 304: {best['304']['requests_per_s']} req/s ({best['304']['config']}, c={best['304']['connections']})"
    )
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
