"""``mindmirror demo --ablation``: the paper's Table 1 comparison on the demo's data.

On the demo's arith data and the simulated teacher's distillation set, for every seed:
standard distillation (labels only), CoT distillation with 1 CoT, with all N CoTs, N CoTs
after the self-evaluation stage (Mind's Mirror), and N CoTs on data cleaned by the teacher's
verdicts (judged-wrong CoTs dropped; verdict-weighted majority labels with only the agreeing
CoTs kept), through ``run_experiment`` (the code of ``mindmirror experiment``; ``variants``
picks other rows of its table). It prints the table at the demo's teacher error rate and repeats
the comparison for a few other error rates of the simulated teacher (each its own teacher run
in the same store) to plot test accuracy against the teacher's error rate.

Every run's bundle is kept under ``<work-dir>/ablation/error-<rate>/<variant>/seed-<k>``, so an
interrupted ablation resumes where it stopped and a finished one only redraws its outputs.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mindmirror.demo.settings import DemoSettings, prepare
from mindmirror.demo.stages import data_stage, distill_config, teach_stage, tokenizer_stage
from mindmirror.student.errors import MindmirrorError
from mindmirror.student.files import atomic_write_text

__all__ = [
    "AblationSettings",
    "check_variants",
    "plot_accuracy",
    "run_ablation",
    "table_markdown",
]


@dataclass(frozen=True)
class AblationSettings:
    """What the ablation runs. It shares the demo's data, teacher run and tokenizer, made with
    ``demo`` (whose student shape, batch size and learning rate it trains with too); the
    training budget, the label source, the seeds, the error rates and the rows are its own."""

    demo: DemoSettings = field(default_factory=DemoSettings)
    seeds: tuple[int, ...] = (0, 1, 2)
    #: the plot's sweep; the demo's own rate (``demo.error_rate``) is always added: the table's
    error_rates: tuple[float, ...] = (0.1, 0.25, 0.4)
    # Shorter than the demo's runs, so that 4 variants x 3 seeds x 3 error rates fit in a
    # coffee break (docs/demo.md).
    stage1_steps: int = 150
    steps: int = 400
    # Standard distillation means the teacher's labels, and only they let the teacher's error
    # rate reach the labels; the demo itself trains on the gold ones.
    label_source: str = "teacher"
    #: rows of the table, names of ``mindmirror experiment``'s variants (checked when the
    #: ablation starts). The experiment's default rows: the paper's four and two cleaning rows;
    #: each row adds a run per seed and error rate. Kept literal here so that the demo's CLI
    #: does not import the training code to print its help.
    variants: tuple[str, ...] = (
        "standard",
        "cot-1",
        "cot-N",
        "ours",
        "cot-N-drop",
        "cot-N-agree",
    )

    def __post_init__(self) -> None:
        if any(not 0.0 <= rate <= 1.0 for rate in self.rates):
            raise MindmirrorError(f"error rates must be between 0 and 1, got {self.rates}")
        if self.demo.teacher != "simulated":
            raise MindmirrorError(
                "the ablation sweeps the simulated teacher's error rate: use --teacher simulated"
            )

    @property
    def rates(self) -> list[float]:
        """Every error rate run, the demo's included, in order."""
        return sorted(set(self.error_rates) | {self.demo.error_rate})


def check_variants(variants: tuple[str, ...]) -> None:
    """Refuse a row ``mindmirror experiment`` does not know, or none at all."""
    from mindmirror.training.student.experiment import VARIANTS

    unknown = [name for name in variants if name not in VARIANTS]
    if unknown or not variants:
        raise MindmirrorError(
            f"unknown ablation variant(s) {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(VARIANTS)}"
        )


def _rate_name(rate: float) -> str:
    return f"error-{rate:g}"


def table_markdown(table: Any) -> str:
    """The table as Markdown (for reports and the results folder)."""
    lines = [
        f"| method ({table.task}, N = {table.num_cots}) | accuracy (mean ± std) | per seed "
        "| verdict agreement |",
        "|---|---:|---:|---:|",
    ]
    for row in table.rows:
        data = row.to_dict()
        accuracy = (
            "-" if data["mean"] is None else f"{100 * data['mean']:.1f} ± {100 * data['std']:.1f}"
        )
        seeds = " ".join(f"{100 * v:.1f}" for v in data["accuracy"].values())
        verdict = (
            "-"
            if data["verdict_mean"] is None
            else f"{100 * data['verdict_mean']:.1f} ± {100 * data['verdict_std']:.1f}"
        )
        lines.append(f"| {row.description} | {accuracy} | {seeds} | {verdict} |")
    return "\n".join(lines)


def plot_accuracy(tables: dict[float, Any], path: Path, title: str) -> Path:
    """Test accuracy (mean ± std over seeds) of each variant against the teacher's error rate."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    rates = sorted(tables)
    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for index, row in enumerate(tables[rates[0]].rows):
        means, stds = [], []
        for rate in rates:
            found = tables[rate].row(row.variant)
            means.append(100 * (found.mean or 0.0))
            stds.append(100 * (found.std or 0.0))
        axes.errorbar(
            rates,
            means,
            yerr=stds,
            marker="os^Dvpx*"[index % 8],
            capsize=3,
            label=row.description,
        )
    axes.set_xlabel("simulated teacher's error rate (share of wrong chains of thought)")
    axes.set_ylabel("student test accuracy (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def run_ablation(settings: AblationSettings, *, started: float | None = None) -> dict[float, Any]:
    """Train and evaluate the variants per seed and error rate; print the table at the demo's
    error rate, write ``results.json``, ``table.md`` and the plot. Returns the tables."""
    from rich.console import Console

    from mindmirror.training.student.experiment import run_experiment

    check_variants(settings.variants)  # before the teacher runs, not after them
    started = time.time() if started is None else started
    demo, seeds = settings.demo, list(settings.seeds)
    paths, state = prepare(demo)
    out = paths.root / "ablation"
    console = Console(stderr=True)

    _, summary, _ = data_stage(demo, paths, state)
    console.print(f"data: {summary}")
    # The demo's own teacher run and tokenizer: the ablation shares them with `mindmirror demo`.
    teach_key, summary, _ = teach_stage(demo, paths, state)
    console.print(f"teacher (error rate {demo.error_rate:g}): {summary}")
    tokenizer_stage(demo, paths, state, teach_key)

    tables: dict[float, Any] = {}
    timings: dict[str, float] = {}
    for rate in settings.rates:
        rate_started = time.perf_counter()
        rated = replace(demo, error_rate=rate)
        folder = out / _rate_name(rate)
        train_set, test_set = folder / "train-distill.jsonl", folder / "test-distill.jsonl"
        folder.mkdir(parents=True, exist_ok=True)
        name = _rate_name(rate)
        _, summary, _ = teach_stage(
            rated, paths, state, out=train_set, stage=f"ablation-teach-{name}"
        )
        console.print(f"teacher (error rate {rate:g}): {summary}")
        # The test split taught too, so the table can show verdict agreement on held-out
        # questions; accuracy is judged against the gold labels either way.
        teach_stage(
            rated,
            paths,
            state,
            split="test",
            out=test_set,
            stage=f"ablation-test-{name}",
        )
        base = distill_config(
            rated,
            paths,
            steps=settings.steps,
            stage1_steps=settings.stage1_steps,
            label_source=settings.label_source,
            force=False,
        ).model_copy(update={"data": train_set, "work_dir": None})
        console.print(
            f"[bold]error rate {rate:g}[/bold]: {len(settings.variants)} variants × "
            f"{len(seeds)} seeds, "
            f"{settings.stage1_steps} + {settings.steps} steps each"
        )
        tables[rate] = run_experiment(
            base, test_set, output=folder, seeds=seeds, variants=settings.variants
        )
        timings[name] = round(time.perf_counter() - rate_started, 1)

    main_table = tables[demo.error_rate]
    console.print(main_table.render())
    markdown = table_markdown(main_table)
    atomic_write_text(out / "table.md", markdown + "\n")
    plot = plot_accuracy(
        tables,
        out / "accuracy_vs_error_rate.png",
        f"arith, simulated teacher, N = {demo.cots}, seeds {','.join(map(str, seeds))}",
    )
    results = {
        "settings": {
            "seeds": seeds,
            "error_rates": settings.rates,
            "steps": settings.steps,
            "stage1_steps": settings.stage1_steps,
            "train_problems": demo.train,
            "test_problems": demo.test,
            "cots": demo.cots,
            "evals": demo.evals,
            "label_source": settings.label_source,
            "variants": list(settings.variants),
        },
        "seconds_per_error_rate": timings,
        "tables": {str(rate): table.to_dict() for rate, table in tables.items()},
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    elapsed = time.time() - started
    print(markdown)
    print(f"\nplot: {plot}\nresults: {out / 'results.json'}\ntotal wall time: {elapsed:.0f} s")
    sys.stdout.flush()
    return tables
