"""Drive a live portal with one scenario, using locust as a library, and summarise the run.

Called by `rollguard traffic run` (portal.traffic_cli) in its own process:
importing locust monkeypatches the standard library with gevent, so nothing
that the portal or the in-process tests import may import this module.

Each virtual user is one student (ids from `first_student` up) playing the
scenario's plan (portal.scenarios) over real HTTP, on a keep-alive connection
of its own (`portal.leanhttp`, reported to locust as its requests). After
each submit that returned, the user also loads its MyTestSeries on a new
connection, which a portal of several workers may hand to another worker than
the one that took the submit: its stale reads are counted apart too. The run
scrapes the portal's /metrics before and after (deltas of backend calls, DB
queries) and every `sample_every_s` during it (peak pool in use), and prints a
progress line every `progress_every_s` seconds.
"""

from __future__ import annotations

import ipaddress
import itertools
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import urlsplit

import gevent
import httpx
from locust import User, constant, task
from locust.env import Environment

from portal import promtext
from portal.ideal import eta, minimum_batched_queries, minimum_calls
from portal.leanhttp import LeanSession
from portal.longlived import freeze_what_startup_made
from portal.recording import RunRecorder, latency_summary
from portal.scenarios import (
    SCENARIOS,
    SPAWN_SHARE_PER_S,
    Action,
    Catalog,
    LoadPage,
    Pause,
    Submit,
    my_test_series,
)

FN = "get_all_exam_attempts"


class TrafficError(Exception):
    """The run could not start: the target is unreachable, unseeded or too small."""


#: Longest wait at the end of a run for users to finish the page they are loading.
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RunOptions:
    scenario: str
    users: int
    duration_s: float
    target: str
    spawn_rate: float | None = None
    first_student: int = 1
    seed: int = 0
    progress_every_s: float = 3.0
    sample_every_s: float = 0.5
    #: Longest wait after the users stop for the portal's counters to stop moving.
    settle_s: float = 60.0


@dataclass
class _Shared:
    """State every virtual user of one run shares (greenlets of one thread: no locks needed)."""

    plan: Callable[[int, Catalog, random.Random], Iterator[Action]]
    catalog: Catalog
    recorder: RunRecorder
    students: Iterator[int]
    t0: float
    seed: int


class _Student(User):
    abstract = True
    wait_time = constant(0)  # plans carry their own think time
    network_timeout = 30.0
    connection_timeout = 10.0
    shared: _Shared

    def on_start(self) -> None:
        self.student_id = next(self.shared.students)
        rng = random.Random(self.shared.seed * 1_000_003 + self.student_id)
        self.actions = self.shared.plan(self.student_id, self.shared.catalog, rng)
        self.session = self._connect()

    def on_stop(self) -> None:
        self.session.close()

    @task
    def act(self) -> None:
        action = next(self.actions)
        if isinstance(action, Pause):
            gevent.sleep(action.seconds)
        elif isinstance(action, LoadPage):
            self._load(action, self.session)
        else:
            self._submit(action)

    def _connect(self) -> LeanSession:
        assert self.host is not None  # `run` gives the user class its target
        return LeanSession(
            self.host,
            self.environment.events.request,
            connection_timeout=self.connection_timeout,
            network_timeout=self.network_timeout,
        )

    def _load(self, action: LoadPage, session: LeanSession, *, fresh_connection: bool = False) -> None:
        recorder = self.shared.recorder
        name = f"{action.page} (fresh connection)" if fresh_connection else action.page
        reply = session.get(action.url, name=name)
        recorder.status(reply.status)
        if reply.status != 200:
            return
        recorder.page(
            page=action.page,
            started=reply.started - self.shared.t0,
            elapsed_s=reply.elapsed_s,
            body=reply.json(),
            fresh_connection=fresh_connection,
        )

    def _load_on_a_fresh_connection(self, action: LoadPage) -> None:
        # A new connection may be accepted by another worker of the portal than the one that
        # took the submit: a page from it shows whether the invalidation reached every worker.
        session = self._connect()
        try:
            self._load(action, session, fresh_connection=True)
        finally:
            session.close()

    def _submit(self, action: Submit) -> None:
        recorder = self.shared.recorder
        reply = self.session.post_json("/api/exam/submit", action.body, name="submit", expect=201)
        recorder.status(reply.status)
        if reply.status != 201:
            return
        recorder.submitted(
            elapsed_s=reply.elapsed_s,
            returned_at=reply.started + reply.elapsed_s - self.shared.t0,
            body=reply.json(),
        )
        self._load_on_a_fresh_connection(my_test_series(action.student_id))


def _resolve_in_the_calling_greenlet(target: str) -> None:
    """Look a target up without gevent's thread pool when there is nothing to ask a DNS server.

    gevent resolves every new connection's host on a pool of threads by default.
    A mass submission opens hundreds of connections a second (each user's first,
    and a fresh one after every submit), and they queued for that pool: the wait
    counted in the latency the run reports, most in the opening seconds, whatever
    the portal did. An address or `localhost` resolves at once from the address itself
    or the hosts file, so blocking on it costs nothing; any other name keeps the
    thread pool, as a real DNS lookup would stall every user.
    """
    host = urlsplit(target).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            return
    gevent.config.resolver = "block"
    del gevent.get_hub().resolver  # made again, of the configured kind, at the next lookup


def _fetch_info(target: str) -> dict[str, Any]:
    try:
        response = httpx.get(f"{target}/api/portal/info", timeout=10)
    except httpx.HTTPError as exc:
        raise TrafficError(f"portal at {target} did not answer: {exc}") from exc
    if response.status_code != 200:
        raise TrafficError(f"portal at {target} answered {response.status_code} to /api/portal/info")
    info: dict[str, Any] = response.json()
    return info


#: The pid of the worker that served a scrape (`portal.metrics`); 0 from a portal that does not say.
WORKER = "portal_process_id"


def _scrape_patiently(
    target: str, client: httpx.Client, *, worker: float = 0.0, within_s: float = 90.0
) -> promtext.Scrape:
    """Scrape /metrics, of the worker `worker` if given: counters of two workers make no delta.

    With several workers each serves its own /metrics; the keep-alive `client` stays with
    one of them, but a connection it lost is replaced by one to any worker. Until the
    scrape comes from `worker`, each try takes a new connection.
    """
    # Right after a spike the portal is still working through queued requests; the scrape waits its turn.
    deadline = time.monotonic() + within_s
    fresh_connection = False
    while True:
        try:
            scrape = promtext.scrape(target, client=None if fresh_connection else client, timeout=15.0)
            if not worker or scrape.total(WORKER) in (worker, 0.0):
                return scrape
            fresh_connection = True
            failure = f"every scrape came from another worker than pid {worker:.0f}"
        except httpx.HTTPError as exc:
            failure = str(exc)
        if time.monotonic() > deadline:
            raise TrafficError(f"could not scrape {target}/metrics: {failure}")
        gevent.sleep(0.05 if fresh_connection else 1.0)


def _settled_scrape(target: str, client: httpx.Client, *, worker: float, within_s: float) -> promtext.Scrape:
    # Requests accepted before the users stopped are still being served; wait until the
    # counters stop moving so that the deltas cover them all. Other traffic against the
    # same portal keeps them moving for ever: `within_s` bounds the wait.
    deadline = time.monotonic() + within_s
    previous = _scrape_patiently(target, client, worker=worker)
    while time.monotonic() < deadline:
        gevent.sleep(0.5)
        current = _scrape_patiently(target, client, worker=worker)
        if current.total("optimizer_requests_total") == previous.total("optimizer_requests_total"):
            return current
        previous = current
    return previous


def _delta(before: promtext.Scrape, after: promtext.Scrape, name: str, **labels: str) -> float:
    return after.total(name, **labels) - before.total(name, **labels)


def run(options: RunOptions, *, out: TextIO = sys.stderr) -> dict[str, Any]:
    """Run one scenario against `options.target` and return the summary."""
    if options.scenario not in SCENARIOS:
        raise TrafficError(f"unknown scenario {options.scenario!r}; one of {sorted(SCENARIOS)}")
    target = options.target.rstrip("/")
    _resolve_in_the_calling_greenlet(target)
    freeze_what_startup_made()  # before the users start (portal.longlived)
    info = _fetch_info(target)
    last_student = options.first_student + options.users - 1
    if not info["series"] or info["students"] < last_student:
        raise TrafficError(
            f"the portal has {info['students']} students and {len(info['series'])} series; "
            f"{options.users} users from student {options.first_student} need students up to {last_student} "
            "(rollguard portal seed --students N)"
        )
    catalog = Catalog({int(sid): tuple(ids) for sid, ids in info["exams"].items()})
    recorder = RunRecorder()
    scrape_client = httpx.Client(timeout=10)
    before = _scrape_patiently(target, scrape_client)

    t0 = time.monotonic()
    cpu0 = time.process_time()
    shared = _Shared(
        plan=SCENARIOS[options.scenario],
        catalog=catalog,
        recorder=recorder,
        students=itertools.count(options.first_student),
        t0=t0,
        seed=options.seed,
    )
    user_class = type("Student", (_Student,), {"shared": shared, "abstract": False, "host": target})
    # Users finish the page they are loading when the run ends, so that every call the
    # portal counts is also in the client's log (the ideal's N and the metric deltas agree).
    env = Environment(user_classes=[user_class], host=target, stop_timeout=STOP_TIMEOUT_S)
    runner = env.create_local_runner()
    peak_pool = [0.0]

    def sample() -> None:
        while True:
            try:
                peak_pool[0] = max(
                    peak_pool[0], promtext.scrape(target, client=scrape_client).total("portal_db_pool_in_use")
                )
            except httpx.HTTPError:
                pass  # an overloaded portal may not answer a scrape; the next sample tries again
            gevent.sleep(options.sample_every_s)

    def report(users: int) -> None:
        total = env.stats.total
        elapsed = time.monotonic() - t0
        p95 = total.get_response_time_percentile(0.95) or 0
        out.write(
            f"[{elapsed:6.1f}s] users {users}/{options.users}  requests {total.num_requests} "
            f"({total.num_requests / max(elapsed, 1e-9):.0f}/s)  errors {total.num_failures}  "
            f"p95 {p95:.0f} ms  peak pool {peak_pool[0]:.0f}/{info['pool_capacity']}  "
            f"stale {recorder.stale_reads}\n"
        )
        out.flush()

    def progress() -> None:
        while True:
            gevent.sleep(options.progress_every_s)
            report(runner.user_count)

    spawn_rate = options.spawn_rate or max(options.users * SPAWN_SHARE_PER_S[options.scenario], 1.0)
    helpers = [gevent.spawn(sample), gevent.spawn(progress)]
    runner.start(options.users, spawn_rate=spawn_rate)
    gevent.spawn_later(options.duration_s, runner.quit)
    runner.greenlet.join()
    wall_s = time.monotonic() - t0
    client_cpu_s = time.process_time() - cpu0
    gevent.killall(helpers)
    report(0)
    after = _settled_scrape(target, scrape_client, worker=before.total(WORKER), within_s=options.settle_s)
    # A high-water mark that rose during the run is this run's exact peak; otherwise trust the samples.
    mark_before, mark_after = (
        before.total("portal_db_pool_in_use_max"),
        after.total("portal_db_pool_in_use_max"),
    )
    # Below both, a connection checked out between two samples is still a peak of at least one.
    checked_out = 1 if _delta(before, after, "portal_db_pool_checkouts_total") > 0 else 0
    peak_pool[0] = max(
        peak_pool[0],
        after.total("portal_db_pool_in_use"),
        mark_after if mark_after > mark_before else 0,
        checked_out,
    )
    scrape_client.close()
    return summarize(
        options=options,
        info=info,
        env=env,
        recorder=recorder,
        before=before,
        after=after,
        peak_pool=peak_pool[0],
        wall_s=wall_s,
        client_cpu_s=client_cpu_s,
    )


def summarize(
    *,
    options: RunOptions,
    info: dict[str, Any],
    env: Environment,
    recorder: RunRecorder,
    before: promtext.Scrape,
    after: promtext.Scrape,
    peak_pool: float,
    wall_s: float,
    client_cpu_s: float,
) -> dict[str, Any]:
    """The JSON summary of one run."""
    total = env.stats.total
    backend = {
        p: int(_delta(before, after, "optimizer_backend_calls_total", fn=FN, path=p))
        for p in ("optimized", "direct")
    }
    logical = {
        p: int(_delta(before, after, "optimizer_requests_total", fn=FN, path=p))
        for p in ("optimized", "direct")
    }
    backend_calls = sum(backend.values())
    batch_calls = int(_delta(before, after, "optimizer_batch_calls_total", fn=FN))
    batch_keys = int(_delta(before, after, "optimizer_batch_keys_total", fn=FN))
    # A batched query fetches many keys; the ideal counts key fetches.
    key_fetches = backend_calls - batch_calls + batch_keys
    logical_calls = sum(logical.values())
    all_latencies = [v for values in recorder.latencies_by_page.values() for v in values]
    ordered_pages = sorted(
        v for page, values in recorder.latencies_by_page.items() if page != "submit" for v in values
    )
    # The freshness bound: TTL, plus the stale window, plus how long a fetch may take. The slowest page
    # bounds the gap between a call's logged start and its fetch, so C_min is never overstated.
    fetch_s = ordered_pages[-1] if ordered_pages else 0.0
    tau = float(info["ttl_s"]) + float(info.get("stale_s") or 0.0) + fetch_s
    ideal: dict[str, Any] = {"n": len(recorder.calls), "c_actual": key_fetches, "tau_s": round(tau, 3)}
    if recorder.calls_dropped:
        ideal.update(
            c_min=None, eta=None, note=f"call log over its cap; {recorder.calls_dropped} calls not logged"
        )
    else:
        c_min = minimum_calls(recorder.calls, recorder.invalidation_log(), tau)
        n = len(recorder.calls)
        ideal["c_min"] = c_min
        ideal["min_queries"] = minimum_batched_queries(c_min, int(info.get("max_batch") or 1))
        # Fetches of failed pages are not in the log; they can only lower eta, never raise it.
        ideal["eta"] = eta(n=n, c_actual=min(key_fetches, n), c_min=c_min) if n else None
    return {
        "scenario": options.scenario,
        "users": options.users,
        "duration_s": options.duration_s,
        "wall_s": round(wall_s, 2),
        # CPU the load generator itself spent while its users ran (this process).
        "client_cpu_s": round(client_cpu_s, 3),
        "target": options.target,
        "gate": info.get("gate"),
        "requests": total.num_requests,
        "errors": total.num_failures,
        "error_rate": round(total.num_failures / total.num_requests, 4) if total.num_requests else 0.0,
        "statuses": dict(sorted(recorder.statuses.items())),
        "latency": latency_summary(all_latencies),
        "latency_by_path": {
            path: latency_summary(v) for path, v in sorted(recorder.latencies_by_path.items())
        },
        "latency_by_page": {
            page: latency_summary(v) for page, v in sorted(recorder.latencies_by_page.items())
        },
        "page_loads": {path: len(v) for path, v in sorted(recorder.latencies_by_path.items())},
        "submissions": recorder.submissions,
        "logical_calls": logical_calls,
        "logical_calls_by_path": logical,
        "backend_calls": backend_calls,
        "backend_calls_by_path": backend,
        "batch_calls": batch_calls,
        "key_fetches": key_fetches,
        "call_reduction": round(1 - backend_calls / logical_calls, 4) if logical_calls else None,
        "db_queries": int(_delta(before, after, "portal_db_queries_total")),
        "peak_pool_in_use": int(peak_pool),
        "pool_capacity": info.get("pool_capacity"),
        "cache_bytes": int(after.total("optimizer_cache_bytes", fn=FN)),
        "cache_hits": int(_delta(before, after, "optimizer_cache_hits_total", fn=FN)),
        "cache_misses": int(_delta(before, after, "optimizer_cache_misses_total", fn=FN)),
        "ideal": ideal,
        "stale_reads": recorder.stale_reads,
        "fresh_connection_checks": recorder.fresh_connection_checks,
        "fresh_connection_stale_reads": recorder.fresh_connection_stale_reads,
        "stale_examples": [
            vars(s) | {"missing_attempt_ids": list(s.missing_attempt_ids)} for s in recorder.stale_examples
        ],
    }
