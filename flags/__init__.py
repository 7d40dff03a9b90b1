"""Rollguard flags."""
