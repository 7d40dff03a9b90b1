"""Rollguard optimizer."""
