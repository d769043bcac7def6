"""Binance frames for tests, built from the recorded fixtures in tests/events/binance.

The fixtures are used as templates (key order, field set, types); only the candle's
identity, times, prices and the `x` flag vary, so every frame a test sends has the
shape Binance sends.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from functions.core import intervals

EVENTS = Path(__file__).resolve().parents[2] / "events" / "binance"
# The real recording's candle: a 1m open time, so every 1m/1s step from it is aligned.
BASE_MS = 1633998480000


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def recorded_frames() -> list[str]:
    lines = (EVENTS / "spot_combined_kline_real_cryptofeed.jsonl").read_text().splitlines()
    return [line for line in lines if line.strip()]


def prices(index: int) -> dict[str, str]:
    return {
        "o": f"{100 + index}.10",
        "h": f"{101 + index}.00",
        "l": f"{99 + index}.50",
        "c": f"{100 + index}.50",
    }


def open_ms(index: int, interval: str = "1m", base: int = BASE_MS) -> int:
    return base + index * intervals.interval_ms(interval)


def kline(
    index: int,
    *,
    symbol: str = "BTCUSDT",
    interval: str = "1m",
    closed: bool = True,
    template: str = "spot_kline_doc_example.json",
    base: int = BASE_MS,
    price_index: int | None = None,
) -> dict[str, Any]:
    """The raw kline message of candle number `index` of a stream."""
    frame = copy.deepcopy(load(template))
    start = open_ms(index, interval, base)
    k = frame["k"]
    k.update(prices(index if price_index is None else price_index))
    k.update(
        {
            "t": start,
            "T": intervals.close_ms(start, interval),
            "s": symbol,
            "i": interval,
            "x": closed,
            "n": 10 + index,
            "v": f"{index}.5",
        }
    )
    frame["s"] = symbol
    frame["E"] = intervals.close_ms(start, interval) + (400 if closed else -20_000)
    return frame


def wire_name(symbol: str, interval: str) -> str:
    return f"{symbol.lower()}@kline_{interval}"


def combined(raw: dict[str, Any]) -> dict[str, Any]:
    return {"stream": wire_name(raw["k"]["s"], raw["k"]["i"]), "data": raw}


def dumps(message: Any) -> str:
    return json.dumps(message, separators=(",", ":"))


def rest_row(index: int, *, interval: str = "1m", base: int = BASE_MS) -> list[Any]:
    row = copy.deepcopy(load("rest_api_v3_klines_doc_example.json")[0])
    start = open_ms(index, interval, base)
    p = prices(index)
    row[0], row[6] = start, intervals.close_ms(start, interval)
    row[1], row[2], row[3], row[4] = p["o"], p["h"], p["l"], p["c"]
    row[5], row[8] = f"{index}.5", 10 + index
    return row


def shutdown_frame(*, combined_form: bool = True) -> dict[str, Any]:
    doc = load("spot_server_shutdown_doc_example.json")
    return doc["combined"] if combined_form else doc["raw"]
