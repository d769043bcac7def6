"""`cmon report`'s page: the model (`report_model.build_model`) drawn as one
self-contained HTML string — inline SVG charts whose data points carry `class="mark"`,
a few lines of inline JS for tooltips, the model itself as JSON; no external reference."""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

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
