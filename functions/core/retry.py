"""The one retry policy: capped exponential backoff with full jitter. Pure (no clock, no
random source, no sleep): the caller draws the random number and does the waiting, so the
arithmetic is tested without time and every retry loop in the codebase shares it.

Used by the llm-proxy client (`functions.adapters.llm_calls`, which adds the caller's
deadline and the server's `Retry-After`), the SQS batch sender
(`functions.adapters.aws.SqsJobQueue`) and the feed service (reconnects in
`feed_service.supervisor`, the REST backfill in `feed_service.binance`, PutEvents retries
in `feed_service.publisher`), each drawing from its own `random.random` (or a test's).

Full jitter, as AWS's "Exponential Backoff and Jitter" names it: the n-th retry waits a
uniform draw in [0, min(cap, base * 2^(n-1))]. Spreading retries over the whole window
keeps a fleet of workers that failed together from retrying together. The same holds for
the feed: after a Binance incident every shard of every task reconnects at once, and a draw
from [cap/2, cap] (what the feed used before) would still bunch them in the upper half of
the window, while Binance counts connection attempts per IP. Full jitter spreads the storm
over the whole window (and lowers the mean wait from 3/4 of the ceiling to 1/2); the cap
bounds the silence after the exchange is back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class BackoffPolicy:
    """Capped exponential backoff with full jitter; `retry_after_cap_s` bounds how long a
    server's `Retry-After` may hold us (None: the server's value is not capped)."""

    base_s: float
    cap_s: float
    retry_after_cap_s: float | None = None

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("backoff base and cap must not be negative")

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed attempt number `attempt` (1 = the first)."""
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        return min(self.cap_s, self.base_s * 2.0 ** min(attempt - 1, 64))

    def delay(self, attempt: int, draw: float, retry_after_s: float | None = None) -> float:
        """The wait after failed attempt `attempt`: `draw` (uniform in [0, 1]) scaled to
        [0, ceiling] — full jitter, exactly. A server's `Retry-After` wins over the draw,
        capped by `retry_after_cap_s`."""
        if retry_after_s is not None:
            wait = max(retry_after_s, 0.0)
            return wait if self.retry_after_cap_s is None else min(wait, self.retry_after_cap_s)
        return self.ceiling(attempt) * min(max(draw, 0.0), 1.0)


def parse_retry_after(raw: str | None, now_epoch_s: float) -> float | None:
    """An HTTP `Retry-After` value as seconds from `now_epoch_s`: delta-seconds or an
    HTTP date; None if absent or junk (NaN, infinity, an unparsable date)."""
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - now_epoch_s
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(seconds, 0.0)
