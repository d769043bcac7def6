"""Fan-out use case: one closed candle → one job per active workflow on its stream.

A stream is (market, symbol, interval): a spot feed and a USD-M feed may publish on the
same bus, and each candle drives only the workflows of its own market.

The database query already leaves out workflows that claimed this candle, so a
redelivered event mostly enqueues nothing; whatever slips through is refused by the
claim in the worker. A candle older than `stale_intervals` intervals is not analysed:
the market has moved on and the next candle is coming. "Now" comes from the `clock`
port (a replay plays old candles at their own time).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from functions.core import intervals
from functions.core.contracts import AnalysisJob, CandleClosed, JobKind
from functions.core.telemetry import SERVICE, LogEvent, MetricName
from functions.services.ports import Clock, JobQueue, Metrics, Repository

log = logging.getLogger(f"{SERVICE}.fanout")


@dataclass(frozen=True)
class FanOutResult:
    workflows: int
    jobs_sent: int
    stale: bool = False


def is_stale(candle: CandleClosed, now: datetime, stale_intervals: int) -> bool:
    age = now - candle.close_time
    return age > timedelta(milliseconds=intervals.interval_ms(candle.interval) * stale_intervals)


def fan_out(
    candle: CandleClosed,
    *,
    repo: Repository,
    queue: JobQueue,
    metrics: Metrics,
    clock: Clock,
    stale_intervals: int,
) -> FanOutResult:
    metrics.count(MetricName.CANDLES_RECEIVED)
    if is_stale(candle, clock(), stale_intervals):
        metrics.count(MetricName.STALE_CANDLES_SKIPPED)
        log.warning(
            "Stale candle skipped",
            extra={
                "market": candle.market.value,
                "symbol": candle.symbol,
                "interval": candle.interval,
                "close_time": candle.close_time.isoformat(),
            },
        )
        return FanOutResult(workflows=0, jobs_sent=0, stale=True)

    workflows = repo.workflows_for_candle(candle)
    jobs = [
        AnalysisJob(kind=JobKind.CANDLE, workflow_id=wf_id, workflow_type=wf_type, candle=candle)
        for wf_id, wf_type in workflows
    ]
    sent = queue.send_jobs(jobs) if jobs else 0
    metrics.count(MetricName.JOBS_ENQUEUED, sent)
    log.info(
        LogEvent.CANDLE_CLOSED,
        extra={
            "market": candle.market.value,
            "stream": f"{candle.symbol}-{candle.interval}",
            "symbol": candle.symbol,
            "interval": candle.interval,
            "close_time": candle.close_time.isoformat(),
            "monitors_count": len(workflows),
            "source": candle.source.value,
        },
    )
    return FanOutResult(workflows=len(workflows), jobs_sent=sent)
