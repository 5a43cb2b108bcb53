"""Alembic migrations: own every table, checkpoints included."""
