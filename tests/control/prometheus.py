"""A real Prometheus (Debian's binary) for the controller's tests: free loopback port, temp dirs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from rollguard import Child, free_port
from tests.support import require_binary, start_process


@dataclass
class LivePrometheus:
    url: str
    process: Child

    def has_samples(self, query: str, at_least: int, *, at: float | None = None) -> bool:
        """Whether `count_over_time`-style `query`, evaluated now or at epoch `at`, reports at least `at_least`."""
        params = {"query": query} | ({"time": f"{at:.3f}"} if at is not None else {})
        try:
            result = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return False
        values = [float(r["value"][1]) for r in result.get("data", {}).get("result", [])]
        return bool(values) and max(values) >= at_least

    def stop(self) -> None:
        self.process.stop()


def start_prometheus(
    tmp_path: Path, metrics_urls: list[str], *, scrape_interval_s: int = 1
) -> LivePrometheus:
    """Start Prometheus scraping `metrics_urls` every `scrape_interval_s`; the caller stops it."""
    targets = []
    for url in metrics_urls:
        parts = urlsplit(url)
        targets.append({"targets": [parts.netloc], "labels": {}})
    config = {
        "global": {"scrape_interval": f"{scrape_interval_s}s", "evaluation_interval": "15s"},
        "scrape_configs": [
            {
                "job_name": "portal",
                "metrics_path": urlsplit(metrics_urls[0]).path or "/metrics",
                "static_configs": targets,
            }
        ],
    }
    return serve_prometheus(tmp_path, config)


def serve_prometheus(tmp_path: Path, config: dict[str, Any]) -> LivePrometheus:
    """Start Prometheus with `config` (prometheus.yml as a dict) once it is ready; the caller stops it."""
    binary = require_binary("prometheus")
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    process = start_process(
        [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        ready_url=f"http://127.0.0.1:{port}/-/ready",
        log_path=tmp_path / "prometheus.log",
        env={"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "")},
    )
    return LivePrometheus(f"http://127.0.0.1:{port}", process)
