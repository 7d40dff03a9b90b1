"""Every dashboard page in Streamlit's AppTest against a live flag service and a real controller store."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from streamlit.testing.v1 import AppTest

from control.history import ControlHistory
from control.store import ControlStore, VerdictRecord
from dashboard.health import describe
from rollguard import free_port
from tests.dashboard.conftest import FN, GUARDRAILS, Dashboard, create_flag
from tests.dashboard.figures import drawn, page_figures, panels
from tests.dashboard.metrics import MetricsTarget, scrape_history, scrape_now, tick_controller


def _button(at: AppTest, label: str):
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r} among {[b.label for b in at.button]}"
    return matches[0]


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def _live_checks(at: AppTest) -> str:
    """The live checks panel under the flag's header."""
    found = [str(c.value) for c in at.caption if str(c.value).startswith("Health:")]
    assert len(found) == 1, [str(c.value) for c in at.caption]
    return found[0]


def _flag_page(dashboard: Dashboard, **secrets: object) -> AppTest:
    at = dashboard.open(**secrets)
    at.query_params["flag"] = dashboard.key
    at.run()
    at.switch_page("views/flag.py").run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def metrics_target() -> Iterator[MetricsTarget]:
    target = MetricsTarget(FN)
    yield target
    target.stop()


def test_overview_lists_flags_with_state_stage_and_last_change(dashboard: Dashboard) -> None:
    key = dashboard.key
    admin = dashboard.service.admin("alice")
    create_flag(admin, key, enabled=True)
    create_flag(admin, key + "-other", enabled=False, rollout=0)
    admin.set_rollout(key, 50, reason="stage two")

    at = dashboard.open().run()

    assert not at.exception
    table = at.table[0].value
    rows = {row["flag"]: row for row in table.to_dict("records")}
    assert rows[key]["rollout"] == "50%"
    assert rows[key]["stage"] == "2/3"
    assert rows[key]["enabled"] == "on"
    assert "set_rollout by alice" in rows[key]["last change"]
    assert "stage two" in rows[key]["last change"]
    assert rows[key + "-other"]["enabled"] == "killed"
    assert "off" in rows[key + "-other"]["health"]
    assert "No controller is running" in _texts(at.warning)


def test_rollout_buttons_and_custom_value_change_the_flag(dashboard: Dashboard) -> None:
    key = dashboard.key
    admin = dashboard.service.admin("setup")
    create_flag(admin, key, enabled=True)
    at = _flag_page(dashboard)

    at.button(key="rollout_50").click().run()

    assert not at.exception
    assert admin.get_flag(key).rollout == 50
    assert "-> 50%: done" in _texts(at.success)
    event = admin.events(flag=key, limit=1)[0]
    assert (event.action, event.actor) == ("set_rollout", "dashboard:tester")

    version = admin.get_flag(key).version
    at.number_input(key=f"custom_rollout_{key}_{version}").set_value(33)
    _button(at, "Apply").click().run()

    assert admin.get_flag(key).rollout == 33
    assert [m.value for m in at.metric if m.label == "Rollout"] == ["33%"]


def test_kill_asks_for_a_reason_and_resume_turns_it_back_on(dashboard: Dashboard) -> None:
    key = dashboard.key
    admin = dashboard.service.admin("setup")
    create_flag(admin, key, enabled=True)
    at = _flag_page(dashboard)

    at.button(key="kill").click().run()
    _button(at, "Turn off for everyone").click().run()  # no reason yet

    assert "needs a reason" in _texts(at.error)
    assert admin.get_flag(key).enabled is True

    at.text_input(key="switch_reason").input("p95 doubled on exam home")
    _button(at, "Turn off for everyone").click().run()

    assert not at.exception
    assert admin.get_flag(key).enabled is False
    event = admin.events(flag=key, limit=1)[0]
    assert (event.action, event.reason, event.actor) == (
        "kill",
        "p95 doubled on exam home",
        "dashboard:tester",
    )

    at.button(key="resume").click().run()
    _button(at, "Turn on").click().run()  # a resume needs a reason too
    assert "needs a reason" in _texts(at.error)
    assert admin.get_flag(key).enabled is False

    at.text_input(key="switch_reason").input("p95 back to normal")
    _button(at, "Turn on").click().run()
    assert admin.get_flag(key).enabled is True
    assert admin.events(flag=key, limit=1)[0].reason == "p95 back to normal"


def test_auto_promote_and_automation_override(dashboard: Dashboard) -> None:
    key = dashboard.key
    admin = dashboard.service.admin("setup")
    flag = create_flag(admin, key, enabled=True, auto_promote=False)
    at = _flag_page(dashboard)

    at.toggle(key=f"auto_promote_{key}_{flag.version}").set_value(True).run()
    assert admin.get_flag(key).auto_promote is True

    at.button(key="pause_automation").click().run()
    assert admin.get_flag(key).state == "paused"

    at.button(key="resume_automation").click().run()
    assert admin.get_flag(key).state == "rolling_out"


def test_a_stale_version_is_refused_with_a_clear_message(dashboard: Dashboard) -> None:
    key = dashboard.key
    admin = dashboard.service.admin("setup")
    create_flag(admin, key, enabled=True)
    at = _flag_page(dashboard)
    admin.update_flag(key, {"description": "changed elsewhere"}, version=admin.get_flag(key).version)

    at.button(key="pause_automation").click().run()

    assert not at.exception
    assert "the flag changed since this page showed it" in _texts(at.error)
    assert admin.get_flag(key).state == "rolling_out"


def _open_guardrail_editor(at: AppTest, key: str) -> AppTest:
    at.toggle(key=f"edit_guardrails_{key}").set_value(True).run()
    assert not at.exception, at.exception
    return at


def test_live_guardrails_show_as_a_table_and_the_editor_only_on_demand(dashboard: Dashboard) -> None:
    key = dashboard.key
    flag = create_flag(dashboard.service.admin("setup"), key, enabled=True)
    at = _flag_page(dashboard)

    rows = at.table[0].value.to_dict("records")
    assert [(row["guardrail"], row["threshold"], row["window"]) for row in rows] == [
        (g.name, text, f"{g.window_s} s")
        for g, text in zip(flag.guardrails, ("1%", "200 ms", "50%"), strict=True)
    ]
    assert not [b for b in at.button if b.label == "Save guardrails"]

    _open_guardrail_editor(at, key)

    assert at.number_input(key=f"gr_{key}_{flag.version}_0_threshold").value == pytest.approx(0.01)
    assert _button(at, "Save guardrails")


def test_guardrail_editor_validates_and_saves(dashboard: Dashboard) -> None:
    key = dashboard.key
    admin = dashboard.service.admin("setup")
    flag = create_flag(admin, key, enabled=True)
    at = _open_guardrail_editor(_flag_page(dashboard), key)
    prefix = f"gr_{key}_{flag.version}"
    assert at.number_input(key=f"{prefix}_0_threshold").value == pytest.approx(0.01)

    at.number_input(key=f"{prefix}_0_threshold").set_value(1.5)
    _button(at, "Save guardrails").click().run()

    assert "error_rate is a fraction" in _texts(at.error)
    assert admin.get_flag(key).guardrails == flag.guardrails

    at.number_input(key=f"{prefix}_0_threshold").set_value(0.02)
    at.checkbox(key=f"{prefix}_2_toggle").check()  # remove cache_hit_rate
    at.selectbox(key=f"{prefix}_3_metric").set_value("cache_bytes")
    at.selectbox(key=f"{prefix}_3_path").set_value("")
    at.number_input(key=f"{prefix}_3_threshold").set_value(15_000_000)
    at.checkbox(key=f"{prefix}_3_toggle").check()  # add the new row
    _button(at, "Save guardrails").click().run()

    assert not at.exception
    saved = admin.get_flag(key).guardrails
    assert [(g.metric, g.threshold) for g in saved] == [
        ("error_rate", 0.02),
        ("p95_latency_s", 0.2),
        ("cache_bytes", 15_000_000),
    ]


def test_the_servers_refusal_is_shown(dashboard: Dashboard) -> None:
    key = dashboard.key
    admin = dashboard.service.admin("setup")
    flag = create_flag(admin, key, enabled=True)
    at = _open_guardrail_editor(_flag_page(dashboard), key)
    # Passes the editor's checks but not the flag service's (windows are at most a day).
    at.number_input(key=f"gr_{key}_{flag.version}_0_window").set_value(100_000)
    _button(at, "Save guardrails").click().run()

    assert not at.exception
    assert "refused by the flag service (4" in _texts(at.error)
    assert admin.get_flag(key).guardrails == flag.guardrails


def test_read_only_mode_disables_every_write(dashboard: Dashboard) -> None:
    key = dashboard.key
    create_flag(dashboard.service.admin("setup"), key, enabled=True)
    at = _flag_page(dashboard, read_only="true")

    assert at.button(key="rollout_50").disabled
    assert at.button(key="kill").disabled
    _open_guardrail_editor(at, key)
    assert _button(at, "Save guardrails").disabled
    assert "Read-only" in _texts(at.info)


def test_without_a_token_the_flag_service_refusal_is_shown(dashboard: Dashboard) -> None:
    key = dashboard.key
    create_flag(dashboard.service.admin("setup"), key, enabled=True)
    at = dashboard.open(admin_token=None).run()

    assert not at.exception
    assert "refused the dashboard" in _texts(at.error)
    assert "401" in _texts(at.error)


def test_flag_service_down_shows_a_banner_on_every_page(dashboard: Dashboard) -> None:
    at = dashboard.open(flags_url=f"http://127.0.0.1:{free_port()}").run()
    assert not at.exception
    assert "flag service is unreachable" in _texts(at.error)
    for page in ("views/flag.py", "views/audit.py", "views/automation.py"):
        at.switch_page(page).run()
        assert not at.exception, page
        assert "flag service is unreachable" in _texts(at.error), page


def test_wrong_token_is_reported_not_raised(dashboard: Dashboard) -> None:
    at = dashboard.open(admin_token="not-a-token").run()
    assert not at.exception
    assert "401" in _texts(at.error)


def test_metric_source_down_shows_a_banner_and_keeps_the_controls(dashboard: Dashboard) -> None:
    key = dashboard.key
    create_flag(dashboard.service.admin("setup"), key, enabled=True)
    at = _flag_page(
        dashboard, control_database_url=f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none"
    )

    assert "metric source is unavailable" in _texts(at.warning)
    assert at.button(key="rollout_50").disabled is False
    assert not at.get("plotly_chart")


def test_charts_show_metrics_thresholds_and_changes(
    dashboard: Dashboard, metrics_target: MetricsTarget
) -> None:
    key = dashboard.key
    admin = dashboard.service.admin("setup")
    create_flag(admin, key, enabled=True)
    admin.set_rollout(key, 50, reason="promote")
    scrape_history(dashboard.control_database_url, metrics_target, seconds=180)
    tick_controller(dashboard.control_database_url, admin, holder="controller-charts")

    at = _flag_page(dashboard)

    metrics, timeline = page_figures(at)
    rows = panels(metrics)
    assert list(rows) == [
        "Call reduction",
        "Cache hit rate",
        "Cache bytes and process memory",
        "Error rate per cohort",
        "p95 latency per cohort",
    ]
    traces = rows["Error rate per cohort"]
    assert set(traces) == {"optimized", "direct", "guardrail <= 1% optimized", "rollout"}
    assert len(drawn(traces["optimized"]["y"])) > 10
    assert max(drawn(traces["optimized"]["y"])) == 0.0
    assert traces["guardrail <= 1% optimized"]["y"] == [0.01, 0.01]
    verdict_rows = {name for trace in timeline["data"] for name in trace["y"]}
    assert verdict_rows == {g.name for g in admin.get_flag(key).guardrails}
    assert "controller-charts" in _texts(at.info)  # the controller strip names the leader
    reduction = rows["Call reduction"]["call reduction"]
    assert drawn(reduction["y"])[-1] == pytest.approx(0.4)  # 0.2 backend share optimized, 1.0 direct
    assert "breached" not in _texts(at.error)


def test_breach_banner_kills_in_one_click(dashboard: Dashboard, metrics_target: MetricsTarget) -> None:
    key = dashboard.key
    admin = dashboard.service.admin("setup")
    create_flag(admin, key, enabled=True)
    scrape_now(dashboard.control_database_url, metrics_target, error_fraction=0.25)
    # The controller judged the breach (dry run: it changed nothing), then stopped.
    tick_controller(dashboard.control_database_url, admin, holder="controller-breach", stop=True)

    at = dashboard.open().run()

    assert not at.exception
    banner = _texts(at.error)
    assert "Guardrail breached" in banner and "error_rate[optimized]<=0.01" in banner
    assert "nobody else will turn it off" in banner
    at.button(key=f"breach_kill_{key}").click().run()

    assert not at.exception
    flag = admin.get_flag(key)
    assert flag.enabled is False
    assert (admin.events(flag=key, limit=1)[0].reason or "").startswith("guardrail breached: error_rate")


def test_audit_log_filters(dashboard: Dashboard) -> None:
    key = dashboard.key
    admin = dashboard.service.admin("alice")
    create_flag(admin, key, enabled=True)
    create_flag(admin, key + "-other")
    dashboard.service.admin("bob").kill(key, reason="bad p95")

    at = dashboard.open().run()
    at.switch_page("views/audit.py").run()
    assert not at.exception
    everything = at.table[0].value.to_dict("records")
    assert {(r["flag"], r["actor"], r["action"]) for r in everything} >= {
        (key, "alice", "create"),
        (key + "-other", "alice", "create"),
        (key, "bob", "kill"),
    }

    at.selectbox(key="audit_flag").set_value(key).run()
    rows = at.table[0].value.to_dict("records")
    assert [(r["actor"], r["action"]) for r in rows] == [("bob", "kill"), ("alice", "create")]
    assert "enabled: True -> False" in rows[0]["changes"]

    at.text_input(key="audit_actor").input("bob").run()
    rows = at.table[0].value.to_dict("records")
    assert [(r["actor"], r["action"], r["reason"]) for r in rows] == [("bob", "kill", "bad p95")]

    at.text_input(key="audit_actor").input("").run()
    at.selectbox(key="audit_flag").set_value(key + "-other").run()
    assert [r["flag"] for r in at.table[0].value.to_dict("records")] == [key + "-other"]


def test_automation_page_shows_the_leader_and_pauses(dashboard: Dashboard) -> None:
    key = dashboard.key
    admin = dashboard.service.admin("setup")
    create_flag(admin, key, enabled=True)
    store = dashboard.store()
    assert store.acquire_lease("controller-a", lease_s=600)
    store.mark_evaluation("controller-a")
    store.close()

    at = dashboard.open().run()
    at.switch_page("views/automation.py").run()

    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Leader"] == "controller-a"
    assert "controller-a" in _texts(at.info)
    at.button(key=f"automation_pause_{key}").click().run()
    assert admin.get_flag(key).state == "paused"
    at.button(key=f"automation_resume_{key}").click().run()
    assert admin.get_flag(key).state == "rolling_out"


def test_login_gate(dashboard: Dashboard) -> None:
    key = dashboard.key
    create_flag(dashboard.service.admin("setup"), key)
    at = dashboard.open(password="s3cret").run()
    assert not at.table
    at.text_input(key="login_password").input("wrong")
    _button(at, "Log in").click().run()
    assert "Wrong password" in _texts(at.error)
    assert not at.table

    at.text_input(key="login_password").input("s3cret")
    _button(at, "Log in").click().run()
    assert not at.exception
    assert key in [row["flag"] for row in at.table[0].value.to_dict("records")]


def test_flag_page_survives_its_flag_being_deleted(dashboard: Dashboard) -> None:
    key = dashboard.key
    admin = dashboard.service.admin("setup")
    create_flag(admin, key, enabled=True)
    create_flag(admin, key + "-other", enabled=True)
    at = _flag_page(dashboard)
    assert at.selectbox(key="flag_key").value == key

    admin.delete_flag(key, reason="retired")
    at.query_params.clear()
    at.button(key="rollout_50").click().run()  # acts on a flag that is gone

    assert not at.exception
    assert "404" in _texts(at.error)
    at.run()
    assert not at.exception
    assert at.selectbox(key="flag_key").value != key


def test_single_sign_on_names_each_operator_in_the_audit_log(dashboard: Dashboard) -> None:
    key = dashboard.key
    admin = dashboard.service.admin("setup")
    create_flag(admin, key, enabled=True)
    at = dashboard.open(
        auth={
            "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
            "cookie_secret": "not-used-in-this-test",
            "client_id": "rollguard",
            "client_secret": "not-used-in-this-test",
            "server_metadata_url": "https://id.example.com/.well-known/openid-configuration",
        }
    )
    at.user = {"is_logged_in": False}
    at.run()
    assert not at.exception
    assert _button(at, "Log in")
    assert not at.table

    at.user = {"is_logged_in": True, "email": "ann@example.com"}
    at.query_params["flag"] = key
    at.run()
    at.switch_page("views/flag.py").run()
    at.button(key="rollout_50").click().run()

    assert not at.exception
    event = admin.events(flag=key, limit=1)[0]
    assert (event.action, event.actor) == ("set_rollout", "dashboard:ann@example.com")


def test_a_stale_rollout_click_shows_the_conflict_and_the_fresh_state(dashboard: Dashboard) -> None:
    key = dashboard.key
    admin = dashboard.service.admin("setup")
    create_flag(admin, key, enabled=True, rollout=10)
    at = _flag_page(dashboard)
    admin.set_rollout(key, 100, reason="finished from the CLI")

    at.button(key="rollout_50").click().run()

    assert not at.exception
    assert admin.get_flag(key).rollout == 100
    errors = _texts(at.error)
    assert "the flag changed since this page showed it" in errors
    assert "rollout 100%" in errors
    # Header and panel both show the fresh version.
    assert [m.value for m in at.metric if m.label == "Rollout"] == ["100%"]
    assert "**Rollout** · now 100%" in _texts(at.markdown)


def test_a_draft_never_turned_on_is_not_shown_as_killed(dashboard: Dashboard) -> None:
    key = dashboard.key
    create_flag(dashboard.service.admin("setup"), key, enabled=False, rollout=0, state="draft")
    at = _flag_page(dashboard)

    assert [m.value for m in at.metric if m.label == "Kill switch"] == ["off (draft)"]
    assert "Turn on…" in [b.label for b in at.button]


def test_live_checks_show_the_controllers_last_verdicts_and_their_age(
    dashboard: Dashboard, metrics_target: MetricsTarget
) -> None:
    key = dashboard.key
    admin = dashboard.service.admin("setup")
    create_flag(admin, key, enabled=True)
    scrape_now(dashboard.control_database_url, metrics_target)
    tick_controller(dashboard.control_database_url, admin, holder="controller-live")
    history = ControlHistory(dashboard.control_database_url)
    recorded = history.last_check(admin.get_flag(key))
    history.close()
    assert recorded.judged and len(recorded.verdicts) == len(GUARDRAILS)

    at = _flag_page(dashboard)

    panel = _live_checks(at)
    assert re.search(r"^Health: ● healthy · judged \d+ s ago by the controller", panel), panel
    # Each guardrail as the controller recorded it: its value, samples and outcome.
    for verdict in recorded.verdicts:
        assert f"{describe(verdict, GUARDRAILS)} → {verdict.verdict}" in panel
    assert [v.verdict for v in recorded.verdicts] == ["pass"] * len(GUARDRAILS)
    at.switch_page("views/overview.py").run()
    rows = {row["flag"]: row for row in at.table[0].value.to_dict("records")}
    assert rows[key]["health"] == "● healthy"


def test_without_a_controller_the_live_checks_say_not_judged_and_why(
    dashboard: Dashboard, metrics_target: MetricsTarget
) -> None:
    key = dashboard.key
    admin = dashboard.service.admin("setup")
    create_flag(admin, key, enabled=True, auto_promote=True)
    create_flag(admin, key + "-killed", enabled=True)
    admin.kill(key + "-killed", reason="bad p95")
    # A breaching optimized cohort, but no controller to judge it.
    scrape_now(dashboard.control_database_url, metrics_target, error_fraction=0.25)

    at = _flag_page(dashboard)

    assert _live_checks(at) == "Health: ◌ not judged: no controller has run against this store"
    assert "Guardrail breached" not in _texts(at.error)
    at.query_params["flag"] = key + "-killed"
    at.run()
    assert (
        _live_checks(at) == "Health: ■ off · not judged: killed: the controller does not judge a killed flag"
    )
    at.switch_page("views/overview.py").run()
    rows = {row["flag"]: row for row in at.table[0].value.to_dict("records")}
    assert (rows[key]["health"], rows[key + "-killed"]["health"]) == ("◌ not judged", "■ off")
    assert "Guardrail breached" not in _texts(at.error)


def test_a_controller_that_stopped_long_ago_judges_nothing_now(dashboard: Dashboard) -> None:
    key = dashboard.key
    create_flag(dashboard.service.admin("setup"), key, enabled=True)
    # Ten minutes ago a controller judged the flag failing, then stopped.
    then = datetime.now(UTC) - timedelta(minutes=10)
    store = ControlStore(dashboard.control_database_url, clock=lambda: then)
    assert store.acquire_lease("controller-gone", lease_s=15)
    store.record_verdicts(
        [VerdictRecord(then, key, g.name, "fail", 0.5, g.threshold, 100, g.metric) for g in GUARDRAILS]
    )
    store.mark_evaluation("controller-gone")
    store.release_lease("controller-gone")
    store.close()

    at = _flag_page(dashboard)

    assert _live_checks(at).splitlines() == [
        "Health: ◌ not judged: no controller running (last evaluation 10 min ago) · last check 10 min ago  ",
        "auto-promote off: a failing guardrail still rolls it back, promotion is manual",
    ]
    assert "Guardrail breached" not in _texts(at.error)
    assert "No controller is running" in _texts(at.warning)
