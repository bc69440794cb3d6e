"""What the demo prints on stdout: the sample requests as ``curl`` lines with their answers, and
the table of stages with their wall times."""

from __future__ import annotations

import json
import os
import time

from mindmirror.demo.pipeline import DemoResult
from mindmirror.demo.settings import STARTED_ENV

__all__ = ["print_exchanges", "print_summary"]


def print_exchanges(result: DemoResult, keep_serving: bool = True) -> None:
    if keep_serving:
        print(f"\nThe student is serving at {result.url}. Try it:\n")
    else:
        print(f"\nThe student answered at {result.url} (--once: the service stops now):\n")
    for exchange in result.exchanges:
        print(exchange["curl"])
        print(json.dumps(exchange["response"], ensure_ascii=False))
        if exchange["note"]:
            print(f"# {exchange['note']}")
        elif exchange["gold"]:
            print(f"# gold answer: {exchange['gold']}")
        print()


def print_summary(result: DemoResult, demo_started: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mindmirror demo", title_justify="left")
    table.add_column("stage")
    table.add_column("wall time", justify="right")
    table.add_column("result")
    setup = _setup_seconds(demo_started)
    if setup is not None:
        table.add_row("set-up", f"{setup:.0f} s", "make: virtual environment and pinned install")
    for stage in result.stages:
        time_text = f"{stage.seconds:.1f} s" + (" (reused)" if stage.reused else "")
        table.add_row(stage.name, time_text, stage.summary)
    total = time.time() - demo_started + (setup or 0.0)
    label = "total (including set-up)" if setup is not None else "total"
    table.add_row(label, f"{total:.0f} s", f"work directory {result.work_dir}")
    Console().print(table)


def _setup_seconds(demo_started: float) -> float | None:
    value = os.environ.get(STARTED_ENV)
    if not value:
        return None
    try:
        return max(0.0, demo_started - float(value))
    except ValueError:
        return None
