"""The Grafana dashboard and the prometheus-adapter rule: importable JSON, PromQL that parses
and references only the metrics docs/contracts.md promises, and an autoscaling metric that is
the same name in the adapter rule, the chart and the contract."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.deploy.support import CHART_DIR, CONTRACTS, REPO, contract_metric_names

promql = pytest.importorskip("promql_parser", reason="promql-parser (dev extra) is not installed")

DASHBOARD = CHART_DIR / "dashboards" / "mindmirror.json"
ADAPTER_VALUES = REPO / "deploy" / "prometheus-adapter" / "values.yaml"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# What Grafana substitutes before a query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*", "$endpoint": ".*"}


def contract_metric_types() -> dict[str, str]:
    """metric -> counter | gauge | histogram, from the contract's metric types table."""
    types = {}
    for line in CONTRACTS.read_text().splitlines():
        match = re.match(
            r"\| `(mindmirror_[a-z_]+)(?:\{[^}]*\})?` \| (counter|gauge|histogram) \|", line
        )
        if match:
            types[match.group(1)] = match.group(2)
    return types


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries() -> list[str]:
    board = dashboard()
    queries = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["query"]["query"])
    return queries


def selector_names(query: str) -> list[str | None]:
    """Metric names of every vector selector in a PromQL query (label_values() is Grafana's:
    its first argument is a selector)."""
    match = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
    if match:
        query = match.group(1)
    for variable, value in GRAFANA_VARIABLES.items():
        query = query.replace(variable, value)
    expression = promql.parse(query)
    names: list[str | None] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql.VectorSelector):
            names.append(node.name)

    promql.walk(expression, visit)
    return names


def test_contract_tables_agree():
    assert set(contract_metric_types()) == contract_metric_names()


def test_dashboard_is_importable():
    board = dashboard()
    assert board["title"]
    assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"])
    assert isinstance(board["schemaVersion"], int)
    # No fixed data source: a `datasource` variable, so it imports into any Grafana.
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
        grid = panel["gridPos"]
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24
        panel_cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not panel_cells & cells, f"panel {panel['title']!r} overlaps another"
        cells |= panel_cells


def test_dashboard_queries_parse_and_use_only_contract_metrics():
    types = contract_metric_types()
    used = set()
    for query in dashboard_queries():
        try:
            names = selector_names(query)
        except ValueError as error:
            pytest.fail(f"PromQL does not parse: {query!r}: {error}")
        assert names, query
        for name in names:
            assert name, f"selector without a metric name in {query!r}"
            base = name
            for suffix in HISTOGRAM_SUFFIXES:
                if name.endswith(suffix) and types.get(name.removesuffix(suffix)) == "histogram":
                    base = name.removesuffix(suffix)
            assert base in types, f"{name} (in {query!r}) is not a metric in docs/contracts.md"
            if base == name:
                assert types[name] != "histogram", f"{name} is a histogram: use _bucket/_sum/_count"
            used.add(base)
    # Every promised metric is on the dashboard.
    assert used == set(types)


def test_invalid_promql_is_caught():
    """The parse check above can fail."""
    with pytest.raises(ValueError, match="unclosed"):
        selector_names("sum(rate(mindmirror_requests_total[1m])")


def test_dashboard_has_the_panels_an_operator_needs():
    queries = {
        panel["title"]: [t["expr"] for t in panel["targets"]] for panel in dashboard()["panels"]
    }
    joined = {title: " ".join(exprs) for title, exprs in queries.items()}

    def panel_with(*fragments: str) -> str:
        for title, text in joined.items():
            if all(f in text for f in fragments):
                return title
        pytest.fail(f"no panel queries {fragments}")

    panel_with("rate(mindmirror_requests_total")
    latency = panel_with("mindmirror_request_latency_seconds_bucket")
    assert all(f"histogram_quantile({q}," in joined[latency] for q in ("0.5", "0.95", "0.99"))
    panel_with("mindmirror_queue_depth")
    panel_with("mindmirror_batch_size_sum", "mindmirror_batch_size_count")
    panel_with("rate(mindmirror_generated_tokens_total")
    errors = panel_with("mindmirror_requests_total", "status")
    assert "by (endpoint, status)" in joined[errors]


def test_adapter_rule_serves_the_hpa_metric_from_the_contract_gauge():
    adapter = yaml.safe_load(ADAPTER_VALUES.read_text())
    [rule] = adapter["rules"]["custom"]
    chart_values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    hpa_metric = chart_values["autoscaling"]["queueDepth"]["metricName"]
    assert rule["name"]["as"] == hpa_metric
    series = rule["seriesQuery"]
    [source] = selector_names(series)
    assert contract_metric_types()[source] == "gauge"
    assert re.fullmatch(rule["name"]["matches"], source)
    # The adapter maps the scrape's namespace/pod labels to Kubernetes objects (per-pod metric).
    assert rule["resources"]["overrides"] == {
        "namespace": {"resource": "namespace"},
        "pod": {"resource": "pod"},
    }
    # The metrics query, with the adapter's template filled in, is valid PromQL.
    filled = (
        rule["metricsQuery"]
        .replace("<<.Series>>", source)
        .replace("<<.LabelMatchers>>", 'namespace="serving",pod=~"mm-.*"')
        .replace("<<.GroupBy>>", "pod")
    )
    assert selector_names(filled) == [source]
