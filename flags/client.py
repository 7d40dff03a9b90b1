"""A small typed client for the flag service's admin API.

The controller, the alert receiver, the dashboard and the CLI change flags only
through this client, so every change is authorised, validated and audited by
the flag service. Connection errors are retried with backoff, and so is a lost
answer (read timeout) to an idempotent request (reads, PUT, DELETE, kill and
resume), never to a create or an import, which may have been done; HTTP errors are
raised at once as `FlagsError` subclasses carrying the server's error body.

Error tree::

    FlagsError                 the server answered with an error (status, code, message, details)
    +-- FlagNotFound           404
    +-- VersionConflict        409, the write carried a stale version
    +-- Unauthorized           401 / 403
    FlagsUnavailable           no answer after the retries (connection refused, timeout), or 503
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from flags.model import (
    COMPARATIVE_METRICS,
    FLAG_STATES,
    GUARDRAIL_METRICS,
    GUARDRAIL_OPS,
    PATH_METRICS,
    Flag,
    Guardrail,
    RollbackPolicy,
    parse_time,
)

ACTOR_HEADER = "X-Rollguard-Actor"
# Where every part looks for the flag service when ROLLGUARD_FLAGS_URL is unset.
DEFAULT_FLAGS_URL = "http://127.0.0.1:4242"

__all__ = [
    "ACTOR_HEADER",
    "COMPARATIVE_METRICS",
    "DEFAULT_FLAGS_URL",
    "FLAG_STATES",
    "GUARDRAIL_METRICS",
    "GUARDRAIL_OPS",
    "PATH_METRICS",
    "Annotation",
    "Event",
    "Flag",
    "FlagNotFound",
    "FlagsClient",
    "FlagsError",
    "FlagsUnavailable",
    "Guardrail",
    "ImpactSample",
    "ImpactSamples",
    "RollbackPolicy",
    "Token",
    "Unauthorized",
    "VersionConflict",
]


class FlagsError(Exception):
    """The flag service answered with an error."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class FlagNotFound(FlagsError):
    """No flag with that key."""


class VersionConflict(FlagsError):
    """The write carried a version that is no longer current."""

    @property
    def current(self) -> Flag | None:
        """The flag as it is now, when the service sent it along with the conflict."""
        found = self.details.get("current") if isinstance(self.details, dict) else None
        return Flag.from_json(found) if isinstance(found, dict) else None


class Unauthorized(FlagsError):
    """The token is missing, wrong, or lacks the admin scope."""


class FlagsUnavailable(Exception):
    """The flag service did not answer."""


@dataclass(frozen=True)
class Annotation:
    """A note on the timeline: a mass submission began, a fault was injected."""

    id: int
    time: datetime
    flag: str | None
    actor: str
    kind: str
    text: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Annotation:
        return cls(
            id=int(data["id"]),
            time=datetime.fromisoformat(str(data["time"]).replace("Z", "+00:00")),
            flag=data.get("flag"),
            actor=data["actor"],
            kind=data["kind"],
            text=data["text"],
        )


@dataclass(frozen=True)
class Event:
    id: int
    time: datetime
    flag: str | None
    actor: str
    action: str
    reason: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        parsed = parse_time(data["time"])
        assert parsed is not None
        return cls(
            id=int(data["id"]),
            time=parsed,
            flag=data.get("flag"),
            actor=data["actor"],
            action=data["action"],
            reason=data.get("reason"),
            before=data.get("before"),
            after=data.get("after"),
        )


@dataclass(frozen=True)
class Token:
    id: int
    name: str
    scope: str
    created_at: datetime | None = None
    revoked: bool = False
    secret: str | None = field(default=None, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Token:
        return cls(
            id=int(data["id"]),
            name=data["name"],
            scope=data["scope"],
            created_at=parse_time(data.get("created_at")),
            revoked=bool(data.get("revoked", False)),
            secret=data.get("secret"),
        )


@dataclass(frozen=True)
class ImpactSample:
    """A sample of an SDK's impact metric: a counter's or histogram's increase since the SDK's previous
    send, or a gauge's value, stamped with the time the flag service received it.

    `buckets` are (upper bound, cumulative count) pairs, the last bound +Inf.
    """

    time: datetime
    name: str
    type: str
    labels: dict[str, str]
    value: float | None = None
    count: float | None = None
    buckets: tuple[tuple[float, float], ...] = ()
    app_name: str | None = None
    instance_id: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImpactSample:
        parsed = parse_time(data["time"])
        assert parsed is not None
        buckets = tuple((float(le), float(count)) for le, count in data.get("buckets") or ())
        return cls(
            time=parsed,
            name=data["name"],
            type=data["type"],
            labels=dict(data.get("labels") or {}),
            value=data.get("value"),
            count=data.get("count"),
            buckets=buckets,
            app_name=data.get("app_name"),
            instance_id=data.get("instance_id"),
        )


@dataclass(frozen=True)
class ImpactSamples:
    """An answer of `FlagsClient.impact_samples`: the samples, oldest first, and the newest arrival."""

    samples: tuple[ImpactSample, ...]
    newest: datetime | None
    truncated: bool


_ERRORS_BY_STATUS: dict[int, type[FlagsError]] = {
    401: Unauthorized,
    403: Unauthorized,
    404: FlagNotFound,
    409: VersionConflict,
}


class FlagsClient:
    """Admin API client. `actor` names who acts in the audit log (e.g. `controller`)."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        actor: str | None = None,
        timeout: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = token
        if actor:
            headers[ACTOR_HEADER] = actor
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self._retries = retries
        self._backoff_s = backoff_s
        self.base_url = base_url.rstrip("/")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FlagsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # flags

    def list_flags(self) -> list[Flag]:
        return [Flag.from_json(f) for f in self._request("GET", "/api/admin/flags")["flags"]]

    def get_flag(self, key: str) -> Flag:
        return Flag.from_json(self._request("GET", f"/api/admin/flags/{key}"))

    def create_flag(self, key: str, *, reason: str | None = None, **fields: Any) -> Flag:
        body = {"key": key, **_jsonable(fields)}
        if reason:
            body["reason"] = reason
        return Flag.from_json(self._request("POST", "/api/admin/flags", json=body))

    def update_flag(
        self, key: str, changes: Mapping[str, Any], *, version: int, reason: str | None = None
    ) -> Flag:
        body = dict(_jsonable(dict(changes)))
        if reason:
            body["reason"] = reason
        return Flag.from_json(
            self._request("PATCH", f"/api/admin/flags/{key}", json=body, headers={"If-Match": str(version)})
        )

    def delete_flag(self, key: str, *, reason: str | None = None) -> None:
        params = {"reason": reason} if reason else None
        self._request("DELETE", f"/api/admin/flags/{key}", params=params)

    def set_rollout(
        self, key: str, rollout: int, *, reason: str | None = None, version: int | None = None
    ) -> Flag:
        body: dict[str, Any] = {"rollout": rollout}
        if reason:
            body["reason"] = reason
        return Flag.from_json(
            self._request("PUT", f"/api/admin/flags/{key}/rollout", json=body, headers=_if_match(version))
        )

    def kill(self, key: str, *, reason: str, version: int | None = None) -> Flag:
        """Switch the flag off for everyone; with `version`, only if the flag is still at it."""
        return Flag.from_json(self._flag_action(key, "kill", reason=reason, version=version))

    def resume(self, key: str, *, reason: str, version: int | None = None) -> Flag:
        """Switch the flag back on at its rollout; with `version`, only if the flag is still at it."""
        return Flag.from_json(self._flag_action(key, "resume", reason=reason, version=version))

    def _flag_action(self, key: str, action: str, *, reason: str, version: int | None) -> Any:
        # Repeating a kill or resume changes nothing, so one whose answer was lost is sent
        # again; not one guarded by a version, which its own first delivery would have moved on.
        return self._request(
            "POST",
            f"/api/admin/flags/{key}/{action}",
            json={"reason": reason},
            headers=_if_match(version),
            idempotent=version is None,
        )

    # audit log

    def events(
        self,
        *,
        flag: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[Event]:
        params = _history_params(flag=flag, since=since, until=until, limit=limit)
        data = self._request("GET", "/api/admin/events", params=params)
        return [Event.from_json(e) for e in data["events"]]

    # annotations

    def annotate(self, text: str, *, kind: str = "note", flag: str | None = None) -> Annotation:
        """Note something on the timeline (for one flag, or for all without `flag`)."""
        body: dict[str, Any] = {"text": text, "kind": kind}
        if flag:
            body["flag"] = flag
        return Annotation.from_json(self._request("POST", "/api/admin/annotations", json=body))

    def annotations(
        self,
        *,
        flag: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 200,
    ) -> list[Annotation]:
        """Annotations, newest first; with `flag`, that flag's and those for all flags."""
        params = _history_params(flag=flag, since=since, until=until, limit=limit)
        data = self._request("GET", "/api/admin/annotations", params=params)
        return [Annotation.from_json(a) for a in data["annotations"]]

    # tokens

    def create_token(self, name: str, scope: str) -> Token:
        """Create a token; the returned `secret` is shown this once only."""
        return Token.from_json(
            self._request("POST", "/api/admin/tokens", json={"name": name, "scope": scope})
        )

    def list_tokens(self) -> list[Token]:
        return [Token.from_json(t) for t in self._request("GET", "/api/admin/tokens")["tokens"]]

    def revoke_token(self, token_id: int) -> None:
        self._request("DELETE", f"/api/admin/tokens/{token_id}")

    # Unleash import/export and client metrics

    def import_unleash(self, document: Mapping[str, Any], *, replace: bool = False) -> dict[str, Any]:
        """Import Rollguard flags, Unleash's client document, or Unleash 8's batch export or import document.

        With `replace`, imported Unleash features and segments missing from the
        document are dropped (Rollguard flags are never dropped by an import).
        The answer's `report` lists, per feature, what could not be carried over.
        """
        params = {"replace": "true"} if replace else None
        result: dict[str, Any] = self._request(
            "POST", "/api/admin/import", json=dict(document), params=params
        )
        return result

    def export_unleash(self) -> dict[str, Any]:
        document: dict[str, Any] = self._request("GET", "/api/admin/export")
        return document

    def export_unleash_import(
        self, *, project: str = "default", environment: str = "development"
    ) -> dict[str, Any]:
        """The body for Unleash 8's features-batch/import (`document`) and what it leaves out (`report`)."""
        params = {"project": project, "environment": environment}
        result: dict[str, Any] = self._request("GET", "/api/admin/export/unleash", params=params)
        return result

    def exposures(self, *, flag: str | None = None) -> list[dict[str, Any]]:
        params = {"flag": flag} if flag else None
        return list(self._request("GET", "/api/admin/exposures", params=params)["exposures"])

    def impact_samples(
        self,
        names: Sequence[str] = (),
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        resolution_s: int = 0,
        limit: int = 20_000,
    ) -> ImpactSamples:
        """The impact metrics SDKs sent with these `names` (all when empty) that arrived in (since, until]."""
        params: dict[str, Any] = {"name": list(names), "resolution_s": resolution_s, "limit": limit}
        if since:
            params["since"] = since.isoformat()
        if until:
            params["until"] = until.isoformat()
        data = self._request("GET", "/api/admin/impact-metrics", params=params)
        return ImpactSamples(
            samples=tuple(ImpactSample.from_json(s) for s in data["samples"]),
            newest=parse_time(data.get("newest")),
            truncated=bool(data.get("truncated")),
        )

    # transport

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        # A request that never connected can always be sent again; one that timed out
        # after sending may have been done, so only an idempotent one is repeated.
        retriable: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout)
        if idempotent or (idempotent is None and method in _IDEMPOTENT_METHODS):
            retriable = (*retriable, httpx.ReadTimeout)
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, json=json, params=params, headers=headers)
                break
            except retriable as exc:
                attempt += 1
                if attempt > self._retries:
                    raise FlagsUnavailable(f"{self.base_url} did not answer: {exc}") from exc
                time.sleep(self._backoff_s * 2 ** (attempt - 1))
            except httpx.TransportError as exc:
                # Not retried: the request may have reached the service (a write must not repeat).
                raise FlagsUnavailable(f"{self.base_url} failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 503:
            # The service is up but its database is not: as unavailable as no answer, and worth a retry.
            raise FlagsUnavailable(f"{self.base_url} is unavailable: {_error_from(response).message}")
        if response.status_code >= 400:
            raise _error_from(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise FlagsError(
                response.status_code, "not_json", f"{self.base_url} answered something other than JSON"
            ) from exc


def _history_params(
    *, flag: str | None, since: datetime | None, until: datetime | None, limit: int
) -> dict[str, Any]:
    """Query parameters of a read of the audit log or the annotations."""
    params: dict[str, Any] = {"limit": limit}
    if flag:
        params["flag"] = flag
    if since:
        params["since"] = since.isoformat()
    if until:
        params["until"] = until.isoformat()
    return params


_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def _error_from(response: httpx.Response) -> FlagsError:
    try:
        error = response.json()["error"]
        code, message, details = error["code"], error["message"], error.get("details")
    except (ValueError, KeyError, TypeError):
        first_line = response.text.strip().splitlines()[0][:100] if response.text.strip() else ""
        code = "http_error"
        message = f"HTTP {response.status_code} without the flag service's error body: {first_line}"
        details = None
    cls = _ERRORS_BY_STATUS.get(response.status_code, FlagsError)
    return cls(response.status_code, code, message, details)


def _if_match(version: int | None) -> dict[str, str] | None:
    return {"If-Match": str(version)} if version is not None else None


def _jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, Guardrail):
            out[name] = value.to_json()
        elif isinstance(value, (list, tuple)) and value and isinstance(value[0], Guardrail):
            out[name] = [g.to_json() for g in value]
        elif isinstance(value, RollbackPolicy):
            out[name] = {
                "consecutive_failures": value.consecutive_failures,
                "on_no_data": value.on_no_data,
            }
        elif isinstance(value, tuple):
            out[name] = list(value)
        else:
            out[name] = value
    return out
