"""Rollguard control."""
