"""The Alertmanager webhook payload (version 4), parsed and validated.

`receiver` calls `parse_payload` on every POST; anything that is not a version-4
payload raises `InvalidPayload` (422). Field names follow Alertmanager's
documentation (`startsAt`, `groupKey`, ...) through aliases.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alerts.errors import InvalidPayload


class WebhookAlert(BaseModel):
    """One alert of a delivery."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(None, alias="endsAt")
    generator_url: str = Field("", alias="generatorURL")
    fingerprint: str = Field(min_length=1, max_length=64)

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def starts_key(self) -> str:
        """`startsAt` in UTC, the same text for every delivery of the same firing episode."""
        return _utc(self.starts_at)

    @property
    def ends_key(self) -> str | None:
        # Alertmanager sends the zero time for alerts with no end yet.
        if self.ends_at is None or self.ends_at.year <= 1:
            return None
        return _utc(self.ends_at)


class WebhookPayload(BaseModel):
    """A webhook delivery: one alert group."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: Literal["4"]
    group_key: str = Field(alias="groupKey")
    truncated_alerts: int = Field(0, alias="truncatedAlerts", ge=0)
    status: Literal["firing", "resolved"]
    receiver: str
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field("", alias="externalURL")
    alerts: list[WebhookAlert]


def parse_payload(data: Any) -> WebhookPayload:
    """Validate a decoded JSON body as a version-4 payload, or raise `InvalidPayload`."""
    try:
        return WebhookPayload.model_validate(data)
    except ValidationError as exc:
        details = [
            {"loc": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidPayload("not an Alertmanager version-4 webhook payload", details=details) from exc


def _utc(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
