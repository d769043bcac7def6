"""The load, webhook and feed benches run end to end at toy sizes (their figures are the README's;
here only that they still work and count what they claim)."""

from __future__ import annotations

import pytest

from bench import bench_feed, bench_load, bench_webhooks


def test_bench_load_runs_every_job_once_across_worker_processes(db_url: str) -> None:
    result = bench_load.run_load(db_url, 12, 4, 0.02, 0.1, processes=2)
    assert (result["n"], result["workers"], result["processes"]) == (12, 4, 2)
    assert result["floor_s"] == pytest.approx(3 * 0.02)  # ceil(12 / 4) waves of L
    assert result["connections"] >= 4  # every worker had its own connection (+ the bench's)


def test_bench_webhooks_answers_a_small_burst_without_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_webhooks.main(["--burst", "10", "--bursts", "1"]) == 0
    out = capsys.readouterr().out
    assert "burst 1:" in out and "errors 0" in out and "all 10:" in out


def test_bench_feed_rows_all_count_the_same_closed_candles(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_feed.main(["--frames", "600", "--repeat", "1", "--floor"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("cmon", "floor"))]
    closed = {}
    for mix in ("live (1 in 30)", "all closed"):
        counts = {line[:44].strip(): int(line.split()[-1]) for line in rows if mix in line}
        assert len(counts) == 7, counts  # the parser, Python only, its fallback, the pipeline, three floors
        assert len(set(counts.values())) == 1, counts
        closed[mix] = counts["cmon KlineParser"]
    # 1 frame in 50 is a recorded open update; every other frame closes in the worst case.
    assert closed == {"live (1 in 30)": 18, "all closed": 588}
