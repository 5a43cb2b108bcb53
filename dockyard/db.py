"""PostgreSQL access: engines, migrations, and the names of the read-model tables."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

RESOURCE_TABLES = {"Deployment": "deployments", "Pod": "pods", "Node": "nodes"}
COMMANDS_TABLE = "commands"
CHECKPOINTS_TABLE = "projection_checkpoints"


def async_engine(url: str, pool_size: int = 5) -> AsyncEngine:
    return create_async_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=True)


def migrate(url: str, revision: str = "head") -> None:
    """Run `alembic upgrade` on the migrations shipped in the package."""
    from alembic import command
    from alembic.config import Config

    import dockyard.migrations

    config = Config()
    config.set_main_option("script_location", str(Path(dockyard.migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, revision)


def database_ready(url: str) -> bool:
    engine = create_engine(url, pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return True
    except Exception:
        return False
    finally:
        engine.dispose()
