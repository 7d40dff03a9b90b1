"""The `rollguard` command line: one entry point whose groups live in each part.

Each part owns its commands in `<part>/cli.py` and exposes a click group there;
this module only wires them together, importing a part when its group is used so
that `rollguard flags list` never loads Streamlit or locust.
"""

from __future__ import annotations

import importlib
import logging
import os

import click

_GROUPS: dict[str, tuple[str, str]] = {
    "flags": ("flags.cli", "The flag service and its admin actions."),
    "portal": ("portal.cli", "The reference exam portal."),
    "traffic": ("portal.traffic_cli", "Replay the incident's traffic against a portal."),
    "control": ("control.control_cli", "The rollout controller."),
    "alerts": ("alerts.cli", "Prometheus rules and the Alertmanager receiver."),
    "dashboard": ("dashboard.cli", "The operator dashboard."),
    "up": ("rollguard.up", "Run the whole demo on embedded defaults."),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_GROUPS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing the commands must not import every part.
        rows = [(name, _GROUPS[name][1]) for name in sorted(_GROUPS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _GROUPS:
            return None
        module_name, _help = _GROUPS[cmd_name]
        module = importlib.import_module(module_name)
        command: click.Command = module.command
        return command


@click.group(cls=_LazyGroup)
@click.option(
    "--log-level", default=lambda: os.environ.get("ROLLGUARD_LOG_LEVEL", "INFO"), show_default="INFO"
)
def main(log_level: str) -> None:
    """Rollguard: roll out risky performance optimizations safely."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per HTTP request from the client libraries drowns the commands' own output.
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
