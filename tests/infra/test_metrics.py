"""Every metric the alarms and the dashboard watch is one the code emits.

A renamed or never-emitted metric leaves an alarm silently blind (or, for the feed
silence alarm, permanently firing). The template's names are parsed from the alarms and
the dashboard body; the code's from `MetricName.<MEMBER>` attribute uses (AST) in
functions/ and feed_service/ outside the catalogue itself.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.infra import _cfn

CATALOGUE = "functions/core/telemetry.py"


def template_metric_names(sam_template: dict[str, Any]) -> set[str]:
    from functions.core.telemetry import NAMESPACE

    names: set[str] = set()
    for alarm in _cfn.resources_of(sam_template, "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        if props.get("Namespace") == NAMESPACE:
            names.add(props["MetricName"])
        for m in props.get("Metrics", []):
            metric = m.get("MetricStat", {}).get("Metric", {})
            if metric.get("Namespace") == NAMESPACE:
                names.add(metric["MetricName"])
    for dashboard in _cfn.resources_of(sam_template, "AWS::CloudWatch::Dashboard").values():
        body = _cfn.sub_text(dashboard["Properties"]["DashboardBody"]) or ""
        parsed = json.loads(re.sub(r"\$\{[^}]+\}", "0", body))
        for widget in parsed["widgets"]:
            for row in widget["properties"].get("metrics", []):
                if len(row) >= 2 and row[0] == NAMESPACE:
                    names.add(row[1])
    return names


def emitted_members() -> set[str]:
    files = _cfn.python_files("functions", "feed_service", exclude=(CATALOGUE,))
    return _cfn.attribute_uses(files, "MetricName")


def test_template_names_only_catalogued_metrics(sam_template: dict[str, Any]) -> None:
    from functions.core.telemetry import MetricName

    names = template_metric_names(sam_template)
    assert names, "the scan found no metric"
    unknown = sorted(names - {m.value for m in MetricName})
    assert unknown == [], f"not in MetricName: {unknown}"


def test_every_watched_metric_is_emitted_by_the_code(sam_template: dict[str, Any]) -> None:
    from functions.core.telemetry import MetricName

    by_value = {m.value: m.name for m in MetricName}
    watched = {by_value[n] for n in template_metric_names(sam_template) if n in by_value}
    unemitted = sorted(watched - emitted_members())
    assert unemitted == [], f"watched by the template but never emitted: {unemitted}"
