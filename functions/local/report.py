"""`cmon report`: the weekly review as pictures, in one self-contained HTML file.

The page has no external reference at all (inline SVG drawn here, a few lines of inline
JS for tooltips; no CDN, no fonts, no images), so it opens offline and can be attached
to a review. Charts, each an `<svg class="chart">` whose data points carry
`class="mark"`:

- per stream (symbol, interval): the candles, every analysis and management decision
  marked at its candle, each position's entry and exit, and its stop-loss / take-profit
  drawn as steps that move at each applied action;
- the decision distribution (analyses) and the action distribution (applied / rejected);
- a confidence histogram, and calibration: for the directional calls (`enter_trade`
  on a long plan = up, on a short plan = down; `bad_setup` = not up) the share that the
  next candle proved right, by confidence bucket, against the diagonal;
- tokens per hour against the projection (`functions/core/cost.py`) and its 125 % alarm;
- analysis latency percentiles (p50, p90, p95, p99, max);
- errors by kind, and the workflows auto-disabled.

Data: a window of a live database (`--hours`, `DATABASE_URL`/`--database-url`), with the
candles downloaded through `BINANCE_REST_URL` (or `--candles FILE`; with neither the
price line is drawn from the prices the database recorded), or a replay's own run
(`cmon replay --report FILE.html`).

Modules, one job each: this one is the command and `gather`; the rows come from
`functions.adapters.operations.ReviewReads` (the one place for operator and demo
queries), `report_model` turns them into the charts' numbers (pure), `report_html`
draws the page.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from functions.core.contracts import CandleClosed, Market
from functions.core.errors import CmonError
from functions.local.report_html import render
from functions.local.report_model import build_model

if TYPE_CHECKING:
    from functions.adapters.postgres import Database

__all__ = ["ReportError", "add_arguments", "build_model", "gather", "render", "run", "write_report"]


def gather(
    db: Database,
    *,
    trader_ids: Sequence[UUID] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    candles: Sequence[CandleClosed] | None = None,
    title: str = "cmon report",
) -> dict[str, Any]:
    """The report's data: the rows of these traders (a replay) or of the window (live)."""
    from functions.adapters.operations import ReviewReads

    until = until or datetime.now(UTC)
    since = since or until - timedelta(hours=24)
    reads = ReviewReads(db, traders=trader_ids, since=since, until=until)
    return build_model(
        title=title,
        window=(since, until) if trader_ids is None else None,
        analyses=reads.analyses(),
        decisions=reads.decisions(),
        positions=reads.positions(),
        errors=reads.errors(),
        disabled=reads.auto_disabled(),
        candles=candles or [],
    )


def write_report(model: Mapping[str, Any], path: Path) -> None:
    """Write atomically: a reader never sees half a report."""
    text = render(model)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ReportError(f"cannot write {path}: {e}") from e


class ReportError(CmonError):
    """The report could not be made as asked."""


# -- the command --------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE.html", help="where to write the report"
    )
    parser.add_argument(
        "--hours", type=float, default=168.0, help="the window, ending now (default 168: a week)"
    )
    parser.add_argument("--database-url", help="Postgres URL (default: $DATABASE_URL)")
    parser.add_argument(
        "--candles", type=Path, metavar="FILE", help="candles for the charts (as cmon replay reads)"
    )
    parser.add_argument("--symbol", help="with REST klines in --candles")
    parser.add_argument("--interval", help="with REST klines in --candles")
    parser.add_argument(
        "--no-download", action="store_true", help="do not download candles through $BINANCE_REST_URL"
    )
    parser.add_argument("--json", action="store_true", help="also print the report's data as JSON")


def _download(streams: Iterable[tuple[str, str]], since: datetime, until: datetime) -> list[CandleClosed]:
    from functions.local.replay import download_candles

    candles: list[CandleClosed] = []
    for symbol, interval in streams:
        try:
            data = download_candles(
                symbol, interval, str(int(since.timestamp() * 1000)), str(int(until.timestamp() * 1000))
            )
        except CmonError as e:
            print(f"cmon report: no candles for {symbol} {interval}: {e}", file=sys.stderr)
            continue
        candles += data.candles
    return candles


def run(args: argparse.Namespace) -> int:
    from functions.adapters.postgres import Database
    from functions.local.replay import load_candles

    url = args.database_url or os.environ.get("DATABASE_URL")
    if not url:
        print("cmon report: no database: pass --database-url or set DATABASE_URL", file=sys.stderr)
        return 2
    if args.hours <= 0:
        print("cmon report: --hours must be positive", file=sys.stderr)
        return 2
    if not args.out.resolve().parent.is_dir():
        print(f"cmon report: {args.out}: its folder does not exist", file=sys.stderr)
        return 2
    until = datetime.now(UTC)
    since = until - timedelta(hours=args.hours)
    db = Database(url, application_name="cmon-report")
    try:
        candles: list[CandleClosed] = []
        if args.candles is not None:
            candles = load_candles(
                args.candles, symbol=args.symbol, interval=args.interval, market=Market.SPOT
            ).candles
        model = gather(
            db, since=since, until=until, candles=candles, title=f"cmon report — last {args.hours:g} h"
        )
        if args.candles is None and not args.no_download:
            streams = [(s["symbol"], s["interval"]) for s in model["streams"]]
            if streams:
                candles = _download(streams, since, until)
                model = gather(
                    db,
                    since=since,
                    until=until,
                    candles=candles,
                    title=f"cmon report — last {args.hours:g} h",
                )
        write_report(model, args.out)
    except CmonError as e:
        print(f"cmon report: {e}", file=sys.stderr)
        return 2
    finally:
        db.close()
    summary = {
        "out": str(args.out),
        "streams": len(model["streams"]),
        "analyses": sum(model["decisions"].values()),
    }
    print(
        json.dumps({**summary, "data": model}, indent=2, default=str)
        if args.json
        else f"wrote {args.out}: {summary['streams']} stream(s), {summary['analyses']} analyses"
    )
    return 0
