"""Streaming flags: how fast a kill reaches official SDKs, and what 1,000 open streams cost.

Starts two `rollguard flags serve` deployments (gunicorn, default gevent
workers) on one fresh PostgreSQL database.

1. Kill latency. The official Python SDK (`UnleashClient`, streaming mode) and
   the official Node SDK (`unleash-client` 6, installed by npm into a temporary
   folder) stream from the first deployment. Kills alternate between the admin
   API of the first deployment and of the second (which reaches the first's
   streams through PostgreSQL LISTEN/NOTIFY); each is timed from just before
   the admin request to the moment each SDK evaluates the flag off. The flag is
   resumed (and seen on) before the next kill.
2. Capacity. Opens `--streams` raw server-sent-event connections to the first
   deployment, then reports the resident memory (RSS) and CPU of its processes
   idle and through `--fanout-kills` kills, and how long each kill took to reach
   the first, the median and the last stream.

Prints the figures with the load average and writes bench/results/flags_streaming.json.

    .venv/bin/python bench/flags_streaming.py [--kills 20] [--streams 1000] [--no-node]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from UnleashClient import UnleashClient
from UnleashClient.cache import FileCache

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import servers  # noqa: E402
from bench.machine import write_result  # noqa: E402
from flags.client import FlagsClient  # noqa: E402
from rollguard import Child, stop_children  # noqa: E402

FLAG = "streamed-kill"
USER = {"userId": "student-1"}
WATCH_JS = Path(__file__).resolve().parent / "flags_streaming_watch.js"
TIMEOUT_S = 10.0


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _serve(database_url: str, admin: str, client: str, log: Path) -> tuple[Child, str]:
    env = {
        "ROLLGUARD_DATABASE_URL": database_url,
        "ROLLGUARD_ADMIN_TOKEN": admin,
        "ROLLGUARD_CLIENT_TOKEN": client,
    }
    return servers.serve_flags(log, env)


def _wait(predicate: Callable[[], bool], what: str) -> float:
    """Poll `predicate` every half millisecond; return the wall-clock time it first held."""
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.0005)
    return time.time()


class NodeWatcher:
    """The Node SDK watch script as a subprocess; its on/off lines arrive on a queue."""

    def __init__(self, node_modules: Path, url: str, token: str) -> None:
        env = {**os.environ, "NODE_PATH": str(node_modules)}
        self._proc = subprocess.Popen(
            ["node", str(WATCH_JS), f"{url}/api", token, FLAG],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines: queue.Queue[tuple[str, float]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            state, millis = line.split()
            self.lines.put((state, int(millis) / 1000))

    def next_state(self, wanted: str) -> float:
        """The epoch time at which the SDK reported `wanted`, skipping other lines."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            state, at = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if state == wanted:
                return at

    def stop(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _install_node_sdk(folder: Path) -> Path | None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        print("node/npm not found: Node SDK skipped")
        return None
    subprocess.run(
        [
            "npm",
            "install",
            "--silent",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(folder),
            "unleash-client@6",
        ],
        check=True,
        capture_output=True,
    )
    return folder / "node_modules"


def _summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "min_ms": round(min(ms), 1),
        "median_ms": round(statistics.median(ms), 1),
        "max_ms": round(max(ms), 1),
    }


def measure_kills(
    *, a_url: str, b_url: str, admin: str, client: str, kills: int, node_modules: Path | None, cache: Path
) -> dict[str, Any]:
    """Kill through A and B in turn; time each kill to the Python and Node SDKs streaming from A."""
    sdk = UnleashClient(
        url=f"{a_url}/api",
        app_name="bench-python",
        custom_headers={"Authorization": client},
        disable_metrics=True,
        disable_registration=True,
        cache=FileCache("bench-python", directory=str(cache)),
        experimental_mode={"type": "streaming"},
    )
    sdk.initialize_client()
    node = NodeWatcher(node_modules, a_url, client) if node_modules else None
    seen: dict[str, list[float]] = {}
    load_before = _load()
    try:
        _wait(lambda: sdk.is_enabled(FLAG, USER), "the Python SDK to see the flag on")
        if node:
            node.next_state("on")
        for i in range(kills * 2):
            via, url = ("A", a_url) if i % 2 == 0 else ("B", b_url)
            with FlagsClient(url, admin, actor="bench") as flags:
                started = time.time()
                flags.kill(FLAG, reason="bench kill")
                seen.setdefault(f"admin_request_via_{via}", []).append(time.time() - started)
                python_at = _wait(lambda: not sdk.is_enabled(FLAG, USER), "the kill in the Python SDK")
                seen.setdefault(f"python_via_{via}", []).append(python_at - started)
                if node:
                    seen.setdefault(f"node_via_{via}", []).append(node.next_state("off") - started)
                flags.resume(FLAG, reason="bench resume")
                _wait(lambda: sdk.is_enabled(FLAG, USER), "the resume in the Python SDK")
                if node:
                    node.next_state("on")
    finally:
        sdk.destroy()
        if node:
            node.stop()
    figures: dict[str, Any] = {name: _summary(values) for name, values in sorted(seen.items())}
    figures["load_before"], figures["load_after"] = load_before, _load()
    return figures


@dataclass
class RawStream:
    """One server-sent-event connection read by asyncio; counts unleash-updated events as they arrive."""

    updates: list[float] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)


async def _hold(stream: RawStream, host: str, port: int, token: str, stop: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    request = (
        f"GET /api/client/streaming HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: {token}\r\nAccept: text/event-stream\r\n\r\n"
    )
    writer.write(request.encode())
    await writer.drain()
    tail = b""
    try:
        while not stop.is_set():
            chunk = await reader.read(65536)
            if not chunk:
                return
            now = time.time()
            text = tail + chunk
            if b"unleash-connected" in text:
                stream.connected.set()
            # A marker cut in two by a read boundary is found whole in the tail carried over.
            stream.updates += [now] * text.count(b"event: unleash-updated")
            tail = text[-40:] if b"event: unleash-updated" not in text[-40:] else b""
    finally:
        writer.close()


def _processes(proc: Child) -> list[psutil.Process]:
    root = psutil.Process(proc.pid)
    return [root, *root.children(recursive=True)]


def _rss_mib(procs: list[psutil.Process]) -> float:
    return round(sum(p.memory_info().rss for p in procs) / 2**20, 1)


def _cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        times = p.cpu_times()
        total += times.user + times.system
    return total


async def measure_streams(
    *,
    a_proc: Child,
    a_url: str,
    b_url: str,
    admin: str,
    client: str,
    count: int,
    kills: int,
    idle_s: float,
) -> dict[str, Any]:
    """Open `count` streams on A, then measure memory and CPU idle and through kills."""
    host, port = a_url.removeprefix("http://").split(":")
    procs = _processes(a_proc)
    rss_before = _rss_mib(procs)
    stop = asyncio.Event()
    streams = [RawStream() for _ in range(count)]
    gate = asyncio.Semaphore(100)

    async def hold(stream: RawStream) -> None:
        async with gate:
            task = asyncio.create_task(_hold(stream, host, int(port), client, stop))
            await asyncio.wait_for(stream.connected.wait(), timeout=60)
        await task

    opened = time.monotonic()
    tasks = [asyncio.create_task(hold(s)) for s in streams]
    await asyncio.wait_for(asyncio.gather(*(s.connected.wait() for s in streams)), timeout=300)
    open_s = time.monotonic() - opened
    load_open = _load()
    rss_open = _rss_mib(procs)

    cpu_idle_start, idle_start = _cpu_s(procs), time.monotonic()
    await asyncio.sleep(idle_s)
    idle_cpu_pct = 100 * (_cpu_s(procs) - cpu_idle_start) / (time.monotonic() - idle_start)
    load_idle = _load()

    fanout: dict[str, list[float]] = {"first": [], "median": [], "last": []}
    cpu_kill_start, kill_start = _cpu_s(procs), time.monotonic()
    for i in range(kills * 2):
        url = a_url if i % 4 < 2 else b_url
        expected = i + 1
        with FlagsClient(url, admin, actor="bench") as flags:
            started = time.time()
            if i % 2 == 0:
                flags.kill(FLAG, reason="bench fan-out")
            else:
                flags.resume(FLAG, reason="bench fan-out")
        deadline = time.monotonic() + 30
        while any(len(s.updates) < expected for s in streams):
            if time.monotonic() > deadline:
                raise SystemExit(f"change {expected} did not reach every stream in 30 s")
            await asyncio.sleep(0.005)
        arrivals = sorted(s.updates[i] - started for s in streams)
        if i % 2 == 0:
            fanout["first"].append(arrivals[0])
            fanout["median"].append(statistics.median(arrivals))
            fanout["last"].append(arrivals[-1])
    kill_cpu_s = _cpu_s(procs) - cpu_kill_start
    kill_wall_s = time.monotonic() - kill_start
    rss_after = _rss_mib(procs)
    load_after = _load()
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "streams": count,
        "processes": len(procs),
        "open_all_s": round(open_s, 2),
        "rss_mib_before": rss_before,
        "rss_mib_with_streams": rss_open,
        "rss_kib_per_stream": round((rss_open - rss_before) * 1024 / count, 1),
        "rss_mib_after_kills": rss_after,
        "idle_s": idle_s,
        "idle_cpu_percent": round(idle_cpu_pct, 2),
        "kills": kills,
        "kill_and_resume_cpu_s": round(kill_cpu_s, 2),
        "kill_and_resume_wall_s": round(kill_wall_s, 2),
        "kill_to_first_stream": _summary(fanout["first"]),
        "kill_to_median_stream": _summary(fanout["median"]),
        "kill_to_last_stream": _summary(fanout["last"]),
        "load_open": load_open,
        "load_idle": load_idle,
        "load_after": load_after,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=20, help="kills through each deployment")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--fanout-kills", type=int, default=10)
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument("--no-node", action="store_true", help="skip the Node SDK")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "ROLLGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    name, database_url = servers.create_database(args.postgres)
    admin, client = "admin-" + secrets.token_hex(8), "client-" + secrets.token_hex(8)
    procs: list[Child] = []
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            node_modules = None if args.no_node else _install_node_sdk(tmp / "node")
            a_proc, a_url = _serve(database_url, admin, client, tmp / "a.log")
            procs.append(a_proc)
            b_proc, b_url = _serve(database_url, admin, client, tmp / "b.log")
            procs.append(b_proc)
            with FlagsClient(a_url, admin, actor="bench") as flags:
                flags.create_flag(FLAG, enabled=True, rollout=100)
            latency = measure_kills(
                a_url=a_url,
                b_url=b_url,
                admin=admin,
                client=client,
                kills=args.kills,
                node_modules=node_modules,
                cache=tmp / "sdk-cache",
            )
            for name_, summary in latency.items():
                print(f"kill -> SDK {name_:16} {summary}")
            capacity = asyncio.run(
                measure_streams(
                    a_proc=a_proc,
                    a_url=a_url,
                    b_url=b_url,
                    admin=admin,
                    client=client,
                    count=args.streams,
                    kills=args.fanout_kills,
                    idle_s=args.idle_s,
                )
            )
            for key, value in capacity.items():
                print(f"streams {key:24} {value}")
    finally:
        stop_children(procs)
        servers.drop_database(args.postgres, name)
    figures = {"kill_latency": latency, "streams": capacity}
    path = write_result(
        "flags_streaming", figures, command="python bench/flags_streaming.py " + " ".join(sys.argv[1:])
    )
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
