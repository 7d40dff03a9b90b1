"""Fixtures of the end-to-end tests: the dashboard tests' Chromium, shared rather than copied."""

from tests.dashboard.test_browser import chromium  # noqa: F401
