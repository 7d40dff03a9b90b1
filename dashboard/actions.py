"""The operator's write actions, each one call to the flag service's admin API.

The flag page, the overview's breach banner and the automation page call these
with a `FlagsClient` that carries the operator's actor name; each returns an
`Outcome` the page shows, with the server's own error when it refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flags.client import Flag, FlagsClient, FlagsError, FlagsUnavailable, Guardrail, VersionConflict


@dataclass(frozen=True)
class Outcome:
    """What happened to one action: the flag after it, or the reason it failed."""

    ok: bool
    message: str
    flag: Flag | None = None


def _attempt(what: str, call: Callable[[], Flag]) -> Outcome:
    try:
        flag = call()
    except VersionConflict as exc:
        current = exc.current
        now = f" It is now {describe(current)}." if current else ""
        return Outcome(
            False,
            f"{what} refused: the flag changed since this page showed it ({exc.message}).{now} "
            "The page now shows the current version; check it and try again.",
            current,
        )
    except FlagsError as exc:
        detail = f" {exc.details}" if exc.details else ""
        return Outcome(
            False, f"{what} refused by the flag service ({exc.status} {exc.code}): {exc.message}{detail}"
        )
    except FlagsUnavailable as exc:
        return Outcome(False, f"{what} failed: the flag service did not answer ({exc}).")
    return Outcome(True, f"{what}: done (version {flag.version}).", flag)


def describe(flag: Flag) -> str:
    """The flag's state in one phrase: `version 7: killed, rollout 50%, state rolled_back`."""
    return (
        f"version {flag.version}: {switch_label(flag)}, rollout {flag.rollout}%, state {flag.state}, "
        f"auto-promote {'on' if flag.auto_promote else 'off'}"
    )


def switch_label(flag: Flag) -> str:
    """What the kill switch says: on, killed, or off for a draft that was never turned on."""
    if flag.enabled:
        return "on"
    return "off (draft)" if flag.state == "draft" else "killed"


def set_rollout(client: FlagsClient, flag: Flag, rollout: int, *, reason: str | None = None) -> Outcome:
    """Set the rollout percentage, if the flag is still at the version the page showed."""
    if not 0 <= rollout <= 100:
        return Outcome(False, f"rollout must be within 0..100, not {rollout}")
    return _attempt(
        f"Rollout {flag.key} -> {rollout}%",
        lambda: client.set_rollout(
            flag.key, rollout, reason=reason or "set from the dashboard", version=flag.version
        ),
    )


def kill(client: FlagsClient, flag: Flag, *, reason: str) -> Outcome:
    """Turn the flag off for everyone; a reason is required."""
    if not reason.strip():
        return Outcome(False, "A kill needs a reason: it goes into the audit log.")
    return _attempt(
        f"Kill {flag.key}", lambda: client.kill(flag.key, reason=reason.strip(), version=flag.version)
    )


def resume(client: FlagsClient, flag: Flag, *, reason: str) -> Outcome:
    """Turn a killed flag back on at its current rollout; a reason is required."""
    if not reason.strip():
        return Outcome(False, "A resume needs a reason: it goes into the audit log.")
    return _attempt(
        f"Resume {flag.key}", lambda: client.resume(flag.key, reason=reason.strip(), version=flag.version)
    )


def set_auto_promote(client: FlagsClient, flag: Flag, enabled: bool) -> Outcome:
    """Allow or forbid the controller to promote the flag on its own."""
    word = "on" if enabled else "off"
    return _attempt(
        f"Auto-promote {word} for {flag.key}",
        lambda: client.update_flag(
            flag.key, {"auto_promote": enabled}, version=flag.version, reason=f"auto-promote {word}"
        ),
    )


def pause_automation(client: FlagsClient, flag: Flag, *, reason: str | None = None) -> Outcome:
    """Take the flag out of the controller's hands (state paused)."""
    return _attempt(
        f"Pause automation for {flag.key}",
        lambda: client.update_flag(
            flag.key,
            {"state": "paused"},
            version=flag.version,
            reason=reason or "automation paused from the dashboard",
        ),
    )


def resume_automation(client: FlagsClient, flag: Flag, *, reason: str | None = None) -> Outcome:
    """Hand the flag back to the controller (state rolling_out)."""
    return _attempt(
        f"Resume automation for {flag.key}",
        lambda: client.update_flag(
            flag.key,
            {"state": "rolling_out"},
            version=flag.version,
            reason=reason or "automation resumed from the dashboard",
        ),
    )


def save_guardrails(
    client: FlagsClient, flag: Flag, guardrails: Sequence[Guardrail], *, reason: str | None = None
) -> Outcome:
    """Replace the flag's guardrails with already validated ones."""
    return _attempt(
        f"Guardrails of {flag.key}",
        lambda: client.update_flag(
            flag.key,
            {"guardrails": list(guardrails)},
            version=flag.version,
            reason=reason or "guardrails edited in the dashboard",
        ),
    )
