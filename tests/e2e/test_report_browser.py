"""The HTML report in a real browser: Debian's headless Chromium loads the file, runs its
script, and we read back the DOM and the console.

Every chart must render (an `<svg class="chart">` with data marks), the page's script
must have run (it stamps `data-charts` on the body) and the console must stay silent:
the page logs nothing, so any console line is an error (an exception, a blocked
resource). No test here is skipped: without Chromium they fail and say how to install it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from functions.cli import main
from functions.core.contracts import Market
from functions.local.replay import load_candles, load_scenario, replay
from tests.functional.feed.fake_binance import FakeKlinesRest
from tests.support.replay_data import kline_rows, write_klines, write_scenario

FIXED_CHARTS = [
    "decisions",
    "actions",
    "confidence histogram",
    "calibration",
    "tokens per hour",
    "latency",
    "errors",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("Chromium is required for the report tests: apt-get install -y chromium")
    return found


class _Charts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, int] = {}
        self.body: dict[str, str | None] = {}
        self._current: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if tag == "svg" and "chart" in (a.get("class") or "").split():
            self._current = a.get("data-chart") or "?"
            self.charts[self._current] = 0
            self._depth = 0
        elif self._current is not None:
            self._depth += 1
            if "mark" in (a.get("class") or "").split():
                self.charts[self._current] += 1

    def handle_endtag(self, tag: str) -> None:
        if self._current is None:
            return
        if tag == "svg" and self._depth == 0:
            self._current = None
        else:
            self._depth -= 1


def load_in_browser(page: Path, tmp_path: Path) -> tuple[_Charts, list[str]]:
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    result = subprocess.run(
        [
            chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=2000", "--dump-dom", page.resolve().as_uri(),
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    parser = _Charts()
    parser.feed(result.stdout)
    return parser, console


def assert_renders(page: Path, tmp_path: Path, streams: list[str]) -> dict[str, int]:
    text = page.read_text()
    # Self-contained: nothing to fetch (the only URL is the SVG namespace).
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= {"http://www.w3.org/2000/svg"}
    parser, console = load_in_browser(page, tmp_path)
    assert console == []
    assert list(parser.charts) == [*streams, *FIXED_CHARTS]
    assert parser.body.get("data-charts") == str(len(streams) + len(FIXED_CHARTS))
    empty = [name for name, marks in parser.charts.items() if marks == 0]
    assert empty == []
    return parser.charts


def test_the_replay_report_renders_every_chart(db_url: str, tmp_path: Path) -> None:
    data = load_candles(
        write_klines(tmp_path / "k.json"), symbol="BTCUSDT", interval="1m", market=Market.SPOT
    )
    page = tmp_path / "replay.html"
    replay(data, load_scenario(write_scenario(tmp_path / "s.json")), database_url=db_url, report=page)
    charts = assert_renders(page, tmp_path, ["BTCUSDT 1m"])
    # 10 candles + 3 analyses + 12 decisions (2 refused) + 2 positions x (entry, exit, SL, TP).
    assert charts["BTCUSDT 1m"] == 10 + 3 + 12 + 2 * 4
    model = json.loads(_embedded_data(page))
    assert model["decisions"] == {"wait": 2, "enter_trade": 1}
    [stream] = model["streams"]
    long = next(lv for lv in stream["levels"] if lv["side"] == "long")
    # The stop-loss stays (both adjust_sl were refused); the target steps at adjust_tp.
    assert [v for _, v in long["sl"]] == [99.495] * 6  # opened, then 5 applied (hold, tp, reduce, hold, stop)
    assert [v for _, v in long["tp"]][:2] == [102.51, 102.51] and 103.0 in [v for _, v in long["tp"]]


def _embedded_data(page: Path) -> str:
    import html

    match = re.search(
        r'<script type="application/json" id="report-data">(.*?)</script>', page.read_text(), re.S
    )
    assert match is not None
    return html.unescape(match.group(1))


def test_a_live_window_report_downloads_candles_and_renders(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now_ms = int(datetime.now(UTC).timestamp() // 60 * 60 * 1000)
    rows = kline_rows(start_ms=now_ms - 20 * 60_000)
    with FakeKlinesRest() as rest:
        rest.rows[("BTCUSDT", "1m")] = rows
        monkeypatch.setenv("BINANCE_REST_URL", rest.url)
        start, end = str(rows[0][0]), str(rows[-1][0])
        saved = tmp_path / "saved.jsonl"
        code = main([
            "replay", "--from-binance", "BTCUSDT", "1m", start, end, "--database-url", db_url, "--json",
            "--save-candles", str(saved),
        ])  # fmt: skip
        out, _ = capsys.readouterr()
        assert code == 0
        summary = json.loads(out)
        again = load_candles(saved, symbol=None, interval=None, market=Market.SPOT)
        assert again.digest == summary["input"]["candles_sha256"]
        assert summary["input"]["format"] == "binance" and summary["candles"]["total"] == 10
        assert summary["analyses"]["by_decision"] == {"wait": 2, "enter_trade": 1}
        page = tmp_path / "live.html"
        code = main(["report", "--hours", "2", "--database-url", db_url, "--out", str(page)])
        assert code == 0
        assert rest.requests[-1]["symbol"] == "BTCUSDT"  # the report fetched the candles itself
    charts = assert_renders(page, tmp_path, ["BTCUSDT 1m"])
    assert charts["BTCUSDT 1m"] >= 10 + 3


def test_report_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    page = tmp_path / "r.html"
    assert main(["report", "--hours", "0", "--database-url", db_url, "--out", str(page)]) == 2
    assert "--hours" in capsys.readouterr().err
    missing = tmp_path / "missing" / "r.html"
    assert main(["report", "--database-url", db_url, "--out", str(missing)]) == 2
    assert "folder does not exist" in capsys.readouterr().err
    assert not page.exists()
