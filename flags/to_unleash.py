"""What Rollguard serves, as the document Unleash 8's `features-batch/import` accepts.

`GET /api/admin/export/unleash` calls `convert` with the served client-API
features (the flags rendered as `flags.unleash.feature_of` renders them, and
the imported Unleash features) and the flags themselves. Unleash 8.2 refuses
the whole document when one strategy type or constraint operator is unknown to
it, or one segment is missing by name, so a feature that needs any of those is
left out and reported; the legacy strategies Unleash 8 dropped are written as
their equivalents. The flags' rollout plan and guardrails have no place in
Unleash and are reported when set. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flags.unleash8 import LEGACY_STRATEGIES, UNLEASH8_OPERATORS, UNLEASH8_STRATEGIES, Loss

_ROLLOUT_STICKINESS = {
    "gradualRolloutUserId": "userId",
    "gradualRolloutSessionId": "sessionId",
    "gradualRolloutRandom": "random",
}
# What a flag carries beyond Unleash's feature, with the value that is no news when lost.
_FLAG_ONLY_DEFAULTS: dict[str, Any] = {
    "stages": [10, 50, 100],
    "stage_hold_s": 300,
    "auto_promote": False,
    "guardrails": [],
    "rollback": {"consecutive_failures": 2, "on_no_data": "hold"},
}


@dataclass
class Exported:
    """An import document for Unleash 8 and what it could not carry."""

    document: dict[str, Any]
    report: list[Loss] = field(default_factory=list)


def convert(
    features: list[dict[str, Any]], *, flags: dict[str, dict[str, Any]], project: str, environment: str
) -> Exported:
    """Build the import document for one Unleash project and environment."""
    report: list[Loss] = []
    carried: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for feature in features:
        strategies = _strategies(feature, report)
        if strategies is not None:
            carried[feature["name"]] = (_variants_by_name(feature, report), strategies)
        if feature["name"] in flags:
            report.extend(_flag_only(flags[feature["name"]]))
    _drop_orphans(carried, report)
    return Exported(_document(carried, project=project, environment=environment), report)


def _strategies(feature: dict[str, Any], report: list[Loss]) -> list[dict[str, Any]] | None:
    """The feature's strategies as Unleash 8 takes them, or None (reported) when it cannot."""
    name = feature["name"]
    result = []
    for order, strategy in enumerate(feature.get("strategies") or []):
        refusal = _refusal(strategy)
        if refusal:
            report.append(Loss(name, refusal, left_out=True))
            return None
        written = _modern(strategy)
        if written["name"] != strategy["name"]:
            report.append(
                Loss(name, f"strategy {strategy['name']} written as {written['name']} (the same decisions)")
            )
        result.append({**written, "featureName": name, "sortOrder": order, "disabled": False, "segments": []})
    return result


def _refusal(strategy: dict[str, Any]) -> str | None:
    """Why Unleash 8.2 would refuse the import because of this strategy, if it would."""
    kind = strategy["name"]
    if kind not in UNLEASH8_STRATEGIES | LEGACY_STRATEGIES:
        return (
            f"custom strategy {kind}: Unleash 8 refuses the whole import unless a strategy type "
            f"{kind} exists there; create it in Unleash, then move this feature by hand"
        )
    if strategy.get("segments"):
        return (
            "its strategy uses segments, which Unleash's import finds by name and needs to exist "
            "already; create them in Unleash, then move this feature by hand"
        )
    for constraint in strategy.get("constraints") or []:
        if constraint.get("operator") not in UNLEASH8_OPERATORS:
            return (
                f"constraint on {constraint.get('contextName')} uses {constraint.get('operator')}, "
                "which Unleash 8 does not have"
            )
    return None


def _modern(strategy: dict[str, Any]) -> dict[str, Any]:
    """The strategy in Unleash 8's terms: legacy types become default or flexibleRollout."""
    parameters = dict(strategy.get("parameters") or {})
    constraints = list(strategy.get("constraints") or [])
    kind = strategy["name"]
    if kind == "userWithId":
        ids = [part.strip() for part in str(parameters.get("userIds", "")).split(",") if part.strip()]
        constraints.append({"contextName": "userId", "operator": "IN", "values": ids})
        kind, parameters = "default", {}
    elif kind in _ROLLOUT_STICKINESS:
        parameters = {
            "rollout": str(parameters.get("percentage", "0")),
            "stickiness": _ROLLOUT_STICKINESS[kind],
            "groupId": str(parameters.get("groupId", "")),
        }
        kind = "flexibleRollout"
    return {
        "name": kind,
        "parameters": parameters,
        "constraints": constraints,
        "variants": list(strategy.get("variants") or []),
    }


def _variants_by_name(feature: dict[str, Any], report: list[Loss]) -> dict[str, Any]:
    """The feature with its variants in the order Unleash will serve them: sorted by name."""
    variants = list(feature.get("variants") or [])
    ordered = sorted(variants, key=lambda variant: str(variant.get("name", "")).casefold())
    if ordered != variants:
        names = ", ".join(str(variant.get("name")) for variant in ordered)
        report.append(
            Loss(
                feature["name"],
                f"Unleash serves feature variants sorted by name ({names}), "
                "so some users get another variant there than here",
            )
        )
    return {**feature, "variants": ordered}


def _flag_only(flag: dict[str, Any]) -> list[Loss]:
    kept = [name for name, default in _FLAG_ONLY_DEFAULTS.items() if flag.get(name, default) != default]
    if not kept:
        return []
    return [
        Loss(flag["key"], f"Rollguard's {', '.join(kept)} stay in Rollguard: Unleash has no place for them")
    ]


def _drop_orphans(
    carried: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]], report: list[Loss]
) -> None:
    """Leave out features whose parent feature was left out: Unleash refuses a missing parent."""
    changed = True
    while changed:
        changed = False
        for name, (feature, _) in list(carried.items()):
            parents = [str(d.get("feature")) for d in feature.get("dependencies") or []]
            missing = [parent for parent in parents if parent not in carried]
            if missing:
                del carried[name]
                report.append(
                    Loss(name, f"depends on {', '.join(missing)}, which is not exported", left_out=True)
                )
                changed = True


def _document(
    carried: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]], *, project: str, environment: str
) -> dict[str, Any]:
    features, strategies, environments, dependencies = [], [], [], []
    for name, (feature, feature_strategies) in sorted(carried.items()):
        features.append(
            {
                "name": name,
                "description": feature.get("description") or "",
                "type": feature.get("type") or "release",
                "project": project,
                "stale": bool(feature.get("stale", False)),
                "impressionData": bool(feature.get("impressionData", False)),
            }
        )
        strategies.extend(feature_strategies)
        environments.append(
            {
                "name": name,
                "featureName": name,
                "environment": environment,
                "enabled": bool(feature.get("enabled", True)),
                "variants": list(feature.get("variants") or []),
            }
        )
        if feature.get("dependencies"):
            dependencies.append({"feature": name, "dependencies": list(feature["dependencies"])})
    data = {
        "features": features,
        "featureStrategies": strategies,
        "featureEnvironments": environments,
        "contextFields": [],
        "featureTags": [],
        "segments": [],
        "tagTypes": [],
        "dependencies": dependencies,
    }
    return {"project": project, "environment": environment, "data": data}
