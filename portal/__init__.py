"""The reference exam portal and the traffic generator that replays the incident against it.

Portal: `app.create_app` (factory) builds a `runtime.Portal` (engine with a
bounded pool, the optimizer around `data.get_all_exam_attempts`, its gate,
metrics) and registers `pages` (MyTestSeries, ExamHome), `api` (submit, batch,
info, health, /metrics) and `fault` (admin fault injection). `cli` is
`rollguard portal serve|seed`.

Traffic: `scenarios` (pure plans per simulated student), `recording` (what a
run observed, stale-read checks), `ideal` (C_min and eta), `promtext` (reading
/metrics) and `traffic` (locust-driven runs; imported only by `traffic_cli`,
`rollguard traffic run`, because locust patches the standard library).
"""
