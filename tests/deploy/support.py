"""Helpers shared by the deployment tests: render the Helm chart with Helm's own engine
(helm-python-sdk binds Helm's Go SDK; no helm binary, no cluster), parse what it renders, and
read the service contract the chart and the dashboard must agree with."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "mindmirror"
CONTRACTS = REPO / "docs" / "contracts.md"
RELEASE = "mm"
NAMESPACE = "serving"

helm = pytest.importorskip("helm_python", reason="helm-python-sdk (dev extra) is not installed")


def render(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Template path -> rendered text, exactly as `helm template` / `helm install` renders."""
    with helm.Chart.load(CHART_DIR) as chart:
        return chart.render(values=values or {}, name=RELEASE, namespace=NAMESPACE)


def objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object in a render (NOTES.txt and empty templates dropped)."""
    found: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".txt"):
            continue
        found.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return found


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matching = by_kind(objs, kind)
    assert len(matching) == 1, f"expected one {kind}, got {len(matching)}"
    return matching[0]


def contract_env_names() -> set[str]:
    """MINDMIRROR_* variables of the settings table in docs/contracts.md."""
    rows = [
        line for line in CONTRACTS.read_text().splitlines() if line.startswith("| `MINDMIRROR_")
    ]
    assert rows, "docs/contracts.md lost its settings table"
    return {
        name for row in rows for name in re.findall(r"MINDMIRROR_[A-Z0-9_]+", row.split("|")[1])
    }


def contract_metric_names() -> set[str]:
    """Metric names from the contract's "Metrics (all prefixed `mindmirror_`)" paragraph."""
    text = CONTRACTS.read_text()
    match = re.search(r"Metrics \(all prefixed `mindmirror_`\):(.*?)\n\n", text, re.S)
    assert match, "docs/contracts.md lost its metrics paragraph"
    names = re.findall(r"`([a-z_]+)(?:\{[^}]*\})?`", match.group(1))
    return {f"mindmirror_{name}" for name in names}
