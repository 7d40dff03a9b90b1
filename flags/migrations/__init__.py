"""Alembic migrations of the flag service, applied by `flags.db.migrate` at start."""
