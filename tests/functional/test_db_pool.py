"""`cmon local`'s API database: one connection per thread, so a burst does not queue on one."""

from __future__ import annotations

import threading

from functions.local.db_pool import PerThreadDatabase


def test_each_thread_has_its_own_connection_and_keeps_it(db_url: str) -> None:
    db = PerThreadDatabase(db_url, application_name="cmon-test")
    pids: dict[str, list[int]] = {}
    barrier = threading.Barrier(3)

    def work(name: str) -> None:
        barrier.wait()  # all three threads hold their connection at the same time
        pids[name] = [db.fetch_one("select pg_backend_pid() as pid")["pid"] for _ in range(2)]  # type: ignore[index]

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(3)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(len(set(v)) == 1 for v in pids.values())  # a thread reuses its connection
        assert len({v[0] for v in pids.values()}) == 3  # no two threads share one
        assert db.connections == 3
        assert db.call("valid_interval", interval="1m") is True  # the production methods work through it
    finally:
        db.close()
