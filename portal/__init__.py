"""Rollguard portal."""
