"""Closed-candle extraction throughput, ours beside cryptofeed's Binance kline handler.

Run: `python -m bench.bench_feed [--frames 200000] [--repeat 3]`

The input replicates the recorded frames in `tests/events/binance` (the real combined
frames recorded by cryptofeed and the documented kline message as the template) into
N frames of 20 symbols, in two mixes: "live" (1 closing frame in 30, what a 1m spot
stream looks like with an update every 2 s) and "all closed" (the worst case, and what
the backfill after a reconnect pushes). Each implementation runs on one core, in this
process; the implementations take turns, and the best of `--repeat` rounds is shown,
with our parser's speed-up over cryptofeed and the load average. Our closed frames take
the compiled decoder when it is built (feed_service/_kline.c); "Python only" is the
parser without it (msgspec decodes straight into typed fields); the "fallback" row is
the orjson + dict path every other frame takes.

`--floor` adds three lower bounds of what a Python closed-candle path can reach (why
the parser's closed path is in C, issue 13), none of them a parser: msgspec's typed decode alone; the
decode plus the five `Decimal`s the contract's prices are; and the contract's checks on
string prices with no `Decimal` and no pydantic model at all (a small msgspec struct
out, the bracketing compared as floats), the "different price type" a redesign would
have. Each skips the compact open frames as the parser does.

cryptofeed is optional (`pip install cmon[bench]`). Its `BinanceFeed` fetches
`exchangeInfo` when built, which would need the network, so its symbol cache is seeded
first, then raw frame strings are fed to `message_handler` as its connection would.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import orjson

from feed_service import binance
from feed_service.binance import FrameKind, KlineParser
from feed_service.publisher import MemoryPublisher
from feed_service.router import CandleRouter
from functions.core import intervals
from functions.core.contracts import Market

EVENTS = Path(__file__).resolve().parents[1] / "tests" / "events" / "binance"
SYMBOLS = [
    f"{base}USDT"
    for base in (
        "BTC",
        "ETH",
        "BNB",
        "SOL",
        "XRP",
        "ADA",
        "DOGE",
        "TRX",
        "DOT",
        "LINK",
        "LTC",
        "BCH",
        "AVAX",
        "XLM",
        "UNI",
        "ATOM",
        "ETC",
        "FIL",
        "APT",
        "NEAR",
    )
]
BASE_MS = 1633998480000


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_frames(count: int, closed_every: int) -> list[str]:
    """`count` combined frames; every `closed_every`-th update of a stream closes it."""
    template = json.loads((EVENTS / "spot_kline_doc_example.json").read_text())
    recorded = [
        line
        for line in (EVENTS / "spot_combined_kline_real_cryptofeed.jsonl").read_text().splitlines()
        if line.strip()
    ]
    frames: list[str] = []
    update = dict.fromkeys(SYMBOLS, 0)
    candle = dict.fromkeys(SYMBOLS, 0)
    i = 0
    while len(frames) < count:
        # Keep the real recorded frames in the mix (open updates of other symbols).
        if i % 50 == 49:
            frames.append(recorded[i % len(recorded)])
            i += 1
            continue
        symbol = SYMBOLS[i % len(SYMBOLS)]
        i += 1
        update[symbol] += 1
        closed = update[symbol] % closed_every == 0
        raw = copy.deepcopy(template)
        start = BASE_MS + candle[symbol] * 60_000
        p = 100 + candle[symbol] % 50 + update[symbol] % 7 / 100
        raw["s"] = symbol
        raw["E"] = start + 1000
        raw["k"].update(
            {
                "t": start,
                "T": intervals.close_ms(start, "1m"),
                "s": symbol,
                "i": "1m",
                "o": f"{p:.8f}",
                "c": f"{p + 0.5:.8f}",
                "h": f"{p + 1:.8f}",
                "l": f"{p - 1:.8f}",
                "v": f"{update[symbol]}.5",
                "n": update[symbol],
                "x": closed,
            }
        )
        frames.append(
            json.dumps({"stream": f"{symbol.lower()}@kline_1m", "data": raw}, separators=(",", ":"))
        )
        if closed:
            candle[symbol] += 1
    return frames


def bench_ours(frames: list[str]) -> int:
    parser = KlineParser(Market.SPOT)
    closed = 0
    for frame in frames:
        if parser.parse(frame).kind is FrameKind.CANDLE_CLOSED:
            closed += 1
    return closed


def bench_ours_python(frames: list[str]) -> int:
    """The parser without its compiled decoder: what an install without a C compiler runs."""
    parser = KlineParser(Market.SPOT, compiled=False)
    closed = 0
    for frame in frames:
        if parser.parse(frame).kind is FrameKind.CANDLE_CLOSED:
            closed += 1
    return closed


def bench_ours_no_shortcut(frames: list[str]) -> int:
    """Every frame decoded by orjson and checked as a dict: no open-frame shortcut and
    no typed decoder (the parser's path for the frames msgspec does not decide)."""
    parser = KlineParser(Market.SPOT)
    closed = 0
    loads = orjson.loads
    for frame in frames:
        if parser.parse_message(loads(frame)).kind is FrameKind.CANDLE_CLOSED:
            closed += 1
    return closed


def bench_ours_pipeline(frames: list[str]) -> int:
    """Parse + dedup/gap router + in-memory publisher: what a connection does per frame."""
    parser = KlineParser(Market.SPOT)
    sink = MemoryPublisher()
    router = CandleRouter(sink)

    async def run() -> int:
        for frame in frames:
            parsed = parser.parse(frame)
            if parsed.kind is FrameKind.CANDLE_CLOSED and parsed.candle is not None:
                await router.on_candle(parsed.candle)
        return len(sink.candles)

    return asyncio.run(run())


def _closed_klines(frames: list[str]) -> list[str]:
    return [f for f in frames if not ('"x":false' in f and '"e":"kline"' in f)]


def floor_decode(frames: list[str]) -> int:
    """msgspec's typed decode of every frame the open-frame shortcut lets through."""
    decode = binance._typed_decode
    closed = 0
    for frame in _closed_klines(frames):
        decoded = decode(frame)
        kline = decoded.k if decoded.data is msgspec.UNSET else decoded.data.k
        closed += kline is not msgspec.UNSET and kline.x
    return closed


def floor_decimals(frames: list[str]) -> int:
    """The decode plus the five `Decimal`s of a closed candle, nothing checked or built."""
    decode, dec = binance._typed_decode, Decimal
    closed = 0
    for frame in _closed_klines(frames):
        decoded = decode(frame)
        k = decoded.k if decoded.data is msgspec.UNSET else decoded.data.k
        if k is not msgspec.UNSET and k.x:
            dec(k.o), dec(k.h), dec(k.l), dec(k.c), dec(k.v)
            closed += 1
    return closed


# Plain non-negative decimals that are their own canonical form (what the wire would
# carry as-is): anything else would take the `Decimal` path.
_PLAIN_PRICES = re.compile(r"(?:(?:0|[1-9][0-9]*)(?:\.[0-9]+)?,){4}(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")


class _StringCandle(msgspec.Struct, frozen=True, gc=False):
    market: Market
    symbol: str
    interval: str
    open_ms: int
    close_ms: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    trades: int


def floor_string_prices(frames: list[str]) -> int:
    """The contract's checks with string prices out: no `Decimal`, no pydantic model.

    Float bracketing is exact only when no two prices round to one double (a real path
    would compare those as `Decimal`s); the open-frame shortcut, the symbol set and the
    decoder are the parser's."""
    decode, plain, unset = binance._typed_decode, _PLAIN_PRICES.fullmatch, msgspec.UNSET
    symbols, supported, market = {*SYMBOLS}, frozenset(intervals.SUPPORTED), Market.SPOT
    closed = 0
    for frame in _closed_klines(frames):
        decoded = decode(frame)
        k = decoded.k if decoded.data is unset else decoded.data.k
        if k is unset or not k.x:
            continue
        if k.s not in symbols or k.i not in supported or k.t >= k.T:
            raise ValueError("outside the contract")
        o, hi, lo, c, v = k.o, k.h, k.l, k.c, k.v
        if plain(f"{o},{hi},{lo},{c},{v}") is None:
            raise ValueError("not a plain price")
        fo, fh, fl, fc = float(o), float(hi), float(lo), float(c)
        if not (fl <= fo and fl <= fc and fh >= fo and fh >= fc):
            raise ValueError("high/low must bracket open and close")
        _StringCandle(market, k.s, k.i, k.t, k.T, o, hi, lo, c, v, k.n)
        closed += 1
    return closed


def make_cryptofeed() -> Callable[[list[str]], int] | None:
    try:
        from cryptofeed.defines import CANDLES
        from cryptofeed.exchanges import Binance
        from cryptofeed.symbols import Symbols
    except ImportError:
        return None
    normalized = {f"{s[:-4]}-USDT": s for s in SYMBOLS}
    Symbols.set(
        Binance.id,
        normalized,
        {
            "tick_size": dict.fromkeys(normalized, "0.01"),
            "instrument_type": dict.fromkeys(normalized, "spot"),
        },
    )
    count = [0]

    async def on_candle(candle: Any, receipt_timestamp: float) -> None:
        count[0] += 1

    feed = Binance(
        symbols=list(normalized), channels=[CANDLES], callbacks={CANDLES: on_candle}, candle_closed_only=True
    )

    def run(frames: list[str]) -> int:
        count[0] = 0

        async def go() -> None:
            handler = feed.message_handler
            ts = time.time()
            for frame in frames:
                await handler(frame, None, ts)

        asyncio.run(go())
        return count[0]

    return run


def measure(
    contenders: list[tuple[str, Callable[[list[str]], int]]], frames: list[str], repeat: int
) -> dict[str, tuple[float, int]]:
    """Best of `repeat` runs per contender, the contenders taking turns within each round:
    on a shared machine a burst of load then costs every contender alike instead of
    whichever happened to be running."""
    best: dict[str, tuple[float, int]] = {}
    for _ in range(repeat):
        for name, fn in contenders:
            gc.collect()  # the garbage of the previous contender is not this one's to pay
            start = time.perf_counter()
            closed = fn(frames)
            seconds = time.perf_counter() - start
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, closed)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--floor", action="store_true", help="add the lower bounds of the closed path (see the docstring)"
    )
    args = parser.parse_args(argv)

    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores (one used), "
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}"
    )
    compiled = KlineParser(Market.SPOT).compiled
    print(
        "cmon KlineParser: "
        + ("compiled decoder (feed_service/_kline.c) first" if compiled else "Python only (no _kline built)")
    )
    contenders: list[tuple[str, Callable[[list[str]], int]]] = [
        ("cmon KlineParser", bench_ours),
        ("cmon KlineParser, Python only", bench_ours_python),
        ("cmon orjson + dict checks (fallback path)", bench_ours_no_shortcut),
        ("cmon parse + router + memory sink", bench_ours_pipeline),
    ]
    if args.floor:
        contenders += [
            ("floor: msgspec typed decode only", floor_decode),
            ("floor: decode + five Decimals", floor_decimals),
            ("floor: checks, string prices, no model", floor_string_prices),
        ]
    cryptofeed_run = make_cryptofeed()
    if cryptofeed_run is None:
        print("cryptofeed not installed (pip install 'cmon[bench]'): comparison skipped")
    else:
        from importlib.metadata import version

        contenders.append((f"cryptofeed {version('cryptofeed')} Binance candles", cryptofeed_run))

    header = f"{'implementation':<44} {'mix':<18} {'frames/s':>12} {'µs/frame':>9} {'closed':>7}"
    print(header)
    print("-" * len(header))
    for mix, every in (("live (1 in 30)", 30), ("all closed", 1)):
        frames = build_frames(args.frames, every)
        results = measure(contenders, frames, args.repeat)
        for name, (seconds, closed) in results.items():
            print(
                f"{name:<44} {mix:<18} {len(frames) / seconds:>12,.0f} "
                f"{seconds / len(frames) * 1e6:>9.2f} {closed:>7}"
            )
        if cryptofeed_run is not None:
            ours, theirs = results[contenders[0][0]][0], results[contenders[-1][0]][0]
            print(f"{'  KlineParser against cryptofeed':<44} {mix:<18} {theirs / ours:>11.2f}x")
    print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
