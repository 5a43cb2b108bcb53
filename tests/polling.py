"""Waiting for eventual states in integration tests: poll with a deadline, fail naming what never came."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], timeout: float = 90.0, interval: float = 0.5,
             what: str = "condition") -> Any:
    """Call `predicate` until it returns something truthy and return that; fail after `timeout` seconds
    with its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last: {value!r}"
        time.sleep(interval)


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 60.0, interval: float = 0.2,
                     what: str = "condition") -> Any:
    """Await `check()` until it returns something truthy and return that; fail after `timeout` seconds
    with its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last: {value!r}"
        await asyncio.sleep(interval)
