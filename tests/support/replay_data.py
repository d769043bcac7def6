"""Candles and a scenario for replay tests: a small market with a breakout, a stop and a
target within reach, written as Binance REST klines (what `--candles` and the fake
Binance REST serve)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CLOSES = ["100", "100.1", "100.5", "101.0", "100.8", "101.5", "102.3", "101.0", "99.5", "100.2"]
START_MS = 1761386400000  # 2025-10-25T10:00:00Z


def kline_rows(
    closes: list[str] = CLOSES, start_ms: int = START_MS, step_ms: int = 60_000
) -> list[list[Any]]:
    rows: list[list[Any]] = []
    previous = float(closes[0])
    for i, text in enumerate(closes):
        close = float(text)
        high, low = max(previous, close) + 0.2, min(previous, close) - 0.2
        open_ms = start_ms + i * step_ms
        rows.append([
            open_ms, f"{previous:.2f}", f"{high:.2f}", f"{low:.2f}", f"{close:.2f}", "10.0",
            open_ms + step_ms - 1, "1000", 50, "5", "500", "0",
        ])  # fmt: skip
        previous = close
    return rows


def write_klines(path: Path, rows: list[list[Any]] | None = None) -> Path:
    path.write_text(json.dumps(rows or kline_rows(), indent=1))
    return path


SCENARIO: dict[str, Any] = {
    "max_reanalyses": 10,
    "signals": [
        {
            "name": "breakout",
            "at": 0,
            "answers": {
                "0": "wait",
                "1": {"decision": "wait", "confidence": 0.55},
                "2": {"decision": "enter_trade", "confidence": 0.72},
            },
            "position_answers": {
                "3": "hold",
                "4": {"action": "adjust_sl", "params": {"stop_loss": "100.9"}},
                "5": {"action": "adjust_tp", "params": {"take_profit": "103"}},
                "6": {"action": "reduce", "params": {"fraction": 0.5}},
            },
        }
    ],
    "positions": [
        {
            "name": "swing", "at": 1, "side": "short", "entry": "100.1",
            "stop_loss": "102", "take_profit": "99",
            "answers": {"2": "hold", "3": {"action": "adjust_sl", "params": {"stop_loss": "103"}}},
        }
    ],
}  # fmt: skip


def write_scenario(path: Path, scenario: dict[str, Any] | None = None) -> Path:
    path.write_text(json.dumps(scenario or SCENARIO))
    return path
