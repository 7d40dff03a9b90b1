"""Rollguard dashboard."""
