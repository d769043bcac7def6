"""`python -m feed_service` as a process: SIGTERM stops it cleanly (exit 0, flushed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_sigterm_flushes_and_exits_zero() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEED_", "BINANCE_"))}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "feed_service",
            "--market",
            "simulate",
            "--streams",
            "BTCUSDT@1s",
            "--speed",
            "20",
            "--health-port",
            "-1",
            "--seed",
            "3",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())  # the feed is up and publishing
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert first["symbol"] == "BTCUSDT" and first["source"] == "stream"
    lines = [first] + [json.loads(line) for line in out.splitlines() if line.strip()]
    opens = [line["open_time"] for line in lines]
    assert opens == sorted(set(opens))
    assert "feed stopped" in err
    emf = [json.loads(line) for line in err.splitlines() if line.startswith('{"_aws"')]
    assert sum(doc.get("FeedCandlesPublished", 0) for doc in emf) == len(lines)
