"""The load generator's CPU per request: locust's FastHttpSession against the traffic generator's LeanSession.

`rollguard traffic run` shares the machine's cores with the portal it
measures, so every microsecond of CPU it spends on a request is taken from the
server. This times the two HTTP clients it could use on the same requests, in
this one gevent process: locust's `FastHttpSession` (what `FastHttpUser`
gives a user) and `portal.leanhttp.LeanSession` (what the traffic generator
uses), each reporting to a locust request event as in a run. Against the
capacity floor's server (`bench/floor.py`, constant bodies, so the server's
own time does not vary), one client at a time sends `--requests` GETs of the
MyTestSeries page on one keep-alive connection, one after another, and parses
each body as JSON as the traffic generator does; the rounds alternate between
the two clients `--repeats` times. Reports the CPU seconds of this process per
request (min / median / max over the rounds) and the ratio lean/fasthttp of
each pair of rounds. Writes bench/results/loadgen_cost.json.

    .venv/bin/python bench/loadgen_cost.py [--requests 3000] [--repeats 5]
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # as locust does when `rollguard traffic run` imports it

import argparse  # noqa: E402
import functools  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from locust.contrib.fasthttp import FastHttpSession  # noqa: E402
from locust.env import Environment  # noqa: E402

from bench import servers  # noqa: E402
from bench.machine import write_result  # noqa: E402
from portal.leanhttp import LeanSession  # noqa: E402

PAGE = "/api/pages/my-test-series?student_id=1"


def fasthttp_round(url: str, environment: Environment, requests: int) -> None:
    session = FastHttpSession(url, environment.events.request, user=None)
    for _ in range(requests):
        with session.get(PAGE, name="my-test-series", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
            response.json()


def lean_round(url: str, environment: Environment, requests: int) -> None:
    session = LeanSession(url, environment.events.request, connection_timeout=10.0, network_timeout=30.0)
    try:
        for _ in range(requests):
            session.get(PAGE, name="my-test-series").json()
    finally:
        session.close()


CLIENTS: dict[str, Callable[[str, Environment, int], None]] = {"fasthttp": fasthttp_round, "lean": lean_round}


def cpu_us_per_request(run: Callable[[], None], requests: int) -> float:
    started = time.process_time()
    run()
    return 1e6 * (time.process_time() - started) / requests


def spread(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 1),
        "median": round(statistics.median(values), 1),
        "max": round(max(values), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="requests per round")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of each client, alternating")
    parser.add_argument("--result", default="loadgen_cost", help="name of the bench/results file")
    args = parser.parse_args()
    environment = Environment()
    failures: list[BaseException] = []

    def count_failure(exception: BaseException | None = None, **_: object) -> None:
        if exception is not None:
            failures.append(exception)

    environment.events.request.add_listener(count_failure)  # type: ignore[no-untyped-call]
    with tempfile.TemporaryDirectory(prefix="rollguard-loadgen-") as work:
        floor, url = servers.serve(
            lambda port: [sys.executable, str(REPO / "bench" / "floor.py"), "--port", str(port)],
            ready_path="/healthz",
            log_path=Path(work) / "floor.log",
        )
        try:
            rounds: dict[str, list[float]] = {"fasthttp": [], "lean": []}
            loads: list[float] = []
            for repeat in range(args.repeats):
                for label, client in CLIENTS.items():
                    loads.append(os.getloadavg()[0])
                    cost = cpu_us_per_request(
                        functools.partial(client, url, environment, args.requests), args.requests
                    )
                    rounds[label].append(cost)
                    print(f"round {repeat + 1} {label:9} {cost:6.1f} us CPU a request", flush=True)
        finally:
            floor.stop()
    if failures:
        print(f"{len(failures)} requests failed, first: {failures[0]!r}", file=sys.stderr)
        return 1
    ratios = [lean / fast for fast, lean in zip(rounds["fasthttp"], rounds["lean"], strict=True)]
    figures = {
        "requests_per_round": args.requests,
        "repeats": args.repeats,
        "page": PAGE,
        "server": "bench/floor.py (granian, 1 worker, constant bodies)",
        "cpu_us_per_request": {label: spread(values) for label, values in rounds.items()},
        "ratio_lean_to_fasthttp": {k: round(v, 3) for k, v in spread(ratios).items()},
        "load_average_1m": spread(loads),
        "rounds": rounds,
    }
    for label, values in figures["cpu_us_per_request"].items():
        print(f"{label:9} min/median/max {values['min']}/{values['median']}/{values['max']} us CPU a request")
    print(f"lean/fasthttp: median {statistics.median(ratios):.2f} of {[round(r, 2) for r in ratios]}")
    command = f"python bench/loadgen_cost.py --requests {args.requests} --repeats {args.repeats} --result {args.result}"
    print(f"wrote {write_result(args.result, figures, command=command)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
