"""Prometheus and Alertmanager for `rollguard up --with-prometheus`.

Takes the shipped configurations in deploy/ and points them at the demo's own
ports and files under ./var/prometheus/, so that the demo runs the same wiring
an operator deploys: Prometheus scrapes the portal and evaluates the rules that
`rollguard alerts rules` generates from the flags; Alertmanager routes
action="rollback" alerts to `rollguard alerts serve`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


@dataclass(frozen=True)
class DemoPrometheusConfig:
    prometheus_yml: Path
    alertmanager_yml: Path
    rules_dir: Path
    token_file: Path


def _host_port(url: str) -> str:
    return url.split("://", 1)[-1].rstrip("/")


def write_configs(
    config_dir: Path,
    *,
    urls: dict[str, str],
    alerts_token: str,
    scrape_interval_s: int = 5,
    deploy_dir: Path = DEPLOY,
) -> DemoPrometheusConfig:
    """Write prometheus.yml and alertmanager.yml for the demo's ports into `config_dir`."""
    config_dir.mkdir(parents=True, exist_ok=True)
    rules_dir = config_dir / "rules"
    rules_dir.mkdir(exist_ok=True)
    token_file = config_dir / "alerts.token"
    token_file.write_text(alerts_token)
    token_file.chmod(0o600)

    prometheus: dict[str, Any] = yaml.safe_load((deploy_dir / "prometheus.yml").read_text())
    prometheus["global"]["scrape_interval"] = f"{scrape_interval_s}s"
    prometheus["global"]["evaluation_interval"] = f"{scrape_interval_s}s"
    prometheus["rule_files"] = [str(rules_dir / "*.yml")]
    prometheus["alerting"]["alertmanagers"] = [
        {"static_configs": [{"targets": [_host_port(urls["alertmanager"])]}]}
    ]
    targets = {
        "portal": urls["portal"],
        "flags": urls["flags"],
        "alertmanager": urls["alertmanager"],
        "prometheus": urls["prometheus"],
    }
    for job in prometheus["scrape_configs"]:
        if job["job_name"] in targets:
            job["static_configs"] = [{"targets": [_host_port(targets[job["job_name"]])]}]
    prometheus_yml = config_dir / "prometheus.yml"
    prometheus_yml.write_text(yaml.safe_dump(prometheus, sort_keys=False))

    alertmanager: dict[str, Any] = yaml.safe_load((deploy_dir / "alertmanager.yml").read_text())
    for receiver in alertmanager["receivers"]:
        for webhook in receiver.get("webhook_configs", ()):
            webhook["url"] = f"{urls['alerts']}/alertmanager/webhook"
            webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    alertmanager_yml = config_dir / "alertmanager.yml"
    alertmanager_yml.write_text(yaml.safe_dump(alertmanager, sort_keys=False))
    return DemoPrometheusConfig(prometheus_yml, alertmanager_yml, rules_dir, token_file)
