"""`cmon replay`: the real pipeline over historical candles, to preview a change.

What runs is what `cmon demo` runs (`stack.local_services`): moto's EventBridge bus and
SQS queues, the trigger runner calling the real fan-out and worker handlers, the real
httpx llm-proxy client (over HTTP to the stub, or to `--llm-proxy-url`), and the SQL
functions that claim, record and apply — on a throw-away embedded Postgres unless
`--database-url` is given. The only thing that differs is the clock: each candle is
played at its own close time (+1 s, as a live close arrives), through the `Database`
clock (`cmon.now` per transaction) and the fan-out's clock port, so staleness, claims
and leases judge the replayed market as they judged the live one.

Input (detected): Binance REST klines (the array-of-12 JSON of `/api/v3/klines` and
`/fapi/v1/klines`; they carry no symbol or interval, so `--symbol` and `--interval` are
required), or JSON lines of `CandleClosed` details (then `--symbol`/`--interval` filter).
`--from-binance SYMBOL INTERVAL START END` downloads them through `BINANCE_REST_URL`
with the feed's own paged, rate-limit-aware klines client.

A scenario (JSON, optional) says which signals and positions exist when and scripts the
stub llm-proxy per candle index (0 = the stream's first candle):

    {"max_reanalyses": 10,
     "stub": {"latency_ms": 0, "prompt_tokens": 950, "completion_tokens": 150},
     "signals": [{"name": "breakout", "symbol": "BTCUSDT", "interval": "1m", "at": 0,
                  "answers": {"0": "wait", "2": {"decision": "enter_trade", "confidence": 0.7}},
                  "position_answers": {"4": {"action": "adjust_sl", "params": {"stop_loss": "101"}},
                                       "6": "close"}}],
     "positions": [{"name": "swing", "symbol": "BTCUSDT", "interval": "1m", "at": 1,
                    "side": "long", "entry": "100", "contracts": "1",
                    "stop_loss": "95", "take_profit": "110", "answers": {"3": "hold"}}]}

A signal exists from candle `at` on (its initial analysis is a `wait`, so monitoring
starts at that candle's close); `answers` are its setup decisions, `position_answers`
the management of the position its `enter_trade` opens. An answer is the stub's: a
decision/action string or an object (`confidence`, `reasoning`, `trade_plan`, `params`,
`usage`). Unscripted candles get the stub's deterministic heuristic. The default scenario
is one `wait` signal per stream at its first candle. The same candles and the same
scenario give the same analyses and decisions on every run.

Files: `replay_input.py` parses the candles and the scenario, `replay_entities.py` writes
the scenario's rows at their candle and scripts the stub, this module plays the candles
through the stack, `replay_summary.py` reads back what happened (through
`functions.adapters.operations.ReplayReads`) and compares two runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from functions.core.contracts import CandleClosed, Market
from functions.core.errors import CmonError, InvalidInput
from functions.local.replay_entities import Tracked, create_entities, script, track
from functions.local.replay_input import (
    CandleInput,
    ReplayError,
    Scenario,
    StreamKey,
    download_candles,
    load_candles,
    load_scenario,
)
from functions.local.replay_summary import compare, human_compare, human_summary, summarise

if TYPE_CHECKING:
    from functions.local.stack import Services

# The command's public face (`cmon report` and the tests load their input through it).
__all__ = [
    "ReplayClock",
    "ReplayError",
    "ReplayRun",
    "Scenario",
    "add_arguments",
    "download_candles",
    "load_candles",
    "load_scenario",
    "replay",
    "run",
]

REPLAY_LAG = timedelta(seconds=1)  # a live close arrives 0.2-2 s after the candle's close
DEFAULT_USD_PER_1K = 0.0005  # the cost projection's $0.50 per million tokens
WEBHOOK_SECRET = "local-replay-webhook-secret"  # noqa: S105 - a throw-away local secret
ADMIN_KEY = "local-replay-admin-key"


# -- running ----------------------------------------------------------------------------------


class ReplayClock:
    """The replay's "now": set per candle, read by every transaction and the fan-out."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@dataclass
class ReplayRun:
    data: CandleInput
    scenario: Scenario
    llm_proxy: str
    user_id: uuid.UUID = field(default_factory=uuid.uuid4)
    tracked: list[Tracked] = field(default_factory=list)
    index_of: dict[tuple[StreamKey, datetime], int] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def streams(self) -> list[StreamKey]:
        return sorted({(c.symbol, c.interval) for c in self.data.candles})

    def stream_candles(self, stream: StreamKey) -> list[CandleClosed]:
        return [c for c in self.data.candles if (c.symbol, c.interval) == stream]


def _play(run: ReplayRun, services: Services, clock: ReplayClock) -> None:
    from functions.core.contracts import DETAIL_TYPE, EVENT_SOURCE

    runner = services.runner()
    clock.now = run.data.candles[0].open_time
    track(run, services)

    counters: Counter[StreamKey] = Counter()
    for candle in run.data.candles:
        stream = (candle.symbol, candle.interval)
        index = counters[stream]
        counters[stream] += 1
        run.index_of[(stream, candle.close_time)] = index
        clock.now = candle.open_time + timedelta(milliseconds=1)
        create_entities(run, services, candle, index)
        script(run, services, candle, index)
        clock.now = candle.close_time + REPLAY_LAG
        response = services.events.put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": DETAIL_TYPE,
                    "Detail": json.dumps(candle.to_detail()),
                    "EventBusName": services.aws.bus_name,
                }
            ]
        )
        if response["FailedEntryCount"]:
            raise ReplayError(f"the local bus refused candle {candle.close_time.isoformat()}")
        runner.run_until_idle()


# -- the command ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--candles", type=Path, metavar="FILE", help="Binance REST klines JSON or CandleClosed JSON lines"
    )
    source.add_argument(
        "--from-binance",
        nargs=4,
        metavar=("SYMBOL", "INTERVAL", "START", "END"),
        help="download klines through $BINANCE_REST_URL (START/END: ISO time or epoch ms)",
    )
    source.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("A.json", "B.json"),
        help="compare two --json outputs over the same candles",
    )
    parser.add_argument("--symbol", help="the symbol of REST klines (required for them); a filter otherwise")
    parser.add_argument(
        "--interval", help="the interval of REST klines (required for them); a filter otherwise"
    )
    parser.add_argument("--market", choices=["spot", "usdm"], default="spot", help="market of REST klines")
    parser.add_argument(
        "--scenario", type=Path, metavar="FILE", help="signals, positions and the stub's script"
    )
    parser.add_argument(
        "--llm-proxy-url", help="a real llm-proxy (key from $LLM_PROXY_API_KEY); default: the stub"
    )
    parser.add_argument(
        "--database-url", help="replay into this Postgres (default: a throw-away embedded one)"
    )
    parser.add_argument(
        "--usd-per-1k-tokens",
        type=float,
        default=DEFAULT_USD_PER_1K,
        help=f"price for the cost estimate (default {DEFAULT_USD_PER_1K})",
    )
    parser.add_argument(
        "--save-candles", type=Path, metavar="FILE", help="also write the candles as JSON lines"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--report", type=Path, metavar="FILE.html", help="write the HTML report of this run")
    parser.add_argument("--verbose", action="store_true", help="also print the handlers' JSON logs (stderr)")


@contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    from functions.local.stack import handler_logs

    with handler_logs(logging.INFO if verbose else logging.CRITICAL):
        yield


def replay(
    data: CandleInput,
    scenario: Scenario,
    *,
    database_url: str | None = None,
    llm_proxy_url: str | None = None,
    usd_per_1k: float = DEFAULT_USD_PER_1K,
    verbose: bool = False,
    report: Path | None = None,
) -> dict[str, Any]:
    """Play the candles through the stack and return the summary (and write the report)."""
    from functions.local.stack import local_services

    started = time.monotonic()
    clock = ReplayClock(data.candles[0].open_time)
    with (
        local_services(
            database_url=database_url,
            llm_proxy_url=llm_proxy_url,
            webhook_secret=WEBHOOK_SECRET,
            admin_api_key=ADMIN_KEY,
            clock=clock,
            max_reanalyses=scenario.max_reanalyses,
            llm_proxy_max_attempts=1,
            llm_proxy_timeout_s=30,
        ) as services,
        _quiet(verbose),
    ):
        if services.stub is not None:
            services.stub.configure(**scenario.stub.model_dump())
        run = ReplayRun(data, scenario, "stub" if services.stub is not None else str(llm_proxy_url))
        _play(run, services, clock)
        run.wall_s = time.monotonic() - started
        summary = summarise(run, services.db, usd_per_1k)
        if report is not None:
            from functions.local.report import gather, write_report

            trader_ids = sorted({t.trader_id for t in run.tracked}, key=str)
            model = gather(
                services.db, trader_ids=trader_ids, candles=data.candles, title=f"cmon replay — {data.source}"
            )
            write_report(model, report)
    return summary


def run(args: argparse.Namespace) -> int:
    try:
        if args.compare:
            a, b = (_read_json(p) for p in args.compare)
            result = compare(a, b)
            print(json.dumps(result, indent=2) if args.json else human_compare(result))
            return 0
        for target in (args.report, args.save_candles):
            if target is not None and not target.resolve().parent.is_dir():
                raise InvalidInput(f"{target}: its folder does not exist")
        if args.candles is not None:
            data = load_candles(
                args.candles, symbol=args.symbol, interval=args.interval, market=Market(args.market)
            )
        else:
            symbol, interval, start, end = args.from_binance
            data = download_candles(symbol, interval, start, end)
        scenario = load_scenario(args.scenario)
        if args.save_candles is not None:
            args.save_candles.write_text("".join(json.dumps(c.to_detail()) + "\n" for c in data.candles))
        summary = replay(
            data,
            scenario,
            database_url=args.database_url,
            llm_proxy_url=args.llm_proxy_url,
            usd_per_1k=args.usd_per_1k_tokens,
            verbose=args.verbose,
            report=args.report,
        )
    except CmonError as e:
        print(f"cmon replay: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str) if args.json else human_summary(summary))
    return 0


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InvalidInput(f"cannot read {path} as JSON: {e}") from e
