"""IBKR historical-data pacing: a process-wide throttle that keeps every request inside IBKR's limits.

Rules (IBKR's, with the window lengths configurable so tests can shorten them):
- at most `max_requests` historical requests in any rolling `window_s` (default 60 per 600 s);
- never the identical request (same contract, end, duration, bar size, data type) within `identical_s` (15 s);
- at most `per_contract` requests for one contract within `per_contract_window_s` (5 per 2 s).
Each request reserves the earliest instant that satisfies all three (plus `margin_s` for network jitter);
reservations are handed out in order, so the schedule is correct for any number of threads or event loops.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class PacingRules:
    """IBKR's historical-data pacing limits (seconds)."""

    max_requests: int = 60
    window_s: float = 600.0
    identical_s: float = 15.0
    per_contract: int = 5
    per_contract_window_s: float = 2.0
    margin_s: float = 0.25  # absorbs network and gateway jitter; negligible against the windows

    @classmethod
    def from_env(cls) -> PacingRules:
        """The rolling budget from the settings TT_IB_MAX_REQUESTS and TT_IB_WINDOW_S (default 60 per 600 s)."""
        from tt_resources.config import settings

        env = settings()
        return cls(max_requests=env.tt_ib_max_requests, window_s=env.tt_ib_window_s)


class PacingThrottle:
    """Hands out send times that respect `rules`; `reserve` says how long to wait before sending."""

    def __init__(self, rules: PacingRules | None = None, clock: Callable[[], float] = time.monotonic):
        self.rules = rules or PacingRules()
        self._clock = clock
        self._lock = threading.Lock()
        self._sent: deque[float] = deque()
        self._by_contract: defaultdict[Hashable, deque[float]] = defaultdict(deque)
        self._identical: dict[Hashable, float] = {}

    def reserve(self, request: Hashable, contract: Hashable) -> float:
        """Reserve the next allowed send time for `request` on `contract`; seconds from now (>= 0)."""
        r = self.rules
        with self._lock:
            now = self._clock()
            slot = max(now, self._sent[-1] if self._sent else now)
            if len(self._sent) >= r.max_requests:
                slot = max(slot, self._sent[-r.max_requests] + r.window_s + r.margin_s)
            mine = self._by_contract[contract]
            if len(mine) >= r.per_contract:
                slot = max(slot, mine[-r.per_contract] + r.per_contract_window_s + r.margin_s)
            if request in self._identical:
                slot = max(slot, self._identical[request] + r.identical_s + r.margin_s)
            self._sent.append(slot)
            mine.append(slot)
            self._identical[request] = slot
            self._forget(now)
            return slot - now

    async def wait(self, request: Hashable, contract: Hashable) -> float:
        """Reserve a slot and sleep until it; returns the seconds waited."""
        delay = self.reserve(request, contract)
        if delay > 0:
            await asyncio.sleep(delay)
        return delay

    def _forget(self, now: float) -> None:
        """Drop history no rule can look at any more (keeps memory bounded)."""
        r = self.rules
        while len(self._sent) > r.max_requests and self._sent[0] < now - r.window_s:
            self._sent.popleft()
        for key in [k for k, t in self._identical.items() if t < now - r.identical_s]:
            del self._identical[key]
        for key in [k for k, q in self._by_contract.items() if q[-1] < now - r.per_contract_window_s]:
            del self._by_contract[key]


@cache
def shared_throttle(rules: PacingRules) -> PacingThrottle:
    """The one throttle per rule set in this process: every IbkrSource with these rules shares it."""
    return PacingThrottle(rules)
