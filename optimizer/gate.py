"""The gate: per call, decide optimized or direct for a user, and hand over the flag's payload.

`Optimizer` asks `gate.decide(user_id)` on every call. `StaticGate` answers the
same for everyone (tests, apps without a flag service). `UnleashGate` follows a
flag served to the official `UnleashClient` SDK.

Why `UnleashGate` does not call `is_enabled` per call: the SDK costs tens of
microseconds a call, a hundred times a cache hit. The gate instead keeps a
compiled view of its one feature, rebuilt whenever the SDK's engine takes a new
state (the gate wraps the engine's `take_state`, which every poll, 304 and
streamed update passes through), so it acts on a flag change at the very next
call after the SDK refresh that brought it. `gate.decide` is the view's own
method between two states (each new state swaps in a refresh first), and the
view remembers each user's bucket, so a decision is one call and a dict read. When the feature has the shape
Rollguard serves (one `flexibleRollout` strategy without constraints or
segments, `userId` or `default` stickiness, at most one strategy variant) the
view buckets the user itself with the SDK's normalisation: murmur3 (seed 0) of
`"{groupId}:{userId}"`, modulo 100, plus 1, enabled when at most the rollout.
Any other shape, a call without a user id, or an SDK whose engine cannot be
hooked falls back to the SDK's own `is_enabled` and `get_variant`.

Exposure counts that the SDK reports to the flag service are kept: the fast
path tallies its answers and hands them to the engine's `count_toggle` from the
SDK's refresh thread, off the request path. The tallies are unlocked, so a
thread race may lose a count; it never changes a decision.

Flag changes: `on_flag_change(callback)` registers a callable run, on the
calling thread and outside the gate's lock, at the first call after the SDK took
a state in which the feature's definition differs from the one before (a kill,
a resume, a new rollout, payload or strategy). `Optimizer` resets its circuit
breaker there. A state equal to the last (every poll of an unchanged flag)
runs nothing, nor does an SDK whose engine cannot be hooked.

Safe defaults: a flag that the SDK never loaded (or that the served state does
not contain) decides direct with reason `flag_unavailable`; a flag service that
stops answering leaves the SDK's last-known state in place, and so the gate's view.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import mmh3

logger = logging.getLogger(__name__)

REASON_FLAG_UNAVAILABLE = "flag_unavailable"


@dataclass(frozen=True, slots=True)
class Decision:
    """The gate's answer for one call: the cohort, the flag payload, and why direct if it could not decide."""

    optimized: bool
    payload: Mapping[str, Any] | None = None
    reason: str | None = None


class Gate(Protocol):
    """Decides the path of each call; implementations must be thread-safe and cheap."""

    def decide(self, user_id: str | None) -> Decision: ...


class StaticGate:
    """The same decision for every user: `StaticGate(True)` always optimizes, `StaticGate(False)` never."""

    def __init__(self, optimized: bool = True, payload: Mapping[str, Any] | None = None) -> None:
        self._decision = Decision(optimized, dict(payload) if payload else None)

    def decide(self, user_id: str | None) -> Decision:
        return self._decision


_UNAVAILABLE = Decision(False, None, REASON_FLAG_UNAVAILABLE)
# Users whose bucket is remembered per flag state: a dict read is cheaper than hashing each call.
_MEMO_SIZE = 100_000
_OFF = Decision(False)


class _View(Protocol):
    def decide(self, user_id: str | None) -> Decision: ...


class _Fixed:
    """A feature that answers the same for everyone: unknown (direct) or off (direct)."""

    def __init__(self, decision: Decision) -> None:
        self._decision = decision

    def decide(self, user_id: str | None) -> Decision:
        return self._decision


class _Rollout:
    """Rollguard's shape: flexibleRollout on userId with a static payload, bucketed here."""

    def __init__(
        self, gate: UnleashGate, group_id: str, rollout: int, payload: Mapping[str, Any] | None
    ) -> None:
        self._gate = gate
        self._prefix = f"{group_id}:"
        self._rollout = rollout
        self._on = Decision(True, payload)
        self._memo: dict[str | int | None, bool] = {}

    def decide(self, user_id: str | None) -> Decision:
        inside = self._memo.get(user_id)  # None is never stored: it asks the SDK
        if inside is None:
            if user_id is None:
                return self._gate._ask_sdk(user_id, known=True)
            inside = self._bucket(user_id)
        if inside:
            self._gate._yes += 1
            return self._on
        self._gate._no += 1
        return _OFF

    def _bucket(self, user_id: str | int) -> bool:
        # an int id from the app: the SDK would stringify it too
        text = user_id if type(user_id) is str else str(user_id)
        inside = bool(mmh3.hash(self._prefix + text, 0, signed=False) % 100 + 1 <= self._rollout)
        memo = self._memo
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        memo[user_id] = inside
        return inside


class _Sdk:
    """Any other shape: ask the SDK every call. `known`: whether the SDK's state holds the flag."""

    def __init__(self, gate: UnleashGate, known: bool | None = None) -> None:
        self._gate = gate
        self._known = known

    def decide(self, user_id: str | None) -> Decision:
        return self._gate._ask_sdk(user_id, known=self._known)


class UnleashGate:
    """Follows `flag_key` through an `UnleashClient`; the payload comes from its variant `variant_name`.

    The client is the app's: the gate neither initialises nor destroys it.
    """

    def __init__(self, unleash_client: Any, flag_key: str, *, variant_name: str = "config") -> None:
        self._client = unleash_client
        self._flag = flag_key
        self._variant = variant_name
        self._lock = threading.Lock()
        self._payloads: dict[str, Mapping[str, Any] | None] = {}
        self._yes = 0
        self._no = 0
        self._seen = -1
        self._view: _View = _Sdk(self)
        self._definition: str | None = None  # the feature as last compiled, canonical JSON
        self._flag_watchers: list[Callable[[], None]] = []
        self._engine = getattr(unleash_client, "_engine", None)
        self._hooked = self._hook(self._engine)
        # A state already taken (bootstrap, an initialised client) is picked up on the first call.
        self._snapshot = 0
        # `decide` is the current view's own method, so a call costs one Python call; each new
        # SDK state swaps in `_refresh_and_decide`, which compiles the view and installs it again.
        self.decide: Callable[[str | None], Decision] = self._refresh_and_decide

    @property
    def refreshes(self) -> int:
        """How many feature states the SDK's engine took since the gate was built (polls, 304s, streams)."""
        return self._snapshot

    @property
    def fast(self) -> bool:
        """Whether decisions are computed here (True) or asked of the SDK per call."""
        self._current()
        return isinstance(self._view, _Rollout | _Fixed)

    def on_flag_change(self, callback: Callable[[], None]) -> None:
        """Run `callback` whenever a new SDK state changes the feature's definition (see the module docstring)."""
        self._flag_watchers.append(callback)

    def _refresh_and_decide(self, user_id: str | None) -> Decision:
        return self._current().decide(user_id)

    # snapshot tracking

    def _hook(self, engine: Any) -> bool:
        take_state = getattr(engine, "take_state", None)
        if engine is None or not callable(take_state) or not callable(getattr(engine, "get_state", None)):
            logger.warning(
                "UnleashGate(%s): SDK engine not recognised, asking the SDK on every call", self._flag
            )
            return False
        ref = weakref.ref(self)

        def take_state_and_notify(state_json: str, *args: Any, **kwargs: Any) -> Any:
            result = take_state(state_json, *args, **kwargs)
            gate = ref()
            if gate is not None:
                with gate._lock:
                    gate._snapshot += 1
                    gate.decide = gate._refresh_and_decide
                try:
                    gate._flush_exposures()
                except Exception:  # runs inside the SDK's fetch, which must never fail because of it
                    logger.debug(
                        "UnleashGate(%s): exposure counts not handed over", gate._flag, exc_info=True
                    )
            return result

        engine.take_state = take_state_and_notify
        return True

    def _current(self) -> _View:
        changed = False
        with self._lock:
            snapshot = self._snapshot
            if self._seen != snapshot:
                first = self._seen == -1
                before = self._definition
                self._view = self._compile() if self._hooked else _Sdk(self)
                self._seen = snapshot
                changed = not first and self._definition != before
            self.decide = self._view.decide
            view = self._view
        if changed:
            for callback in self._flag_watchers:
                callback()
        return view

    def _compile(self) -> _View:
        if self._engine is None:
            return _Sdk(self)
        try:
            state = json.loads(self._engine.get_state())
        except (ValueError, TypeError):
            logger.warning("UnleashGate(%s): unreadable SDK state, asking the SDK per call", self._flag)
            return _Sdk(self)
        feature = next((f for f in state.get("features") or () if f.get("name") == self._flag), None)
        self._definition = None if feature is None else json.dumps(feature, sort_keys=True)
        if feature is None:
            return _Fixed(_UNAVAILABLE)
        if not feature.get("enabled", False):
            return _Fixed(_OFF)
        strategies = feature.get("strategies") or []
        if len(strategies) != 1 or feature.get("dependencies") or feature.get("impressionData"):
            return _Sdk(self, known=True)
        strategy = strategies[0]
        params = strategy.get("parameters") or {}
        variants = strategy.get("variants") or []
        if (
            strategy.get("name") != "flexibleRollout"
            or strategy.get("constraints")
            or strategy.get("segments")
            or params.get("stickiness", "default") not in ("userId", "default")
            or len(variants) > 1
            or (not variants and feature.get("variants"))
        ):
            return _Sdk(self, known=True)
        try:
            rollout = int(str(params.get("rollout", "100")))
        except ValueError:
            return _Sdk(self, known=True)
        payload = (
            self._payload(variants[0]) if variants and variants[0].get("name") == self._variant else None
        )
        group_id = str(params.get("groupId") or self._flag)
        return _Rollout(self, group_id, max(0, min(100, rollout)), payload)

    # SDK path

    def _ask_sdk(self, user_id: str | None, *, known: bool | None) -> Decision:
        context = {"userId": str(user_id)} if user_id is not None else {}
        # One SDK call: get_variant also says whether the feature is enabled for this context.
        variant = self._client.get_variant(self._flag, context)
        if not variant.get("feature_enabled"):
            if known is None:
                known = self._client_knows_flag()
            return _OFF if known else _UNAVAILABLE
        if variant.get("enabled") and variant.get("name") == self._variant:
            return Decision(True, self._payload(variant))
        return Decision(True)

    def _client_knows_flag(self) -> bool:
        try:
            return self._flag in self._client.feature_definitions()
        except Exception:  # an SDK error here only changes the bypass reason; decide direct either way
            logger.debug("feature_definitions failed", exc_info=True)
            return False

    def _payload(self, variant: Mapping[str, Any]) -> Mapping[str, Any] | None:
        payload = variant.get("payload") or {}
        raw = payload.get("value")
        if payload.get("type") != "json" or not isinstance(raw, str):
            return None
        # Parsed once per distinct payload, so the same object comes back and the optimizer's
        # config for it stays cached.
        if raw not in self._payloads:
            try:
                parsed = json.loads(raw)
            except ValueError:
                logger.warning("UnleashGate(%s): payload is not JSON, ignored: %.200s", self._flag, raw)
                parsed = None
            if len(self._payloads) > 64:
                self._payloads.clear()
            self._payloads[raw] = parsed if isinstance(parsed, dict) else None
        return self._payloads[raw]

    def _flush_exposures(self) -> None:
        yes, no = self._yes, self._no
        self._yes -= yes
        self._no -= no
        count = getattr(self._engine, "count_toggle", None)
        if count is None:
            return
        for _ in range(yes):
            count(self._flag, True)
        for _ in range(no):
            count(self._flag, False)
