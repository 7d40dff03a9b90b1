"""Import and export: Unleash feature documents and Rollguard flags.

Unleash features and segments are stored as given and served next to the
flags; Rollguard flags in a document are created or overwritten. The export
holds the flags, the whole client document (flags rendered as Unleash
features plus the imported ones) and the segments, and imports back unchanged.
Unleash 8's batch documents arrive converted (`flags.schemas.ImportSchema`);
their features of a flag's shape become flags again. `export_unleash` writes
the document Unleash 8's `features-batch/import` takes (`flags.to_unleash`).
"""

from __future__ import annotations

import json
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from yggdrasil_engine.engine import UnleashEngine

from flags import audit, store, to_unleash, unleash8
from flags.audit import Actor
from flags.errors import BadRequest, Conflict, ValidationFailed
from flags.models import FlagRow, UnleashFeatureRow, UnleashSegmentRow, utcnow
from flags.schemas import FlagImportSchema
from flags.unleash import STATE_VERSION, client_state

#: Fields of an exported flag that the importing service sets itself.
_SERVICE_FIELDS = ("version", "created_at", "updated_at", "stage_started_at", "stage_started_by")


def import_document(
    session: Session, *, actor: Actor, document: dict[str, Any], replace: bool
) -> dict[str, Any]:
    """Store a validated document; with `replace`, drop imported features and segments it lacks.

    A document without features, segments or flags is refused (400) and so is a
    replace that would remove features or segments when the document is not an
    export (409, with how many of each): an empty, truncated or partial body must
    not wipe what SDKs are served.
    """
    kind, report = document.pop("format", "rollguard"), document.pop("report", [])
    if not any(name in document for name in ("features", "segments", "flags")):
        raise BadRequest("the document holds no features, segments or flags", code="empty_import")
    is_export = "version" in document and "features" in document
    document = {"features": [], "segments": [], "flags": [], **document}
    if kind != "rollguard":
        document, report = _flags_from_unleash(session, document, report)
    reason = document.get("reason")
    flag_keys = {flag["key"] for flag in document["flags"]}
    # Features that render a flag of the same document are the flag itself (an export).
    features = [f for f in document["features"] if f["name"] not in flag_keys]
    names = [feature["name"] for feature in features]
    if len(set(names)) != len(names):
        raise Conflict("the document names a feature twice", code="duplicate_feature")
    clashing = session.scalars(select(FlagRow.key).where(FlagRow.key.in_(names))).all() if names else []
    if clashing:
        raise Conflict(
            "these features would shadow Rollguard flags", code="feature_is_flag", details=sorted(clashing)
        )
    removed = removed_segments = 0
    if replace:
        stale = select(UnleashFeatureRow.name).where(UnleashFeatureRow.name.not_in(names))
        removed = len(session.scalars(stale).all())
        kept = [segment["id"] for segment in document["segments"]]
        removed_segments = len(
            session.scalars(select(UnleashSegmentRow.id).where(UnleashSegmentRow.id.not_in(kept))).all()
        )
        if (removed or removed_segments) and not is_export:
            raise Conflict(
                f"this replace would remove {removed} features and {removed_segments} segments, and the "
                "document is not an export (it needs `version` and `features`); import without replace, "
                "or send a full export",
                code="replace_would_remove",
                details={"removed_features": removed, "removed_segments": removed_segments},
            )
        session.execute(delete(UnleashFeatureRow).where(UnleashFeatureRow.name.not_in(names)))
        session.execute(delete(UnleashSegmentRow))
    now = utcnow()
    for feature in features:
        row = session.get(UnleashFeatureRow, feature["name"])
        if row is None:
            session.add(UnleashFeatureRow(name=feature["name"], definition=feature, updated_at=now))
        else:
            row.definition, row.updated_at = feature, now
    for segment in document["segments"]:
        existing = session.get(UnleashSegmentRow, segment["id"])
        if existing is None:
            session.add(UnleashSegmentRow(id=segment["id"], definition=segment))
        else:
            existing.definition = segment
    for flag in document["flags"]:
        fields = {name: value for name, value in flag.items() if name not in _SERVICE_FIELDS}
        store.upsert_flag(session, actor=actor, fields=fields, reason=reason)
    session.flush()
    _check_loadable(session)
    result: dict[str, Any] = {
        "flags": len(document["flags"]),
        "features": len(features),
        "segments": len(document["segments"]),
        "removed_features": removed,
        "removed_segments": removed_segments,
    }
    audit.record(
        session,
        actor=actor,
        action="import",
        flag=None,
        reason=reason,
        before=None,
        after={
            **result,
            "format": kind,
            "feature_names": names[:100],
            "replace": replace,
            "report": report[:100],
        },
    )
    return {"format": kind, **result, "report": report}


def _flags_from_unleash(
    session: Session, document: dict[str, Any], report: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Turn features of a flag's shape back into flags; leave out others that a flag's key names.

    A feature already imported as an Unleash feature stays one, so that a flag
    never shadows it.
    """
    features, flags, report = [], list(document["flags"]), list(report)
    imported = set(session.scalars(select(UnleashFeatureRow.name)))
    flag_keys = set(session.scalars(select(FlagRow.key)))
    for feature in document["features"]:
        fields = _as_flag(feature, report) if feature["name"] not in imported else None
        if fields is not None:
            flags.append(fields)
        elif feature["name"] in flag_keys:
            reason = "a Rollguard flag has this key, and this feature is not a flag's shape (one "
            reason += "flexibleRollout on userId, grouped by the key, with the `config` variant)"
            report.append(unleash8.Loss(feature["name"], reason, left_out=True).as_json())
        else:
            features.append(feature)
    return {**document, "features": features, "flags": flags}, report


def _as_flag(feature: dict[str, Any], report: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The flag's fields when the feature is a flag's shape and passes a flag's checks (payload size...)."""
    fields = unleash8.flag_fields(feature)
    if fields is None:
        return None
    try:
        return dict(FlagImportSchema().load(fields))
    except ValidationError as exc:
        reason = f"kept as an Unleash feature: as a flag it would be refused ({exc.messages})"
        report.append(unleash8.Loss(feature["name"], reason).as_json())
        return None


def _check_loadable(session: Session) -> None:
    """Refuse a document the SDKs' engine cannot load: it would stop every flag from being served."""
    state = export_document(session)
    document = {"version": STATE_VERSION, "features": state["features"], "segments": state["segments"]}
    try:
        UnleashEngine().take_state(json.dumps(document))
    except Exception as exc:
        raise ValidationFailed(
            "the Unleash engine cannot load the imported features", details=f"{type(exc).__name__}: {exc}"
        ) from exc


def export_document(session: Session) -> dict[str, Any]:
    """Everything served, in a form `import_document` accepts."""
    flags = list(session.scalars(select(FlagRow).order_by(FlagRow.key)))
    imported = [row.definition for row in session.scalars(select(UnleashFeatureRow))]
    segments = [row.definition for row in session.scalars(select(UnleashSegmentRow))]
    state = client_state(flags, imported, segments)
    return {
        "version": STATE_VERSION,
        "flags": [store.flag_json(row) for row in flags],
        "features": state["features"],
        "segments": state["segments"],
    }


def export_unleash(session: Session, *, project: str, environment: str) -> dict[str, Any]:
    """What is served, as Unleash 8's import document for one project and environment, and its losses."""
    flags = list(session.scalars(select(FlagRow).order_by(FlagRow.key)))
    state = export_document(session)
    exported = to_unleash.convert(
        state["features"],
        flags={row.key: store.flag_json(row) for row in flags},
        project=project,
        environment=environment,
    )
    return {"document": exported.document, "report": [loss.as_json() for loss in exported.report]}
