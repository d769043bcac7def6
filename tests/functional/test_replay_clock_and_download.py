"""The replay's two edges: the database clock (`cmon.now` per transaction) and the
download of klines through the feed's REST client from a fake Binance on loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.adapters.postgres import Database
from functions.core.errors import InvalidInput
from functions.local.replay import ReplayError, download_candles
from tests.functional.feed.fake_binance import FakeKlinesRest
from tests.support.replay_data import START_MS, kline_rows


def test_a_database_clock_sets_cmon_now_in_every_transaction(db_url: str) -> None:
    moments = iter([datetime(2017, 7, 9, 23, 59, 59, tzinfo=UTC), datetime(2017, 7, 10, 0, 0, 1, tzinfo=UTC)])
    db = Database(db_url, clock=lambda: next(moments))
    plain = Database(db_url)
    try:
        first = db.fetch_one("select current_setting('cmon.now', true)::timestamptz as now")
        second = db.fetch_one("select current_setting('cmon.now', true)::timestamptz as now")
        assert first is not None and second is not None
        assert (first["now"], second["now"]) == (
            datetime(2017, 7, 9, 23, 59, 59, tzinfo=UTC), datetime(2017, 7, 10, 0, 0, 1, tzinfo=UTC),
        )  # fmt: skip
        # Transaction-local: the same connection outside a clocked transaction sees nothing.
        with db._lock:
            conn = db._connection()
            row = conn.execute("select coalesce(current_setting('cmon.now', true), '') as now").fetchone()
            conn.rollback()
        assert row is not None and row["now"] == ""
        untouched = plain.fetch_one("select coalesce(current_setting('cmon.now', true), '') as now")
        assert untouched is not None and untouched["now"] == ""
    finally:
        db.close()
        plain.close()


def test_a_naive_clock_is_refused(db_url: str) -> None:
    db = Database(db_url, clock=lambda: datetime(2017, 7, 9))
    try:
        with pytest.raises(ValueError, match="aware"):
            db.fetch_one("select 1")
    finally:
        db.close()


def test_download_pages_and_waits_out_a_429(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = kline_rows(["100"] * 1500)  # spot answers at most 1000 rows a call
    with FakeKlinesRest() as rest:
        rest.rows[("BTCUSDT", "1m")] = rows
        rest.failures.append((429, "0"))
        monkeypatch.setenv("BINANCE_REST_URL", rest.url)
        monkeypatch.setenv("BINANCE_MARKET", "spot")
        end = datetime.fromtimestamp(START_MS / 1000, UTC) + timedelta(days=2)
        data = download_candles("btcusdt", "1m", "2025-10-25T10:00:00Z", end.isoformat())
        assert rest.statuses == [429, 200, 200]
        assert [r["startTime"] for r in rest.requests[1:]] == [str(START_MS), str(START_MS + 1000 * 60_000)]
    assert len(data.candles) == 1500
    assert data.format == "binance"
    assert data.candles[0].open_time == datetime.fromtimestamp(START_MS / 1000, UTC)
    assert all(b.open_time > a.open_time for a, b in zip(data.candles, data.candles[1:], strict=False))


def test_download_errors_are_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeKlinesRest() as rest:
        rest.failures.append((400, None))
        monkeypatch.setenv("BINANCE_REST_URL", rest.url)
        with pytest.raises(ReplayError, match="400"):
            download_candles("BTCUSDT", "1m", str(START_MS), str(START_MS + 60_000))
        with pytest.raises(InvalidInput, match="END is before START"):
            download_candles("BTCUSDT", "1m", str(START_MS), str(START_MS - 1))
        with pytest.raises(InvalidInput, match="not a time"):
            download_candles("BTCUSDT", "1m", "yesterday", str(START_MS))
        with pytest.raises(InvalidInput, match="no candles"):
            download_candles("BTCUSDT", "1m", str(START_MS), str(START_MS + 60_000))
