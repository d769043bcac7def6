"""CloudWatch metrics as Embedded Metric Format (EMF) JSON lines.

The feed is a long-running container, not a Lambda, so Powertools' per-invocation
flush does not fit: counters are aggregated in memory and written as one EMF line per
interval (and on shutdown). CloudWatch Logs extracts the metrics from the log stream;
no agent, no API call on the hot path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import TextIO

from functions.core.telemetry import NAMESPACE, SERVICE, STAGE_DIMENSION, MetricName

log = logging.getLogger(__name__)

# EMF accepts at most 100 values per metric in one line.
_MAX_VALUES = 100


class FeedMetrics:
    def __init__(
        self, stage: str, *, out: TextIO | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.stage = stage
        self._out = out
        self._clock = clock
        self._counts: Counter[MetricName] = Counter()
        self._lags: list[float] = []
        self.totals: Counter[MetricName] = Counter()
        self.malformed_frames = 0
        # Sampled at each flush: every stream's lag (seconds overdue), so the dashboard's
        # Maximum is the worst stream and one quiet stream is visible without a restart.
        self.stream_lags: Callable[[], list[float]] | None = None

    def incr(self, name: MetricName, value: int = 1) -> None:
        self._counts[name] += value
        self.totals[name] += value

    def candle_published(self, lag_ms: float, *, backfill: bool) -> None:
        self.incr(MetricName.FEED_CANDLES_BACKFILLED if backfill else MetricName.FEED_CANDLES_PUBLISHED)
        self._lags.append(lag_ms)
        if len(self._lags) >= _MAX_VALUES:
            self.flush()

    def duplicate_dropped(self) -> None:
        self.incr(MetricName.FEED_DUPLICATES_DROPPED)

    def reconnected(self) -> None:
        self.incr(MetricName.FEED_RECONNECTS)

    def malformed(self) -> None:
        # A log counter, not a CloudWatch metric: the catalogue has no name for it and a
        # malformed frame from Binance is an anomaly to read in the logs, not to alarm on.
        self.malformed_frames += 1

    def process_started(self) -> None:
        self.incr(MetricName.FEED_PROCESS_STARTS)

    def emf_line(self, stream_lags: list[float] | None = None) -> str | None:
        """The pending values as one EMF document, or None when there is nothing to say."""
        if not self._counts and not self._lags and not stream_lags:
            return None
        document: dict[str, object] = {
            "_aws": {
                "Timestamp": int(self._clock() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": NAMESPACE,
                        "Dimensions": [["service", STAGE_DIMENSION]],
                        "Metrics": [
                            *({"Name": str(name), "Unit": "Count"} for name in self._counts),
                            *(
                                [{"Name": str(MetricName.FEED_PUBLISH_LAG_MS), "Unit": "Milliseconds"}]
                                if self._lags
                                else []
                            ),
                            *(
                                [{"Name": str(MetricName.FEED_STREAM_LAG_S), "Unit": "Seconds"}]
                                if stream_lags
                                else []
                            ),
                        ],
                    }
                ],
            },
            "service": SERVICE,
            STAGE_DIMENSION: self.stage,
        }
        for name, value in self._counts.items():
            document[str(name)] = value
        if self._lags:
            document[str(MetricName.FEED_PUBLISH_LAG_MS)] = [round(v, 3) for v in self._lags]
        if stream_lags:
            document[str(MetricName.FEED_STREAM_LAG_S)] = [round(v, 3) for v in stream_lags]
        return json.dumps(document, separators=(",", ":"))

    def flush(self) -> None:
        lags = self.stream_lags() if self.stream_lags is not None else []
        lines = [self.emf_line(lags[:_MAX_VALUES])]
        self._counts.clear()
        self._lags.clear()
        # More than 100 streams: the rest of the values in further lines (EMF's limit).
        for start in range(_MAX_VALUES, len(lags), _MAX_VALUES):
            lines.append(self.emf_line(lags[start : start + _MAX_VALUES]))
        if self._out is None:
            return
        for line in lines:
            if line is not None:
                print(line, file=self._out, flush=True)

    async def run(self, interval_s: float) -> None:
        """Flush every `interval_s` until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(interval_s)
                self.flush()
        finally:
            self.flush()


def stdout_metrics(stage: str, *, to_stderr: bool = False) -> FeedMetrics:
    return FeedMetrics(stage, out=sys.stderr if to_stderr else sys.stdout)
