"""`cmon replay` end to end: recorded and scripted candles through the real handlers,
the stub llm-proxy over HTTP and the SQL record + apply, at the replay's clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from functions.cli import main
from functions.core.contracts import Market
from functions.local.replay import Scenario, load_candles, load_scenario, replay
from functions.local.stub_llm import StubLlmProxy
from tests.support.replay_data import kline_rows, write_klines, write_scenario

EVENTS = Path(__file__).resolve().parents[1] / "events" / "binance"
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _count(db_url: str, table: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(f"select count(*) from public.{table}").fetchone()
    assert row is not None
    return int(row[0])


def test_recorded_klines_replay_is_deterministic(db_url: str) -> None:
    """A 2017 weekly candle is years stale by the wall clock: only the replay's clock gets
    it analysed. The stub's heuristic reads its -3.5 % as a bad setup, twice the same."""
    data = load_candles(
        EVENTS / "rest_api_v3_klines_doc_example.json", symbol="BTCUSDT", interval="1w", market=Market.SPOT
    )
    first = replay(data, Scenario(), database_url=db_url)
    second = replay(data, Scenario(), database_url=db_url)

    assert first["analyses"] == {"total": 2, "initial": 1, "monitoring": 1, "by_decision": {"bad_setup": 1}}
    assert first["workflows"] == {"bad_setup (setup_monitoring)": 1}
    [event] = first["timeline"]
    assert (event["entity"], event["candle_time"], event["decision"], event["confidence"]) == (
        "BTCUSDT-1w", "2017-07-09T23:59:59.999000+00:00", "bad_setup", 0.7,
    )  # fmt: skip
    assert (event["kind"], event["stream"], event["index"]) == ("analysis", "BTCUSDT 1w", 0)
    assert first["tokens"]["total"] == 1100
    assert first["timeline"] == second["timeline"]
    assert first["tokens"] == second["tokens"]
    assert _count(db_url, "signal_analyses") == 4  # two runs side by side, each its own trader


def test_a_scripted_scenario_records_applies_and_simulates(db_url: str, tmp_path: Path) -> None:
    data = load_candles(
        write_klines(tmp_path / "k.json"), symbol="BTCUSDT", interval="1m", market=Market.SPOT
    )
    scenario = load_scenario(write_scenario(tmp_path / "s.json"))
    summary = replay(data, scenario, database_url=db_url, usd_per_1k=0.002)
    again = replay(data, scenario, database_url=db_url, usd_per_1k=0.002)

    assert summary["analyses"]["by_decision"] == {"wait": 2, "enter_trade": 1}
    mg = summary["management"]
    assert mg["by_action"] == {
        "adjust_sl": {"applied": 0, "rejected": 2},
        "adjust_tp": {"applied": 1, "rejected": 0},
        "close (paper)": {"applied": 2, "rejected": 0},
        "hold": {"applied": 6, "rejected": 0},
        "reduce": {"applied": 1, "rejected": 0},
    }
    # The long's stop above the price and the short's looser stop are refused, with why.
    assert mg["rejected_reasons"] == {"stop_loss_on_wrong_side_of_price": 1, "stop_loss_loosened": 1}
    assert summary["tokens"]["total"] == 13 * 1100
    assert summary["tokens"]["estimated_usd"] == pytest.approx(13 * 1.1 * 0.002)
    positions = {p["name"]: p for p in summary["positions"]}
    long, short = positions["breakout"], positions["swing"]
    assert [e["kind"] for e in long["simulated"]["events"]] == ["entry", "adjust_tp", "reduce", "stop_loss"]
    assert long["entry_price"] == "100.5" and long["stop_loss"] == "99.495"
    assert long["simulated"]["total_pnl"] == "0.3975" == long["recorded"]["realized_pnl"]
    assert [e["kind"] for e in short["simulated"]["events"]] == ["entry", "stop_loss"]
    assert short["simulated"]["total_pnl"] == "-1.9" == short["recorded"]["realized_pnl"]
    assert summary["pnl"]["total"] == "-1.5025"
    assert summary["timeline"] == again["timeline"]


def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_malformed_file_is_refused_naming_the_line_and_writes_nothing(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = kline_rows()
    rows[4][4] = "not-a-price"
    bad = tmp_path / "bad.json"
    bad.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]")
    code, out, err = _run_cli(
        [
            "replay",
            "--candles",
            str(bad),
            "--symbol",
            "BTCUSDT",
            "--interval",
            "1m",
            "--database-url",
            db_url,
        ],
        capsys,
    )
    assert code == 2
    assert "line 6 (row 5)" in err and out == ""
    code, _out, err = _run_cli(["replay", "--candles", str(bad), "--database-url", db_url], capsys)
    assert code == 2 and "--symbol and --interval" in err
    good = str(write_klines(tmp_path / "good.json"))
    nowhere = str(tmp_path / "missing" / "r.html")
    code, _out, err = _run_cli(["replay", "--candles", good, "--symbol", "BTCUSDT", "--interval", "1m",
                                "--database-url", db_url, "--report", nowhere], capsys)  # fmt: skip
    assert code == 2 and "folder does not exist" in err
    assert _count(db_url, "user_profiles") == 0


def test_compare_two_runs_over_the_same_candles(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    klines = str(write_klines(tmp_path / "k.json"))
    base = [
        "replay",
        "--candles",
        klines,
        "--symbol",
        "BTCUSDT",
        "--interval",
        "1m",
        "--database-url",
        db_url,
    ]
    code, out_a, _ = _run_cli([*base, "--json"], capsys)
    assert code == 0
    scenario = {"signals": [{"name": "BTCUSDT-1m", "answers": {"2": "wait", "3": "bad_setup"}}]}
    code, out_b, _ = _run_cli(
        [*base, "--json", "--scenario", str(write_scenario(tmp_path / "s.json", scenario))], capsys
    )
    assert code == 0
    (tmp_path / "a.json").write_text(out_a)
    (tmp_path / "b.json").write_text(out_b)
    a: dict[str, Any] = json.loads(out_a)
    # Default: the heuristic enters at candle 2 (+0.4 %), the stop at 99.495 is hit at candle 8.
    assert [e["decision"] for e in a["timeline"] if e["kind"] == "analysis"] == [
        "wait",
        "wait",
        "enter_trade",
    ]
    code, out, _ = _run_cli(
        ["replay", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json"], capsys
    )
    assert code == 0
    result = json.loads(out)
    # Both agree on candles 0 and 1; at candle 2 A enters, B waits; B has no position.
    assert result["decisions"]["compared"] == 3
    assert result["decisions"]["agree"] == 2
    assert result["decisions"]["differences"][0]["a"] == "enter_trade"
    assert result["decisions"]["only_in_a"] == len(a["timeline"]) - 3
    assert result["tokens"]["delta"] == 4 * 1100 - a["tokens"]["total"]
    assert result["pnl"] == {"a": "-1.005", "b": "0", "delta": "1.005"}
    code, _out, err = _run_cli(["replay", "--compare", str(tmp_path / "a.json"), klines], capsys)
    assert code == 2 and "not a `cmon replay --json`" in err


def test_a_given_llm_proxy_url_is_called_over_http(db_url: str) -> None:
    """`--llm-proxy-url`: no stub is started; every analysis is a call to that proxy."""
    data = load_candles(
        DOCS / "replay_candles.example.json", symbol="BTCUSDT", interval="1m", market=Market.SPOT
    )
    with StubLlmProxy() as proxy:
        url = proxy.url
        summary = replay(data, Scenario(), database_url=db_url, llm_proxy_url=url)
        calls = proxy.calls
    assert summary["llm_proxy"] == url
    assert len(calls) == summary["analyses"]["monitoring"] + summary["management"]["total"] - sum(
        v["applied"] + v["rejected"] for k, v in summary["management"]["by_action"].items() if "(paper)" in k
    )
    assert {c.path for c in calls} == {"/analyze-signal", "/manage-position"}
    assert all(c.headers["idempotency-key"].endswith("Z") for c in calls)


def test_the_documented_examples_load() -> None:
    """The README's replay runs on these files: they must stay valid."""
    data = load_candles(
        DOCS / "replay_candles.example.json", symbol="BTCUSDT", interval="1m", market=Market.SPOT
    )
    assert len(data.candles) == 10
    scenario = load_scenario(DOCS / "replay_scenario.example.json")
    assert scenario.signals is not None and [s.name for s in scenario.signals] == ["BTCUSDT-1m"]
    assert [p.name for p in scenario.positions] == ["swing"]
