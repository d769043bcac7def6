"""The one-line-per-event console of `cmon local`: the services' structured log records
(`telemetry.LogEvent`) as short lines on stdout, from any thread."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO


class Console:
    """One line per event on stdout, from any thread."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._lock = threading.Lock()

    def say(self, kind: str, text: str) -> None:
        line = f"{time.strftime('%H:%M:%S')}  {kind:<9} {text}"
        with self._lock:
            print(line, file=self._out, flush=True)


class EventLines(logging.Handler):
    """Turns the services' structured log records (telemetry.LogEvent) into short lines."""

    def __init__(self, console: Console) -> None:
        super().__init__(logging.INFO)
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self._format(record)
        except Exception:  # a display problem must never break a handler
            return
        if text is not None:
            self._console.say(*text)

    @staticmethod
    def _format(record: logging.LogRecord) -> tuple[str, str] | None:
        from functions.core.telemetry import LogEvent

        def get(name: str) -> str:
            value = getattr(record, name, None)
            return "" if value is None else str(value)

        message = record.getMessage()
        short = get("workflow_id")[:8]
        if message == LogEvent.CANDLE_CLOSED:
            count, close = get("monitors_count"), get("close_time")
            return "candle", f"{get('stream')} closed {close[:10]} {close[11:19]} -> {count} workflow(s)"
        if message == LogEvent.ANALYSIS_COMPLETE:
            return "analysis", (
                f"workflow {short} {get('decision')} (confidence {get('confidence')}, "
                f"{get('tokens')} tokens, llm {get('latency_ms')} ms) -> {get('outcome')}"
            )
        if message == LogEvent.DECISION_RECORDED:
            reason = f" ({get('reason')})" if get("reason") else ""
            source = " [paper]" if get("source") == "paper" else ""
            return "position", f"workflow {short} {get('action')}{source} -> {get('outcome')}{reason}"
        if message == LogEvent.WORKFLOW_STARTED:
            return "started", f"workflow {short} (via {get('via')})"
        if message == LogEvent.WORKFLOW_STOPPED:
            return "stopped", f"workflow {short}: {get('reason')}"
        if message == LogEvent.ERROR:
            who = short or get("signal_id")[:8]
            streak = f", {get('consecutive_errors')} in a row" if get("consecutive_errors") else ""
            return "error", f"{who} {get('error_kind')}{streak}: {get('error_message')[:120]}"
        if record.levelno >= logging.WARNING:
            return "warning", message
        return None
