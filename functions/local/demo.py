"""`cmon demo`: the brief's scenarios, played through the real handlers in under a minute.

Nothing is mocked inside the system: rows are written with SQL as the platform writes
them; the NOTIFY triggers and the relay turn them into the exact Supabase webhook
bodies for the API Lambda (FastAPI behind Mangum, called in-process); candles from the
feed's simulator go through the feed's real `EventBridgePublisher` to a moto bus whose
rule feeds the fan-out; the trigger runner hands SQS batches to the real workers, which
call the stub llm-proxy over HTTP and record + apply in Postgres. Only the stub's
answers are scripted, per signal or position and just in time (a plan or a stop needs
the candle's price), so every run tells the same story:

a wave = one elite trader (`auto_analyze_signals`, filter interval 1m) and four signals,
all analysed `wait` initially (signal INSERT webhook → initial analysis), then
- enter:  wait, enter_trade (a position opens, in SQL) → hold, adjust_sl, close;
- expire: wait, max_reanalyses (3) times → the signal expires;
- bad:    bad_setup → the signal expires;
- fail:   llm-proxy answers 500 five times → the workflow is auto-disabled and its
          user gets a notification.

A wave needs five candles; waves start three candles apart; one more candle at the end
shows that stopped workflows stay stopped. The exit code says whether every scenario
ended as expected with zero duplicate analyses.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from functions.local.demo_story import (
    INTERVAL,
    MAX_CONSECUTIVE_ERRORS,
    MAX_REANALYSES,
    SYMBOL,
    WEBHOOK_SECRET,
)

if TYPE_CHECKING:
    from functions.local.live_view import View

ADMIN_KEY = "local-demo-admin-key"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print only the summary, as JSON, on stdout (no live view)"
    )
    parser.add_argument(
        "--short", action="store_true", help="one wave at 4x the speed (about 6 candles; what the tests run)"
    )
    parser.add_argument("--waves", type=int, default=3, help="waves of the four scenarios (default 3)")
    parser.add_argument(
        "--speed",
        type=float,
        default=None,
        help="simulated seconds per real second (default 60: a 1m candle a second; 240 with --short)",
    )
    parser.add_argument("--seed", type=int, default=7, help="the simulated market's seed (default 7)")
    parser.add_argument(
        "--database-url", help="use this local Postgres (migrated first) instead of an embedded one"
    )
    parser.add_argument(
        "--llm-latency-ms", type=int, default=25, help="the stub llm-proxy's answer time (default 25)"
    )
    parser.add_argument(
        "--llm-transport",
        choices=("http", "edge"),
        default=None,
        help="the stub llm-proxy over plain HTTP or as a Supabase Edge Function through the "
        "supabase functions client (default: $LLM_PROXY_TRANSPORT, else http)",
    )
    parser.add_argument("--plain", action="store_true", help="plain lines instead of the live panel")
    parser.add_argument("--verbose", action="store_true", help="also print the handlers' JSON logs (stderr)")


def run(args: argparse.Namespace) -> int:
    from functions.local import relay as relays
    from functions.local.live_view import make_view, print_summary

    started = time.monotonic()
    waves = 1 if args.short else max(1, args.waves)
    speed = args.speed or (240.0 if args.short else 60.0)
    view = make_view(json_mode=args.json, plain=args.plain)
    if args.database_url and not relays.is_local_url(args.database_url):
        print(
            "cmon demo: --database-url must be a local database (the demo installs triggers)", file=sys.stderr
        )
        return 2
    transport = args.llm_transport or os.environ.get("LLM_PROXY_TRANSPORT") or "http"
    if transport not in ("http", "edge"):
        print(f"cmon demo: LLM_PROXY_TRANSPORT must be http or edge, not {transport!r}", file=sys.stderr)
        return 2
    try:
        summary = _play(args, waves, speed, view, transport)
    except KeyboardInterrupt:
        print(
            "cmon demo: interrupted; every server was stopped and the temporary database removed",
            file=sys.stderr,
        )
        return 130
    summary["wall_time_s"] = round(time.monotonic() - started, 2)
    summary["database"] = "embedded" if args.database_url is None else "given"
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print_summary(summary)
    return 0 if summary["ok"] else 1


def _play(args: argparse.Namespace, waves: int, speed: float, view: View, transport: str) -> dict[str, Any]:
    """Start the stack, play, summarise, tear everything down (also on Ctrl-C)."""
    from functions.adapters.postgres import Database
    from functions.local import relay as relays
    from functions.local.demo_story import Demo
    from functions.local.stack import handler_logs, local_services

    level = logging.INFO if args.verbose else logging.CRITICAL
    with local_services(
        database_url=args.database_url, llm_proxy_url=None, webhook_secret=WEBHOOK_SECRET,
        admin_api_key=ADMIN_KEY, progress=view.progress, max_reanalyses=MAX_REANALYSES,
        max_consecutive_errors=MAX_CONSECUTIVE_ERRORS, llm_proxy_max_attempts=1, llm_proxy_timeout_s=5,
        llm_transport=transport,
    ) as services, handler_logs(level):  # fmt: skip
        assert services.stub is not None
        services.stub.configure(latency_ms=args.llm_latency_ms)
        relays.install(services.database_url)
        platform = Database(services.database_url, application_name="platform")
        demo = Demo(services, platform, view, waves=waves, speed=speed, seed=args.seed)
        try:
            demo.relay.listen()
            view.start(
                f"cmon demo: {waves} wave(s) on {SYMBOL} {INTERVAL}, a candle every "
                f"{60 / speed:.2g} s (Ctrl-C stops and cleans up)"
            )
            try:
                demo.play()
            finally:
                view.stop()
            summary = demo.summary()
            summary["llm_transport"] = services.llm_transport
        finally:
            demo.relay.close()
            platform.close()
            if not services.embedded:
                relays.uninstall(services.database_url)
    return summary
