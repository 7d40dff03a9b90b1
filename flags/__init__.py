"""Rollguard flags: the flag service and the client other parts use to talk to it.

Other parts import only `flags.client` (the typed admin API client). The service
itself is built by `flags.app.create_app` and run by `rollguard flags serve`
(`flags.cli`); see flags/README.md.
"""
