"""When an ended container runs again: the restart policy and kubelet's exponential back-off. Pure."""

from __future__ import annotations

from dataclasses import dataclass

MAX_EXPONENT = 60  # beyond this the cap has long been reached; keeps the power finite


@dataclass(frozen=True)
class BackOff:
    """Seconds: the first delay, its cap, and how long a run must last to forget earlier crashes."""

    base: float = 10.0
    maximum: float = 300.0
    reset_after: float = 600.0


def should_restart(policy: str, exit_code: int | None) -> bool:
    """Always restarts; OnFailure restarts unless the exit was clean (an unknown exit is not); Never does not."""
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def restart_delay(crashes: int, base: float, maximum: float) -> float:
    """The wait before the next start after `crashes` ended runs in a row: none after the
    first, then `base`, doubling each time, never more than `maximum`."""
    if crashes <= 1:
        return 0.0
    return min(base * 2 ** min(crashes - 2, MAX_EXPONENT), maximum)


def crashes_after_run(crashes: int, ran_for: float, backoff: BackOff) -> int:
    """The count of ended runs in a row, including one that just ended after `ran_for` seconds."""
    return 1 if ran_for >= backoff.reset_after else crashes + 1
