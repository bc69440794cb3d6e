"""The service's metrics are the ones docs/contracts.md promises the dashboard and the HPA."""

from __future__ import annotations

import re
from pathlib import Path

from mindmirror.service.metrics import Metrics

CONTRACTS = Path(__file__).resolve().parents[2] / "docs" / "contracts.md"


def contract() -> dict[str, tuple[str, set[str]]]:
    """metric -> (type, label names), from the contract's metric types table."""
    found = {}
    for line in CONTRACTS.read_text().splitlines():
        match = re.match(
            r"\| `(mindmirror_[a-z_]+)(?:\{([^}]*)\})?` \| (counter|gauge|histogram) \|", line
        )
        if match:
            labels = set(filter(None, (match.group(2) or "").split(",")))
            found[match.group(1)] = (match.group(3), labels)
    return found


def test_names_types_and_labels_match_the_contract() -> None:
    promised = contract()
    assert len(promised) == 8
    metrics = Metrics()
    served = {}
    for value in vars(metrics).values():
        if hasattr(value, "_labelnames"):
            suffix = "_total" if value._type == "counter" else ""
            served[value._name + suffix] = (value._type, set(value._labelnames))
    assert served == promised
    # And the exposition uses exactly those names.
    text = metrics.render().decode()
    for name in promised:
        assert f"# TYPE {name.removesuffix('_total')} " in text or f"# TYPE {name} " in text
