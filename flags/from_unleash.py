"""Unleash 8's batch export (or import document) as the client-API features Rollguard stores.

`POST /api/admin/features-batch/export` answers with features, their strategies
and per-environment state in separate lists, segments by name only, and tags,
links and context fields beside them; its import document wraps the same in
`project`, `environment` and `data`. `flags.imports` calls `convert` on either
and stores the features it returns; the `Loss` list says what stayed behind:
strategies on segments (whose constraints the export lacks), disabled
strategies, tags and links, archived features. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flags.unleash8 import LEGACY_STRATEGIES, UNLEASH8_STRATEGIES, Loss

_CLIENT_STRATEGY_FIELDS = ("name", "parameters", "constraints", "variants")
_FEATURE_FIELDS = ("name", "description", "type", "project", "stale", "impressionData")


@dataclass
class Converted:
    """Client-API features and what could not be carried over."""

    features: list[dict[str, Any]] = field(default_factory=list)
    report: list[Loss] = field(default_factory=list)


def is_batch(document: dict[str, Any]) -> bool:
    """Whether a document is Unleash's batch export or import document."""
    return "featureStrategies" in document or isinstance(document.get("data"), dict)


def convert(document: dict[str, Any]) -> Converted:
    """Turn a batch export, or an import document (`data` inside), into client-API features."""
    data = document.get("data", document)
    result = Converted()
    segments = {segment["id"]: segment.get("name", "") for segment in data.get("segments") or []}
    for feature in data["features"]:
        name = feature["name"]
        converted = _feature(
            feature,
            strategies=[s for s in data["featureStrategies"] if s.get("featureName") == name],
            environment=next(
                (e for e in data.get("featureEnvironments") or [] if e.get("featureName", e["name"]) == name),
                None,
            ),
            dependencies=[d for d in data.get("dependencies") or [] if d["feature"] == name],
            segments=segments,
            report=result.report,
        )
        if converted is not None:
            result.features.append(converted)
        result.report.extend(_extras(name, data))
    if data.get("contextFields"):
        names = ", ".join(sorted(f["name"] for f in data["contextFields"]))
        result.report.append(
            Loss(None, f"context field definitions ({names}) are not kept: constraints need none here")
        )
    return result


def _feature(
    feature: dict[str, Any],
    *,
    strategies: list[dict[str, Any]],
    environment: dict[str, Any] | None,
    dependencies: list[dict[str, Any]],
    segments: dict[int, str],
    report: list[Loss],
) -> dict[str, Any] | None:
    name = feature["name"]
    if feature.get("archived"):
        report.append(Loss(name, "archived in Unleash", left_out=True))
        return None
    on_segments = [s for s in strategies if s.get("segments") and not s.get("disabled")]
    if on_segments:
        used = sorted({segments.get(i, str(i)) for s in on_segments for i in s["segments"]})
        report.append(
            Loss(
                name,
                f"its strategies use segments ({', '.join(used)}), and Unleash's export names them "
                "without their constraints; import Unleash's client document "
                "(GET /api/client/features) to carry segments",
                left_out=True,
            )
        )
        return None
    served = [s for s in _ordered(strategies, name, report) if not s.get("disabled")]
    for strategy in strategies:
        if strategy.get("disabled"):
            report.append(Loss(name, f"disabled strategy {strategy['name']} dropped (SDKs never see it)"))
    for strategy in served:
        if strategy["name"] not in UNLEASH8_STRATEGIES | LEGACY_STRATEGIES:
            report.append(
                Loss(
                    name,
                    f"custom strategy {strategy['name']} served as given: only SDKs that register it "
                    "evaluate it, OFREP and the others answer off for it",
                )
            )
    result = {key: feature[key] for key in _FEATURE_FIELDS if key in feature}
    result["enabled"] = bool(environment and environment.get("enabled"))
    result["strategies"] = [_client_strategy(s) for s in served]
    result["variants"] = list((environment or {}).get("variants") or [])
    parents = [parent for entry in dependencies for parent in entry["dependencies"]]
    if parents:
        result["dependencies"] = [_dependency(parent) for parent in parents]
    return result


def _ordered(strategies: list[dict[str, Any]], name: str, report: list[Loss]) -> list[dict[str, Any]]:
    """Strategies in Unleash's order; the export may omit it, which matters only between variants."""
    if all("sortOrder" in s for s in strategies):
        return sorted(strategies, key=lambda s: s["sortOrder"])
    with_variants = [s for s in strategies if s.get("variants") and not s.get("disabled")]
    if len(with_variants) > 1:
        report.append(
            Loss(
                name,
                "several strategies carry variants and the export has no strategy order: "
                "a user several of them match may get another strategy's variant",
            )
        )
    return strategies


def _client_strategy(strategy: dict[str, Any]) -> dict[str, Any]:
    result = {key: strategy[key] for key in _CLIENT_STRATEGY_FIELDS if key in strategy}
    result.setdefault("parameters", {})
    result.setdefault("constraints", [])
    result.setdefault("variants", [])
    return result


def _dependency(parent: dict[str, Any]) -> dict[str, Any]:
    return {"enabled": True, "variants": [], **parent}


def _extras(name: str, data: dict[str, Any]) -> Iterable[Loss]:
    """Tags and links: Unleash's metadata that Rollguard has no place for."""
    tags = [t for t in data.get("featureTags") or [] if t.get("featureName") == name]
    if tags:
        labels = ", ".join(f"{t.get('tagType', '')}:{t.get('tagValue', '')}" for t in tags)
        yield Loss(name, f"tags not kept ({labels})")
    links = [
        link for entry in data.get("links") or [] if entry.get("feature") == name for link in entry["links"]
    ]
    if links:
        yield Loss(name, f"{len(links)} links not kept")
