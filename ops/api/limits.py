"""Per-token request limits of the API and the MCP tools."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """At most `per_minute` requests per key in any sliding minute."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._seen: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> int:
        """0 when the request may go ahead (and it is counted), else the seconds to wait."""
        now = self._clock()
        with self._lock:
            recent = [t for t in self._seen.get(key, []) if now - t < 60.0]
            if len(recent) >= self._per_minute:
                self._seen[key] = recent
                return max(1, int(60.0 - (now - recent[0])) + 1)
            recent.append(now)
            self._seen[key] = recent
            return 0
