"""`cmon report` over a window with both cohorts: shadow rows are marked on the stream
charts (class `shadow`, faded) and counted apart in the decision and action charts."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

from functions.adapters.postgres import Database
from functions.local.report import gather, render
from tests.functional.test_shadow_sql import T0, analyse, gate, manage, shadow_setup
from tests.support import factories as f


def test_the_report_marks_shadow_rows_and_counts_them_apart(db: Database) -> None:
    gate(db, percent=0, shadow_percent=100, tiers=None)
    shadow_wf, _ = shadow_setup(db)
    trader = f.trader(db)
    shadow_position = f.position(db, trader, stop_loss="49000", take_profit="52000")
    shadow_pwf = db.call("register_position_management", position_id=shadow_position, check_gate=True)
    gate(db, percent=100, shadow_percent=0)
    live_wf, _ = shadow_setup(db)
    live_trader = f.trader(db)
    live_position = f.position(db, live_trader, stop_loss="49000", take_profit="52000")
    live_pwf = db.call("register_position_management", position_id=live_position, check_gate=True)

    for wf in (shadow_wf, live_wf):
        analyse(db, wf, T0, "wait")
    analyse(db, live_wf, T0 + timedelta(minutes=1), "wait")
    for pwf in (shadow_pwf, live_pwf):
        manage(db, pwf["workflow_id"], "adjust_sl")

    model = gather(db, since=T0 - timedelta(hours=1), until=T0 + timedelta(hours=1))
    assert model["shadow"] == {"analyses": 1, "decisions": 1}
    assert model["decisions"] == {"wait": 3} and model["decisions_shadow"] == {"wait": 1}
    assert model["actions"] == {
        "adjust_sl": {"applied": 1, "rejected": 0},
        "adjust_sl (shadow)": {"applied": 1, "rejected": 0},
    }
    marks = [m for s in model["streams"] for m in s["marks"]]
    assert sorted(m["shadow"] for m in marks) == [False, False, False, True, True]
    assert all(m["tip"].count("SHADOW") == int(m["shadow"]) for m in marks)

    html = render(model)
    assert len(re.findall(r'class="mark shadow"', html)) == 2
    assert "wait (shadow)" in html and "adjust_sl (shadow)" in html
    assert "1\nshadow analyses, 1 shadow management decisions" in html
    # The live stop moved, the shadow one did not: only the live level steps.
    assert db.fetch_one(
        "select stop_loss from public.positions where id = %(p)s", {"p": shadow_position}
    ) == {"stop_loss": Decimal("49000")}
