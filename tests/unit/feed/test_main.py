"""`main()` in-process: simulate and replay to stdout, argument errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from feed_service.__main__ import main
from tests.unit.feed.frames import dumps, kline


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FEED_STREAMS", "BINANCE_MARKET", "FEED_HEALTH_PORT", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_simulate_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "--market",
            "simulate",
            "--streams",
            "BTCUSDT@1s,ETHUSDT@1s",
            "--speed",
            "200",
            "--limit",
            "6",
            "--seed",
            "5",
            "--health-port",
            "-1",
        ]
    )
    out = capsys.readouterr()
    assert code == 0
    lines = [json.loads(line) for line in out.out.splitlines()]
    assert len(lines) == 6
    assert {line["symbol"] for line in lines} == {"BTCUSDT", "ETHUSDT"}
    assert all(line["interval"] == "1s" and line["version"] == 1 for line in lines)
    assert '"_aws"' in out.err  # metrics went to stderr, stdout has only candles


def test_replay_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "frames.jsonl"
    path.write_text(
        "\n".join([dumps(kline(0, closed=False)), dumps(kline(0)), dumps(kline(0)), dumps(kline(1))])
    )
    assert main(["--market", f"replay:{path}", "--dry-run", "--health-port", "-1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["open"] for line in lines] == ["100.10", "101.10"]  # duplicate dropped


@pytest.mark.parametrize(
    "argv",
    [
        ["--market", "moon"],
        ["--market", "simulate"],
        ["--market", "simulate", "--streams", "BTCUSDT@9m"],
        ["--market", "replay:/nonexistent/file.jsonl"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "cmon feed:" in capsys.readouterr().err


def test_help_documents_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--market", "--streams", "--speed", "--health-port", "--sink", "--dry-run"):
        assert option in text
