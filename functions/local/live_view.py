"""What `cmon demo` shows while it runs, and how it prints its summary.

Three views behind one small interface, chosen by where stdout goes:
- a terminal: a `rich.live` panel (last candles, active workflows, decisions as they
  happen), redrawn in place;
- a pipe or a file: one plain line per event on stderr, so stdout carries only the
  summary (scripts and CI logs stay readable);
- `--json`: nothing while running; stdout gets the JSON summary and nothing else.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import IO, Any

KIND_STYLE = {
    "candle": "bold cyan",
    "webhook": "dim",
    "workflow": "green",
    "analysis": "white",
    "position": "magenta",
    "error": "red",
    "stopped": "yellow",
    "notify": "bold red",
    "wave": "bold",
    "start": "dim",
}


class View:
    """The no-op view (`--json`): every method does nothing."""

    def progress(self, message: str) -> None:
        """A start-up step (database, moto, stub)."""

    def start(self, title: str) -> None:
        """The stack is up; candles are about to flow."""

    def candle(self, index: int, total: int, text: str) -> None:
        """A candle closed and the system is idle again."""

    def event(self, kind: str, text: str) -> None:
        """Something happened (see `KIND_STYLE` for the kinds)."""

    def workflows(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """The active workflows now (label, type, reanalyses, errors)."""

    def stop(self) -> None:
        """The run is over (or interrupted): release the terminal."""


class LineView(View):
    """One line per event, for logs and pipes."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self._out = out or sys.stderr
        self._started = time.monotonic()

    def _line(self, kind: str, text: str) -> None:
        print(f"{time.monotonic() - self._started:6.1f}s  {kind:<9} {text}", file=self._out, flush=True)

    def progress(self, message: str) -> None:
        self._line("start", message)

    def start(self, title: str) -> None:
        self._line("start", title)

    def candle(self, index: int, total: int, text: str) -> None:
        self._line("candle", f"{index}/{total} {text}")

    def event(self, kind: str, text: str) -> None:
        self._line(kind, text)


class RichView(View):
    """A live panel on a terminal, redrawn after each candle and each batch of events."""

    def __init__(self, out: IO[str] | None = None, events: int = 16, candles: int = 5) -> None:
        from rich.console import Console

        self._console = Console(file=out or sys.stdout)
        self._live: Any = None
        self._title = "cmon demo"
        self._events: deque[tuple[str, str]] = deque(maxlen=events)
        self._candles: deque[str] = deque(maxlen=candles)
        self._rows: list[Mapping[str, Any]] = []
        self._progress = ""
        self._count = (0, 0)

    def progress(self, message: str) -> None:
        self._console.print(f"[dim]{message}[/dim]")

    def start(self, title: str) -> None:
        from rich.live import Live

        self._title = title
        self._live = Live(self._render(), console=self._console, refresh_per_second=8, transient=False)
        self._live.start()

    def candle(self, index: int, total: int, text: str) -> None:
        self._count = (index, total)
        self._candles.append(text)
        self._refresh()

    def event(self, kind: str, text: str) -> None:
        self._events.append((kind, text))
        self._refresh()

    def workflows(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self._rows = list(rows)
        self._refresh()

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            self._live.stop()
            self._live = None

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        index, total = self._count
        candles = Table(box=None, show_header=False, padding=(0, 1))
        for text in self._candles:
            candles.add_row(Text(text, style="cyan"))
        workflows = Table(title="active workflows", title_justify="left", expand=True, show_edge=False)
        for column in ("workflow", "type", "re-analyses", "errors", "last candle"):
            workflows.add_column(column)
        for row in self._rows:
            workflows.add_row(
                str(row["label"]),
                str(row["type"]),
                str(row["reanalyses"]),
                str(row["errors"]),
                str(row["last_candle"]),
            )
        if not self._rows:
            workflows.add_row("(none)", "", "", "", "")
        events = Table(box=None, show_header=False, padding=(0, 1), expand=True)
        events.add_column(width=9)
        events.add_column(ratio=1)
        for kind, text in self._events:
            style = KIND_STYLE.get(kind, "")
            events.add_row(Text(kind, style=style), Text(text, style=style))
        body = Group(
            Text(f"candle {index}/{total}", style="bold"), candles, Text(""), workflows, Text(""),
            Text("what just happened", style="bold"), events,
        )  # fmt: skip
        return Panel(body, title=self._title, border_style="blue")


def make_view(*, json_mode: bool, plain: bool) -> View:
    if json_mode:
        return View()
    if not plain and sys.stdout.isatty():
        return RichView()
    return LineView()


# -- the summary ----------------------------------------------------------------------------


def _counts(mapping: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in mapping.items() if v) or "0"


def _latency(stats: Mapping[str, Any]) -> str:
    if not stats.get("count"):
        return "-"
    return (
        f"p50 {stats['p50']:.1f} ms · p95 {stats['p95']:.1f} ms · max {stats['max']:.1f} ms "
        f"({stats['count']} samples)"
    )


def print_summary(summary: Mapping[str, Any], out: IO[str] | None = None) -> None:
    """The final table: workflows by outcome, analyses, decisions, tokens, errors,
    non-LLM latency, duplicates, and the checks that decide the exit code."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out or sys.stdout, width=max(100, Console(file=out or sys.stdout).width))
    table = Table(
        title=f"cmon demo: {summary['candles']} candles, {summary['waves']} wave(s), "
        f"{summary['wall_time_s']:.1f} s",
        title_justify="left",
        show_header=False,
    )
    table.add_column("", style="bold")
    table.add_column("")
    by_outcome = summary["workflows_by_outcome"]
    analyses = summary["analyses"]
    decisions = summary["management_decisions"]
    tokens = summary["tokens"]
    latency = summary["latency_ms"]
    table.add_row("workflows by outcome", _counts(by_outcome))
    table.add_row(
        "analyses",
        f"{analyses['total']} (initial {analyses['initial']}, monitoring "
        f"{analyses['monitoring']}: {_counts(analyses['by_decision'])})",
    )
    applied = f"applied {decisions['applied']} ({_counts(decisions['by_action'])})"
    table.add_row("management decisions", f"{applied}, rejected {decisions['rejected']}")
    table.add_row(
        "tokens", f"{tokens['total']:,} (prompt {tokens['prompt']:,}, completion {tokens['completion']:,})"
    )
    errors = summary["errors"]
    table.add_row("llm-proxy errors", f"{errors['total']} ({_counts(errors['by_kind'])})")
    table.add_row("notifications", _counts(summary["notifications"]))
    table.add_row(
        "webhooks relayed",
        f"{summary['webhooks']['delivered']} ({_counts(summary['webhooks']['by_action'])})",
    )
    table.add_row("non-LLM time per job", _latency(latency["non_llm_per_job"]))
    table.add_row("fan-out per candle", _latency(latency["fanout_per_candle"]))
    table.add_row("llm-proxy call (stub)", _latency(latency["llm_call"]))
    table.add_row("duplicate analyses", str(summary["duplicate_analyses"]))
    table.add_row("duplicate decisions", str(summary["duplicate_decisions"]))
    console.print(table)

    scenarios = Table(title="scenarios", title_justify="left")
    for column in ("wave", "scenario", "expected", "got", "ok"):
        scenarios.add_column(column)
    for row in summary["scenarios"]:
        scenarios.add_row(
            str(row["wave"]),
            row["scenario"],
            row["expected"],
            row["got"],
            "[green]yes[/green]" if row["ok"] else "[red]NO[/red]",
        )
    console.print(scenarios)
    failed = [name for name, ok in summary["checks"].items() if not ok]
    if failed:
        console.print(f"[bold red]the scenario did not play out: {', '.join(failed)}[/bold red]")
    else:
        console.print("[bold green]every scenario played out; zero duplicate analyses[/bold green]")
