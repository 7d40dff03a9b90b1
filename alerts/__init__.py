"""Rollguard alerts."""
