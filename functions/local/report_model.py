"""`cmon report`'s model: the rows the database recorded turned into plain, JSON-ready
numbers for the charts (the same for a replay's run and a live window). No I/O: the rows
come from `functions.adapters.operations.ReviewReads`, the page from `report_html`."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from functions.core.contracts import CandleClosed
from functions.core.cost import Projection, project

PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))


def _shadow_tag(row: Mapping[str, Any]) -> str:
    """Shadow rows were recorded and not applied: every mark of one says so."""
    return "SHADOW (not applied) " if row.get("shadow") else ""


def _f(value: Any) -> float | None:
    return None if value is None else float(Decimal(str(value)))


def build_model(
    *,
    title: str,
    window: tuple[datetime, datetime] | None,
    analyses: Sequence[Mapping[str, Any]],
    decisions: Sequence[Mapping[str, Any]],
    positions: Sequence[Mapping[str, Any]],
    errors: Sequence[Mapping[str, Any]],
    disabled: Sequence[Mapping[str, Any]],
    candles: Sequence[CandleClosed],
) -> dict[str, Any]:
    """Plain numbers for the charts (JSON-ready): the same for a replay and a live window."""
    by_stream: dict[tuple[str, str], list[CandleClosed]] = defaultdict(list)
    for c in sorted(candles, key=lambda c: c.close_time):
        by_stream[(c.symbol, c.interval)].append(c)
    keys = set(by_stream)
    keys |= {(r["symbol"], r["interval"]) for r in (*analyses, *decisions, *positions)}
    streams = []
    for key in sorted(keys):
        bars = by_stream.get(key, [])
        close_at = {c.close_time: float(c.close) for c in bars}
        marks = []
        for a in analyses:
            if (a["symbol"], a["interval"]) != key or a["analysis_type"] != "monitoring":
                continue
            marks.append(
                {
                    "t": a["at"].timestamp(),
                    "y": close_at.get(a["at"]),
                    "kind": a["decision"],
                    "group": "analysis",
                    "shadow": bool(a.get("shadow")),
                    "tip": f"{a['at']:%Y-%m-%d %H:%M} {_shadow_tag(a)}analysis {a['decision']}"
                    f" ({_f(a['confidence'])})",
                }
            )
        for d in decisions:
            if (d["symbol"], d["interval"]) != key:
                continue
            marks.append(
                {
                    "t": d["at"].timestamp(),
                    "y": _f(d["price"]) or close_at.get(d["at"]),
                    "kind": d["action"],
                    "group": "decision",
                    "status": d["status"],
                    "shadow": bool(d.get("shadow")),
                    "tip": f"{d['at']:%Y-%m-%d %H:%M} {_shadow_tag(d)}{d['action']}"
                    f"{' (paper)' if d['source'] == 'paper' else ''}"
                    f" {d['status']}{' — ' + d['rejection_reason'] if d['rejection_reason'] else ''}",
                }
            )
        levels = []
        for p in positions:
            if (p["symbol"], p["interval"]) != key:
                continue
            first = p["first_state"] or {}
            sl, tp = first.get("stop_loss", p["stop_loss"]), first.get("take_profit", p["take_profit"])
            start = p["opened"]
            steps_sl, steps_tp = [[start.timestamp(), _f(sl)]], [[start.timestamp(), _f(tp)]]
            for d in decisions:
                if d["position_id"] != p["id"] or d["status"] != "applied" or not d["after_state"]:
                    continue
                after = d["after_state"]
                steps_sl.append([d["at"].timestamp(), _f(after.get("stop_loss"))])
                steps_tp.append([d["at"].timestamp(), _f(after.get("take_profit"))])
            end = p["closed"] or (bars[-1].close_time if bars else None) or start
            levels.append(
                {
                    "side": p["side"],
                    "entry": [start.timestamp(), _f(p["entry_price"])],
                    "exit": [p["closed"].timestamp(), _f(p["exit_price"])]
                    if p["closed"] and p["exit_price"]
                    else None,
                    "end": end.timestamp(),
                    "sl": steps_sl,
                    "tp": steps_tp,
                    "pnl": _f(p["realized_pnl"]),
                }
            )
        streams.append(
            {
                "symbol": key[0],
                "interval": key[1],
                "candles": [
                    [c.close_time.timestamp(), float(c.open), float(c.high), float(c.low), float(c.close)]
                    for c in bars
                ],
                "marks": marks,
                "levels": levels,
            }
        )

    monitoring = [a for a in analyses if a["analysis_type"] == "monitoring"]
    actions: dict[str, dict[str, int]] = defaultdict(lambda: {"applied": 0, "rejected": 0})
    for d in decisions:
        key = d["action"] + (" (paper)" if d["source"] == "paper" else "")
        actions[key + (" (shadow)" if d.get("shadow") else "")][d["status"]] += 1
    confidences = [_f(r["confidence"]) for r in (*analyses, *decisions) if r["confidence"] is not None]
    tokens_by_hour: Counter[str] = Counter()
    for r in (*analyses, *decisions):
        tokens_by_hour[r["at"].astimezone(UTC).strftime("%Y-%m-%d %H:00")] += int(r["total_tokens"])
    latencies = sorted(float(r["latency_ms"]) for r in (*analyses, *decisions) if r["latency_ms"] is not None)
    projection = project(Projection())
    return {
        "title": title,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "window": None if window is None else [window[0].isoformat(), window[1].isoformat()],
        "streams": streams,
        "decisions": dict(Counter(a["decision"] for a in monitoring)),
        # The shadow cohort's share of those (recorded, never applied), counted apart.
        "decisions_shadow": dict(Counter(a["decision"] for a in monitoring if a.get("shadow"))),
        "shadow": {
            "analyses": sum(1 for a in analyses if a.get("shadow")),
            "decisions": sum(1 for d in decisions if d.get("shadow")),
        },
        "actions": {k: actions[k] for k in sorted(actions)},
        "confidence": [c for c in confidences if c is not None],
        "calibration": calibration(monitoring, by_stream),
        "tokens_per_hour": sorted(tokens_by_hour.items()),
        "projection_per_hour": projection["tokens_per_day"] / 24,
        "alarm_per_hour": projection["alarm_tokens_per_day"] / 24,
        "latency": {
            name: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0
            for name, q in PERCENTILES
        },
        "latency_count": len(latencies),
        "errors": dict(Counter(e["error_kind"] for e in errors)),
        "error_rows": [
            {
                "at": e["created_at"].isoformat(timespec="seconds"),
                "kind": e["error_kind"],
                "message": e["message"],
            }
            for e in errors[-20:]
        ],
        "auto_disabled": [
            {"workflow": str(w["id"]), "stream": f"{w['symbol']} {w['interval']}", "type": w["workflow_type"]}
            for w in disabled
        ],
    }


def calibration(
    analyses: Iterable[Mapping[str, Any]], by_stream: Mapping[tuple[str, str], Sequence[CandleClosed]]
) -> list[dict[str, Any]]:
    """Confidence buckets of directional calls against what the next candle did."""
    buckets: dict[int, list[bool]] = defaultdict(list)
    for a in analyses:
        if a["decision"] not in ("enter_trade", "bad_setup") or a["confidence"] is None:
            continue
        bars = by_stream.get((a["symbol"], a["interval"]), [])
        index = next((i for i, c in enumerate(bars) if c.close_time == a["candle_time"]), None)
        if index is None or index + 1 >= len(bars):
            continue
        move = bars[index + 1].close - bars[index].close
        short = (a["trade_plan"] or {}).get("side") == "short"
        if a["decision"] == "enter_trade":
            right = move < 0 if short else move > 0
        else:
            right = move >= 0 if short else move <= 0
        buckets[min(9, int(float(a["confidence"]) * 10))].append(right)
    return [
        {"bucket": b / 10 + 0.05, "calls": len(v), "right": sum(v) / len(v)}
        for b, v in sorted(buckets.items())
    ]
