"""The load and webhook benches run end to end at toy sizes (their figures are the README's;
here only that they still work and count what they claim)."""

from __future__ import annotations

import pytest

from bench import bench_load, bench_webhooks


def test_bench_load_runs_every_job_once_across_worker_processes(db_url: str) -> None:
    result = bench_load.run_load(db_url, 12, 4, 0.02, 0.1, processes=2)
    assert (result["n"], result["workers"], result["processes"]) == (12, 4, 2)
    assert result["floor_s"] == pytest.approx(3 * 0.02)  # ceil(12 / 4) waves of L
    assert result["connections"] >= 4  # every worker had its own connection (+ the bench's)


def test_bench_webhooks_answers_a_small_burst_without_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_webhooks.main(["--burst", "10", "--bursts", "1"]) == 0
    out = capsys.readouterr().out
    assert "burst 1:" in out and "errors 0" in out and "all 10:" in out
