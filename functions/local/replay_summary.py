"""`cmon replay`'s summary (what the run did, read back from the database, and what each
position would have made), the comparison of two runs, and their human-readable forms."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from functions.adapters.operations import ReplayReads
from functions.core.backtest import Action, Bar, simulate
from functions.core.errors import InvalidInput
from functions.core.models import Side
from functions.core.stats import percentiles

if TYPE_CHECKING:
    from functions.adapters.postgres import Database
    from functions.local.replay import ReplayRun

SUMMARY_VERSION = 1

StreamKey = tuple[str, str]  # (symbol, interval)


# -- the summary ------------------------------------------------------------------------------


def _num(value: Any) -> str | None:
    return None if value is None else format(Decimal(str(value)).normalize(), "f")


def summarise(run: ReplayRun, db: Database, usd_per_1k: float) -> dict[str, Any]:
    """Everything the replay did, read back from the database (the truth), plus the
    simulated result of every position against the candles."""
    signal_names = {t.entity_id: t.name for t in run.tracked if t.kind == "signal"}
    position_names = {t.entity_id: t.name for t in run.tracked if t.kind == "position"}
    reads = ReplayReads(db, list({t.trader_id for t in run.tracked}))
    analyses = reads.analyses()
    positions = reads.positions()
    for p in positions:
        if p["id"] not in position_names:
            position_names[p["id"]] = signal_names.get(p["signal_id"], str(p["id"])[:8])
    decisions = reads.decisions()
    workflows = reads.workflows()
    errors = reads.errors()

    def stream_of(symbol: str, when: datetime | None) -> StreamKey | None:
        for s in run.streams:
            if s[0] == symbol and (when is None or (s, when) in run.index_of):
                return s
        return None

    timeline: list[dict[str, Any]] = []
    for a in analyses:
        if a["analysis_type"] != "monitoring":
            continue
        stream = stream_of(a["symbol"], a["candle_time"])
        timeline.append(
            {
                "kind": "analysis",
                "entity": signal_names.get(a["signal_id"], str(a["signal_id"])[:8]),
                "stream": f"{stream[0]} {stream[1]}" if stream else a["symbol"],
                "index": run.index_of.get((stream, a["candle_time"])) if stream else None,
                "candle_time": a["candle_time"].isoformat(),
                "decision": a["decision"],
                "confidence": float(a["confidence"]) if a["confidence"] is not None else None,
                "tokens": int(a["total_tokens"]),
            }
        )
    symbols_of = {p["id"]: p["symbol"] for p in positions}
    for d in decisions:
        stream = stream_of(symbols_of[d["position_id"]], d["candle_time"])
        timeline.append(
            {
                "kind": "decision",
                "entity": position_names.get(d["position_id"], str(d["position_id"])[:8]),
                "stream": f"{stream[0]} {stream[1]}" if stream else symbols_of[d["position_id"]],
                "index": run.index_of.get((stream, d["candle_time"])) if stream else None,
                "candle_time": d["candle_time"].isoformat(),
                "decision": d["action"] + (" (paper)" if d["source"] == "paper" else ""),
                "status": d["status"],
                "reason": d["rejection_reason"],
                "params": d["params"] or {},
                "confidence": float(d["confidence"]) if d["confidence"] is not None else None,
                "tokens": int(d["total_tokens"]),
            }
        )
    timeline.sort(key=lambda e: (e["candle_time"], e["kind"], e["entity"]))

    by_action: dict[str, dict[str, int]] = defaultdict(lambda: {"applied": 0, "rejected": 0})
    for d in decisions:
        name = d["action"] + (" (paper)" if d["source"] == "paper" else "")
        by_action[name][d["status"]] += 1
    tokens = {
        part: sum(int(r[f"{part}_tokens"]) for r in (*analyses, *decisions))
        for part in ("prompt", "completion", "total")
    }
    latency = [float(r["latency_ms"]) for r in (*analyses, *decisions) if r["latency_ms"] is not None]

    sims = [_simulate_position(run, p, analyses, decisions, position_names) for p in positions]
    total_pnl = sum((Decimal(s["simulated"]["total_pnl"]) for s in sims), Decimal(0))
    outcome_names = Counter(
        ("active" if w["is_active"] else str(w["stopped_reason"])) + f" ({w['workflow_type']})"
        for w in workflows
    )
    streams = []
    for s in run.streams:
        mine = run.stream_candles(s)
        streams.append(
            {
                "symbol": s[0],
                "interval": s[1],
                "market": mine[0].market.value,
                "candles": len(mine),
                "first_close": mine[0].close_time.isoformat(),
                "last_close": mine[-1].close_time.isoformat(),
            }
        )
    return {
        "version": SUMMARY_VERSION,
        "input": {
            "source": run.data.source,
            "format": run.data.format,
            "candles_sha256": run.data.digest,
            "duplicates_dropped": run.data.duplicates,
        },
        "llm_proxy": run.llm_proxy,
        "candles": {"total": len(run.data.candles), "streams": streams},
        "entities": [
            {"name": t.name, "kind": t.kind, "stream": f"{t.stream[0]} {t.stream[1]}", "at": t.at}
            for t in run.tracked
        ],
        "analyses": {
            "total": len(analyses),
            "initial": sum(1 for a in analyses if a["analysis_type"] == "initial"),
            "monitoring": sum(1 for a in analyses if a["analysis_type"] == "monitoring"),
            "by_decision": dict(
                Counter(a["decision"] for a in analyses if a["analysis_type"] == "monitoring")
            ),
        },
        "management": {
            "total": len(decisions),
            "applied": sum(1 for d in decisions if d["status"] == "applied"),
            "rejected": sum(1 for d in decisions if d["status"] == "rejected"),
            "by_action": {k: by_action[k] for k in sorted(by_action)},
            "rejected_reasons": dict(
                Counter(d["rejection_reason"] for d in decisions if d["status"] == "rejected")
            ),
        },
        "tokens": {
            **tokens,
            "usd_per_1k": usd_per_1k,
            "estimated_usd": round(tokens["total"] / 1000 * usd_per_1k, 6),
        },
        "latency_ms": percentiles(latency),
        "errors": {"total": len(errors), "by_kind": dict(Counter(e["error_kind"] for e in errors))},
        "workflows": dict(sorted(outcome_names.items())),
        "positions": sims,
        "pnl": {"total": _num(total_pnl)},
        "timeline": timeline,
        "wall_time_s": round(run.wall_s, 2),
    }


def _simulate_position(
    run: ReplayRun,
    p: dict[str, Any],
    analyses: list[dict[str, Any]],
    decisions: list[dict[str, Any]],
    names: Mapping[Any, str],
) -> dict[str, Any]:
    mine = [d for d in decisions if d["position_id"] == p["id"]]
    entered = next(
        (a for a in analyses if a["signal_id"] == p["signal_id"] and a["decision"] == "enter_trade"), None
    )
    tracked = next((t for t in run.tracked if t.entity_id == p["id"]), None)
    stream = next(s for s in run.streams if s[0] == p["symbol"])
    if tracked is not None:
        stream = tracked.stream
    candles = run.stream_candles(stream)
    if entered is not None and entered["candle_time"] is not None:
        entry_time = entered["candle_time"]
    elif tracked is not None:
        entry_time = candles[tracked.at].open_time
    else:
        entry_time = candles[0].open_time
    first = mine[0]["before_state"] if mine and mine[0]["before_state"] else None
    start_sl = first.get("stop_loss") if first else p["stop_loss"]
    start_tp = first.get("take_profit") if first else p["take_profit"]
    contracts = p["initial_contracts"] or p["contracts"]
    if first and first.get("contracts") is not None:
        contracts = Decimal(str(first["contracts"]))
    actions = {
        d["candle_time"]: Action(d["action"], dict(d["params"] or {}))
        for d in mine
        if d["status"] == "applied" and d["source"] == "llm"
    }
    result = simulate(
        side=Side(p["side"]),
        entry_time=entry_time,
        entry_price=Decimal(str(p["entry_price"])),
        contracts=Decimal(str(contracts)),
        stop_loss=None if start_sl is None else Decimal(str(start_sl)),
        take_profit=None if start_tp is None else Decimal(str(start_tp)),
        bars=[Bar(c.close_time, c.high, c.low, c.close) for c in candles],
        actions=actions,
    )
    return {
        "name": names.get(p["id"], str(p["id"])[:8]),
        "stream": f"{stream[0]} {stream[1]}",
        "side": p["side"],
        "entry_time": entry_time.isoformat(),
        "entry_price": _num(p["entry_price"]),
        "stop_loss": _num(start_sl),
        "take_profit": _num(start_tp),
        "recorded": {
            "status": p["status"],
            "exit_price": _num(p["exit_price"]),
            "realized_pnl": _num(p["realized_pnl"]),
            "close_reason": p["close_reason"],
        },
        "simulated": result.to_json(),
    }


# -- comparing two runs -----------------------------------------------------------------------


def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Decision agreement, token and PnL deltas of two runs over the same candles."""
    for name, run in (("A", a), ("B", b)):
        if not isinstance(run, Mapping) or run.get("version") != SUMMARY_VERSION or "timeline" not in run:
            raise InvalidInput(f"{name} is not a `cmon replay --json` output")
    if a["input"]["candles_sha256"] != b["input"]["candles_sha256"]:
        raise InvalidInput("the two runs were not over the same candles (candles_sha256 differs)")

    def keyed(run: Mapping[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
        return {(e["kind"], e["entity"], e["candle_time"]): e for e in run["timeline"]}

    ka, kb = keyed(a), keyed(b)
    both = sorted(set(ka) & set(kb))
    agree = [k for k in both if ka[k]["decision"] == kb[k]["decision"]]
    differences = [
        {"kind": k[0], "entity": k[1], "candle_time": k[2], "a": ka[k]["decision"], "b": kb[k]["decision"]}
        for k in both
        if ka[k]["decision"] != kb[k]["decision"]
    ]
    pnl_a, pnl_b = Decimal(a["pnl"]["total"] or 0), Decimal(b["pnl"]["total"] or 0)
    return {
        "candles": a["candles"]["total"],
        "decisions": {
            "compared": len(both),
            "agree": len(agree),
            "agreement": round(len(agree) / len(both), 4) if both else None,
            "only_in_a": len(set(ka) - set(kb)),
            "only_in_b": len(set(kb) - set(ka)),
            "differences": differences,
        },
        "tokens": {
            "a": a["tokens"]["total"],
            "b": b["tokens"]["total"],
            "delta": b["tokens"]["total"] - a["tokens"]["total"],
        },
        "cost_usd": {
            "a": a["tokens"]["estimated_usd"],
            "b": b["tokens"]["estimated_usd"],
            "delta": round(b["tokens"]["estimated_usd"] - a["tokens"]["estimated_usd"], 6),
        },
        "pnl": {"a": _num(pnl_a), "b": _num(pnl_b), "delta": _num(pnl_b - pnl_a)},
    }


# -- output -----------------------------------------------------------------------------------


def _counts(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items()) or "none"


def human_summary(s: Mapping[str, Any]) -> str:
    an, mg, tk, lat = s["analyses"], s["management"], s["tokens"], s["latency_ms"]
    streams = "; ".join(f"{x['symbol']} {x['interval']} {x['candles']}" for x in s["candles"]["streams"])
    actions = ", ".join(
        f"{k} {v['applied']}" + (f" (+{v['rejected']} rejected)" if v["rejected"] else "")
        for k, v in mg["by_action"].items()
    )
    rows = [
        ("candles", f"{s['candles']['total']} ({streams}; {s['input']['format']})"),
        ("llm-proxy", s["llm_proxy"]),
        (
            "analyses",
            f"{an['monitoring']} monitoring ({_counts(an['by_decision'])}) + {an['initial']} initial",
        ),
        (
            "management actions",
            f"applied {mg['applied']} ({actions or 'none'}), rejected {mg['rejected']}"
            + (f" ({_counts(mg['rejected_reasons'])})" if mg["rejected"] else ""),
        ),
        (
            "tokens",
            f"{tk['total']:,} (prompt {tk['prompt']:,}, completion {tk['completion']:,})"
            f" ≈ ${tk['estimated_usd']:.4f} at ${tk['usd_per_1k']}/1k",
        ),
        (
            "analysis latency",
            f"p50 {lat['p50']:.0f} ms · p95 {lat['p95']:.0f} ms · max {lat['max']:.0f} ms"
            f" ({lat['count']} calls)",
        ),
        ("errors", f"{s['errors']['total']} ({_counts(s['errors']['by_kind'])})"),
        ("workflows", _counts(s["workflows"])),
    ]
    for p in s["positions"]:
        sim = p["simulated"]
        steps = (
            " → ".join(f"{e['kind']}@{e['price']}" for e in sim["events"] if e["kind"] != "entry")
            or "still open"
        )
        exit_text = sim["exit_reason"] or f"open, unrealized {sim['unrealized_pnl']}"
        rows.append(
            (
                f"position {p['name']}",
                f"{p['side']} {p['entry_price']} (SL {p['stop_loss']}, TP {p['take_profit']}): {steps};"
                f" {exit_text}; PnL {sim['total_pnl']} (recorded {p['recorded']['realized_pnl']})",
            )
        )
    rows.append(("simulated PnL", str(s["pnl"]["total"])))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def human_compare(c: Mapping[str, Any]) -> str:
    d = c["decisions"]
    agreement = "n/a" if d["agreement"] is None else f"{d['agreement'] * 100:.1f}%"
    lines = [
        f"candles           {c['candles']}",
        f"decisions         {d['agree']}/{d['compared']} agree ({agreement}); only in A {d['only_in_a']},"
        f" only in B {d['only_in_b']}",
        f"tokens            A {c['tokens']['a']:,} · B {c['tokens']['b']:,}"
        f" · delta {c['tokens']['delta']:+,}",
        f"cost (USD)        A {c['cost_usd']['a']} · B {c['cost_usd']['b']}"
        f" · delta {c['cost_usd']['delta']:+}",
        f"PnL               A {c['pnl']['a']} · B {c['pnl']['b']} · delta {c['pnl']['delta']}",
    ]
    lines += [f"  {x['candle_time']} {x['entity']}: {x['a']} → {x['b']}" for x in d["differences"][:20]]
    return "\n".join(lines)
