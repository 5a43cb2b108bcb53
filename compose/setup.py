"""One-shot setup for compose: apply the migrations and create the streams and buckets with three replicas."""

import asyncio
import os

from dockyard import config
from dockyard.db import migrate
from dockyard.eventlog import EventLog

REPLICAS = int(os.environ.get("DOCKYARD_STREAM_REPLICAS", "3"))


async def create_streams(url: str) -> None:
    log = await EventLog.connect(url, name="dockyard-setup")
    try:
        await log.ensure_streams(replicas=REPLICAS)
    finally:
        await log.close()


if __name__ == "__main__":
    migrate(config.database_url())
    asyncio.run(create_streams(config.nats_url()))
    print(f"migrations applied; streams ready with {REPLICAS} replicas")
