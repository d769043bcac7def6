"""`cmon report`: the weekly review as pictures, in one self-contained HTML file.

The page has no external reference at all (inline SVG drawn here, a few lines of inline
JS for tooltips; no CDN, no fonts, no images), so it opens offline and can be attached
to a review. Charts, each an `<svg class="chart">` whose data points carry
`class="mark"`:

- per stream (symbol, interval): the candles, every analysis and management decision
  marked at its candle, each position's entry and exit, and its stop-loss / take-profit
  drawn as steps that move at each applied action;
- the decision distribution (analyses) and the action distribution (applied / rejected);
- a confidence histogram, and calibration: for the directional calls (`enter_trade`
  on a long plan = up, on a short plan = down; `bad_setup` = not up) the share that the
  next candle proved right, by confidence bucket, against the diagonal;
- tokens per hour against the projection (`functions/core/cost.py`) and its 125 % alarm;
- analysis latency percentiles (p50, p90, p95, p99, max);
- errors by kind, and the workflows auto-disabled.

Data: a window of a live database (`--hours`, `DATABASE_URL`/`--database-url`), with the
candles downloaded through `BINANCE_REST_URL` (or `--candles FILE`; with neither the
price line is drawn from the prices the database recorded), or a replay's own run
(`cmon replay --report FILE.html`).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from functions.core.contracts import CandleClosed, Market
from functions.core.cost import Projection, project
from functions.core.errors import CmonError

if TYPE_CHECKING:
    from functions.adapters.postgres import Database

DECISION_COLOURS = {
    "wait": "#8a8f98",
    "enter_trade": "#1f9d55",
    "bad_setup": "#d64545",
    "hold": "#6b7fd7",
    "adjust_sl": "#d68b1f",
    "adjust_tp": "#1fa3d6",
    "reduce": "#a25ad6",
    "close": "#333333",
}
PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))


# -- reading the database -----------------------------------------------------------------------


def _scope(alias: str, time_sql: str, trader_ids: Sequence[UUID] | None) -> str:
    if trader_ids is not None:
        return f"{alias}.trader_id = any(%(traders)s)"
    return f"{time_sql} >= %(since)s and {time_sql} <= %(until)s"


def gather(
    db: Database,
    *,
    trader_ids: Sequence[UUID] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    candles: Sequence[CandleClosed] | None = None,
    title: str = "cmon report",
) -> dict[str, Any]:
    """The report's data: the rows of these traders (a replay) or of the window (live)."""
    until = until or datetime.now(UTC)
    since = since or until - timedelta(hours=24)
    params = {"traders": list(trader_ids) if trader_ids is not None else None, "since": since, "until": until}
    a_time = "coalesce(a.candle_time, a.created_at)"
    analyses = db.fetch_all(
        "select a.signal_id, s.symbol, coalesce(w.interval, t.filter->>'interval', '1h') as interval,"
        f" a.analysis_type, a.decision, a.confidence, {a_time} as at, a.candle_time, a.total_tokens,"
        " a.latency_ms, a.trade_plan, a.shadow from public.signal_analyses a"
        " join public.signals s on s.id = a.signal_id"
        " join public.traders t on t.id = s.trader_id"
        " left join public.workflow_schedules w on w.id = a.workflow_id"
        f" where {_scope('s', a_time, trader_ids)} order by at",
        params,
    )
    decisions = db.fetch_all(
        "select d.position_id, p.symbol, coalesce(w.interval, t.filter->>'interval', '1h') as interval,"
        " d.candle_time as at, d.action, d.params, d.source, d.status, d.rejection_reason, d.confidence,"
        " d.price, d.after_state, d.total_tokens, d.latency_ms, d.shadow from public.management_decisions d"
        " join public.positions p on p.id = d.position_id join public.traders t on t.id = p.trader_id"
        " left join public.workflow_schedules w on w.id = d.workflow_id"
        f" where {_scope('p', 'd.candle_time', trader_ids)} order by d.candle_time",
        params,
    )
    positions = db.fetch_all(
        "select p.id, p.symbol, coalesce(w.interval, t.filter->>'interval', '1h') as interval, p.side,"
        " p.entry_price, p.stop_loss, p.take_profit, p.status, p.exit_price, p.realized_pnl,"
        " coalesce((select a.candle_time from public.signal_analyses a where a.signal_id = p.signal_id"
        "   and a.decision = 'enter_trade' order by a.candle_time limit 1), p.opened_at) as opened,"
        " (select min(d.candle_time) from public.management_decisions d where d.position_id = p.id"
        "   and d.status = 'applied' and d.after_state->>'status' = 'closed') as closed,"
        " (select d.before_state from public.management_decisions d where d.position_id = p.id"
        "   order by d.candle_time limit 1) as first_state"
        " from public.positions p join public.traders t on t.id = p.trader_id"
        " left join public.workflow_schedules w on w.position_id = p.id"
        f" where {_scope('p', 'p.opened_at', trader_ids)} order by p.opened_at",
        params,
    )
    errors = db.fetch_all(
        "select e.error_kind, e.message, e.created_at, e.candle_time from public.workflow_errors e"
        " join public.workflow_schedules w on w.id = e.workflow_id"
        f" where {_scope('w', 'e.created_at', trader_ids)} order by e.created_at",
        params,
    )
    disabled = db.fetch_all(
        "select w.id, w.symbol, w.interval, w.workflow_type, w.stopped_at from public.workflow_schedules w"
        f" where w.stopped_reason = 'auto_disabled' and {_scope('w', 'w.stopped_at', trader_ids)}",
        params,
    )
    return build_model(
        title=title,
        window=(since, until) if trader_ids is None else None,
        analyses=analyses,
        decisions=decisions,
        positions=positions,
        errors=errors,
        disabled=disabled,
        candles=candles or [],
    )


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


# -- drawing ------------------------------------------------------------------------------------------

W, H, PAD = 760, 260, 44


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


class _Scale:
    def __init__(self, lo: float, hi: float, out_lo: float, out_hi: float) -> None:
        if hi <= lo:
            lo, hi = lo - 1, hi + 1
        self.lo, self.hi, self.out_lo, self.out_hi = lo, hi, out_lo, out_hi

    def __call__(self, v: float) -> float:
        return round(self.out_lo + (v - self.lo) / (self.hi - self.lo) * (self.out_hi - self.out_lo), 2)


def _svg(name: str, body: str, height: int = H) -> str:
    return (
        f'<svg class="chart" data-chart="{_e(name)}" viewBox="0 0 {W} {height}" width="{W}" height="{height}"'
        f' xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(name)}">{body}</svg>'
    )


def _axes(x_label: str, y_lo: float, y_hi: float, y: _Scale, height: int = H) -> str:
    out = [
        f'<line class="axis" x1="{PAD}" y1="{height - PAD}" x2="{W - 10}" y2="{height - PAD}"/>',
        f'<line class="axis" x1="{PAD}" y1="10" x2="{PAD}" y2="{height - PAD}"/>',
        f'<text class="label" x="{W // 2}" y="{height - 8}" text-anchor="middle">{_e(x_label)}</text>',
    ]
    for v in (y_lo, (y_lo + y_hi) / 2, y_hi):
        out.append(
            f'<text class="tick" x="{PAD - 4}" y="{y(v) + 4}" text-anchor="end">{_e(f"{v:.6g}")}</text>'
        )
    return "".join(out)


def _text(x: float, y: float, text: str, anchor: str = "start") -> str:
    return f'<text class="tick" x="{x}" y="{y}" text-anchor="{anchor}">{_e(text)}</text>'


def _mark(shape: str, tip: str, colour: str, shadow: bool = False, **attrs: Any) -> str:
    extra = " ".join(f'{k.replace("_", "-")}="{_e(v)}"' for k, v in attrs.items())
    css = "mark shadow" if shadow else "mark"
    head = f'<{shape} class="{css}" fill="{colour}" stroke="{colour}" data-tip="{_e(tip)}" {extra}>'
    return f"{head}<title>{_e(tip)}</title></{shape}>"


def stream_chart(stream: Mapping[str, Any]) -> str:
    candles = stream["candles"]
    points: list[tuple[float, float]] = [(c[0], c[4]) for c in candles]
    prices = [v for c in candles for v in c[1:]]
    for m in stream["marks"]:
        if m["y"] is not None:
            prices.append(m["y"])
    for lv in stream["levels"]:
        prices += [s[1] for s in (*lv["sl"], *lv["tp"]) if s[1] is not None]
        if lv["entry"][1] is not None:
            prices.append(lv["entry"][1])
    times = (
        [c[0] for c in candles]
        + [m["t"] for m in stream["marks"]]
        + [lv["entry"][0] for lv in stream["levels"]]
    )
    if not times or not prices:
        return _svg(f"{stream['symbol']} {stream['interval']}", '<text x="20" y="40">no data</text>')
    lo, hi = min(prices), max(prices)
    margin = (hi - lo) * 0.08 or abs(hi) * 0.01 or 1
    y = _Scale(lo - margin, hi + margin, H - PAD, 10)
    t_lo, t_hi = min(times), max(times)
    x = _Scale(t_lo, t_hi, PAD + 12, W - 22)
    body = [
        _axes(
            f"{datetime.fromtimestamp(t_lo, UTC):%Y-%m-%d %H:%M} →"
            f" {datetime.fromtimestamp(t_hi, UTC):%Y-%m-%d %H:%M} UTC",
            lo - margin,
            hi + margin,
            y,
        )
    ]
    width = max(1.5, min(10.0, (W - PAD - 40) / max(1, len(candles)) * 0.6))
    for t, o, h, low, c in candles:
        colour = "#1f9d55" if c >= o else "#d64545"
        tip = f"{datetime.fromtimestamp(t, UTC):%Y-%m-%d %H:%M} O {o:g} H {h:g} L {low:g} C {c:g}"
        body.append(
            f'<line class="wick" x1="{x(t)}" x2="{x(t)}" y1="{y(h)}" y2="{y(low)}" stroke="{colour}"/>'
        )
        top, bottom = y(max(o, c)), y(min(o, c))
        body.append(
            _mark(
                "rect",
                tip,
                colour,
                x=round(x(t) - width / 2, 2),
                y=top,
                width=round(width, 2),
                height=max(1.0, round(bottom - top, 2)),
            )
        )
    if not candles and points == []:
        known = sorted((m["t"], m["y"]) for m in stream["marks"] if m["y"] is not None)
        if len(known) > 1:
            path = " ".join(f"{x(t)},{y(v)}" for t, v in known)
            body.append(f'<polyline class="price" points="{path}" fill="none" stroke="#999"/>')
    for lv in stream["levels"]:
        for name, steps, colour in (("stop-loss", lv["sl"], "#d64545"), ("take-profit", lv["tp"], "#1f9d55")):
            pts: list[str] = []
            level: float | None = None
            for t, v in steps:
                if level is not None:
                    pts.append(f"{x(t)},{y(level)}")
                if v is not None:
                    pts.append(f"{x(t)},{y(v)}")
                level = v
            if level is not None:
                pts.append(f"{x(lv['end'])},{y(level)}")
            if pts:
                body.append(
                    f'<polyline class="mark level" data-tip="{name}" points="{" ".join(pts)}"'
                    f' fill="none" stroke="{colour}" stroke-dasharray="5,3"><title>{name}</title></polyline>'
                )
        t0, p0 = lv["entry"]
        if p0 is not None:
            body.append(_mark("circle", f"entry {lv['side']} at {p0:g}", "#1f6fd6", cx=x(t0), cy=y(p0), r=5))
        if lv["exit"]:
            t1, p1 = lv["exit"]
            body.append(
                _mark("circle", f"exit at {p1:g} (PnL {lv['pnl']:g})", "#000", cx=x(t1), cy=y(p1), r=5)
            )
    for m in stream["marks"]:
        colour = DECISION_COLOURS.get(m["kind"], "#555")
        cy = y(m["y"]) if m["y"] is not None else 18
        # A shadow mark is drawn dashed and faded, with a `shadow` class (see the legend).
        shadow: dict[str, Any] = (
            {"shadow": True, "stroke_dasharray": "2,1", "opacity": 0.55} if m.get("shadow") else {}
        )
        if m["group"] == "analysis":
            body.append(_mark("path", m["tip"], colour, d=f"M{x(m['t'])},{cy - 12} l-5,-8 h10 z", **shadow))
        else:
            fill = colour if m.get("status") == "applied" else "none"
            body.append(
                _mark(
                    "rect",
                    m["tip"],
                    colour,
                    x=x(m["t"]) - 4,
                    y=cy + 8,
                    width=8,
                    height=8,
                    fill_opacity=1 if fill != "none" else 0,
                    **shadow,
                )
            )
    return _svg(f"{stream['symbol']} {stream['interval']}", "".join(body))


def bar_chart(
    name: str, bars: Sequence[tuple[str, float, str]], *, line: Sequence[tuple[str, float, str]] = ()
) -> str:
    """Vertical bars (label, value, colour), optional horizontal reference lines."""
    if not bars:
        return _svg(name, '<text x="20" y="40">no data</text>')
    top = max([v for _, v, _ in bars] + [v for _, v, _ in line] + [1])
    y = _Scale(0, top * 1.1, H - PAD, 10)
    step = (W - PAD - 20) / len(bars)
    body = [_axes("", 0, top * 1.1, y)]
    for i, (label, value, colour) in enumerate(bars):
        x0 = PAD + 6 + i * step
        body.append(
            _mark(
                "rect",
                f"{label}: {value:g}",
                colour,
                x=round(x0, 2),
                y=y(value),
                width=round(step * 0.7, 2),
                height=max(0.5, round(y(0) - y(value), 2)),
            )
        )
        body.append(_text(round(x0 + step * 0.35, 2), H - PAD + 14, label[:18], "middle"))
        body.append(_text(round(x0 + step * 0.35, 2), y(value) - 3, f"{value:g}", "middle"))
    for label, value, colour in line:
        body.append(
            f'<line class="ref" x1="{PAD}" x2="{W - 10}" y1="{y(value)}" y2="{y(value)}" stroke="{colour}"'
            f' stroke-dasharray="6,3"><title>{_e(label)}</title></line>'
        )
        body.append(
            f'<text class="tick" x="{W - 12}" y="{y(value) - 3}" text-anchor="end">{_e(label)}</text>'
        )
    return _svg(name, "".join(body))


def calibration_chart(points: Sequence[Mapping[str, Any]]) -> str:
    size = H
    s = _Scale(0, 1, PAD, W - 20)
    y = _Scale(0, 1, size - PAD, 10)
    body = [
        _axes("confidence → share of calls the next candle proved right", 0, 1, y),
        f'<line class="ref" x1="{s(0)}" y1="{y(0)}" x2="{s(1)}" y2="{y(1)}"'
        ' stroke="#bbb" stroke-dasharray="4,4"/>',
    ]
    if not points:
        body.append('<text x="60" y="40">no directional call with a following candle</text>')
    for p in points:
        tip = (
            f"confidence {p['bucket'] - 0.05:.1f} to {p['bucket'] + 0.05:.1f}:"
            f" {p['right'] * 100:.0f}% right of {p['calls']}"
        )
        body.append(
            _mark("circle", tip, "#1f6fd6", cx=s(p["bucket"]), cy=y(p["right"]), r=min(12, 4 + p["calls"]))
        )
    return _svg("calibration", "".join(body))


def render(model: Mapping[str, Any]) -> str:
    """The whole page as one string."""
    sections = []
    for stream in model["streams"]:
        sections.append(f"<h3>{_e(stream['symbol'])} {_e(stream['interval'])}</h3>{stream_chart(stream)}")
    if not model["streams"]:
        sections.append("<p>No stream had activity in this window.</p>")
    shadow_counts = model.get("decisions_shadow", {})
    decisions = [
        (k, float(v - shadow_counts.get(k, 0)), DECISION_COLOURS.get(k, "#555"))
        for k, v in sorted(model["decisions"].items())
        if v - shadow_counts.get(k, 0)
    ]
    decisions += [(f"{k} (shadow)", float(v), "#aaaaaa") for k, v in sorted(shadow_counts.items())]
    actions: list[tuple[str, float, str]] = []
    for k, v in model["actions"].items():
        base = k.split(" ")[0]
        actions.append((f"{k} applied", float(v["applied"]), DECISION_COLOURS.get(base, "#555")))
        if v["rejected"]:
            actions.append((f"{k} rejected", float(v["rejected"]), "#bbbbbb"))
    hist = Counter(min(9, int(c * 10)) for c in model["confidence"])
    confidence = (
        [(f"{b / 10:.1f}", float(hist[b]), "#6b7fd7") for b in range(10)] if model["confidence"] else []
    )
    tokens = [(hour[5:], float(v), "#6b7fd7") for hour, v in model["tokens_per_hour"]]
    latency = (
        [(k, float(v), "#d68b1f") for k, v in model["latency"].items()] if model["latency_count"] else []
    )
    errors = [(k, float(v), "#d64545") for k, v in sorted(model["errors"].items())]
    errors.append(("auto-disabled", float(len(model["auto_disabled"])), "#333333"))
    references = [
        ("projection", model["projection_per_hour"], "#1f9d55"),
        ("alarm 125 %", model["alarm_per_hour"], "#d64545"),
    ]
    window = f"window {model['window'][0]} → {model['window'][1]}" if model["window"] else "a replay run"
    rows = "".join(
        f"<tr><td>{_e(r['at'])}</td><td>{_e(r['kind'])}</td><td>{_e(r['message'][:160])}</td></tr>"
        for r in model["error_rows"]
    )
    legend = " ".join(
        f'<span class="key"><i style="background:{c}"></i>{_e(k)}</span>' for k, c in DECISION_COLOURS.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(model["title"])}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 820px; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 16px; margin-top: 28px; }} h3 {{ font-size: 14px; }}
svg.chart {{ background: #fafafa; border: 1px solid #e5e5e5; display: block; max-width: 100%; height: auto; }}
.axis {{ stroke: #999; }} .tick, .label {{ font-size: 10px; fill: #555; }}
.key {{ margin-right: 10px; font-size: 12px; }}
.key i {{ display: inline-block; width: 10px; height: 10px; margin-right: 4px; }}
#tip {{ position: fixed; pointer-events: none; background: #222; color: #fff; padding: 3px 6px;
  font-size: 12px;
  border-radius: 3px; display: none; }}
table {{ border-collapse: collapse; font-size: 12px; }}
td {{ border-bottom: 1px solid #eee; padding: 2px 6px; }}
</style></head>
<body>
<h1>{_e(model["title"])}</h1>
<p>{_e(window)} · generated {_e(model["generated_at"])} · ▼ analysis, ■ management action (hollow: rejected),
● entry/exit, dashed: stop-loss (red) and take-profit (green) as they stood.
Faded, dotted outline: shadow cohort (recorded, not applied) — {model.get("shadow", {}).get("analyses", 0)}
shadow analyses, {model.get("shadow", {}).get("decisions", 0)} shadow management decisions.</p>
<p>{legend}</p>
<h2>Streams</h2>
{"".join(sections)}
<h2>Decisions (analyses)</h2>{bar_chart("decisions", decisions)}
<h2>Management actions</h2>{bar_chart("actions", actions)}
<h2>Confidence</h2>{bar_chart("confidence histogram", confidence)}
<h2>Calibration</h2>{calibration_chart(model["calibration"])}
<h2>Tokens per hour</h2>{bar_chart("tokens per hour", tokens, line=references)}
<h2>Analysis latency (ms, {model["latency_count"]} calls)</h2>{bar_chart("latency", latency)}
<h2>Errors and auto-disables</h2>{bar_chart("errors", errors)}
<table>{rows}</table>
<div id="tip"></div>
<script>
(function () {{
  var tip = document.getElementById("tip");
  document.querySelectorAll(".mark").forEach(function (el) {{
    el.addEventListener("mousemove", function (ev) {{
      tip.textContent = el.getAttribute("data-tip");
      tip.style.display = "block";
      tip.style.left = (ev.clientX + 12) + "px";
      tip.style.top = (ev.clientY + 12) + "px";
    }});
    el.addEventListener("mouseleave", function () {{ tip.style.display = "none"; }});
  }});
  document.body.setAttribute("data-charts", String(document.querySelectorAll("svg.chart").length));
}})();
</script>
<script type="application/json" id="report-data">{_e(json.dumps(model, default=str))}</script>
</body></html>
"""


def write_report(model: Mapping[str, Any], path: Path) -> None:
    """Write atomically: a reader never sees half a report."""
    text = render(model)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ReportError(f"cannot write {path}: {e}") from e


class ReportError(CmonError):
    """The report could not be made as asked."""


# -- the command --------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE.html", help="where to write the report"
    )
    parser.add_argument(
        "--hours", type=float, default=168.0, help="the window, ending now (default 168: a week)"
    )
    parser.add_argument("--database-url", help="Postgres URL (default: $DATABASE_URL)")
    parser.add_argument(
        "--candles", type=Path, metavar="FILE", help="candles for the charts (as cmon replay reads)"
    )
    parser.add_argument("--symbol", help="with REST klines in --candles")
    parser.add_argument("--interval", help="with REST klines in --candles")
    parser.add_argument(
        "--no-download", action="store_true", help="do not download candles through $BINANCE_REST_URL"
    )
    parser.add_argument("--json", action="store_true", help="also print the report's data as JSON")


def _download(streams: Iterable[tuple[str, str]], since: datetime, until: datetime) -> list[CandleClosed]:
    from functions.local.replay import download_candles

    candles: list[CandleClosed] = []
    for symbol, interval in streams:
        try:
            data = download_candles(
                symbol, interval, str(int(since.timestamp() * 1000)), str(int(until.timestamp() * 1000))
            )
        except CmonError as e:
            print(f"cmon report: no candles for {symbol} {interval}: {e}", file=sys.stderr)
            continue
        candles += data.candles
    return candles


def run(args: argparse.Namespace) -> int:
    from functions.adapters.postgres import Database
    from functions.local.replay import load_candles

    url = args.database_url or os.environ.get("DATABASE_URL")
    if not url:
        print("cmon report: no database: pass --database-url or set DATABASE_URL", file=sys.stderr)
        return 2
    if args.hours <= 0:
        print("cmon report: --hours must be positive", file=sys.stderr)
        return 2
    if not args.out.resolve().parent.is_dir():
        print(f"cmon report: {args.out}: its folder does not exist", file=sys.stderr)
        return 2
    until = datetime.now(UTC)
    since = until - timedelta(hours=args.hours)
    db = Database(url, application_name="cmon-report")
    try:
        candles: list[CandleClosed] = []
        if args.candles is not None:
            candles = load_candles(
                args.candles, symbol=args.symbol, interval=args.interval, market=Market.SPOT
            ).candles
        model = gather(
            db, since=since, until=until, candles=candles, title=f"cmon report — last {args.hours:g} h"
        )
        if args.candles is None and not args.no_download:
            streams = [(s["symbol"], s["interval"]) for s in model["streams"]]
            if streams:
                candles = _download(streams, since, until)
                model = gather(
                    db,
                    since=since,
                    until=until,
                    candles=candles,
                    title=f"cmon report — last {args.hours:g} h",
                )
        write_report(model, args.out)
    except CmonError as e:
        print(f"cmon report: {e}", file=sys.stderr)
        return 2
    finally:
        db.close()
    summary = {
        "out": str(args.out),
        "streams": len(model["streams"]),
        "analyses": sum(model["decisions"].values()),
    }
    print(
        json.dumps({**summary, "data": model}, indent=2, default=str)
        if args.json
        else f"wrote {args.out}: {summary['streams']} stream(s), {summary['analyses']} analyses"
    )
    return 0
